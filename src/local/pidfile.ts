/**
 * The single-instance lock and address card `logs/ws_daemon.pid`.
 *
 * - The card is created exclusively and whole (written to a temp file, then hard-linked into
 *   place), so a reader never sees a half-written card: of daemons started at once, exactly one
 *   creates it.
 * - A card blocks a start only while its process is really an exai-ws daemon: it answers
 *   `/health` as that pid, or its command line is a daemon's (`exai-ws daemon`, the title every
 *   daemon sets, or `.../cli.js daemon`). A card whose pid is gone or was reused by another
 *   program is stale and taken over. A card with port 0 is a daemon still starting: it blocks
 *   when its process is a daemon, which keeps two starts at once down to one winner.
 * - A stale card is removed under a short takeover mutex (`ws_daemon.pid.takeover`), and only
 *   when it still holds the text judged stale, so a taker never removes a card that another
 *   daemon made in the meantime.
 * - Removed on clean exit (and by the crash handler of `exai-ws daemon`).
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { parseAddressCard, type AddressCard } from './files.js';
import { fetchHealth } from './health-client.js';
import { homeError } from './home.js';
import { createWhole, replaceWhole } from './whole-file.js';
import type { LocalErrorCode } from './errors.js';

/** The process title every daemon sets, so that `ps` and a starting daemon can tell it apart. */
export const DAEMON_TITLE = 'exai-ws daemon';
/** How long a card's process gets to answer `/health`. */
export const HEALTH_TIMEOUT_MS = 1_000;
/** How long a start may spend taking the lock (stale cards, concurrent starts). */
export const ACQUIRE_TIMEOUT_MS = 15_000;
/**
 * A takeover mutex older than this was left by a taker that died in its critical section (a
 * few synchronous file calls): it is removed.
 */
export const TAKEOVER_STALE_MS = 5_000;
/** A card that is not valid JSON yet may be one being written (no hard links): left alone this long. */
export const UNPARSEABLE_GRACE_MS = 2_000;
/** Where no command line can be read (Windows): how long a port-0 card counts as a daemon starting. */
export const UNKNOWN_START_GRACE_MS = 60_000;

export class AlreadyRunningError extends Error {
  override name = 'AlreadyRunningError';
  readonly code = 'EALREADY_RUNNING' satisfies LocalErrorCode;
  constructor(readonly card: AddressCard) {
    const where = card.port > 0 ? ` on ${card.host}:${card.port}` : ' (still starting)';
    super(`another exai-ws daemon is already running: pid ${card.pid}${where} (started ${card.started_at})`);
  }
}

/** True while a process with this pid exists (EPERM still means it exists). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The command line of a process, arguments joined by spaces: '' when the process is gone, null
 * when it cannot be read here. Linux reads `/proc/PID/cmdline`; other systems ask `ps`.
 */
