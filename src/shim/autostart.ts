/**
 * Auto-start: when no daemon answers for a home, start one, detached, and wait until it is
 * ready. The shim calls {@link ensureDaemon} when a connection fails before its hello_ack;
 * `exai-ws restart` uses the same pieces to replace a running daemon.
 *
 * - A daemon of the home "answers" when its address card names a port and, there, it proves that
 *   it holds this home's token (proof.ts) and its full `GET /health` says `ok` as the card's pid.
 *   Readiness after a start is the same test. A listener that does not prove itself is told
 *   nothing but a nonce.
 * - Race-free: of the shims that find no daemon at once, the one that takes the spawn lock
 *   (spawn-lock.ts) spawns; the others wait for the card and `/health`. The daemon's pid lock
 *   decides in the end: a spawned daemon that loses it exits, and its spawner waits for the
 *   winner instead.
 * - The daemon runs as `process.execPath ...DAEMON_NODE_OPTIONS dist/src/cli.js daemon` with the
 *   caller's environment less its settings variables (settings.ts, launchEnv: the daemon takes
 *   the user's from the settings file, whichever client started it), plus
 *   `EXAI_WS_AUTOSTARTED=1` (so it exits after `EXAI_WS_IDLE_EXIT_MS` with no session), in its own session (detached), stdin ignored, stdout and stderr appended
 *   to the log file, unref'd: the caller may exit at once and the daemon outlives it. Its
 *   working directory is the home, so that it never holds a workspace folder open.
 *
 * Node built-ins only (and never stdout): the shim bundles this file.
 */
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, mkdirSync, openSync, readSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { settingsPath } from '../local/config-path.js';
import { daemonArgs } from '../local/daemon-launch.js';
import { launchEnv, readSettings } from '../local/settings.js';
import { readAddressCard, resolveHome, type HomePaths } from '../local/files.js';
import { discoverDaemon } from '../local/client-settings.js';
import { fetchHealth, provenRequest } from '../local/health-client.js';
import { HomeError, homeError } from '../local/home.js';
import { cardIsLive } from '../local/pidfile.js';
import { strangerMessage } from '../local/proof.js';
import { VERSION } from '../protocol/version.js';
import type { EnsureResult } from './link.js';
import { spawnLockHolder, spawnLockPath, tryTakeSpawnLock, type SpawnLock } from './spawn-lock.js';
import type { Liveness } from '../local/health.js';

/** The outcome of {@link ensureDaemon}; `message` is one line for the user. */
export type Ensured = EnsureResult;

/** A daemon that answers: what `/health` said, at the address a shim connects to. */
export interface RunningDaemon {
  pid: number;
  host: string;
  port: number;
  health: Liveness;
}

/** {@link Ensured} with the daemon that answered, for `exai-ws restart`. */
export type Reached = { ok: true; started: boolean; daemon: RunningDaemon } | { ok: false; message: string };

/** How long a start may take to be ready (`EXAI_WS_AUTOSTART_TIMEOUT_MS`). */
export const DEFAULT_AUTOSTART_TIMEOUT_MS = 15_000;
/** How long one `/health` probe may take: a daemon busy for longer is probed again. */
const PROBE_TIMEOUT_MS = 1_000;
/** Interval between looks at the card and `/health` while a daemon starts. */
const POLL_MS = 25;
/** At most this much of the log is read back for the reason a start failed. */
const LOG_TAIL_BYTES = 64 * 1024;

/** `EXAI_WS_AUTOSTART`: on unless `0` (or `false`, `off`, `no`). */
export function autostartEnabled(env: NodeJS.ProcessEnv): boolean {
  return !/^\s*(?:0|false|off|no)\s*$/i.test(env.EXAI_WS_AUTOSTART ?? '');
}

/** `EXAI_WS_AUTOSTART_TIMEOUT_MS` when it is a positive integer, else the default. */
export function autostartTimeoutMs(env: NodeJS.ProcessEnv): number {
  const value = Number(env.EXAI_WS_AUTOSTART_TIMEOUT_MS);
  return Number.isInteger(value) && value > 0 ? value : DEFAULT_AUTOSTART_TIMEOUT_MS;
}

/**
 * Makes sure a daemon answers for this env (home): starts one when none does and auto-start
 * is on; resolves once its address card names a port and GET /health answers ok, or with the
 * reason it could not (message names the log file, or says auto-start is off and how to start
 * a daemon). `started` is true when this call spawned the daemon that answered. Never rejects.
 */
