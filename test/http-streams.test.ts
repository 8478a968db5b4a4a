/**
 * HTTP stream attribution: a server-to-client request that a hosted Streamable HTTP server sends
 * on the SSE stream of a tools/call POST is traced back to that call's request id, so the
 * daemon can ask the window that made the call and no other. The end-to-end tests put the
 * official SDK server (v2, a stateful 2025-11-25 session) and client (SDK 1.x, a legacy client)
 * on both sides of the tagger; the unit tests feed it hand-made SSE bytes to show it never
 * changes, holds back or breaks a stream.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import { CreateMessageRequestSchema, ElicitRequestSchema, type RequestId } from '@modelcontextprotocol/sdk/types.js';
import { McpServer, WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/server';
import { z } from 'zod';
import { MAX_TAGGED_REQUESTS, tagStreams, type StreamTagger } from '../src/hosting/http-streams.js';
import { webListener } from './fixtures/conformance-web.js';
import { Cleanup, textOf, within } from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

// ---------------------------------------------------------------------------------------------
// An in-process official SDK v2 server (stateful Streamable HTTP: the web-standard transport with
// session ids, served from node:http through conformance-web.ts) on 127.0.0.1, port 0.

interface TestServer {
  url: URL;
  /** The McpServer of each session, in the order the sessions were opened. */
  sessions: McpServer[];
}

/** Awaited by the asking tools before they ask: lets a test hold every call until all have arrived. */
type Gate = (tag: string) => Promise<void>;

function makeServer(gate: Gate): McpServer {
  const server = new McpServer({ name: 'stream-fixture', version: '1.0.0' });
  server.registerTool('sample', { description: 'Ask the client to sample.', inputSchema: { tag: z.string() } }, async ({ tag }, ctx) => {
    await gate(tag);
    const progressToken = ctx.mcpReq._meta?.progressToken;
    if (progressToken !== undefined) {
      await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken, progress: 1, message: `asking ${tag}` } });
    }
    const result = await ctx.mcpReq.send({
      method: 'sampling/createMessage',
      params: { messages: [{ role: 'user', content: { type: 'text', text: `tag:${tag}` } }], maxTokens: 10 },
    });
    const content = Array.isArray(result.content) ? result.content[0] : result.content;
    const text = content?.type === 'text' ? content.text : '?';
    return { content: [{ type: 'text', text: `sampled ${tag}: ${text}` }] };
  });
  server.registerTool('elicit', { description: 'Ask the user.', inputSchema: { tag: z.string() } }, async ({ tag }, ctx) => {
    await gate(tag);
    const result = await ctx.mcpReq.send({
      method: 'elicitation/create',
      params: { message: `tag:${tag}`, requestedSchema: { type: 'object', properties: {} } },
    });
    return { content: [{ type: 'text', text: `elicited ${tag}: ${result.action}` }] };
  });
  server.registerTool('echo', { description: 'Echo the text.', inputSchema: { text: z.string() } }, ({ text }) => ({
    content: [{ type: 'text', text: `echo: ${text}` }],
  }));
  return server;
}

async function startServer(options: { json?: boolean; gate?: Gate } = {}): Promise<TestServer> {
  const transports = new Map<string, WebStandardStreamableHTTPServerTransport>();
  const sessions: McpServer[] = [];
  const serve = async (request: Request): Promise<Response> => {
    const sessionId = request.headers.get('mcp-session-id');
    let transport = sessionId !== null ? transports.get(sessionId) : undefined;
    if (transport === undefined) {
      if (sessionId !== null) return new Response(null, { status: 404 });
      const created = new WebStandardStreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: options.json === true,
        onsessioninitialized: (id) => void transports.set(id, created),
      });
      const server = makeServer(options.gate ?? (() => Promise.resolve()));
      sessions.push(server);
      cleanup.add(() => server.close());
      await server.connect(created);
      transport = created;
    }
    return transport.handleRequest(request);
  };
  const http = createServer(webListener(serve));
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  cleanup.add(
    () =>
      new Promise<void>((resolve) => {
        http.closeAllConnections();
        http.close(() => resolve());
      }),
  );
  const { port } = http.address() as AddressInfo;
  return { url: new URL(`http://127.0.0.1:${port}/mcp`), sessions };
}

// ---------------------------------------------------------------------------------------------
// The client side: the official SDK client over the SDK transport, its fetch wrapped by the tagger.

