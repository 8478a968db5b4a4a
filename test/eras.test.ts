/**
 * Both MCP eras at the daemon's doors (issue 24): clients of the 2026-07-28 revision (the
 * official v2 SDK client pinned to it) by `/mcp` and by the shim, beside legacy clients, against
 * the built-in tools and a hosted legacy server (server-everything). One daemon for the file;
 * each test asserts only what its own requests got.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client as ModernClient, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport as ModernStdioTransport } from '@modelcontextprotocol/client/stdio';
import {
  Cleanup,
  ROOT,
  SHIM,
  baseEnv,
  readUntilResponse,
  spawnShim,
  type RawShim,
  connectShim,
  getHealth,
  textOf,
  waitFor,
  type DaemonHandle,
} from './helpers.js';
import { everythingEntry, startHostingDaemon } from './fixtures/hosted-servers.js';
import { MODERN, modernPost, modernStream, type ModernReply } from './fixtures/modern-http.js';

const cleanup = new Cleanup();
let daemon: DaemonHandle;
const EVERYTHING = everythingEntry({ asks_client: ['trigger-sampling-request'] });
/** A server that speaks only 2026-07-28 (it refuses initialize), on the v2 SDK. */
const MODERN_ONLY = {
  command: process.execPath,
  args: [join(ROOT, 'dist', 'test', 'fixtures', 'modern-only-server.js'), 'stdio'],
  protocol: MODERN,
};

before(async () => {
  // Its sampling tool is declared as asking the client back, so calls of it from different
  // windows take turns and the daemon always knows whom a question is for.
  // Lists wait for the servers however long they take to start (a loaded machine).
  daemon = await startHostingDaemon(cleanup, () => ({ everything: EVERYTHING, modern: MODERN_ONLY }), { EXAI_WS_LIST_WAIT_MS: '0' });
});
after(() => cleanup.run());

const pinned = { versionNegotiation: { mode: { pin: MODERN } } } as const;

/** A client that answers sampling itself: its answer names the client, so each can tell its own. */
type Sampler = (client: ModernClient, name: string) => void;
const samplesAs: Sampler = (client, name) =>
  client.setRequestHandler('sampling/createMessage', () =>
    Promise.resolve({
      model: `model-of-${name}`,
      role: 'assistant' as const,
      content: { type: 'text' as const, text: `sampled by ${name}` },
    }),
  );

function modernClient(name: string, sampler?: Sampler): ModernClient {
  const client = new ModernClient({ name, version: '1.0.0' }, { ...pinned, capabilities: sampler ? { sampling: {} } : {} });
  sampler?.(client, name);
  cleanup.add(() => client.close());
  return client;
}

/** The official v2 client, pinned to 2026-07-28, over Streamable HTTP at `path`. */
async function modernHttpClient(path = '/mcp', name = 'eras-http', sampler?: Sampler): Promise<ModernClient> {
  const transport = new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${daemon.port}${path}`), {
    requestInit: { headers: { authorization: `Bearer ${daemon.token}` } },
  });
  const client = modernClient(name, sampler);
  await client.connect(transport);
  return client;
}

/** The official v2 client, pinned to 2026-07-28, through a real shim process. */
async function modernShimClient(name = 'eras-shim', sampler?: Sampler): Promise<ModernClient> {
  const transport = new ModernStdioTransport({
    command: process.execPath,
    args: [SHIM],
    env: { ...baseEnv(), ...daemon.clientEnv },
    stderr: 'pipe',
  });
  const client = modernClient(name, sampler);
  await client.connect(transport);
  return client;
}

/**
 * Calls server-everything's sampling tool; its result quotes the sampling answer it got. The
 * tool is listed once the server runs with a client that can sample (a window offering
 * sampling renews it), so the client lists first, as clients do.
 */
async function sampledThrough(client: ModernClient, prompt: string): Promise<string> {
  await waitFor(
    async () => (await client.listTools()).tools.some((t) => t.name === 'everything__trigger-sampling-request'),
    'the sampling tool to be listed',
    20_000,
    200,
  );
  const result = await client.callTool({ name: 'everything__trigger-sampling-request', arguments: { prompt, maxTokens: 10 } });
  return JSON.stringify(result);
}

async function listsAndCalls(client: ModernClient): Promise<void> {
  const names = (await client.listTools()).tools.map((t) => t.name);
  assert.ok(names.includes('version'), `built-in tools listed: ${names.join(', ')}`);
  assert.ok(names.includes('everything__echo'), `the hosted server's tools listed: ${names.join(', ')}`);
  const version = await client.callTool({ name: 'version', arguments: {} });
  assert.match(textOf(version), /"name":"exai-ws"/);
  const echo = await client.callTool({ name: 'everything__echo', arguments: { message: 'modern hello' } });
  assert.equal(textOf(echo), 'Echo: modern hello');
}