export async function ensureDaemon(options: { env: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Ensured> {
  const { env } = options;
  try {
    const paths = resolveHome(env);
    const probe = await probeHome(env, paths);
    if (probe.kind === 'proven') return { ok: true, started: false };
    // The home's own daemon runs but cannot prove itself: a new one would lose the pid lock to it.
    if (probe.kind === 'unproven' && probe.own) return { ok: false, message: probe.message };
    if (!autostartEnabled(env)) {
      // The shim's own line already says what holds the port.
      const message =
        probe.kind === 'unproven'
          ? 'auto-start is off (EXAI_WS_AUTOSTART=0): start a daemon of your own with: exai-ws daemon'
          : autostartOffMessage(env, paths);
      return { ok: false, message };
    }
    const reached = await reachOrStartDaemon(env, { timeoutMs: options.timeoutMs ?? autostartTimeoutMs(env) });
    return reached.ok ? { ok: true, started: reached.started } : reached;
  } catch (error) {
    return { ok: false, message: `could not start an exai-ws daemon: ${error instanceof Error ? error.message : String(error)}` };
  }
}

/** What {@link probeHome} found at the address of this home's card. */
export type HomeProbe =
  | { kind: 'proven'; daemon: RunningDaemon }
  /** No card with a port, nothing answers there, or a daemon of this token that is not the card's. */
  | { kind: 'none' }
  /**
   * Something answers but does not prove that it holds this home's token; nothing was sent to
   * it. `own`: it answers liveness as the card's pid, so it is this home's daemon (older than
   * proofs, or started with another token): starting another cannot help. `message`: one line.
   */
  | { kind: 'unproven'; own: boolean; message: string };

/**
 * The daemon of this home when it answers: its card names a port, and at the address a shim
 * would use (discoverDaemon) it proves that it holds this home's token and its `/health` says
 * `ok` as the card's pid; else null. Never rejects.
 */
export async function probeDaemon(env: NodeJS.ProcessEnv, paths: HomePaths = resolveHome(env)): Promise<RunningDaemon | null> {
  const probe = await probeHome(env, paths);
  return probe.kind === 'proven' ? probe.daemon : null;
}

/** {@link probeDaemon}, saying what answered when no daemon proved itself. Never rejects. */
export async function probeHome(env: NodeJS.ProcessEnv, paths: HomePaths = resolveHome(env)): Promise<HomeProbe> {
  const card = readAddressCard(paths.pid);
  if (!card || card.port <= 0) return { kind: 'none' };
  const { host, port, token } = discoverDaemon(env);
  const reply = await provenRequest({ host, port, token }, { method: 'GET', path: '/health', timeoutMs: PROBE_TIMEOUT_MS });
  if (reply.ok) {
    const health = reply.body as Liveness | null;
    if (reply.status !== 200 || health === null || typeof health !== 'object' || health.status !== 'ok' || health.pid !== card.pid) {
      return { kind: 'none' };
    }
    return { kind: 'proven', daemon: { pid: health.pid, host, port, health } };
  }
  if (reply.failure === 'unreachable') return { kind: 'none' };
  // Liveness asks nothing of value: it tells this home's daemon from a stranger, for the message.
  const live = await fetchHealth(host, port, PROBE_TIMEOUT_MS);
  if (live === null || live.pid !== card.pid) {
    if (reply.failure === 'no_token') return { kind: 'none' };
    return { kind: 'unproven', own: false, message: strangerMessage(host, port, reply.detail) };
  }
  const daemon = `the exai-ws daemon on ${host}:${port} (pid ${live.pid}${live.version ? `, version ${live.version}` : ''})`;
  if (reply.failure === 'no_token') {
    return {
      kind: 'unproven',
      own: true,
      message: `${daemon} runs, but this home has no token to check its proof with (${paths.token}): run \`exai-ws restart\``,
    };
  }
  if (reply.noChallenge === true) {
    // Every daemon since proofs answers the challenge: one that does not is older.
    return {
      kind: 'unproven',
      own: true,
      message:
        `${daemon} is older than this exai-ws (${VERSION}): it cannot prove that it holds this home's token, so nothing ` +
        `was sent to it; run \`exai-ws restart\` to run the new version`,
    };
  }
  return {
    kind: 'unproven',
    own: true,
    message:
      `${daemon} did not prove that it holds this home's token (${reply.detail}), so nothing was sent to it: ` +
      `was it started with another EXAI_WS_TOKEN? \`exai-ws restart\` starts it again with this home's token`,
  };
}

/**
 * Waits for the home's daemon to answer, spawning one when none is starting and the spawn
 * lock is free (or `lock`, held by the caller, is given: the caller keeps and releases it).
 * At most one daemon is spawned per call. Resolves within `timeoutMs` (plus one probe); never
 * rejects.
 */
export async function reachOrStartDaemon(env: NodeJS.ProcessEnv, options: { timeoutMs: number; lock?: SpawnLock }): Promise<Reached> {
  const paths = resolveHome(env);
  const deadline = Date.now() + options.timeoutMs;
  try {
    prepareLogs(paths);
  } catch (error) {
    return { ok: false, message: `could not start an exai-ws daemon: ${(error as Error).message}` };
  }
  const lockPath = spawnLockPath(paths);
  let lock: SpawnLock | null = options.lock ?? null;
  let spawned: SpawnedDaemon | undefined;
  try {
    for (;;) {
      const running = await probeDaemon(env, paths);
      if (running) return { ok: true, started: spawned !== undefined && spawned.pid === running.pid, daemon: running };
      // A spawned daemon that lost the pid lock to another start exits: wait for the winner.
      if (spawned?.exit && !(await otherDaemonStarting(paths, spawned.pid))) return { ok: false, message: exitMessage(spawned, paths) };
      if (Date.now() >= deadline) return { ok: false, message: await timeoutMessage(paths, options.timeoutMs, spawned) };
      try {
        lock ??= tryTakeSpawnLock(lockPath, options.timeoutMs);
      } catch (error) {
        return {
          ok: false,
          message: `could not start an exai-ws daemon: cannot take the spawn lock ${lockPath}: ${(error as Error).message}`,
        };
      }
      if (lock && !spawned && !(await otherDaemonStarting(paths))) spawned = spawnDetachedDaemon(env, paths);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    if (lock !== options.lock) lock?.release();
  }
}

/**
 * Makes the home and its logs directory (0700, as the daemon does), so that the log can be
 * opened before the daemon runs. Throws a {@link HomeError} naming the path when it cannot.
 */
export function prepareLogs(paths: HomePaths): void {
  try {
    mkdirSync(paths.logs, { recursive: true, mode: 0o700 });
  } catch (error) {
    const problem = homeError(error, paths.logs, 'the logs directory');
    throw problem instanceof HomeError ? problem : new HomeError(paths.logs, `cannot create ${paths.logs}: ${(error as Error).message}`);
  }
}

/** A daemon process this one spawned; `exit` is set once it has exited (or could not be spawned). */
export interface SpawnedDaemon {
  readonly pid: number | undefined;
  readonly exit: { code: number | null; signal: NodeJS.Signals | null; error?: Error } | undefined;
  /** Size of the log file before the spawn: what the daemon wrote starts there. */
  readonly logOffset: number;
}

/**
 * Spawns a detached daemon for `env` (see the top of this file). Never throws: a log file that
 * cannot be opened or a failed spawn shows as `exit.error`.
 */
export function spawnDetachedDaemon(env: NodeJS.ProcessEnv, paths: HomePaths): SpawnedDaemon {
  // The user's settings, not the caller's: the daemon reads them from the settings file.
  const { env: daemonEnv } = launchEnv(env, readSettings(settingsPath(env)));
  // The daemon runs in the home: paths the caller gave relative to its own directory stay right.
  if (env.EXAI_WS_HOME) daemonEnv.EXAI_WS_HOME = resolve(env.EXAI_WS_HOME);
  if (env.EXAI_WS_CONFIG) daemonEnv.EXAI_WS_CONFIG = resolve(env.EXAI_WS_CONFIG);
  if (env.EXAI_WS_SETTINGS) daemonEnv.EXAI_WS_SETTINGS = resolve(env.EXAI_WS_SETTINGS);
  let logOffset = 0;
  try {
    logOffset = statSync(paths.log).size;
  } catch {
    // No log yet.
  }
  const state: { pid: number | undefined; exit: SpawnedDaemon['exit']; logOffset: number } = { pid: undefined, exit: undefined, logOffset };
  let out: number | undefined;
  try {
    out = openSync(paths.log, 'a', 0o600);
    const child = spawn(process.execPath, daemonArgs(), {
      cwd: resolve(paths.home),
      env: daemonEnv,
      detached: true,
      stdio: ['ignore', out, out],
      windowsHide: true,
    });
    state.pid = child.pid;
    child.once('exit', (code, signal) => (state.exit ??= { code, signal }));
    child.once('error', (error) => (state.exit ??= { code: null, signal: null, error }));
    child.unref();
  } catch (error) {
    state.exit = { code: null, signal: null, error: error as Error };
  } finally {
    // The child has its own copy; the caller must not hold the log open.
    if (out !== undefined) closeSync(out);
  }
  return state;
}

/** True when the card names another live daemon (one still starting, or one that won the pid lock). */
async function otherDaemonStarting(paths: HomePaths, notPid?: number): Promise<boolean> {
  const card = readAddressCard(paths.pid);
  return card !== null && card.pid !== notPid && (await cardIsLive(card, { healthTimeoutMs: PROBE_TIMEOUT_MS }));
}

function autostartOffMessage(env: NodeJS.ProcessEnv, paths: HomePaths): string {
  const card = readAddressCard(paths.pid);
  const { host, port, source } = discoverDaemon(env);
  const where =
    source === 'settings'
      ? `nothing answers on ${host}:${port}, from EXAI_WS_PORT in ${settingsPath(env)}`
      : card
        ? `nothing answers on ${host}:${port}`
        : `no address card at ${paths.pid}`;
  return `no exai-ws daemon is running (${where}); auto-start is off (EXAI_WS_AUTOSTART=0): start one with: exai-ws daemon`;
}

function exitMessage(spawned: SpawnedDaemon, paths: HomePaths): string {
  const exit = spawned.exit;
  if (exit?.error) return `could not start an exai-ws daemon (${process.execPath}): ${exit.error.message}; see ${paths.log}`;
  const how = exit?.signal ? `was killed by ${exit.signal}` : `exited with code ${exit?.code ?? 'unknown'}`;
  const why = lastLogLine(paths.log, spawned.logOffset);
  return `the new exai-ws daemon (pid ${spawned.pid ?? '?'}) ${how} before it was ready${why ? ` (${why})` : ''}; see ${paths.log}`;
}

async function timeoutMessage(paths: HomePaths, timeoutMs: number, spawned: SpawnedDaemon | undefined): Promise<string> {
  const within = `within ${timeoutMs / 1000} s`;
  const card = readAddressCard(paths.pid);
  if (card && card.pid !== spawned?.pid && (await cardIsLive(card, { healthTimeoutMs: PROBE_TIMEOUT_MS }))) {
    return `the exai-ws daemon (pid ${card.pid}, from ${paths.pid}) did not answer ${within}; see ${paths.log}`;
  }
  if (spawned) return `the new exai-ws daemon (pid ${spawned.pid ?? '?'}) was not ready ${within}; see ${paths.log}`;
  const holder = spawnLockHolder(spawnLockPath(paths));
  const by = holder?.pid ? ` (pid ${holder.pid} is starting one)` : '';
  return `no exai-ws daemon was ready ${within}${by}; see ${paths.log}`;
}

/**
 * The line of the log that most likely says why a start failed: the last plain `exai-ws:` line
 * (refusals are printed so) written since `fromOffset`, else the last line; clipped.
 */
function lastLogLine(path: string, fromOffset: number): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const size = fstatSync(fd).size;
    const start = Math.max(fromOffset, size - LOG_TAIL_BYTES);
    if (size <= start) return undefined;
    const buffer = Buffer.alloc(size - start);
    const n = readSync(fd, buffer, 0, buffer.length, start);
    const lines = buffer
      .subarray(0, n)
      .toString('utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.length > 0);
    const line = lines.filter((l) => l.startsWith('exai-ws:')).at(-1) ?? lines.at(-1);
    if (line === undefined) return undefined;
    return clip(line.startsWith('{') ? fromJsonLine(line) : line.replace(/^exai-ws:\s*/, ''));
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

function fromJsonLine(line: string): string {
  try {
    const entry = JSON.parse(line) as { msg?: unknown; err?: unknown };
    const err = typeof entry.err === 'string' ? entry.err : (entry.err as { message?: unknown } | undefined)?.message;
    return [entry.msg, err].filter((p) => typeof p === 'string' && p.length > 0).join(': ');
  } catch {
    return line;
  }
}

function clip(text: string): string {
  return text.length > 300 ? `${text.slice(0, 297)}...` : text;
}
