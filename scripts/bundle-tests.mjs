/**
 * Bundles each top-level test file (test/*.test.ts) into dist/test/NAME.test.js, over its
 * file-by-file output. `node --test` runs every test file in a process of its own, and a
 * process that imports the helpers, the SDK client and the modules under test file by file
 * spends about 0.5 s of CPU resolving and linking them (Node 20 has no compile cache); one
 * bundled module starts in about 0.2 s. With ~70 files on a 2-core machine that is ~20 s of the
 * suite.
 *
 * Each bundle holds its own copy of what it imports, so a test and the modules it tests share
 * one copy in its process. What stays file by file: test/unit/ (test/unit.test.ts imports each
 * of its files by a computed path, so they load as modules of their own), the long suites
 * (test/long/, test/windows/: not in `npm test`) and every process fixture (a test starts
 * those by path). Left outside as in the CLI: scripts/bundle-options.mjs.
 */
import { readdirSync } from 'node:fs';
import { build } from 'esbuild';
import { NODE_BUNDLE } from './bundle-options.mjs';

const entries = readdirSync('test')
  .filter((name) => name.endsWith('.test.ts'))
  .map((name) => `test/${name}`);

await build({
  entryPoints: entries,
  outdir: 'dist/test',
  allowOverwrite: true,
  ...NODE_BUNDLE,
  splitting: true,
  // Beside the test files, where the helpers find the repository from import.meta.url.
  chunkNames: '[name]-[hash]',
});