describe('a 2026-07-28 client', () => {
  test('by /mcp: lists, calls a built-in tool and a hosted legacy server', async () => {
    await listsAndCalls(await modernHttpClient());
  });

  test('by the shim: lists, calls a built-in tool and a hosted legacy server', async () => {
    await listsAndCalls(await modernShimClient());
  });

  test('at /mcp/NAME sees that server alone, as the server itself describes it', async () => {
    const client = await modernHttpClient('/mcp/everything', 'eras-one-server');
    const names = (await client.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('echo') && !names.includes('version'), `one server's own names: ${names.join(', ')}`);
    const discover = await modernPost(daemon, '/mcp/everything', 'server/discover', {});
    assert.equal(discover.status, 200);
    const result = discover.body.result as Record<string, unknown>;
    assert.ok((result.supportedVersions as string[]).includes(MODERN));
    const info = (result._meta as Record<string, { name?: string }>)['io.modelcontextprotocol/serverInfo'];
    assert.notEqual(info?.name, 'exai-ws', 'the hosted server names itself, not the daemon');
    assert.ok(typeof result.capabilities === 'object' && result.capabilities !== null && 'tools' in result.capabilities);
  });

  test('and a legacy client at the same time: each is served in its own era', async () => {
    const [modern, legacy] = await Promise.all([modernHttpClient('/mcp', 'eras-side-modern'), connectShim(cleanup, daemon)]);
    const [a, b] = await Promise.all([
      modern.callTool({ name: 'everything__echo', arguments: { message: 'from 2026' } }),
      legacy.client.callTool({ name: 'everything__echo', arguments: { message: 'from 2025' } }),
    ]);
    assert.equal(textOf(a), 'Echo: from 2026');
    assert.equal(textOf(b), 'Echo: from 2025');
    // The legacy session initialized as before: its result has no modern fields.
    assert.equal((b as Record<string, unknown>).resultType, undefined);
  });
});

