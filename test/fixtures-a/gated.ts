/**
 * test/fixtures/gated-server.ts, with its check made before the SDK is loaded: a start that
 * fails (the file it needs is missing) exits after a few milliseconds of CPU instead of after
 * loading the SDK, and the tests that wait through a daemon's retries start it many times.
 * Once the file exists it is that same server. Usage: node gated.js <path of the file it needs>.
 */
import { existsSync } from 'node:fs';

const needed = process.argv[2];
if (needed === undefined || !existsSync(needed)) {
  process.stderr.write(`gated: cannot start, ${needed ?? '(no path given)'} does not exist\n`);
  process.exit(1);
}
await import('../fixtures/gated-server.js');
