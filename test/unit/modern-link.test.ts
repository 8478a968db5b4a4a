/**
 * The 2026-07-28 era of a server link without a process: the era's rules (modern.ts), the entry's
 * `protocol` key, and a link to a scripted server (what it sends in each era, how a probe is
 * judged, the listen stream kept open).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JSONRPCMessage, Transport } from '@modelcontextprotocol/client';
import { ServerLink } from '../../src/hosting/server-link.js';
import { headerValue, judgeProbe, listenFilter, withModernMeta, withoutModernMeta } from '../../src/hosting/modern.js';
import { parseUpstreams } from '../../src/hosting/upstream-config.js';

const DEFAULTS = { capabilities: { sampling: {} }, clientInfo: { name: 'exai-ws', version: '1' } };
const DISCOVER = {
  supportedVersions: ['2026-07-28'],
  capabilities: { tools: { listChanged: true }, resources: { subscribe: true } },
  _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'scripted', version: '3' } },
  instructions: 'be kind',
};

type Message = { id?: string | number; method?: string; params?: Record<string, unknown> };

/** A server that answers each request with `answer` (undefined: no answer) and records everything it got. */
class ScriptedServer implements Transport {
  onmessage?: (message: JSONRPCMessage) => void;
  onclose?: () => void;
  onerror?: (error: Error) => void;
  readonly got: Message[] = [];
  constructor(private readonly answer: (m: Message) => Record<string, unknown> | undefined) {}
  async start(): Promise<void> {}
  close(): Promise<void> {
    this.onclose?.();
    return Promise.resolve();
  }
  send(message: JSONRPCMessage): Promise<void> {
    const m = message as Message;
    this.got.push(m);
    const reply = m.id === undefined || m.method === undefined ? undefined : this.answer(m);
    if (reply) queueMicrotask(() => this.onmessage?.({ jsonrpc: '2.0', id: m.id, ...reply } as JSONRPCMessage));
    return Promise.resolve();
  }
  /** The server sends a message of its own. */
  push(message: Record<string, unknown>): void {
    this.onmessage?.({ jsonrpc: '2.0', ...message } as JSONRPCMessage);
  }
  methods(): string[] {
    return this.got.flatMap((m) => (m.method ? [m.method] : []));
  }
}

const modernServer = (m: Message) =>
  m.method === 'subscriptions/listen' ? undefined : m.method === 'server/discover' ? { result: DISCOVER } : { result: { ok: m.method } };
const legacyServer = (m: Message) =>
  m.method === 'initialize'
    ? { result: { protocolVersion: '2025-11-25', capabilities: {}, serverInfo: { name: 'old', version: '1' } } }
    : m.method === 'server/discover'
      ? { error: { code: -32601, message: 'Method not found' } }
      : { result: {} };

test('withModernMeta keeps the caller’s capabilities and identity, else puts the link’s, and never changes the given params', () => {
  const given = { name: 't', _meta: { progressToken: 1, 'io.modelcontextprotocol/clientInfo': { name: 'window', version: '9' } } };
  const sent = withModernMeta(given, DEFAULTS, 'debug');
  assert.deepEqual(sent._meta, {
    progressToken: 1,
    'io.modelcontextprotocol/protocolVersion': '2026-07-28',
    'io.modelcontextprotocol/clientInfo': { name: 'window', version: '9' },
    'io.modelcontextprotocol/clientCapabilities': { sampling: {} },
    'io.modelcontextprotocol/logLevel': 'debug',
  });
  assert.deepEqual(Object.keys(given._meta), ['progressToken', 'io.modelcontextprotocol/clientInfo']);
});

test('withoutModernMeta removes only the io.modelcontextprotocol/* keys, and a _meta left empty', () => {
  const params = { a: 1, _meta: { progressToken: 2, 'io.modelcontextprotocol/clientInfo': {} } };
  assert.deepEqual(withoutModernMeta(params), { a: 1, _meta: { progressToken: 2 } });
  assert.deepEqual(withoutModernMeta({ a: 1, _meta: { 'io.modelcontextprotocol/protocolVersion': 'x' } }), { a: 1 });
  const plain = { a: 1, _meta: {} };
  assert.equal(withoutModernMeta(plain), plain, 'nothing to remove: the same object');
  assert.equal(withoutModernMeta(undefined), undefined);
});

