/**
 * The shim as its own executable: `npm run build` bundles this file with `ws` into one
 * CommonJS file, `dist/shim.cjs` (the `exai-ws-shim` bin), which is what client configs run.
 * One file and no ESM loader start about 25 ms sooner than the same code as ES modules, and
 * start-up is the shim's budget (80 ms to the first initialize result). `exai-ws shim` loads
 * this same file, after the CLI's own ~10 ms.
 *
 * Usage: shim.cjs [--server NAME | --profile NAME]   (`exai-ws shim ...` through the CLI)
 */
import { parseCommand } from '../local/args.js';
import { SHIM_SPEC } from '../local/specs.js';
import { ensureDaemon } from './autostart.js';
import { runShim } from './shim.js';

/**
 * The shim's options, parsed with the CLI's own parser and spec. Through `exai-ws shim` the
 * CLI checked them already; run as `shim.cjs` this is the only check.
 */
function options(): { server: string | undefined; profile: string | undefined } {
  const args = process.argv.slice(2);
  if (args[0] === SHIM_SPEC.name && !/shim\.c?js$/.test(process.argv[1] ?? '')) args.shift();
  const parsed = parseCommand(SHIM_SPEC, args);
  if ('help' in parsed) {
    process.stdout.write(`${SHIM_SPEC.usage}\n`);
    process.exit(0);
  }
  if ('error' in parsed) {
    process.stderr.write(`exai-ws shim: ${parsed.error}\n${SHIM_SPEC.usage}\n`);
    process.exit(2);
  }
  const server = parsed.values.server as string | undefined;
  const profile = parsed.values.profile as string | undefined;
  if (server !== undefined && profile !== undefined) {
    process.stderr.write(`exai-ws shim: give --server or --profile, not both (a profile is a set of servers)\n${SHIM_SPEC.usage}\n`);
    process.exit(2);
  }
  return { server, profile };
}

const { server, profile } = options();
// No daemon answers: start one (unless EXAI_WS_AUTOSTART=0), race-free through the spawn lock.
runShim({ server, profile, ensure: () => ensureDaemon({ env: process.env }) }).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`exai-ws shim: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
