/**
 * Bundles the shim (src/shim/main.ts) with `ws` into dist/shim.cjs, the file MCP clients run.
 * One CommonJS file starts ~25 ms sooner than the ESM module graph (see src/shim/main.ts).
 */
import { build } from 'esbuild';

await build({
  entryPoints: ['src/shim/main.ts'],
  outfile: 'dist/shim.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  minify: true,
  sourcemap: 'linked',
  banner: { js: '#!/usr/bin/env node' },
  // ws probes for two optional native add-ons at load; the shim's small frames gain nothing
  // from them, and the failed lookups cost start-up time.
  define: { 'process.env.WS_NO_BUFFER_UTIL': '"1"', 'process.env.WS_NO_UTF_8_VALIDATE': '"1"' },
  logLevel: 'warning',
  // local/daemon-launch.ts reads __filename in this CommonJS bundle and import.meta.url only
  // when run as an ES module: the empty import.meta here is never used.
  logOverride: { 'empty-import-meta': 'silent' },
});
