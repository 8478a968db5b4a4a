/**
 * The CLI's table of commands (src/commands/runners.ts), shared by cli.ts and the tests that run
 * a command in their own process: every command the CLI parses has something to run, and the
 * argument checks that live in the table (`logs --lines`) refuse with a usage error before the
 * command reads anything.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ExitCode } from '../../src/commands/exit-codes.js';
import { RUNNERS } from '../../src/commands/runners.js';
import { parseCommand } from '../../src/local/args.js';
import { COMMANDS, commandSpec } from '../../src/local/specs.js';
import { collected } from '../fixtures/cli-here.js';

/** The commands that are the CLI process itself, run by cli.ts rather than from the table. */
const PROCESS_COMMANDS = ['daemon', 'shim', 'stdio', 'help'];

const dir = mkdtempSync(join(tmpdir(), 'exai-ws-runners-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function io() {
  const stdout = collected();
  const stderr = collected();
  return { stdout: stdout.stream, stderr: stderr.stream, env: { EXAI_WS_HOME: join(dir, 'home') }, out: stdout.text, err: stderr.text };
}

test('every command the CLI knows is either the process itself or in the table, never both', () => {
  const names = COMMANDS.map((c) => c.name).sort();
  const runnable = [...Object.keys(RUNNERS), ...PROCESS_COMMANDS].sort();
  assert.deepEqual(runnable, names);
  for (const name of PROCESS_COMMANDS) assert.equal(RUNNERS[name], undefined, `${name} runs in cli.ts only`);
});

test('logs --lines that is not a whole number >= 0 is a usage error naming the value; nothing is read', async () => {
  for (const bad of ['abc', '1.5', '-3']) {
    const args = [`--lines=${bad}`];
    const parsed = parseCommand(commandSpec('logs')!, args);
    assert.ok('values' in parsed, `'${args[0]}' parses (the table checks it)`);
    const run = io();
    const code = await RUNNERS.logs!({ ...parsed, rest: args }, run);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(code, ExitCode.USAGE);
    assert.equal(run.err(), `exai-ws logs: --lines takes a whole number (got '${bad}')\n`);
    assert.equal(run.out(), '');
  }
  // A whole number goes on to the command, which finds no log in an empty home.
  const run = io();
  const parsed = parseCommand(commandSpec('logs')!, ['--lines', '0']);
  assert.ok('values' in parsed);
  const code = await RUNNERS.logs!({ ...parsed, rest: ['--lines', '0'] }, run);
  await new Promise((resolve) => setImmediate(resolve));
  assert.notEqual(code, ExitCode.USAGE);
  assert.match(run.err(), /no log file at/);
});
