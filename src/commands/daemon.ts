/**
 * `exai-ws daemon`: runs the daemon in the foreground until SIGINT (Ctrl+C), SIGTERM or
 * `exai-ws stop` (the control channel, control.ts); on Windows also Ctrl+Break (SIGBREAK) and
 * the console window closing (SIGHUP there). SIGHUP reloads the config off Windows.
 * The same command runs an auto-started daemon (EXAI_WS_AUTOSTARTED=1, see shim/autostart.ts),
 * detached with stderr appended to its log file, which also ends itself when idle.
 *
 * The process that runs this is the daemon: the pid a user or a supervisor started is the pid
 * in the address card, so signals, `kill -9` and Ctrl-Z reach it and nothing else. It runs with
 * the Node options it was started with: the start paths that matter (auto-start, `restart`,
 * the service unit, `npm run daemon`) pass DAEMON_NODE_OPTIONS (local/daemon-launch.ts); a
 * bare `exai-ws daemon` runs with Node's defaults (the README says how to add them).
 */
import { writeSync } from 'node:fs';
import { ConfigError, loadConfig } from '../daemon/files/config.js';
import { Daemon, type DaemonOptions } from '../daemon/daemon.js';
import { HomeError } from '../local/home.js';
import { AlreadyRunningError, DAEMON_TITLE } from '../local/pidfile.js';
import { urlHost } from '../local/files.js';
import { ExitCode } from './exit-codes.js';

/**
 * Starts a daemon from the environment, installs signal and crash handlers and exits the
 * process when it has shut down. `extra` lets test fixtures add tools to the built-in server.
 *
 * Exit codes (see exit-codes.ts): 0 after a signal or an idle exit; 1 when another daemon holds the home or the
 * address cannot be bound; 2 for an invalid configuration; 73 when the home cannot be used;
 * 70 when a bug crashed the daemon. Each refusal is one line on stderr; a crash prints its
 * stack.
 */
export async function runDaemonCommand(extra: Omit<DaemonOptions, 'config'> = {}): Promise<void> {
  // Shown by ps, and read by a starting daemon that finds this pid in the address card before
  // this one answers /health (pidfile.ts): set before the card can name this process. The
  // title replaces the command line, so it carries the Node options on: ps shows them.
  process.title = [DAEMON_TITLE, ...process.execArgv].join(' ');
  let daemon: Daemon | undefined;
  installCrashHandlers(() => daemon);
  try {
    daemon = new Daemon({ ...extra, config: loadConfig() });
  } catch (error) {
    if (error instanceof ConfigError) refuse(error.message, ExitCode.CONFIG);
    throw error;
  }
  // A stop asked for while the daemon starts (its address card may already be out) waits for
  // the start to finish, rather than the signal's default killing it half-way.
  const signals = daemonSignals();
  let stopAsked: NodeJS.Signals | undefined;
  const deferStop = (signal: NodeJS.Signals) => (stopAsked ??= signal);
  for (const signal of signals.stop) process.on(signal, deferStop);
  try {
    await daemon.start();
  } catch (error) {
    if (error instanceof AlreadyRunningError) refuse(error.message, ExitCode.FAILURE);
    if (error instanceof HomeError) refuse(`cannot use the home directory: ${error.message}`, ExitCode.HOME);
    const errno = error as NodeJS.ErrnoException & { syscall?: string };
    if (errno.syscall === 'listen') refuse(listenError(errno, daemon.config.host, daemon.config.port), ExitCode.FAILURE);
    throw error;
  }
  const { host, autoStarted } = daemon.config;
  // An auto-started daemon's stderr is its JSONL log, which already says so ('daemon started').
  // What a user who started it by hand needs next: where clients connect, and how to get an entry.
  if (!autoStarted) {
    const address = `${urlHost(host)}:${daemon.port}`;
    process.stderr.write(
      `exai-ws: daemon listening on ws://${address} and http://${address}/mcp (pid ${process.pid}, home ${daemon.config.paths.home}); \`exai-ws config CLIENT\` prints an entry for your MCP client\n`,
    );
  }
  const running = daemon;
  // The daemon may also close itself (an auto-started one when idle): the process goes with it.
  running.onclose = () => process.exit(ExitCode.OK);
  // One graceful stop for every way of asking: a signal, or `POST /control/stop` (`reason` is
  // the signal, or who asked over the channel). A second Ctrl+C gets Node's default: the process ends.
  const stop = (reason: string) => {
    running.close(reason).then(
      () => process.exit(ExitCode.OK),
      () => process.exit(ExitCode.FAILURE),
    );
  };
  running.onstop = stop;
  for (const signal of signals.stop) {
    process.once(signal, () => stop(signal));
    process.off(signal, deferStop);
  }
  if (stopAsked) stop(stopAsked);
  // SIGHUP (`exai-ws reload`'s fallback off Windows) re-reads the hosted-servers config; a
  // closed terminal never stops the daemon there.
  for (const signal of signals.reload) process.on(signal, () => void running.reload(signal));
}