/** What the client saw of one server-to-client request. */
interface Asked {
  method: string;
  serverRequestId: RequestId;
  /** takeStreamOf at the moment the request reached the client's handler. */
  stream: RequestId | undefined;
  /** takeStreamOf asked a second time for the same id. */
  again: RequestId | undefined;
}

interface TestClient {
  client: Client;
  tagger: StreamTagger;
  /** tag -> the id the tools/call carrying `{ tag }` had on the wire. */
  callIds: Map<string, RequestId>;
  /** tag -> what the client saw of the server request whose prompt names the tag. */
  asked: Map<string, Asked>;
  /** Resolves once the client's GET stream is open (the server can send unrelated requests). */
  getStreamOpen: Promise<void>;
}

async function connectClient(url: URL): Promise<TestClient> {
  const callIds = new Map<string, RequestId>();
  const asked = new Map<string, Asked>();
  let markGetOpen: () => void = () => undefined;
  const getStreamOpen = new Promise<void>((resolve) => (markGetOpen = resolve));
  // Reads the ids off the wire, below the tagger, so the test knows them independently of it.
  const wire: FetchLike = async (input, init) => {
    if (typeof init?.body === 'string') {
      const message = JSON.parse(init.body) as { id?: RequestId; method?: string; params?: { arguments?: { tag?: string } } };
      const tag = message.params?.arguments?.tag;
      if (message.method === 'tools/call' && tag !== undefined && message.id !== undefined) callIds.set(tag, message.id);
    }
    const response = await fetch(input, init);
    if ((init?.method ?? 'GET') === 'GET' && response.ok) markGetOpen();
    return response;
  };
  const tagger = tagStreams(wire);
  const client = new Client({ name: 'stream-test', version: '1.0.0' }, { capabilities: { sampling: {}, elicitation: {} } });
  const see = (method: string, prompt: string, serverRequestId: RequestId): void => {
    const tag = prompt.replace(/^tag:/, '');
    const stream = tagger.takeStreamOf(serverRequestId);
    asked.set(tag, { method, serverRequestId, stream, again: tagger.takeStreamOf(serverRequestId) });
  };
  client.setRequestHandler(CreateMessageRequestSchema, (request, extra) => {
    const content = request.params.messages[0]?.content;
    see(request.method, content !== undefined && 'text' in content ? String(content.text) : '', extra.requestId);
    return { role: 'assistant', content: { type: 'text', text: 'ok' }, model: 'test-model' };
  });
  client.setRequestHandler(ElicitRequestSchema, (request, extra) => {
    see(request.method, request.params.message, extra.requestId);
    return { action: 'decline' };
  });
  const transport = new StreamableHTTPClientTransport(url, { fetch: tagger.fetch });
  await client.connect(transport);
  cleanup.add(() => client.close());
  return { client, tagger, callIds, asked, getStreamOpen };
}

// ---------------------------------------------------------------------------------------------
// End to end.

test('five concurrent calls: each sampling or elicitation request is traced to the call that caused it', { timeout: 30_000 }, async () => {
  const tags = ['a1', 'b2', 'c3', 'd4', 'e5'];
  // No tool asks until all five calls are running at the server, so the five POST streams are
  // open at once and the requests do not come in call order: the last POST is no guide.
  let arrived = 0;
  let allArrived: () => void = () => undefined;
  const allRunning = new Promise<void>((resolve) => (allArrived = resolve));
  const server = await startServer({
    gate: () => {
      if (++arrived === tags.length) allArrived();
      return within(allRunning, 10_000, 'all five calls to be running');
    },
  });
  const side = await connectClient(server.url);
  const progress = new Map<string, string>();
  const results = await Promise.all(
    tags.map((tag, i) =>
      side.client.callTool({ name: i % 2 === 0 ? 'sample' : 'elicit', arguments: { tag } }, undefined, {
        onprogress: (p) => void progress.set(tag, p.message ?? ''),
      }),
    ),
  );

  results.forEach((result, i) => assert.match(textOf(result), new RegExp(`^(sampled|elicited) ${tags[i]}: `)));
  const callIds = tags.map((tag) => side.callIds.get(tag));
  assert.equal(new Set(callIds).size, tags.length, 'each call had its own request id on the wire');
  for (const tag of tags) {
    const asked = side.asked.get(tag);
    assert.ok(asked, `the server request for ${tag} reached the client`);
    assert.equal(asked.stream, side.callIds.get(tag), `${asked.method} for ${tag} came on the stream of its own tools/call`);
    assert.equal(asked.again, undefined, 'an answer is given once');
  }
  assert.deepEqual(
    tags.map((tag) => side.asked.get(tag)?.method),
    ['sampling/createMessage', 'elicitation/create', 'sampling/createMessage', 'elicitation/create', 'sampling/createMessage'],
  );
  // Notifications on the same streams still reach the client (the sampling tool sends progress).
  assert.deepEqual([...progress.entries()].sort(), [
    ['a1', 'asking a1'],
    ['c3', 'asking c3'],
    ['e5', 'asking e5'],
  ]);
  assert.equal(side.tagger.size, 0, 'every note was taken');
});

