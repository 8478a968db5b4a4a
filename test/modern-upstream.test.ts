/**
 * Hosted servers of the 2026-07-28 era: a server that refuses `initialize` (the v2 SDK, modern
 * only) is hosted over HTTP (probed with server/discover) and over stdio (`"protocol":
 * "2026-07-28"`), and a window of the 2025 era (the v1 SDK client through the shim) lists its
 * tools, calls them, gets their progress and hears its tools/list_changed as from any server.
 * A dual-era server is spoken to in the modern era; a 2025-only server still works through the
 * fallback to initialize, and never sees the modern `_meta` keys. A tool's parameters annotated
 * `x-mcp-header` reach a 2026-07-28 url server as `Mcp-Param-*` headers too, and a tool whose
 * annotations are invalid is not listed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { McpError, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { Cleanup, ROOT, baseEnv, connectShim, logPath, readJsonLines, textOf, waitFor, type DaemonHandle } from './helpers.js';
import { serverReport, startTeedEverything, startHostingDaemon } from './fixtures/hosted-servers.js';
import { startEverythingHttp } from './fixtures/everything-http.js';
import { modernPost, type ModernReply } from './fixtures/modern-http.js';

const cleanup = new Cleanup();

/** A daemon hosting `servers` whose lists wait for servers however long they take to start (a loaded machine). */
function hostServers(servers: Parameters<typeof startHostingDaemon>[1]): ReturnType<typeof startHostingDaemon> {
  return startHostingDaemon(cleanup, servers, { EXAI_WS_LIST_WAIT_MS: '0' });
}
after(() => cleanup.run());

const MODERN = join(ROOT, 'dist', 'test', 'fixtures', 'modern-only-server.js');

interface ModernHttp {
  url: string;
  /** What the server wrote on stderr so far. */
  stderr(): string;
}

/** Starts the fixture over HTTP (`dual`: the SDK's default, which serves 2025 requests too). */
function startModernHttp(dual = false): Promise<ModernHttp> {
  const args = [MODERN, 'http', ...(dual ? ['dual'] : [])];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: baseEnv() });
  cleanup.add(() => proc.kill('SIGKILL'));
  let err = '';
  proc.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the modern fixture did not start')), 10_000);
    proc.stdout?.on('data', (chunk: Buffer) => {
      const match = /listening (\d+)/.exec(chunk.toString());
      if (!match) return;
      clearTimeout(timer);
      resolve({ url: `http://127.0.0.1:${match[1]}/mcp`, stderr: () => err });
    });
  });
}

/** The era the daemon logged for a server when it became ready. */
async function loggedEra(daemon: DaemonHandle, server: string): Promise<unknown> {
  const line = await waitFor(
    () => readJsonLines(logPath(daemon.home)).find((l) => l.msg === 'server ready' && l.server === server),
    `${server} ready in the log`,
  );
  return line.era;
}

/** What a 2025 window sees of a hosted modern server named `modern`: listed, called, progress, list_changed. */
async function usedLikeAnyServer(daemon: DaemonHandle): Promise<void> {
  const { client } = await connectShim(cleanup, daemon, { name: 'legacy-window' });
  let listChanged = 0;
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => void listChanged++);
  const names = (await client.listTools()).tools.map((t) => t.name);
  for (const name of ['modern__echo', 'modern__count', 'modern__flip']) assert.ok(names.includes(name), `${name} in ${names.join(', ')}`);
  assert.ok(!names.includes('modern__extra'), 'extra is not there before the flip');

  assert.equal(textOf(await client.callTool({ name: 'modern__echo', arguments: { text: 'hi' } })), 'modern: hi');

  const progress: number[] = [];
  const counted = await client.callTool({ name: 'modern__count', arguments: { n: 3 } }, undefined, {
    onprogress: (p) => progress.push(p.progress),
  });
  assert.equal(textOf(counted), 'counted 3');
  assert.deepEqual(progress, [1, 2, 3], 'each progress notification reaches the caller');

  assert.equal(textOf(await client.callTool({ name: 'modern__flip', arguments: {} })), 'extra on');
  await waitFor(() => listChanged > 0, 'tools/list_changed from the listen stream', 10_000);
  const after = (await client.listTools()).tools.map((t) => t.name);
  assert.ok(after.includes('modern__extra'), `the new tool is listed: ${after.join(', ')}`);
}

test('a 2026-07-28-only url server is probed, hosted and used like any other', async () => {
  const { url } = await startModernHttp();
  const daemon = await hostServers(() => ({ modern: { url } }));
  await usedLikeAnyServer(daemon);
  assert.equal(await loggedEra(daemon, 'modern'), 'modern');
});

