/**
 * The CLI's side of the control channel (daemon/web/control.ts): `exai-ws stop`, `restart` and
 * `reload` ask the daemon over its own authenticated connection first (a proven request:
 * nothing is sent to a listener that has not proven it holds this home's token).
 *
 * When the daemon cannot be asked (an older daemon answers 404; no token to prove with; it
 * does not prove itself), the fallback depends on the platform: on POSIX the signal as before
 * (SIGTERM stops gracefully, SIGHUP reloads). On Windows there are no signals: `process.kill` is
 * TerminateProcess, so a stop kills the daemon outright (no drain; the address card it leaves
 * is removed here) and says so, and a reload cannot be done at all (a clear line, never
 * `kill ENOSYS`). Every decision takes `platform` and the process calls are injected, so the
 * Windows paths are unit-tested on any platform.
 */
import { rmSync } from 'node:fs';

import { provenRequest, type ProvenReply, type ProvenTarget } from '../local/health-client.js';
import { processAlive } from '../local/pidfile.js';
import { readAddressCard } from '../local/files.js';
import type { ReloadReport } from '../local/health.js';

/** How long `stop` and `restart` wait for the daemon to exit once asked (or signalled). */
export const STOP_WAIT_MS = 30_000;
/** How long a stop request itself may take to be answered (the answer comes before the shutdown). */
const STOP_ASK_TIMEOUT_MS = 5_000;
/** How long a reload request may take: it answers once removed and changed servers have stopped. */
export const RELOAD_ASK_TIMEOUT_MS = 30_000;
/** How long a process killed outright gets to be gone before the card is removed anyway. */
const KILL_WAIT_MS = 5_000;

/** What the CLI does when the daemon could not be asked to stop. */
export type StopFallback = { kind: 'signal'; signal: 'SIGTERM' } | { kind: 'kill' };

/** POSIX: SIGTERM, the same graceful stop. Windows: TerminateProcess, the only thing there is. */
export function stopFallback(platform: NodeJS.Platform = process.platform): StopFallback {
  return platform === 'win32' ? { kind: 'kill' } : { kind: 'signal', signal: 'SIGTERM' };
}

/** What the CLI does when the daemon could not be asked to reload. */
export type ReloadFallback = { kind: 'signal'; signal: 'SIGHUP' } | { kind: 'refuse'; message: string };

/** POSIX: SIGHUP. Windows has no signal a process can catch for this: the user is told what works. */
export function reloadFallback(pid: number, why: string, platform: NodeJS.Platform = process.platform): ReloadFallback {
  if (platform !== 'win32') return { kind: 'signal', signal: 'SIGHUP' };
  return {
    kind: 'refuse',
    message: `the daemon (pid ${pid}) cannot be asked to reload (${why}), and Windows has no signal to reload with: save the config file again (the daemon applies it when it changes) or run \`exai-ws restart\``,
  };
}

/** The answer of a control request, or why the daemon could not be asked, in a few words. */
export type Asked = { ok: true; status: number; body: unknown } | { ok: false; why: string };

/** Sends one proven control request; never rejects. */
export type AskFn = (target: ProvenTarget, action: 'stop' | 'reload', body: unknown, timeoutMs: number) => Promise<Asked>;

export const askDaemon: AskFn = async (target, action, body, timeoutMs) =>
  askedOf(await provenRequest(target, { method: 'POST', path: `/control/${action}`, body, timeoutMs }));

/** A proven reply as the CLI reasons about it: 404 (older than the channel) is "could not be asked". */
export function askedOf(reply: ProvenReply): Asked {
  if (!reply.ok) {
    switch (reply.failure) {
      case 'no_token':
        return { ok: false, why: 'no token to prove with' };
      case 'unproven':
        return { ok: false, why: `it did not prove that it holds this home's token: ${reply.detail}` };
      case 'refused':
        return { ok: false, why: 'it did not take the proof' };
      case 'unreachable':
        return { ok: false, why: `it did not answer (${reply.detail})` };
    }
  }
  if (reply.status === 404) return { ok: false, why: 'it is older than this exai-ws and has no control channel' };
  return reply;
}

export interface StopTarget {
  pid: number;
  /** Where to ask it; null when it cannot be asked (`why` says why). */
  target: ProvenTarget | null;
  why?: string;
  /** The address card's path: removed after a kill outright if it still names `pid`. */
  pidPath: string;
}