describe("a legacy server's question to a 2026-07-28 client (input_required, bridged by the daemon)", () => {
  test("by /mcp: the client's own sampling handler answers, and the tool's result carries its answer", async () => {
    const client = await modernHttpClient('/mcp', 'mrtr-http', samplesAs);
    assert.match(await sampledThrough(client, 'hello from http'), /sampled by mrtr-http/);
  });

  test('by the shim: the same, through a real shim process', async () => {
    const client = await modernShimClient('mrtr-shim', samplesAs);
    assert.match(await sampledThrough(client, 'hello from the shim'), /sampled by mrtr-shim/);
  });

  test('two modern clients and two legacy windows at once: each answers only its own questions', async () => {
    const legacyAnswer = (name: string) => ({
      model: `model-of-${name}`,
      role: 'assistant',
      content: { type: 'text', text: `sampled by ${name}` },
    });
    const [http, shim, legacyA, legacyB] = await Promise.all([
      modernHttpClient('/mcp', 'mrtr-four-http', samplesAs),
      modernShimClient('mrtr-four-shim', samplesAs),
      connectShim(cleanup, daemon, { name: 'legacy-a', capabilities: { sampling: {} } }),
      connectShim(cleanup, daemon, { name: 'legacy-b', capabilities: { sampling: {} } }),
    ]);
    const { CreateMessageRequestSchema } = await import('@modelcontextprotocol/sdk/types.js');
    legacyA.client.setRequestHandler(CreateMessageRequestSchema, () => Promise.resolve(legacyAnswer('legacy-a')));
    legacyB.client.setRequestHandler(CreateMessageRequestSchema, () => Promise.resolve(legacyAnswer('legacy-b')));
    const legacyCall = async (shim: typeof legacyA, prompt: string) =>
      JSON.stringify(await shim.client.callTool({ name: 'everything__trigger-sampling-request', arguments: { prompt, maxTokens: 10 } }));
    const results = await Promise.all([
      sampledThrough(http, 'one'),
      sampledThrough(shim, 'two'),
      legacyCall(legacyA, 'three'),
      legacyCall(legacyB, 'four'),
    ]);
    const names = ['mrtr-four-http', 'mrtr-four-shim', 'legacy-a', 'legacy-b'];
    results.forEach((text, i) => {
      assert.match(text, new RegExp(`sampled by ${names[i]}`));
      for (const other of names.filter((_, j) => j !== i)) assert.doesNotMatch(text, new RegExp(`sampled by ${other}\\b`));
    });
  });
});

describe('a 2026-07-28 client that did not declare what the server asks for', () => {
  test('gets -32021 with 400, naming the capability', async () => {
    await waitFor(
      async () =>
        JSON.stringify((await modernPost(daemon, '/mcp', 'tools/list', {})).body).includes('everything__trigger-sampling-request'),
      'the sampling tool to be listed',
      20_000,
      200,
    );
    const reply = await modernPost(daemon, '/mcp', 'tools/call', {
      name: 'everything__trigger-sampling-request',
      arguments: { prompt: 'no sampling here', maxTokens: 5 },
    });
    expectError(reply, 400, -32021);
    const data = (reply.body.error as { data?: { requiredCapabilities?: Record<string, unknown> } }).data;
    assert.deepEqual(data?.requiredCapabilities, { sampling: {} });
  });
});

describe('the requestState the daemon signs', () => {
  test('is refused when tampered with or presented by another shim connection; the right retry still completes', async () => {
    const meta = {
      'io.modelcontextprotocol/protocolVersion': MODERN,
      'io.modelcontextprotocol/clientCapabilities': { sampling: {} },
      'io.modelcontextprotocol/clientInfo': { name: 'raw-shim', version: '1' },
    };
    const [a, b] = [spawnShim(cleanup, daemon.clientEnv), spawnShim(cleanup, daemon.clientEnv)];
    let id = 0;
    const ask = async (shim: RawShim, method: string, params: Record<string, unknown>) => {
      const sent = ++id;
      shim.send(JSON.stringify({ jsonrpc: '2.0', id: sent, method, params: { ...params, _meta: meta } }));
      return (await readUntilResponse(shim, sent, 20_000)).response;
    };
    await waitFor(
      async () => JSON.stringify(await ask(a, 'tools/list', {})).includes('everything__trigger-sampling-request'),
      'the sampling tool to be listed',
      20_000,
      200,
    );
    const call = { name: 'everything__trigger-sampling-request', arguments: { prompt: 'state test', maxTokens: 5 } };
    const first = (await ask(a, 'tools/call', call)).result as { resultType?: string; requestState?: string; inputRequests?: object };
    assert.equal(first.resultType, 'input_required', JSON.stringify(first));
    const state = first.requestState as string;
    const key = Object.keys(first.inputRequests ?? {})[0] as string;
    const answer = { [key]: { model: 'm', role: 'assistant', content: { type: 'text', text: 'answered by raw-shim' } } };

    const foreign = await ask(b, 'tools/call', { ...call, inputResponses: answer, requestState: state });
    assert.equal((foreign.error as { code?: number } | undefined)?.code, -32602, JSON.stringify(foreign));
    assert.match(JSON.stringify(foreign), /another connection/);
    const tampered = await ask(a, 'tools/call', { ...call, inputResponses: answer, requestState: `${state.slice(0, -3)}abc` });
    assert.equal((tampered.error as { code?: number } | undefined)?.code, -32602, JSON.stringify(tampered));
    assert.match(JSON.stringify(tampered), /signature/);

    const done = await ask(a, 'tools/call', { ...call, inputResponses: answer, requestState: state });
    assert.match(JSON.stringify(done.result), /answered by raw-shim/);
  });
});

