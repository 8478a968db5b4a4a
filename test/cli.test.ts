/** The `exai-ws` command line: help, version, stdio mode, and bad commands. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { CLI, Cleanup, ROOT, baseEnv, textOf, runCli, type CliRun } from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

function cli(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return runCli(args, env);
}

// Each test has its own home and daemon on port 0 (nothing shared but this file's cleanup), so they run side
// by side: most of their time is waiting on processes and timers.
describe('the CLI', { concurrency: 4 }, () => {
  test('--version prints the package version; --help lists every command', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const version = await cli(['--version']);
    assert.equal(version.code, 0);
    assert.equal(version.stdout.trim(), pkg.version);
    const help = await cli(['--help']);
    assert.equal(help.code, 0);
    for (const command of ['daemon', 'shim', 'stdio', 'status', 'stop']) assert.match(help.stdout, new RegExp(`\\n  ${command}\\s`));
  });

  test('an unknown command fails with a hint and nothing on stdout', async () => {
    const out = await cli(['frobnicate']);
    assert.equal(out.code, 2);
    assert.equal(out.stdout, '');
    assert.match(out.stderr, /unknown command 'frobnicate'.*--help/);
  });

  test('exai-ws stdio serves the core to an SDK client with no daemon', async () => {
    const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, 'stdio'], env: baseEnv(), stderr: 'pipe' });
    const client = new Client({ name: 'stdio-test', version: '1' });
    cleanup.add(() => client.close());
    await client.connect(transport);
    const tools = await client.listTools();
    assert.ok(tools.tools.some((t) => t.name === 'version'));
    const info = JSON.parse(textOf(await client.callTool({ name: 'version', arguments: {} }))) as { pid: number; name: string };
    assert.equal(info.name, 'exai-ws');
    assert.equal(info.pid, transport.pid, 'the stdio process itself serves the tool');
  });

  test('a bad limit in the environment stops the daemon with one clear line', async () => {
    const out = await cli(['daemon'], { EXAI_WS_BACKPRESSURE: 'lots', EXAI_WS_PORT: '0', EXAI_WS_HOME: '/nonexistent-exai' });
    assert.notEqual(out.code, 0);
    assert.match(out.stderr, /EXAI_WS_BACKPRESSURE/);
    assert.equal(out.stderr.trim().split('\n').length, 1);
  });
});