/** The signals that stop the daemon gracefully and those that reload its config. */
export interface DaemonSignals {
  stop: NodeJS.Signals[];
  reload: NodeJS.Signals[];
}

/**
 * Which signals do what on `platform`. On Windows SIGHUP means the console window was closed
 * (Windows ends the process some seconds later) and SIGBREAK is Ctrl+Break: both stop, and a
 * reload is asked over the control channel only. SIGTERM is listened to there although Windows
 * never sends it (`process.kill` is TerminateProcess): harmless, and the same list everywhere.
 */
export function daemonSignals(platform: NodeJS.Platform = process.platform): DaemonSignals {
  if (platform === 'win32') return { stop: ['SIGINT', 'SIGTERM', 'SIGBREAK', 'SIGHUP'], reload: [] };
  return { stop: ['SIGINT', 'SIGTERM'], reload: ['SIGHUP'] };
}

/** Why the address cannot be bound, and what to do, in one line. */
function listenError(errno: NodeJS.ErrnoException, host: string, port: number): string {
  if (errno.code === 'EADDRINUSE') {
    // Only a port named by the daemon's own shell is refused so; any other is moved (own-port.ts).
    return `port ${port} is already in use on ${host} (by another program, or a daemon of another EXAI_WS_HOME), and EXAI_WS_PORT of this shell names it: set it to a free port, or 0 for any, or unset it and the daemon takes a port of its own`;
  }
  if (errno.code === 'EACCES')
    return `no permission to listen on port ${port} on ${host}: set EXAI_WS_PORT to a port above 1023, or 0 for any`;
  return `cannot listen on ${host}:${port}: ${errno.message}`;
}

/** One plain line on stderr and the given exit code: for refusals the user can act on. */
function refuse(message: string, code: number): never {
  process.stderr.write(`exai-ws: ${message}\n`);
  process.exit(code);
}

/**
 * A bug that reaches the top (an uncaught exception, an unhandled rejection) ends the daemon
 * loudly rather than leaving it running in an unknown state: the stack goes to stderr and the
 * log, the pid file is removed so the next start is not blocked, and the process exits with
 * {@link ExitCode.CRASH}. Hosted servers are stopped by the watchdog once this process is gone.
 */
function installCrashHandlers(daemon: () => Daemon | undefined): void {
  let crashing = false;
  const crash = (error: unknown, origin: string) => {
    if (crashing) return; // a second fault while handling the first: exit is already on its way
    crashing = true;
    try {
      const stack = error instanceof Error ? (error.stack ?? error.message) : String(error);
      // Written synchronously: the process exits right after.
      writeSync(2, `exai-ws: daemon crashed (${origin}), exiting: ${stack}\n`);
    } catch {
      // stderr is gone; the log still gets it.
    }
    try {
      daemon()?.abandon(error);
    } finally {
      process.exit(ExitCode.CRASH);
    }
  };
  process.on('uncaughtException', (error, origin) => crash(error, origin));
  process.on('unhandledRejection', (reason) => crash(reason, 'unhandledRejection'));
}