test('a window cancelling a call to a 2026-07-28 url server cancels it at the server (its stream is closed)', async () => {
  const server = await startModernHttp();
  const daemon = await hostServers(() => ({ modern: { url: server.url } }));
  const { client } = await connectShim(cleanup, daemon);
  const controller = new AbortController();
  const call = client.callTool({ name: 'modern__wait', arguments: { ms: 30_000 } }, undefined, { signal: controller.signal });
  await waitFor(() => server.stderr().includes('wait started'), 'the call running at the server');
  controller.abort('the user pressed stop');
  await assert.rejects(call);
  await waitFor(
    () => server.stderr().includes('wait cancelled'),
    `the server saw the cancellation (its stderr: ${server.stderr()})`,
    5_000,
  );
  await waitFor(async () => (await serverReport(daemon, 'modern')).inflight === 0, 'nothing in flight at the server', 5_000);
});

test('a 2026-07-28-only stdio server with "protocol": "2026-07-28" is hosted and used like any other', async () => {
  const daemon = await hostServers(() => ({
    modern: { command: process.execPath, args: [MODERN, 'stdio'], protocol: '2026-07-28' },
  }));
  await usedLikeAnyServer(daemon);
  assert.equal(await loggedEra(daemon, 'modern'), 'modern');
});

test('a 2026-07-28-only stdio server without a protocol key is spoken to with initialize, and refuses it', async () => {
  const daemon = await hostServers(() => ({ modern: { command: process.execPath, args: [MODERN, 'stdio'] } }));
  const { client } = await connectShim(cleanup, daemon);
  const reply = await client.callTool({ name: 'modern__echo', arguments: { text: 'hi' } }).catch((e: unknown) => e);
  assert.ok(reply instanceof McpError, String(reply));
  assert.equal(reply.code, -32011, reply.message);
  assert.match(reply.message, /failed to initialize.*2026-07-28/, 'the user reads the server’s refusal, naming the version it speaks');
  const failed = readJsonLines(logPath(daemon.home)).find((l) => l.msg === 'server failed to start' && l.server === 'modern');
  assert.ok(failed, 'the failed start is logged');
  assert.ok(!readJsonLines(logPath(daemon.home)).some((l) => l.msg === 'server ready' && l.server === 'modern'));
});

test('a dual-era url server is spoken to in the 2026-07-28 era', async () => {
  const { url } = await startModernHttp(true);
  const daemon = await hostServers(() => ({ modern: { url } }));
  const { client } = await connectShim(cleanup, daemon);
  assert.equal(textOf(await client.callTool({ name: 'modern__era', arguments: {} })), 'modern');
  assert.equal(await loggedEra(daemon, 'modern'), 'modern');
});

test('a 2025-only url server still works: the probe falls back to initialize', async () => {
  const everything = await startEverythingHttp(cleanup);
  const daemon = await hostServers(() => ({ everything: { url: everything.url } }));
  const { client } = await connectShim(cleanup, daemon);
  const names = (await client.listTools()).tools.map((t) => t.name);
  assert.ok(names.includes('everything__echo'), names.join(', '));
  assert.match(textOf(await client.callTool({ name: 'everything__echo', arguments: { message: 'old' } })), /old/);
  assert.equal(await loggedEra(daemon, 'everything'), 'legacy');
});

test('a 2025 server never sees the io.modelcontextprotocol/* keys of a forwarded _meta', async () => {
  const { daemon, received } = await startTeedEverything(cleanup);
  const { client } = await connectShim(cleanup, daemon);
  const meta = {
    'io.modelcontextprotocol/clientInfo': { name: 'window', version: '1' },
    'io.modelcontextprotocol/clientCapabilities': {},
    'example.com/trace': 'kept',
  };
  await client.callTool({ name: 'everything__echo', arguments: { message: 'a' }, _meta: meta });
  await client.callTool({
    name: 'everything__echo',
    arguments: { message: 'b' },
    _meta: { 'io.modelcontextprotocol/clientCapabilities': {} },
  });
  const calls = await waitFor(() => {
    const found = received().filter((m) => m.method === 'tools/call');
    return found.length >= 2 ? found : null;
  }, 'both calls at the server');
  assert.deepEqual(calls[0]?.params?._meta, { 'example.com/trace': 'kept' }, 'only the modern keys are removed');
  assert.ok(calls[1]?.params !== undefined && !('_meta' in calls[1].params), 'a _meta left empty is dropped');
});

/** The tools of the header server: one valid (two annotated parameters, one nested), one invalid. */
const HEADER_TOOLS = [
  {
    name: 'sql',
    inputSchema: {
      type: 'object',
      properties: {
        region: { type: 'string', 'x-mcp-header': 'Region' },
        target: { type: 'object', properties: { shard: { type: 'integer', 'x-mcp-header': 'Shard' } } },
        query: { type: 'string' },
      },
    },
  },
  {
    name: 'bad',
    inputSchema: { type: 'object', properties: { list: { type: 'array', items: { type: 'string', 'x-mcp-header': 'Item' } } } },
  },
];

