/**
 * `exai-ws restart`: replaces the running daemon with a new one started from this command's
 * environment (an upgrade, new settings), or starts one when none runs.
 *
 * It holds the spawn lock (shim/spawn-lock.ts) from before the old daemon stops until the new
 * one answers: shims that lose their daemon meanwhile wait for this new one instead of
 * auto-starting their own with their own settings. The new daemon is started as auto-start
 * does (detached, output to the log, `EXAI_WS_AUTOSTARTED=1`), so it also exits after
 * `EXAI_WS_IDLE_EXIT_MS` with no session.
 *
 * The old daemon is asked to stop over the control channel (control-client.ts), by
 * 'exai-ws restart'; when it cannot be asked, SIGTERM on POSIX, a kill outright on Windows.
 */
import { readAddressCard, resolveHome, urlHost } from '../local/files.js';
import { discoverDaemon } from '../local/client-settings.js';
import { cardIsLive } from '../local/pidfile.js';
import { autostartTimeoutMs, prepareLogs, reachOrStartDaemon } from '../shim/autostart.js';
import { spawnLockHolder, spawnLockPath, takeSpawnLock, type SpawnLock } from '../shim/spawn-lock.js';
import { ExitCode } from './exit-codes.js';
import type { CommandIo } from './terminal.js';
import { fallbackNote, STOP_WAIT_MS, stopDaemon } from './control-client.js';

/** Restarts the daemon and prints what it did; resolves to the exit code (1 on any failure, one line on stderr). */
export async function runRestartCommand(io: CommandIo, platform: NodeJS.Platform = process.platform): Promise<number> {
  const { stdout, stderr, env } = io;
  const fail = (message: string) => {
    stderr.write(`exai-ws: restart failed: ${message}\n`);
    return ExitCode.FAILURE;
  };
  const paths = resolveHome(env);
  const timeoutMs = autostartTimeoutMs(env);
  try {
    prepareLogs(paths);
  } catch (error) {
    return fail((error as Error).message);
  }
  const lockPath = spawnLockPath(paths);
  let lock: SpawnLock | null;
  try {
    lock = await takeSpawnLock(lockPath, { staleMs: timeoutMs, waitMs: timeoutMs + STOP_WAIT_MS });
  } catch (error) {
    return fail(`cannot take the spawn lock ${lockPath}: ${(error as Error).message}`);
  }
  if (!lock) {
    const holder = spawnLockHolder(lockPath)?.pid;
    return fail(`another process${holder ? ` (pid ${holder})` : ''} is starting a daemon for ${paths.home} (${lockPath}); try again`);
  }
  try {
    const card = readAddressCard(paths.pid);
    let old: number | undefined;
    // A card whose pid is gone or reused is stale: the new daemon takes it over.
    if (card && (await cardIsLive(card))) {
      old = card.pid;
      const target = { host: card.host, port: card.port, token: discoverDaemon(env, { shell: true }).token };
      const outcome = await stopDaemon({ pid: old, target, pidPath: paths.pid }, { by: 'exai-ws restart', platform });
      stderr.write(fallbackNote(outcome, old));
      if (!outcome.stopped) {
        const force = platform === 'win32' ? `taskkill /PID ${old} /F` : `kill -9 ${old}`;
        return fail(`the daemon (pid ${old}) did not stop within ${STOP_WAIT_MS / 1000} s; nothing was started (end it with: ${force})`);
      }
    }
    const reached = await reachOrStartDaemon(env, { timeoutMs, lock });
    if (!reached.ok) return fail(`${old ? `the daemon (pid ${old}) stopped, but ` : ''}${reached.message}`);
    const { daemon } = reached;
    const address = `ws://${urlHost(daemon.host)}:${daemon.port}`;
    const idle = daemon.health.idle_exit_ms;
    const idleNote = typeof idle === 'number' ? `; it exits after ${formatDuration(idle)} with no session (EXAI_WS_IDLE_EXIT_MS)` : '';
    const what = !reached.started
      ? `daemon ${daemon.pid} (not started by this command) answers on ${address}`
      : old
        ? `daemon restarted: pid ${old} -> ${daemon.pid} on ${address}`
        : `no daemon was running; started pid ${daemon.pid} on ${address}`;
    stdout.write(`exai-ws: ${what}${reached.started ? idleNote : ''}\n`);
    return ExitCode.OK;
  } finally {
    lock.release();
  }
}

function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${ms / 1000} s`;
}
