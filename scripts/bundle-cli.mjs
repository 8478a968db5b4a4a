/**
 * Bundles the programs that start as processes of their own, over the file-by-file output of
 * their entry files: the CLI (src/cli.ts, the daemon included) into dist/src/cli.js, and the
 * test fixtures that run as processes (a fixture daemon, fixture MCP servers) in dist/test/.
 * One ES module starts in about half the CPU of the module graph (Node 20 resolves and links
 * each of the SDK's and zod's files on its own): a daemon in ~0.38 s against ~0.8 s on the
 * 2-core development machine, which every auto-start pays, and every test daemon and fixture
 * server the suite starts. The rest of dist/ stays file by file for the tests that import its
 * modules (a bundled fixture is never imported by a test: it would be a second copy of src/).
 *
 * What is left outside the bundles: scripts/bundle-options.mjs.
 */
import { build } from 'esbuild';
import { NODE_BUNDLE } from './bundle-options.mjs';

/** Test fixtures started as processes (node FILE), never imported by a test. */
const PROCESS_FIXTURES = ['fixture-daemon', 'gc-daemon', 'ensure-daemon', 'hosted-stubborn', 'gated-server', 'remote-server'];

/**
 * @param {Record<string, string>} entryPoints output path (no extension) -> source
 * @param {boolean} splitting code behind a dynamic import (a CLI command's module) in chunks of its own
 */
function bundle(entryPoints, splitting) {
  return build({
    entryPoints,
    outdir: '.',
    splitting,
    // Two folders below dist/, as the entries are: dist-paths.ts finds dist/ from there.
    chunkNames: 'dist/src/chunks/[name]-[hash]',
    allowOverwrite: true,
    ...NODE_BUNDLE,
  });
}

// The CLI in chunks: `exai-ws status` (or --version) loads its own command, not the daemon.
await bundle({ 'dist/src/cli': 'src/cli.ts' }, true);
// Each fixture whole, so that no test code lands among the CLI's chunks in the package.
await bundle(Object.fromEntries(PROCESS_FIXTURES.map((name) => [`dist/test/fixtures/${name}`, `test/fixtures/${name}.ts`])), false);
