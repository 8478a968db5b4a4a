/**
 * Where the built programs are, found from where this code runs. The same source runs three
 * ways: as its own module (`dist/src/local/dist-paths.js`, when tests import it), inside the
 * bundled CLI (`dist/src/cli.js`, ES module: scripts/bundle-cli.mjs) and inside the bundled shim
 * (`dist/shim.cjs`, CommonJS, where `import.meta` is empty and `__filename` is the bundle).
 */
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function distDir(): string {
  if (typeof __filename === 'string') return dirname(__filename);
  const here = fileURLToPath(import.meta.url);
  return basename(here) === 'cli.js' ? dirname(dirname(here)) : join(dirname(here), '..', '..');
}

/** `dist/`: the folder of the shim bundle and of `src/`. */
export const DIST_DIR = distDir();
/** The CLI whose `daemon` command runs the daemon. */
export const CLI_PATH = join(DIST_DIR, 'src', 'cli.js');
/** The bundled shim MCP clients run. */
export const SHIM_PATH = join(DIST_DIR, 'shim.cjs');