test('judgeProbe follows the backward-compatibility rules', () => {
  assert.equal(judgeProbe({ result: DISCOVER }).era, 'modern');
  assert.equal(judgeProbe(undefined).era, 'legacy', 'no answer');
  assert.equal(judgeProbe({ error: { code: -32601, message: 'Method not found' } }).era, 'legacy');
  assert.equal(judgeProbe({ error: { code: -32011, message: 'send failed: HTTP 400' } }).era, 'legacy');
  assert.equal(judgeProbe({ result: { supportedVersions: ['2027-01-01'] } }).era, 'legacy');
  const refused = judgeProbe({ error: { code: -32020, message: 'header mismatch' } });
  assert.equal(refused.era, 'none', 'a recognized modern error is no reason to fall back');
  const older = { code: -32022, message: 'Unsupported', data: { supported: ['2025-11-25'] } };
  assert.equal(judgeProbe({ error: older }).era, 'legacy', 'a server that supports only a 2025 version is spoken to with initialize');
  const newer = judgeProbe({ error: { code: -32022, message: 'Unsupported', data: { supported: ['2027-01-01'] } } });
  assert.equal(newer.era, 'none');
  assert.match(newer.era === 'none' ? newer.why : '', /2027-01-01/);
});

test('headerValue passes plain ASCII and wraps anything else in the Base64 sentinel', () => {
  assert.equal(headerValue('get_weather'), 'get_weather');
  assert.equal(headerValue('file:///a b'), 'file:///a b');
  for (const odd of ['héllo', ' lead', 'trail ', 'a\nb']) {
    const value = headerValue(odd);
    const inner = /^=\?base64\?(.*)\?=$/.exec(value)?.[1];
    assert.ok(inner !== undefined, value);
    assert.equal(Buffer.from(inner, 'base64').toString('utf8'), odd);
  }
});

test('listenFilter asks for what the capabilities offer', () => {
  assert.deepEqual(listenFilter({ tools: { listChanged: true }, prompts: {} }, []), { toolsListChanged: true });
  assert.deepEqual(listenFilter({ resources: { subscribe: true, listChanged: true } }, ['a://1']), {
    resourcesListChanged: true,
    resourceSubscriptions: ['a://1'],
  });
  assert.equal(listenFilter({ tools: {} }, ['a://1']), undefined);
});

test('the protocol key: defaults by kind, and a clear problem for a bad value', () => {
  const { servers, problems } = parseUpstreams({
    mcpServers: {
      s: { command: 'x' },
      u: { url: 'http://127.0.0.1:1/mcp' },
      m: { command: 'x', protocol: '2026-07-28' },
      bad: { command: 'x', protocol: '2026' },
    },
  });
  assert.deepEqual(
    servers.map((s) => [s.name, s.protocol]),
    [
      ['s', '2025-11-25'],
      ['u', 'auto'],
      ['m', '2026-07-28'],
    ],
  );
  assert.equal(problems.length, 1);
  assert.equal(problems[0]?.key, 'protocol');
  assert.match(problems[0]?.reason ?? '', /"2025-11-25".*"2026-07-28".*"auto"/);
});

test('a modern link: discover instead of initialize, the modern _meta on each call, the era’s removed methods said its way', async () => {
  const server = new ScriptedServer(modernServer);
  const link = new ServerLink('m', server, { protocol: '2026-07-28', capabilities: { roots: {} } });
  await link.start();
  assert.equal(link.era, 'modern');
  assert.deepEqual(link.initializeResult, {
    protocolVersion: '2026-07-28',
    capabilities: DISCOVER.capabilities,
    serverInfo: { name: 'scripted', version: '3' },
    instructions: 'be kind',
  });
  assert.ok(!server.methods().includes('initialize'));
  assert.ok(!server.methods().includes('notifications/initialized'));
  assert.equal(link.inflight, 0, 'the listen stream is no call in flight');

  assert.deepEqual(await link.call('logging/setLevel', { level: 'info' }, { timeoutMs: 1000 }), { result: {} });
  assert.deepEqual(await link.call('ping', undefined, { timeoutMs: 1000 }), { result: {} });
  await link.call('tools/list', {}, { timeoutMs: 1000 });
  const meta = server.got.find((m) => m.method === 'tools/list')?.params?._meta as Record<string, unknown>;
  assert.equal(meta['io.modelcontextprotocol/protocolVersion'], '2026-07-28');
  assert.deepEqual(meta['io.modelcontextprotocol/clientCapabilities'], { roots: {} }, 'what it would have declared at initialize');
  assert.equal((meta['io.modelcontextprotocol/clientInfo'] as { name?: string }).name, 'exai-ws');
  assert.equal(meta['io.modelcontextprotocol/logLevel'], 'info', 'the level asked for, on each later request');
  assert.ok(!server.methods().includes('ping') && !server.methods().includes('logging/setLevel'));
  link.notify('notifications/roots/list_changed');
  assert.ok(!server.methods().includes('notifications/roots/list_changed'));
  await link.close();
});

