/**
 * The shim as its own executable: `npm run build` bundles this file with `ws` into one
 * CommonJS file, `dist/shim.cjs` (the `exai-ws-shim` bin), which is what client configs run.
 * One file and no ESM loader start about 25 ms sooner than the same code as ES modules, and
 * start-up is the shim's budget (80 ms to the first initialize result). `exai-ws shim` loads
 * this same file, after the CLI's own ~10 ms.
 *
 * Usage: shim.cjs [--server NAME]   (`exai-ws shim [--server NAME]` through the CLI)
 */
import { ensureDaemon } from './autostart.js';
import { runShim } from './shim.js';

/** `--server NAME` or `--server=NAME`, wherever it sits in argv. */
function serverOption(args: readonly string[]): string | undefined {
  const at = args.indexOf('--server');
  const inline = args.find((a) => a.startsWith('--server='));
  if (at < 0 && inline === undefined) return undefined;
  const value = at >= 0 ? args[at + 1] : inline?.slice('--server='.length);
  if (!value || value.startsWith('--')) {
    process.stderr.write('exai-ws shim: --server needs a value\n');
    process.exit(1);
  }
  return value;
}

const server = serverOption(process.argv.slice(2));
// No daemon answers: start one (unless EXAI_WS_AUTOSTART=0), race-free through the spawn lock.
runShim({ server, ensure: () => ensureDaemon({ env: process.env }) }).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`exai-ws shim: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
