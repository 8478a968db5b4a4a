/**
 * What every bundle of this project shares (scripts/bundle-cli.mjs, scripts/bundle-tests.mjs):
 * Node 20 ES modules with linked source maps, and the same packages left outside.
 *
 * Left outside: koffi (a native add-on), openai (loaded on first use only), pino and its
 * transports (they start worker threads by module name).
 */
export const NODE_BUNDLE = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'linked',
  external: ['koffi', 'openai', 'pino', 'pino-pretty', 'thread-stream'],
  // ws probes for two optional native add-ons at load, which are not installed.
  define: { 'process.env.WS_NO_BUFFER_UTIL': '"1"', 'process.env.WS_NO_UTF_8_VALIDATE': '"1"' },
  // The CommonJS packages inside (ws, prom-client, the SDK's dependencies, ...) call require.
  banner: { js: "import { createRequire as __bundleRequire } from 'node:module';\nconst require = __bundleRequire(import.meta.url);" },
  logLevel: 'warning',
};