test('a server request with no related call comes on the GET stream and is traced to nothing', { timeout: 30_000 }, async () => {
  const server = await startServer();
  const side = await connectClient(server.url);
  // A call first, so the tagger has seen a POST stream with a server request on it.
  const first = await side.client.callTool({ name: 'sample', arguments: { tag: 'in-call' } });
  assert.match(textOf(first), /^sampled in-call: ok/);
  assert.equal(side.asked.get('in-call')?.stream, side.callIds.get('in-call'));

  await within(side.getStreamOpen, 10_000, 'the client GET stream to open');
  const session = server.sessions[0];
  assert.ok(session, 'the server has the session');
  const result = await within(
    session.server.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'tag:unrelated' } }], maxTokens: 5 }),
    10_000,
    'the unrelated sampling request to be answered',
  );
  assert.equal(result.model, 'test-model');
  const asked = side.asked.get('unrelated');
  assert.ok(asked, 'the unrelated request reached the client');
  assert.notEqual(asked.serverRequestId, side.asked.get('in-call')?.serverRequestId);
  assert.equal(asked.stream, undefined, 'a request on the GET stream is traced to no call');
});

test('JSON answers and plain calls work through the tagger and leave no notes', { timeout: 30_000 }, async () => {
  const server = await startServer({ json: true });
  const side = await connectClient(server.url);
  const tools = await side.client.listTools();
  assert.deepEqual(tools.tools.map((t) => t.name).sort(), ['echo', 'elicit', 'sample']);
  const results = await Promise.all(['x', 'y', 'z'].map((text) => side.client.callTool({ name: 'echo', arguments: { text } })));
  assert.deepEqual(results.map(textOf), ['echo: x', 'echo: y', 'echo: z']);
  assert.equal(side.tagger.size, 0);
});

// ---------------------------------------------------------------------------------------------
// Unit: hand-made SSE bytes through the tagger.

const enc = new TextEncoder();

/** A stream whose chunks the test pushes one at a time, so holding any back would show. */
function pushable(): {
  stream: ReadableStream<Uint8Array>;
  push: (chunk: Uint8Array) => void;
  end: () => void;
  cancelled: Promise<unknown>;
} {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let markCancelled: (reason: unknown) => void = () => undefined;
  const cancelled = new Promise<unknown>((resolve) => (markCancelled = resolve));
  const stream = new ReadableStream<Uint8Array>({
    start: (c) => void (controller = c),
    cancel: (reason) => markCancelled(reason),
  });
  return { stream, push: (chunk) => controller.enqueue(chunk), end: () => controller.close(), cancelled };
}

/** The body of a response as bytes (Node's types leave Response.body untyped). */
function bytesOf(response: Response): ReadableStreamDefaultReader<Uint8Array> {
  assert.ok(response.body, 'the response has a body');
  return (response.body as ReadableStream<Uint8Array>).getReader();
}

function sse(body: ConstructorParameters<typeof Response>[0], init: ResponseInit = {}): Response {
  return new Response(body, {
    status: 200,
    ...init,
    headers: { 'content-type': 'text/event-stream', ...(init.headers as Record<string, string>) },
  });
}

function post(body: unknown): RequestInit {
  return { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } };
}

function event(message: unknown, extra = ''): string {
  return `${extra}data: ${JSON.stringify(message)}\n\n`;
}

const request = (id: RequestId, method = 'sampling/createMessage'): unknown => ({ jsonrpc: '2.0', id, method, params: {} });

