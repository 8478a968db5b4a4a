/**
 * How a daemon process is launched: the Node options it runs with and the CLI file that starts
 * it. Shared by `npm run daemon` (package.json spells the options out: change both together),
 * the benchmark, `exai-ws restart`, the service unit and the shim's auto-start. A bare
 * `exai-ws daemon` runs with Node's defaults: the daemon is the process started, never a child
 * of it. Node built-ins only: the shim bundles this file.
 */
import { CLI_PATH } from './dist-paths.js';

/**
 * `--max-semi-space-size=4`: V8 sizes its young generation for throughput and grows it to 16 MB
 * semi-spaces when many long-lived objects arrive at once, as when hundreds of sessions open;
 * it keeps that memory until the daemon has idled a while. Capped at 4 MB, the daemon holds a
 * third of the memory per idle session, and with 10 windows and 3 hosted servers its PSS is
 * about 10 MB smaller (39 against 49 MB, bench/pss-option.ts; see README, Performance).
 */
export const DAEMON_NODE_OPTIONS: readonly string[] = Object.freeze(['--max-semi-space-size=4']);

/** The absolute path of the CLI (`dist/src/cli.js`) whose `daemon` command runs the daemon (dist-paths.ts). */
export function daemonEntryPath(): string {
  return CLI_PATH;
}

/** The argv (after the Node binary) that starts a daemon in the foreground. */
export function daemonArgs(): string[] {
  return [...DAEMON_NODE_OPTIONS, daemonEntryPath(), 'daemon'];
}