describe("a 2026-07-28 server's input_required", () => {
  test('to a legacy window: the daemon asks the window, and its answer reaches the tool', async () => {
    const { CreateMessageRequestSchema } = await import('@modelcontextprotocol/sdk/types.js');
    const legacy = await connectShim(cleanup, daemon, { name: 'legacy-sampler', capabilities: { sampling: {} } });
    let asked = 0;
    legacy.client.setRequestHandler(CreateMessageRequestSchema, () => {
      asked++;
      return Promise.resolve({ model: 'm', role: 'assistant', content: { type: 'text', text: 'sampled by legacy-sampler' } });
    });
    const result = await legacy.client.callTool({ name: 'modern__sample', arguments: { prompt: 'hi' } });
    assert.equal(textOf(result), 'the caller sampled: sampled by legacy-sampler');
    assert.equal(asked, 1, 'the window was asked once, as a request of its own call');
  });

  test('to a legacy window that cannot sample: the call fails and says why', async () => {
    const legacy = await connectShim(cleanup, daemon, { name: 'legacy-plain' });
    const result = legacy.client.callTool({ name: 'modern__sample', arguments: { prompt: 'hi' } });
    await assert.rejects(result, (error: Error & { code?: number }) => error.code === -32021 && /sampling/.test(error.message));
  });

  test('to a 2026-07-28 client: passed through, the client answers and retries at the same server', async () => {
    const client = await modernHttpClient('/mcp', 'modern-sampler', samplesAs);
    const result = await client.callTool({ name: 'modern__sample', arguments: { prompt: 'hi' } });
    assert.equal(textOf(result), 'the caller sampled: sampled by modern-sampler');
  });
});

