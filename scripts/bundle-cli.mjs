/**
 * Bundles the CLI (src/cli.ts, the daemon included) into dist/src/cli.js, over the file-by-file
 * output of that one file. One ES module starts the daemon in about half the CPU of the module
 * graph (Node 20 resolves and links each of the SDK's and zod's files on its own): ~0.38 s
 * against ~0.8 s on the 2-core development machine, which every auto-start and every test
 * daemon pays. The rest of dist/src stays file by file for the tests that import its modules.
 *
 * Left outside: koffi (a native add-on), openai (loaded on first use only), pino and its
 * transports (they start worker threads by module name).
 */
import { build } from 'esbuild';

await build({
  entryPoints: ['src/cli.ts'],
  outfile: 'dist/src/cli.js',
  allowOverwrite: true,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'linked',
  external: ['koffi', 'openai', 'pino', 'pino-pretty', 'thread-stream'],
  // ws probes for two optional native add-ons at load, which are not installed.
  define: { 'process.env.WS_NO_BUFFER_UTIL': '"1"', 'process.env.WS_NO_UTF_8_VALIDATE': '"1"' },
  // The CommonJS packages inside (ws, prom-client, ...) call require.
  banner: { js: "import { createRequire as __bundleRequire } from 'node:module';\nconst require = __bundleRequire(import.meta.url);" },
  logLevel: 'warning',
});
