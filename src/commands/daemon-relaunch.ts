/**
 * The daemon's own Node options ({@link DAEMON_NODE_OPTIONS}) whatever starts it. The shim's
 * auto-start, `exai-ws restart` and the service pass them on the command line; a user typing
 * `exai-ws daemon` (the bin runs plain `node`) or `node dist/src/cli.js daemon` does not. V8
 * reads them only when the process starts (`v8.setFlagsFromString` later leaves the young
 * generation's size as it was) and Node 20 has no execve, so such a process runs the same
 * Node again with the options and stays as a thin parent: signals in, exit code out.
 *
 * Node built-ins only: the parent loads nothing of the daemon.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { DAEMON_NODE_OPTIONS } from '../protocol/daemon-launch.js';

/**
 * `0`: run with the Node options this process has. The parent sets it for the daemon it
 * starts, so that one never starts another; a user may set it to keep V8's defaults.
 */
export const RELAUNCH_ENV = 'EXAI_WS_DAEMON_RELAUNCH';

/** Signals the parent passes on; SIGHUP is `exai-ws reload`'s. */
const FORWARDED: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * The daemon options this process lacks, judged by option name: an option given with another
 * value (`--max-semi-space-size=16` on the command line or in NODE_OPTIONS) is the user's
 * choice and counts as given.
 */
export function missingNodeOptions(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const given = new Set([...execArgv, ...(nodeOptions ?? '').split(/\s+/)].map(optionName));
  return DAEMON_NODE_OPTIONS.filter((option) => !given.has(optionName(option)));
}

function optionName(arg: string): string {
  const at = arg.indexOf('=');
  // V8 takes `--max_semi_space_size` as well as `--max-semi-space-size`.
  return (at < 0 ? arg : arg.slice(0, at)).replace(/_/g, '-');
}

/**
 * Runs this same command again in a child with `options` added, unless {@link RELAUNCH_ENV}
 * is `0`; returns false (nothing started) when there is nothing to add. Otherwise the process
 * becomes the child's parent until the child exits, then exits with its code (a signal n as
 * 128 + n), and this never returns.
 *
 * The child gets a process group of its own, so a terminal's Ctrl-C reaches it once (through
 * this parent) rather than twice; SIGINT, SIGTERM and SIGHUP sent to this process are passed
 * on. An IPC channel tells the child when this parent is gone, even by SIGKILL (see
 * {@link watchLauncher}).
 */
export function relaunchWithNodeOptions(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env[RELAUNCH_ENV] === '0') return false;
  const missing = missingNodeOptions(process.execArgv, env.NODE_OPTIONS);
  if (missing.length === 0) return false;
  const child = spawn(process.execPath, [...process.execArgv, ...missing, ...process.argv.slice(1)], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: { ...env, [RELAUNCH_ENV]: '0' },
    // Windows has no process groups to leave, and a detached child there gets a console of its own.
    detached: process.platform !== 'win32',
  });
  for (const signal of FORWARDED) process.on(signal, () => child.kill(signal));
  child.once('error', (error) => {
    process.stderr.write(`exai-ws: cannot start the daemon with its Node options (${DAEMON_NODE_OPTIONS.join(' ')}): ${error.message}\n`);
    process.exit(1);
  });
  child.once('exit', (code, signal) => {
    process.exit(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
  });
  // The child's channel must not keep this parent alive once the child is gone; the child
  // itself keeps the parent waiting.
  child.channel?.unref();
  return true;
}

/**
 * In a daemon started by {@link relaunchWithNodeOptions}: calls `onGone` once when the parent
 * that started it is gone (its IPC channel closed), so that a parent killed outright takes
 * the daemon with it as a single process would have gone. No-op in any other process.
 */
export function watchLauncher(onGone: () => void): void {
  if (!process.channel || process.env[RELAUNCH_ENV] !== '0') return;
  // Started by the parent: it is no setting of the user's, and hosted servers need not see it.
  delete process.env[RELAUNCH_ENV];
  process.channel.unref();
  // Gone already (while this daemon started): the event has been and gone.
  if (!process.connected) onGone();
  else process.once('disconnect', onGone);
}