describe('the modern wire on /mcp', () => {
  test('results say resultType, list results carry caching hints and the server identity', async () => {
    const listed = await modernPost(daemon, '/mcp', 'tools/list', {});
    assert.equal(listed.status, 200);
    const result = listed.body.result as Record<string, unknown>;
    assert.equal(result.resultType, 'complete');
    assert.equal(typeof result.ttlMs, 'number');
    assert.ok((result.ttlMs as number) >= 0);
    assert.equal(result.cacheScope, 'private', 'what the daemon lists depends on the window');
    const info = (result._meta as Record<string, { name?: string }>)['io.modelcontextprotocol/serverInfo'];
    assert.equal(info?.name, 'exai-ws');
  });

  test('a request without client capabilities is refused -32602 with 400', async () => {
    const reply = await modernPost(daemon, '/mcp', 'tools/list', {}, { meta: { 'io.modelcontextprotocol/clientCapabilities': undefined } });
    expectError(reply, 400, -32602);
  });

  test('an unsupported version is refused -32022 with 400, listing what is served', async () => {
    const reply = await modernPost(daemon, '/mcp', 'tools/list', {}, { version: '2099-01-01' });
    expectError(reply, 400, -32022);
    const data = (reply.body.error as { data?: { supported?: string[] } }).data;
    assert.ok(data?.supported?.includes(MODERN) && data.supported.includes('2025-11-25'), JSON.stringify(data));
  });

  test('headers that do not match the body are refused -32020 with 400', async () => {
    expectError(await modernPost(daemon, '/mcp', 'tools/list', {}, { headers: { 'mcp-method': 'prompts/list' } }), 400, -32020);
    expectError(
      await modernPost(daemon, '/mcp', 'tools/call', { name: 'version', arguments: {} }, { headers: { 'mcp-name': null } }),
      400,
      -32020,
    );
    expectError(
      await modernPost(daemon, '/mcp', 'tools/call', { name: 'version', arguments: {} }, { headers: { 'mcp-name': 'chat' } }),
      400,
      -32020,
    );
    // The same call with matching headers (the name base64-encoded, as the wire allows) runs.
    const named = await modernPost(
      daemon,
      '/mcp',
      'tools/call',
      { name: 'version', arguments: {} },
      {
        headers: { 'mcp-name': `=?base64?${Buffer.from('version').toString('base64')}?=` },
      },
    );
    assert.equal(named.status, 200, JSON.stringify(named.body));
    assert.equal((named.body.result as Record<string, unknown>).resultType, 'complete');
  });

  test('methods the revision removed are 404 -32601', async () => {
    for (const method of ['ping', 'logging/setLevel', 'resources/subscribe']) {
      expectError(await modernPost(daemon, '/mcp', method, method === 'logging/setLevel' ? { level: 'debug' } : {}), 404, -32601);
    }
  });

  test('subscriptions/listen: acknowledged first, then only the notifications it asked for, tagged', async () => {
    const toolEvents = await modernStream(
      daemon,
      '/mcp',
      'subscriptions/listen',
      { notifications: { toolsListChanged: true } },
      { id: 'listen-tools' },
    );
    const noneEvents = await modernStream(
      daemon,
      '/mcp',
      'subscriptions/listen',
      { notifications: { promptsListChanged: false } },
      { id: 'listen-none' },
    );
    const ack = await toolEvents.next(5_000);
    assert.equal(ack.method, 'notifications/subscriptions/acknowledged');
    assert.deepEqual((ack.params as Record<string, unknown>).notifications, { toolsListChanged: true });
    assert.equal(
      ((ack.params as Record<string, unknown>)._meta as Record<string, unknown>)['io.modelcontextprotocol/subscriptionId'],
      'listen-tools',
    );
    assert.equal((await noneEvents.next(5_000)).method, 'notifications/subscriptions/acknowledged');
    // A live config change: a second server joins, and every list changes.
    writeFileSync(
      join(daemon.home, 'config.json'),
      JSON.stringify({ mcpServers: { everything: EVERYTHING, modern: MODERN_ONLY, other: everythingEntry() } }, null, 2),
    );
    const changed = await toolEvents.next(15_000);
    assert.equal(changed.method, 'notifications/tools/list_changed');
    assert.equal(
      ((changed.params as Record<string, unknown>)._meta as Record<string, unknown>)['io.modelcontextprotocol/subscriptionId'],
      'listen-tools',
    );
    // The stream that asked for nothing got nothing but its acknowledgement.
    assert.equal(noneEvents.received().length, 1, JSON.stringify(noneEvents.received()));
    toolEvents.abort();
    noneEvents.abort();
  });

  test('closing the response stream cancels the request and ends its session', async () => {
    const before = (await getHealth(daemon)).inflight;
    const events = await modernStream(daemon, '/mcp', 'tools/call', {
      name: 'everything__trigger-long-running-operation',
      arguments: { duration: 20, steps: 20 },
      _meta: { progressToken: 'long-1' },
    });
    const progress = await events.next(10_000);
    assert.equal(progress.method, 'notifications/progress', 'the progress of the call comes on its own stream');
    events.abort();
    await waitFor(async () => (await getHealth(daemon)).inflight <= before, 'the cancelled call to leave the daemon', 10_000);
  });
});

function expectError(reply: ModernReply, status: number, code: number): void {
  assert.equal(reply.status, status, JSON.stringify(reply.body));
  assert.equal((reply.body.error as { code?: number } | undefined)?.code, code, JSON.stringify(reply.body));
}