/**
 * A minimal 2026-07-28 server over HTTP (written here, so that it takes whatever headers come):
 * it answers server/discover, lists HEADER_TOOLS and records the headers of each tools/call.
 */
async function startHeaderServer(): Promise<{ url: string; calls: IncomingHttpHeaders[] }> {
  const calls: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      if (req.method !== 'POST') return void res.writeHead(405).end();
      const message = JSON.parse(body) as { id?: number; method: string };
      if (message.id === undefined) return void res.writeHead(202).end();
      const answer = (payload: object) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, ...payload }));
      };
      if (message.method === 'server/discover')
        return answer({
          result: {
            supportedVersions: ['2026-07-28'],
            capabilities: { tools: {} },
            _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'headers', version: '1' } },
          },
        });
      if (message.method === 'tools/list') return answer({ result: { tools: HEADER_TOOLS } });
      if (message.method === 'tools/call') {
        calls.push(req.headers);
        return answer({ result: { content: [{ type: 'text', text: 'ok' }] } });
      }
      answer({ error: { code: -32601, message: `no ${message.method}` } });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.add(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`, calls };
}

test("a 2026-07-28 url server gets a tool's x-mcp-header parameters as Mcp-Param-* headers, and a tool with invalid annotations is not listed", async () => {
  const upstream = await startHeaderServer();
  const daemon = await hostServers(() => ({ headers: { url: upstream.url } }));
  const { client } = await connectShim(cleanup, daemon);
  const names = (await client.listTools()).tools.map((t) => t.name);
  assert.ok(names.includes('headers__sql'), names.join(', '));
  assert.ok(!names.includes('headers__bad'), `the invalid tool is left out: ${names.join(', ')}`);

  assert.equal(
    textOf(await client.callTool({ name: 'headers__sql', arguments: { region: 'Hello, 世界', target: { shard: 7 }, query: 'q' } })),
    'ok',
  );
  assert.equal(textOf(await client.callTool({ name: 'headers__sql', arguments: { region: 'us-west1', query: 'q' } })), 'ok');
  const [both, one] = upstream.calls;
  assert.equal(both?.['mcp-param-region'], `=?base64?${Buffer.from('Hello, 世界').toString('base64')}?=`);
  assert.equal(both?.['mcp-param-shard'], '7');
  assert.equal(both?.['mcp-name'], 'sql');
  assert.equal(one?.['mcp-param-region'], 'us-west1');
  assert.equal(one?.['mcp-param-shard'], undefined, 'a parameter not given: no header');
});

test('a 2026-07-28 client calling over /mcp with the right Mcp-Param-* headers is served, the headers made anew for the server', async () => {
  const upstream = await startHeaderServer();
  const daemon = await hostServers(() => ({ headers: { url: upstream.url } }));
  const args = { region: 'Hello, 世界', target: { shard: 7 } };
  const headers = { 'mcp-param-region': `=?base64?${Buffer.from('Hello, 世界').toString('base64')}?=`, 'mcp-param-shard': '7' };
  const reply = await modernPost(daemon, '/mcp/headers', 'tools/call', { name: 'sql', arguments: args }, { headers });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  assert.equal(upstream.calls[0]?.['mcp-param-region'], headers['mcp-param-region']);
  assert.equal(upstream.calls[0]?.['mcp-param-shard'], '7');
});

test('the daemon’s /mcp refuses a call whose Mcp-Param-* headers disagree with its arguments (400, -32020)', async () => {
  const upstream = await startHeaderServer();
  const daemon = await hostServers(() => ({ headers: { url: upstream.url } }));
  const call = (headers: Record<string, string>) =>
    modernPost(daemon, '/mcp/headers', 'tools/call', { name: 'sql', arguments: { region: 'Hello' } }, { headers });
  const refused = (reply: ModernReply, what: string) => {
    assert.equal(reply.status, 400, `${what}: ${JSON.stringify(reply.body)}`);
    assert.equal((reply.body.error as { code?: number } | undefined)?.code, -32020, what);
  };
  refused(await call({}), 'the header missing');
  refused(await call({ 'mcp-param-region': 'Bye' }), 'another value');
  refused(await call({ 'mcp-param-region': '=?base64?SGVsbG8?=' }), 'Base64 without its padding');
  assert.equal(upstream.calls.length, 0, 'no refused call reaches the server');
  assert.equal((await call({ 'mcp-param-region': '=?base64?SGVsbG8=?=' })).status, 200, 'the right header, encoded');
});
