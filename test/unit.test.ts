/**
 * The unit tests (test/unit/): logic over in-memory transports, fake timers and made-up inputs,
 * no process and no port. They run here in one test process, one file after another: a process
 * per file cost each of them ~0.5 s of CPU to start, more than most of them take to run.
 * One of them alone: `node --test dist/test/unit/NAME.test.js`.
 */
import { readdirSync } from 'node:fs';
import { describe } from 'node:test';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const folder = join(dirname(fileURLToPath(import.meta.url)), 'unit');
// Each file in a suite of its own, so that its top-level hooks (fake timers) stay its own.
for (const name of readdirSync(folder)
  .filter((n) => n.endsWith('.test.js'))
  .sort()) {
  describe(name.replace(/\.test\.js$/, ''), async () => {
    await import(pathToFileURL(join(folder, name)).href);
  });
}
