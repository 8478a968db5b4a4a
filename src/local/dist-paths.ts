/**
 * Where the built programs are, found from where this code runs. The same source runs four
 * ways: as its own module (`dist/src/local/dist-paths.js`, when unit tests import it), inside the
 * bundled CLI (`dist/src/cli.js` and its chunks, ES module: scripts/bundle-cli.mjs), inside a
 * bundled test file (`dist/test/`: scripts/bundle-tests.mjs) and inside the bundled shim
 * (`dist/shim.cjs`, CommonJS, where `import.meta` is empty and `__filename` is the bundle).
 */
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function distDir(): string {
  if (typeof __filename === 'string') return dirname(__filename);
  // dist/src/local/dist-paths.js, a CLI chunk (dist/src/chunks/), the CLI (dist/src/cli.js)
  // or a bundled test file or its chunk (dist/test/): dist/ holds src/ and test/.
  let folder = dirname(fileURLToPath(import.meta.url));
  if (basename(folder) !== 'src' && basename(folder) !== 'test') folder = dirname(folder);
  return dirname(folder);
}

/** `dist/`: the folder of the shim bundle and of `src/`. */
export const DIST_DIR = distDir();
/** The CLI whose `daemon` command runs the daemon. */
export const CLI_PATH = join(DIST_DIR, 'src', 'cli.js');
/** The bundled shim MCP clients run. */
export const SHIM_PATH = join(DIST_DIR, 'shim.cjs');