export interface StopOptions {
  /** Who asks, as the daemon logs it (`stop asked`). */
  by: string;
  platform?: NodeJS.Platform;
  timeoutMs?: number;
  ask?: AskFn;
  /** `process.kill`; on Windows any signal is TerminateProcess. */
  kill?: (pid: number, signal: NodeJS.Signals) => void;
  alive?: (pid: number) => boolean;
  /** Removes the card at `path` if it still names `pid`. */
  removeCard?: (path: string, pid: number) => void;
}

export type StopOutcome = {
  /** True once the process is gone. */
  stopped: boolean;
  /** asked: over the channel; signal: SIGTERM (POSIX fallback); killed: outright (Windows fallback). */
  how: 'asked' | 'signal' | 'killed';
  /** Why the daemon was not asked (for signal and killed). */
  why?: string;
};

/**
 * Stops the daemon: asks it (202), else the platform's fallback ({@link stopFallback}), and
 * waits up to `timeoutMs` for the process to be gone.
 */
export async function stopDaemon(daemon: StopTarget, options: StopOptions): Promise<StopOutcome> {
  const {
    by,
    platform = process.platform,
    timeoutMs = STOP_WAIT_MS,
    ask = askDaemon,
    kill = signalProcess,
    alive = processAlive,
  } = options;
  const { pid } = daemon;
  let why = daemon.why ?? 'it cannot be asked';
  if (daemon.target !== null) {
    const asked = await ask(daemon.target, 'stop', { by }, STOP_ASK_TIMEOUT_MS);
    if (asked.ok && asked.status === 202) return { stopped: await gone(pid, timeoutMs, alive), how: 'asked' };
    why = asked.ok ? `it answered HTTP ${asked.status}${errorOf(asked.body)}` : asked.why;
  }
  const fallback = stopFallback(platform);
  if (fallback.kind === 'signal') {
    kill(pid, fallback.signal);
    return { stopped: await gone(pid, timeoutMs, alive), how: 'signal', why };
  }
  kill(pid, 'SIGTERM');
  const stopped = await gone(pid, Math.min(timeoutMs, KILL_WAIT_MS), alive);
  // Killed outright, the daemon could not remove its own card.
  if (stopped) (options.removeCard ?? removeCardOf)(daemon.pidPath, pid);
  return { stopped, how: 'killed', why };
}

/** The line a stop by the fallback adds on stderr (empty when it was asked). */
export function fallbackNote(outcome: StopOutcome, pid: number): string {
  if (outcome.how === 'killed') {
    return `exai-ws: daemon ${pid} killed outright: it could not be asked (${outcome.why}); no drain, its address card was removed\n`;
  }
  return '';
}

/** What a reload request came to. */
export type ReloadOutcome =
  | { kind: 'reloaded'; report: ReloadReport }
  | { kind: 'failed'; error: string }
  /** The daemon could not be asked: the fallback's turn. */
  | { kind: 'not_asked'; why: string };

/** Asks the daemon to reload: its report (200), its refusal (409, or another error), or why it could not be asked. */
export async function askReload(target: ProvenTarget, ask: AskFn = askDaemon): Promise<ReloadOutcome> {
  const asked = await ask(target, 'reload', undefined, RELOAD_ASK_TIMEOUT_MS);
  if (!asked.ok) return { kind: 'not_asked', why: asked.why };
  if (asked.status === 200 && isReloadReport(asked.body)) return { kind: 'reloaded', report: asked.body };
  const error = errorOf(asked.body).replace(/^: /, '');
  if (asked.status === 409 || asked.status === 500) return { kind: 'failed', error: error || `HTTP ${asked.status}` };
  return { kind: 'not_asked', why: `it answered HTTP ${asked.status}${errorOf(asked.body)}` };
}

function isReloadReport(body: unknown): body is ReloadReport {
  if (body === null || typeof body !== 'object') return false;
  const report = body as Record<string, unknown>;
  return ['added', 'removed', 'restarted', 'unchanged'].every((key) => Array.isArray(report[key]));
}

/** `: message` from a JSON error body, or ''. */
function errorOf(body: unknown): string {
  const error = body !== null && typeof body === 'object' ? (body as { error?: unknown }).error : undefined;
  return typeof error === 'string' ? `: ${error}` : '';
}

function signalProcess(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Gone already.
  }
}

/** True once `pid` is gone, polling until `timeoutMs`. */
async function gone(pid: number, timeoutMs: number, alive: (pid: number) => boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

function removeCardOf(path: string, pid: number): void {
  if (readAddressCard(path)?.pid !== pid) return;
  try {
    rmSync(path, { force: true });
  } catch {
    // Left for the next start, which takes a stale card over.
  }
}
