/**
 * `exai-ws status` run as a user runs it, against a real daemon hosting a server that cannot
 * start, with a real shim session that made calls: the table and `--json` show the client,
 * its transport, working directory and p99, the failed server's error, and a broken config
 * edit's reload error; a token the daemon does not take shows only what it tells anyone.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { StatusJson } from '../src/commands/status-view.js';
import { Cleanup, SHIM, baseEnv, getHealth, textOf, waitFor, type DaemonHandle, runCli } from './helpers.js';
import { cliHere } from './fixtures/cli-here.js';
import { memoryEntry, serverReport, startHostingDaemon, waitReady } from './fixtures/hosted-servers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

/** A real shim under the SDK client, started in `cwd` (the window's folder the daemon is told). */
async function windowIn(daemon: DaemonHandle, cwd: string, name: string): Promise<Client> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [SHIM],
    env: { ...baseEnv(), ...daemon.clientEnv },
    cwd,
    stderr: 'pipe',
  });
  const client = new Client({ name, version: '3.1.4' }, { capabilities: {} });
  cleanup.add(() => client.close());
  await client.connect(transport);
  return client;
}

// Each test has its own home and daemon on port 0 (nothing shared but this file's cleanup), so they run side
// by side: most of their time is waiting on processes and timers.
describe('exai-ws status', { concurrency: 2 }, () => {
  test('status: the client with its transport, cwd and p99; a failed server and a failed reload with their errors; --json alike', async () => {
    const daemon = await startHostingDaemon(cleanup, (home) => ({
      memory: memoryEntry(home),
      nocmd: { command: 'no-such-command-xyz' },
    }));
    const cwd = join(daemon.home, 'w');
    mkdirSync(cwd);
    const client = await windowIn(daemon, cwd, 'e2e');
    for (let i = 0; i < 5; i++) assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: `n${i}` } })), `n${i}`);
    const memory = await waitReady(daemon, 'memory');
    await waitFor(async () => (await serverReport(daemon, 'nocmd')).state === 'failed', 'nocmd failed');
    const env = { EXAI_WS_HOME: daemon.home };

    // Both forms read the same state: asked side by side, the table by the real CLI and the rest by
    // the same commands in this process (test/fixtures/cli-here.ts).
    const [table, json] = await Promise.all([runCli(['status'], env), cliHere(['status', '--json'], env)]);
    assert.equal(table.code, 0, table.stderr);
    assert.equal(table.stdout.includes('\u001b'), false, 'no colour into a pipe');
    assert.match(table.stdout, new RegExp(`^ {2}pid +${daemon.pid}$`, 'm'));
    assert.match(
      table.stdout,
      new RegExp(`^ {2}address +ws://127\\.0\\.0\\.1:${daemon.port} .*http://127\\.0\\.0\\.1:${daemon.port}/mcp`, 'm'),
    );
    assert.match(table.stdout, /^ {2}started +by hand or a service; never exits when idle$/m);
    const row = table.stdout.split('\n').find((l) => l.startsWith('  e2e 3.1.4 '));
    assert.ok(row, `a row for the client:\n${table.stdout}`);
    // CLIENT SESSION VIA STATE [ERA] AGE IN-FLIGHT P99 CWD (ERA once the daemon reports sessions' eras)
    assert.match(row, /^ {2}e2e 3\.1\.4 +[0-9a-f]{8} +ws +attached +(?:2025-11-25 +)?\d+s +0 +(\d+\.\d ms|\d+ ms|\d+\.\d\d s) +(.+)$/);
    assert.ok(row.endsWith(cwd), `the window's folder: ${row}`);
    // The failed server's error: in its column, or (too long for the width) whole on the lines under its row.
    const lines = table.stdout.split('\n');
    const nocmd = lines.findIndex((l) => l.startsWith('  nocmd '));
    // NAME STATE ERA PID SCOPE RESTARTS SESSIONS: a server that never started was spoken to in no era.
    assert.match(lines[nocmd] ?? '', /^ {2}nocmd +failed +- +- +shared +\d+ +0\b/);
    assert.match(
      lines
        .slice(nocmd, nocmd + 3)
        .join(' ')
        .replace(/\s+/g, ' '),
      /no-such-command-xyz: command not found/,
    );
    assert.match(table.stdout, new RegExp(`^ {2}memory +ready +2025-11-25 +${memory.pid} +shared +0 +\\d+( +-)?$`, 'm'));
    assert.match(table.stdout, /^ {2}log +ok: 0 lines dropped$/m);
    assert.doesNotMatch(table.stdout, /last reload/, 'no reload yet');

    assert.equal(json.code, 0, json.stderr);
    const status = JSON.parse(json.stdout) as StatusJson;
    assert.equal(status.schema, 1);
    assert.equal(status.status, 'ok');
    assert.equal(status.limited, null);
    assert.equal(status.daemon.pid, daemon.pid);
    assert.equal(status.daemon.mcp_url, `http://127.0.0.1:${daemon.port}/mcp`);
    assert.equal(status.daemon.auto_started, false);
    const session = status.sessions.find((s) => s.client === 'e2e');
    assert.ok(session, json.stdout);
    assert.equal(session.client_version, '3.1.4');
    assert.equal(session.transport, 'ws');
    assert.equal(session.cwd, cwd);
    assert.ok(session.requests !== null && session.requests >= 6, `initialize and 5 calls answered: ${session.requests}`);
    assert.ok(typeof session.p99_ms === 'number' && session.p99_ms > 0, `a p99: ${session.p99_ms}`);
    assert.ok(row.includes(session.id.slice(0, 8)));
    const failed = status.servers.find((s) => s.name === 'nocmd');
    assert.equal(failed?.state, 'failed');
    assert.match(failed?.last_error ?? '', /no-such-command-xyz/);
    assert.ok(status.providers.length > 0, 'the providers are listed');
    for (const p of status.providers) assert.equal(p.configured, false, 'no provider is configured in a test');

    // A broken edit: the daemon keeps its servers and status says why the reload failed.
    writeFileSync(join(daemon.home, 'config.json'), '{ "mcpServers": { oops');
    const reload = await cliHere(['reload'], env);
    assert.equal(reload.code, 1, reload.stdout);
    await waitFor(
      async () => ((await getHealth(daemon)).config as { last_reload?: { error?: string } }).last_reload?.error,
      'a failed reload in /health',
    );
    const [after, afterText] = await Promise.all([cliHere(['status'], env), cliHere(['status', '--json'], env)]);
    assert.equal(after.code, 0, after.stderr);
    assert.match(after.stdout, /^ {2}last reload \S+ \(\d+s ago\) failed: the running servers stay as they were\n {4}\S.*not valid JSON/m);
    assert.match(after.stdout, new RegExp(`^ {2}memory +ready +2025-11-25 +${memory.pid} `, 'm'), 'the running server stays');
    const afterJson = JSON.parse(afterText.stdout) as StatusJson;
    assert.equal(afterJson.config.last_reload?.ok, false);
    assert.match(afterJson.config.last_reload?.ok === false ? afterJson.config.last_reload.error : '', /not valid JSON/);
  });

  test('status with a token the daemon does not prove: its liveness and why, exit 1; stop still works', async () => {
    const daemon = await startHostingDaemon(cleanup, () => ({}));
    const env = { EXAI_WS_HOME: daemon.home, EXAI_WS_TOKEN: 'a-token-this-daemon-never-issued' };
    const [table, json] = await Promise.all([runCli(['status'], env), cliHere(['status', '--json'], env)]);
    assert.equal(table.code, 1);
    assert.match(table.stdout, new RegExp(`^ {2}pid +${daemon.pid}$`, 'm'));
    assert.match(table.stdout, /did not prove that it holds this home's token/);
    assert.doesNotMatch(table.stdout, /^sessions/m);
    assert.equal(json.code, 1);
    const status = JSON.parse(json.stdout) as StatusJson;
    assert.equal(status.status, 'ok');
    assert.match(status.limited ?? '', /EXAI_WS_TOKEN or the token file differs/);
    assert.equal(status.daemon.pid, daemon.pid);
    const stop = await cliHere(['stop'], env);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal(await daemon.exited, 0);
  });
});
