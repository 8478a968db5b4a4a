/**
 * How a daemon process is launched: the Node options it runs with and the CLI file that starts
 * it. Shared by `npm run daemon` (package.json spells the options out: change both together),
 * the benchmark, `exai-ws restart` and the shim's auto-start. Node built-ins only: the shim
 * bundles this file.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `--max-semi-space-size=4`: V8 sizes its young generation for throughput and grows it to 16 MB
 * semi-spaces when many long-lived objects arrive at once, as when hundreds of sessions open;
 * it keeps that memory until the daemon has idled a while. Capped at 4 MB, the daemon holds a
 * third of the memory per idle session, and the built-in tool's throughput is unchanged within
 * the benchmark's noise (see README, Performance).
 */
export const DAEMON_NODE_OPTIONS: readonly string[] = Object.freeze(['--max-semi-space-size=4']);

/**
 * The absolute path of the CLI (`dist/src/cli.js`) whose `daemon` command runs the daemon,
 * found from where this code is: `dist/src/protocol/` as an ES module, `dist/` inside the
 * bundled shim (`dist/shim.cjs`, CommonJS, where `import.meta` is empty).
 */
export function daemonEntryPath(): string {
  if (typeof __filename === 'string') return join(dirname(__filename), 'src', 'cli.js');
  return fileURLToPath(new URL('../cli.js', import.meta.url));
}

/** The argv (after the Node binary) that starts a daemon in the foreground. */
export function daemonArgs(): string[] {
  return [...DAEMON_NODE_OPTIONS, daemonEntryPath(), 'daemon'];
}