test('a modern link keeps its listen stream: notifications handed on without the subscription id, reopened when it ends, and on subscribe', async () => {
  const server = new ScriptedServer(modernServer);
  const link = new ServerLink('m', server, { protocol: '2026-07-28' });
  const heard: Record<string, unknown>[] = [];
  link.onnotification = (n) => heard.push(n as unknown as Record<string, unknown>);
  await link.start();
  const listens = () => server.got.filter((m) => m.method === 'subscriptions/listen');
  assert.equal(listens().length, 1);
  const first = listens()[0];
  assert.deepEqual(first?.params?.notifications, { toolsListChanged: true });
  const tag = { 'io.modelcontextprotocol/subscriptionId': first?.id };
  server.push({ method: 'notifications/subscriptions/acknowledged', params: { _meta: tag, notifications: { toolsListChanged: true } } });
  server.push({ method: 'notifications/tools/list_changed', params: { _meta: tag } });
  assert.deepEqual(heard, [{ jsonrpc: '2.0', method: 'notifications/tools/list_changed', params: {} }]);

  // The server ends the subscription gracefully: it is opened again (after the first backoff step).
  server.push({ id: first?.id, result: { resultType: 'complete', _meta: tag } });
  const deadline = Date.now() + 5_000;
  while (listens().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(listens().length, 2, 'reopened');

  assert.deepEqual(await link.call('resources/subscribe', { uri: 'a://1' }, { timeoutMs: 1000 }), { result: {} });
  assert.equal(listens().length, 3, 'opened anew with the URI');
  assert.deepEqual(listens()[2]?.params?.notifications, { toolsListChanged: true, resourceSubscriptions: ['a://1'] });
  assert.ok(
    server.got.some((m) => m.method === 'notifications/cancelled' && m.params?.requestId === listens()[1]?.id),
    'the replaced stream is cancelled',
  );
  await link.close();
});

test('auto: a server that answers server/discover with a JSON-RPC error is spoken to with initialize; next time initialize comes first', async () => {
  const server = new ScriptedServer(legacyServer);
  const link = new ServerLink('old', server, { protocol: 'auto' });
  await link.start();
  assert.equal(link.era, 'legacy');
  assert.deepEqual(server.methods().slice(0, 3), ['server/discover', 'initialize', 'notifications/initialized']);
  await link.call('tools/call', { name: 'x', _meta: { 'io.modelcontextprotocol/clientInfo': {} } }, { timeoutMs: 1000 });
  assert.deepEqual(server.got.find((m) => m.method === 'tools/call')?.params, { name: 'x' });
  await link.close();

  const again = new ScriptedServer(legacyServer);
  const next = new ServerLink('old', again, { protocol: 'auto' });
  next.eraHint = 'legacy';
  await next.start();
  assert.deepEqual(again.methods().slice(0, 2), ['initialize', 'notifications/initialized'], 'no probe for a server known to be legacy');
  await next.close();
});

test('auto: a server that does not answer the probe is taken for a legacy one after the probe’s deadline', async () => {
  const server = new ScriptedServer((m) => (m.method === 'server/discover' ? undefined : legacyServer(m)));
  const link = new ServerLink('silent', server, { protocol: 'auto', probeTimeoutMs: 50 });
  // The link's deadlines do not keep a process alive (the daemon's server does): this test's timer does.
  const alive = setInterval(() => undefined, 1_000);
  try {
    await link.start();
  } finally {
    clearInterval(alive);
  }
  assert.equal(link.era, 'legacy');
  await link.close();
});

test('2026-07-28 only: a legacy server fails to start, saying it does not speak the era', async () => {
  const link = new ServerLink('old', new ScriptedServer(legacyServer), { protocol: '2026-07-28' });
  await assert.rejects(link.start(), /does not speak 2026-07-28/);
  assert.equal(link.state, 'closed');
});