export function processCommandLine(pid: number): string | null {
  if (!Number.isInteger(pid) || pid <= 0) return '';
  if (process.platform === 'linux') {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').join(' ').trim();
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === 'ENOENT' ? '' : null;
    }
  }
  if (process.platform === 'win32') return null;
  try {
    return execFileSync('ps', ['-o', 'args=', '-p', String(pid)], {
      encoding: 'utf8',
      timeout: 2_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch (error) {
    // ps exits 1 when there is no such process; no ps at all means we cannot tell.
    return (error as { status?: number | null }).status === 1 ? '' : null;
  }
}

/**
 * True when a command line is an exai-ws daemon's: the title every daemon sets
 * ({@link DAEMON_TITLE}), or the CLI run as `... exai-ws daemon` / `... cli.js daemon`
 * (before the title is set, or where a title does not show, as on macOS).
 */
export function isDaemonCommandLine(commandLine: string): boolean {
  return /(?:^|[\s/\\])(?:exai-ws(?:\.js|\.cmd)?|cli\.js)\s+daemon(?:\s|$)/.test(commandLine);
}

export interface LivenessProbe {
  /** Defaults to {@link HEALTH_TIMEOUT_MS}. */
  healthTimeoutMs?: number;
  /** Defaults to {@link processCommandLine}; tests pass their own. */
  commandLine?: (pid: number) => string | null;
  /** Defaults to `Date.now()`. */
  nowMs?: number;
}

/**
 * True when the card's process is an exai-ws daemon, so the card must be respected: it answers
 * `/health` on the card's port as that pid, or (nothing answers there, or the card has no port
 * yet) its command line is a daemon's. A live pid running anything else (the pid was reused
 * after a crash or a reboot) is not, and neither is a card whose port is answered by another
 * daemon.
 */
export async function cardIsLive(card: AddressCard, probe: LivenessProbe = {}): Promise<boolean> {
  if (!processAlive(card.pid)) return false;
  if (card.port > 0) {
    // A daemon answering on the card's port as another pid means the card's daemon left it.
    const health = await fetchHealth(card.host, card.port, probe.healthTimeoutMs ?? HEALTH_TIMEOUT_MS);
    if (health !== null) return health.pid === card.pid;
  }
  const commandLine = (probe.commandLine ?? processCommandLine)(card.pid);
  if (commandLine !== null) return isDaemonCommandLine(commandLine);
  // Nothing tells what the process is: trust a card still binding for a while, as a daemon's
  // start takes seconds at most; a port that does not answer is not a daemon.
  const startedMs = Date.parse(card.started_at);
  return card.port === 0 && Number.isFinite(startedMs) && (probe.nowMs ?? Date.now()) - startedMs < UNKNOWN_START_GRACE_MS;
}

export class PidLock {
  private released = false;
  constructor(readonly path: string) {}

  /** Rewrites the card in place (atomic rename), e.g. once the port is known. */
  update(card: AddressCard): void {
    try {
      replaceWhole(this.path, `${JSON.stringify(card)}\n`, 0o644);
    } catch (error) {
      throw homeError(error, this.path, 'the pid file');
    }
  }

  /** Removes the card if it is still ours. Idempotent; never throws (it runs in crash handlers). */
  release(): void {
    if (this.released) return;
    this.released = true;
    try {
      const card = parseAddressCard(readFileSync(this.path, 'utf8'));
      if (card?.pid === process.pid) unlinkSync(this.path);
    } catch {
      // Already gone or unreadable: nothing of ours to remove.
    }
  }
}

/**
 * Takes the lock or throws {@link AlreadyRunningError} naming the running daemon, or
 * {@link HomeError} when the pid path cannot be used (a directory, no permission, a full disk).
 * Stale cards are removed and the exclusive create is tried again.
 */
export async function acquirePidLock(path: string, card: AddressCard, probe: LivenessProbe = {}): Promise<PidLock> {
  const text = `${JSON.stringify(card)}\n`;
  const deadline = Date.now() + ACQUIRE_TIMEOUT_MS;
  for (;;) {
    if (createExclusive(path, text)) return new PidLock(path);
    const found = readCardText(path);
    let removal: 'removed' | 'changed' | 'busy' = 'changed';
    if (found !== null) {
      const existing = parseAddressCard(found);
      if (existing && existing.pid !== process.pid && (await cardIsLive(existing, probe))) throw new AlreadyRunningError(existing);
      removal = existing === null && ageMs(path) < UNPARSEABLE_GRACE_MS ? 'busy' : removeIfUnchanged(path, found);
    }
    if (Date.now() > deadline) throw new Error(`could not take the pid file ${path} within ${ACQUIRE_TIMEOUT_MS / 1000} s`);
    // Another start is removing a stale card: give it a moment, then look again.
    if (removal === 'busy') await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
  }
}

/**
 * Creates the card whole and exclusively; false when a card is already there. (Where the file
 * system has no hard links a reader may see it empty for a moment: it leaves such a card alone
 * for UNPARSEABLE_GRACE_MS.)
 */
function createExclusive(path: string, text: string): boolean {
  try {
    return createWhole(path, text, 0o644);
  } catch (error) {
    throw homeError(error, path, 'the pid file');
  }
}

/** The card's text, or null when it vanished; throws HomeError when it is not a readable file. */
function readCardText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw homeError(error, path, 'the pid file');
  }
}

/**
 * Removes the card if it still holds `staleText`, under the takeover mutex: 'removed',
 * 'changed' (someone else replaced or removed it) or 'busy' (another start holds the mutex).
 */
function removeIfUnchanged(path: string, staleText: string): 'removed' | 'changed' | 'busy' {
  const mutex = `${path}.takeover`;
  let fd: number;
  try {
    fd = openSync(mutex, 'wx', 0o644);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw homeError(error, mutex, 'the pid file lock');
    clearAbandonedMutex(mutex);
    return 'busy';
  }
  try {
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);
    if (readCardText(path) !== staleText) return 'changed';
    unlinkSync(path);
    return 'removed';
  } finally {
    removeQuietly(mutex);
  }
}

/** Removes a takeover mutex whose holder died (its pid is gone, or it is too old to be held). */
function clearAbandonedMutex(mutex: string): void {
  try {
    const age = Date.now() - statSync(mutex).mtimeMs;
    const holder = Number.parseInt(readFileSync(mutex, 'utf8'), 10);
    const holderGone = Number.isInteger(holder) && holder > 0 && !processAlive(holder);
    if (holderGone || age > TAKEOVER_STALE_MS) unlinkSync(mutex);
  } catch {
    // Gone already, or being written: look again on the next round.
  }
}

/** How long ago the file was last written; 0 when it cannot be told (so it counts as fresh). */
function ageMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

function removeQuietly(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch {
    // Best effort: a leftover temp file is harmless.
  }
}
