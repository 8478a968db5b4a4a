/**
 * Eras where a user looks (issue 24): one real daemon hosting a 2026-07-28-only url server and
 * a 2025 stdio server, with a legacy window (v1 SDK through a real shim) and a modern agent (v2
 * SDK pinned to 2026-07-28 over `/mcp`, stateless: a session per request). `/health`, the real
 * `exai-ws status` and `/metrics` show each server's era, the window's era and the agent grouped
 * by its name with its requests.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client as ModernClient, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Cleanup, ROOT, baseEnv, connectShim, getHealth, runCli, textOf, waitFor, type DaemonHandle } from './helpers.js';
import { memoryEntry, startHostingDaemon } from './fixtures/hosted-servers.js';
import { MODERN } from './fixtures/modern-http.js';
import type { StatusJson } from '../src/commands/status-view.js';

const MODERN_SERVER = join(ROOT, 'dist', 'test', 'fixtures', 'modern-only-server.js');
const AGENT = 'agent-of-2026';
const AGENT_CALLS = 3;

const cleanup = new Cleanup();
let daemon: DaemonHandle;

/** The 2026-07-28-only fixture over HTTP; resolves with its `/mcp` URL. */
function startModernServer(): Promise<string> {
  const proc = spawn(process.execPath, [MODERN_SERVER, 'http'], { stdio: ['ignore', 'pipe', 'pipe'], env: baseEnv() });
  cleanup.add(() => proc.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the modern fixture did not start')), 10_000);
    proc.stdout.on('data', (chunk: Buffer) => {
      const match = /listening (\d+)/.exec(chunk.toString());
      if (!match) return;
      clearTimeout(timer);
      resolve(`http://127.0.0.1:${match[1]}/mcp`);
    });
  });
}

async function serverState(name: string): Promise<string | undefined> {
  return (await getHealth(daemon)).servers?.find((s) => s.name === name)?.state;
}

before(async () => {
  const url = await startModernServer();
  daemon = await startHostingDaemon(cleanup, (home) => ({ modern: { url }, memory: memoryEntry(home) }));
  // The legacy window: it stays open for the whole file.
  const { client: window } = await connectShim(cleanup, daemon, { name: 'legacy-window' });
  const names = (await window.listTools()).tools.map((t) => t.name);
  assert.ok(names.includes('version'), names.join(', '));
  for (const name of ['modern', 'memory']) await waitFor(async () => (await serverState(name)) === 'ready', `${name} ready`, 20_000);
  // The modern agent: the v2 client pinned to 2026-07-28 over /mcp, a few calls, then gone.
  const agent = new ModernClient({ name: AGENT, version: '9.9.9' }, { versionNegotiation: { mode: { pin: MODERN } } });
  cleanup.add(() => agent.close());
  await agent.connect(
    new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${daemon.port}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${daemon.token}` } },
    }),
  );
  for (let i = 0; i < AGENT_CALLS; i++) assert.match(textOf(await agent.callTool({ name: 'version', arguments: {} })), /"name":"exai-ws"/);
  await agent.close();
});
after(() => cleanup.run());

describe('eras in status, /health and /metrics', () => {
  test('/health: each server with the era it is spoken to in; the stateless agent by its name, its requests counted', async () => {
    const health = await getHealth(daemon);
    const era = (name: string): unknown => health.servers?.find((s) => s.name === name)?.era;
    assert.equal(era('modern'), '2026-07-28');
    assert.equal(era('memory'), '2025-11-25');
    const agent = health.stateless_clients?.find((c) => c.client === AGENT);
    assert.ok(agent, `the agent among the stateless clients: ${JSON.stringify(health.stateless_clients)}`);
    assert.equal(agent.era, '2026-07-28');
    assert.ok(agent.requests >= AGENT_CALLS, `its ${AGENT_CALLS} calls (and its discover) counted: ${agent.requests}`);
    assert.ok(agent.last_seen_s >= 0 && agent.last_seen_s < 60);
    assert.equal(
      health.sessions.list?.some((s) => s.client === AGENT),
      false,
      'the agent has no open session: each of its requests was its own',
    );
  });

  test('/health: the legacy window session with its era', async () => {
    const health = await getHealth(daemon);
    const window = health.sessions.list?.find((s) => s.client === 'legacy-window');
    assert.ok(window, JSON.stringify(health.sessions.list));
    assert.equal(window.era, '2025-11-25');
  });

  test('exai-ws status: the era column for servers, the stateless clients section with the agent', async () => {
    const env = { EXAI_WS_HOME: daemon.home };
    const [table, json] = await Promise.all([runCli(['status'], env), runCli(['status', '--json'], env)]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^ {2}modern +ready +2026-07-28 +- +shared/m, table.stdout);
    assert.match(table.stdout, /^ {2}memory +ready +2025-11-25 +\d+ +shared/m, table.stdout);
    assert.match(
      table.stdout,
      new RegExp(
        `^stateless clients \\(a session per request\\)\\n {2}CLIENT +ERA +REQUESTS +LAST SEEN\\n {2}${AGENT} +2026-07-28 +\\d+ +\\d+s ago$`,
        'm',
      ),
      table.stdout,
    );
    assert.equal(json.code, 0, json.stderr);
    const status = JSON.parse(json.stdout) as StatusJson;
    assert.deepEqual(status.servers.map((s) => [s.name, s.era]).sort(), [
      ['memory', '2025-11-25'],
      ['modern', '2026-07-28'],
    ]);
    assert.equal(status.stateless_clients.find((c) => c.client === AGENT)?.era, '2026-07-28');
  });

  test('exai-ws status: the legacy window with its era', async () => {
    const run = await runCli(['status'], { EXAI_WS_HOME: daemon.home });
    assert.match(run.stdout, /^ {2}legacy-window +\S+ +[0-9a-f]{8} +\w+ +attached +2025-11-25 /m, run.stdout);
  });

  test('/metrics: servers by era', async () => {
    const text = await metricsText();
    assert.match(text, /^exai_ws_servers_by_era\{era="modern"\} 1$/m);
    assert.match(text, /^exai_ws_servers_by_era\{era="legacy"\} 1$/m);
  });

  test("/metrics: requests by era, the agent's under modern and the window's under legacy", async () => {
    const text = await metricsText();
    const value = (era: string): number =>
      Number(new RegExp(`^exai_ws_requests_by_era_total\\{era="${era}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    assert.ok(value('modern') >= AGENT_CALLS, text);
    assert.ok(value('legacy') >= 2, "the window's initialize and tools/list");
  });
});

async function metricsText(): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${daemon.port}/metrics`, { headers: { authorization: `Bearer ${daemon.token}` } });
  assert.equal(response.status, 200);
  return response.text();
}