test('the stream passes byte for byte, chunk for chunk, and each request is noted before its bytes are handed on', async () => {
  const source = pushable();
  const tagger = tagStreams(() =>
    Promise.resolve(
      sse(source.stream, { statusText: 'Fine', headers: { 'content-type': 'text/event-stream; charset=utf-8', 'x-extra': 'kept' } }),
    ),
  );
  const response = await tagger.fetch('http://127.0.0.1:1/mcp', post(request('call-1', 'tools/call')));
  assert.equal(response.status, 200);
  assert.equal(response.statusText, 'Fine');
  assert.equal(response.headers.get('x-extra'), 'kept');
  assert.equal(response.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const reader = bytesOf(response);

  const split = enc.encode(event(request(7), 'id: e1\nevent: message\n') + ': keep-alive comment\n\n');
  const star = enc.encode(event({ jsonrpc: '2.0', method: 'notifications/message', params: { data: '\u2713 done' } }));
  const chunks: Uint8Array[] = [
    split.subarray(0, 9), // mid field name
    split.subarray(9, 30),
    split.subarray(30),
    star.subarray(0, star.indexOf(0xe2) + 1), // mid multi-byte character
    star.subarray(star.indexOf(0xe2) + 1),
    enc.encode('data: not json\n\n'),
    enc.encode(event(request(8), 'event: other\n')), // the transport ignores named events
    enc.encode(event({ jsonrpc: '2.0', id: 9, result: { method: 'not a request' } })),
    enc.encode(`data: ${JSON.stringify(request('s-1', 'elicitation/create'))}\r\n\r\n`),
    Uint8Array.of(0xff, 0xfe, 0x00, 0x0a, 0x0a), // bytes that are not UTF-8
    enc.encode(event(request(10, 'roots/list'))),
  ];
  const read = async (): Promise<Uint8Array> => {
    const { value, done } = await within(reader.read(), 5_000, 'the next chunk');
    assert.equal(done, false);
    assert.ok(value);
    return value;
  };
  const received: Uint8Array[] = [];
  for (const [i, chunk] of chunks.entries()) {
    source.push(chunk);
    received.push(await read()); // each chunk comes out while the source is still open
    if (i === 2) assert.equal(tagger.takeStreamOf(7), 'call-1', 'noted by the time the chunk that ends the event is read');
  }
  source.end();
  assert.equal((await reader.read()).done, true);
  assert.deepEqual(
    received.map((c) => Buffer.from(c).toString('hex')),
    chunks.map((c) => Buffer.from(c).toString('hex')),
  );
  assert.equal(tagger.takeStreamOf('s-1'), 'call-1', 'CRLF events are read');
  assert.equal(tagger.takeStreamOf(10), 'call-1', 'tagging goes on after bytes that are not UTF-8');
  assert.equal(tagger.takeStreamOf(8), undefined, 'a named event is not a message');
  assert.equal(tagger.takeStreamOf(9), undefined, 'a response is not a server request');
  assert.equal(tagger.takeStreamOf(7), undefined, 'taken once');
  assert.equal(tagger.size, 0);
});

test('ids keep their JSON type: number 42 and string "42" are different requests', async () => {
  const tagger = tagStreams(() => Promise.resolve(sse(event(request(5)) + event(request('5')))));
  const response = await tagger.fetch('http://127.0.0.1:1/mcp', post(request(42, 'tools/call')));
  await response.text();
  const stringTagger = tagStreams(() => Promise.resolve(sse(event(request(6)))));
  await (await stringTagger.fetch('http://127.0.0.1:1/mcp', post(request('42', 'tools/call')))).text();
  assert.equal(tagger.takeStreamOf('5'), 42);
  assert.equal(tagger.takeStreamOf(5), 42);
  assert.equal(stringTagger.takeStreamOf('6'), undefined);
  assert.equal(stringTagger.takeStreamOf(6), '42');
});

test('GET, DELETE, JSON bodies, failures, notifications and batches of several requests are returned untouched', async () => {
  const url = 'http://127.0.0.1:1/mcp';
  const cases: [string, RequestInit | undefined, () => Response][] = [
    ['GET stream', { method: 'GET' }, () => sse(event(request(1)))],
    ['no init (GET)', undefined, () => sse(event(request(1)))],
    ['DELETE', { method: 'DELETE' }, () => sse(event(request(1)))],
    ['JSON answer', post(request(1, 'tools/call')), () => Response.json({ jsonrpc: '2.0', id: 1, result: {} })],
    ['failed SSE', post(request(1, 'tools/call')), () => sse(event(request(1)), { status: 500 })],
    ['202 to a notification', post({ jsonrpc: '2.0', method: 'notifications/initialized' }), () => new Response(null, { status: 202 })],
    ['SSE to a notification', post({ jsonrpc: '2.0', method: 'notifications/x' }), () => sse(event(request(1)))],
    ['batch of two requests', post([request(1, 'a'), request(2, 'b')]), () => sse(event(request(1)))],
    ['body not JSON', { method: 'POST', body: '{' }, () => sse(event(request(1)))],
    ['body not a string', { method: 'POST', body: new Uint8Array(2) }, () => sse(event(request(1)))],
  ];
  for (const [what, init, make] of cases) {
    const original = make();
    const tagger = tagStreams(() => Promise.resolve(original));
    const response = await tagger.fetch(url, init);
    assert.equal(response, original, `${what}: the inner response itself`);
    await response.body?.cancel();
    assert.equal(tagger.size, 0, `${what}: nothing noted`);
  }
  // A batch whose only request is one call is not ambiguous.
  const tagger = tagStreams(() => Promise.resolve(sse(event(request(3)))));
  await (await tagger.fetch(url, post([{ jsonrpc: '2.0', method: 'notifications/x' }, request(11, 'tools/call')]))).text();
  assert.equal(tagger.takeStreamOf(3), 11);
});

test('the notes are bounded: past the bound the oldest go, and the size stays at the bound', async () => {
  const extra = 10;
  const events = Array.from({ length: MAX_TAGGED_REQUESTS + extra }, (_, i) => event(request(i))).join('');
  const tagger = tagStreams(() => Promise.resolve(sse(events)));
  const response = await tagger.fetch('http://127.0.0.1:1/mcp', post(request('call', 'tools/call')));
  assert.equal((await response.text()).length, events.length, 'the whole stream came through');
  assert.equal(tagger.size, MAX_TAGGED_REQUESTS);
  for (let i = 0; i < extra; i++) assert.equal(tagger.takeStreamOf(i), undefined, `note ${i} was dropped`);
  assert.equal(tagger.takeStreamOf(extra), 'call', 'the oldest kept note');
  assert.equal(tagger.takeStreamOf(MAX_TAGGED_REQUESTS + extra - 1), 'call', 'the newest note');
  assert.equal(tagger.size, MAX_TAGGED_REQUESTS - 2);
  assert.throws(() => tagStreams(undefined, { maxTagged: 0 }), TypeError);
  assert.throws(() => tagStreams(undefined, { maxEventChars: 1.5 }), TypeError);
});

test('an event too big to follow is skipped, its bytes still pass, and the next event is noted', async () => {
  const source = pushable();
  const tagger = tagStreams(() => Promise.resolve(sse(source.stream)), { maxEventChars: 1_000 });
  const response = await tagger.fetch('http://127.0.0.1:1/mcp', post(request(1, 'tools/call')));
  const reader = bytesOf(response);
  const big = enc.encode(event({ jsonrpc: '2.0', id: 'big', method: 'sampling/createMessage', params: { text: 'x'.repeat(5_000) } }));
  const pieces = [0, 600, 1_200, 1_800, 2_400, 3_000, 3_600, 4_200, 4_800].map((at, i, all) => big.subarray(at, all[i + 1] ?? big.length));
  let length = 0;
  for (const piece of [...pieces, enc.encode(event(request('after')))]) {
    source.push(piece);
    const { value } = await within(reader.read(), 5_000, 'the next chunk');
    length += value?.length ?? 0;
  }
  assert.equal(length, big.length + event(request('after')).length);
  assert.equal(tagger.takeStreamOf('big'), undefined, 'the oversized event was not followed');
  assert.equal(tagger.takeStreamOf('after'), 1, 'the parser recovered at the next event');
  // Cancelling the wrapped body (the transport closing) cancels the inner one.
  await reader.cancel('closing');
  assert.equal(await within(source.cancelled, 5_000, 'the inner body to be cancelled'), 'closing');
});

test('an error of the inner body reaches the reader of the wrapped body', async () => {
  let fail: (error: Error) => void = () => undefined;
  const failing = new ReadableStream<Uint8Array>({
    start: (c) => void (fail = (e) => c.error(e)),
  });
  const tagger = tagStreams(() => Promise.resolve(sse(failing)));
  const response = await tagger.fetch('http://127.0.0.1:1/mcp', post(request(1, 'tools/call')));
  const reader = bytesOf(response);
  const reading = reader.read();
  fail(new Error('socket reset'));
  await assert.rejects(within(reading, 5_000, 'the read to fail'), /socket reset/);
});
