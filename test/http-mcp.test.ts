/**
 * Issue 12: Streamable HTTP at `/mcp`, end to end. A real daemon (port 0, its own home), the
 * official SDK client over `StreamableHTTPClientTransport` with the daemon's bearer token, real
 * hosted npm servers (server-memory, server-everything) and real shim processes:
 *
 *   - initialize, list and call built-in and hosted tools; the one-server view at `/mcp/NAME`;
 *     progress on the call's own SSE stream (every call a stream opened by a priming event);
 *     a dropped stream resumed with Last-Event-ID; server-initiated messages on the GET stream;
 *     cancellation; a session ended with DELETE is gone (404);
 *   - a hosted server's state shared between an HTTP window and a shim window; two HTTP
 *     clients, two sessions, each only its own replies while both use the same request ids;
 *   - sampling from a hosted server reaches only the HTTP client whose call caused it, on that
 *     call's stream;
 *   - refusals with raw requests (token, Origin, Host, body size and shape, unknown session,
 *     methods, media types), the same Origin rule on the WebSocket upgrade, the session quota;
 *   - `/health` lists HTTP sessions with their transport; an idle HTTP session expires, one with
 *     its GET stream open does not.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, describe, test, type TestContext } from 'node:test';
import { CreateMessageRequestSchema, LoggingMessageNotificationSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import {
  Cleanup,
  getHealth,
  logPath,
  openSocket,
  readJsonLines,
  sendHello,
  startDaemon,
  textOf,
  waitFor,
  within,
  type DaemonHandle,
} from './helpers.js';
import { connectEverythingDirect, everythingEntry, memoryEntry, serverReport, startHostingDaemon } from './fixtures/hosted-servers.js';

import {
  callExchange,
  callIds,
  connectHttp,
  messagesOf,
  openGetStream,
  openRawStream,
  postHeaders,
  rawInitialize,
  rawRequest,
  sseMessages,
  type HttpClient,
  type RawResponse,
} from './fixtures/http-client.js';
import type { HealthReport, SessionEntry } from '../src/local/health.js';
import { connectWs } from './fixtures/ws-client.js';

const PROTOCOL = '2025-06-18';
/** A wrong token of the same shape as a real one. */
const WRONG_TOKEN = randomBytes(32).toString('base64url');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Small enough to exceed cheaply, large enough for every normal message of these tests. */
const MAX_BYTES = 65_536;
const SAMPLING = 'everything__trigger-sampling-request';
/** The HTTP idle time of the idle-expiry tests' daemon. */
const IDLE_MS = 1_500;
/** What server-everything puts before the tool's prompt in the sampling request it sends. */
const SAMPLING_CONTEXT = 'Resource trigger-sampling-request context: ';

/** A cleanup of the test's own, run when it ends: each test stops its own daemon and processes. */
function cleanupFor(t: TestContext): Cleanup {
  const cleanup = new Cleanup();
  t.after(() => cleanup.run());
  return cleanup;
}

/** Lists wait for the servers however long their start takes on a loaded machine (the list wait is test/silent-server.test.ts's). */
const NO_LIST_LIMIT = { EXAI_WS_LIST_WAIT_MS: '0' };

function hostingBoth(cleanup: Cleanup, env: Record<string, string> = {}): Promise<DaemonHandle> {
  return startHostingDaemon(cleanup, (home) => ({ memory: memoryEntry(home), everything: everythingEntry() }), {
    ...NO_LIST_LIMIT,
    ...env,
  });
}

const fileCleanup = new Cleanup();
after(() => fileCleanup.run());
let both: Promise<DaemonHandle> | undefined;
/**
 * One daemon hosting memory and everything for the tests that check what their own sessions see
 * and assert nothing daemon-wide (no daemon-wide session or in-flight counts, no idle time or
 * size limit, no logging level, no sampling): each has its own sessions on it and reads only
 * their own entries in /health's session list (by Mcp-Session-Id, or by client name), which is
 * all its property needs. Several windows on one daemon at once is how it is used.
 */
function sharedHostingBoth(): Promise<DaemonHandle> {
  both ??= hostingBoth(fileCleanup);
  return both;
}

type SessionsReport = HealthReport['sessions'];

async function sessionsOf(daemon: Pick<DaemonHandle, 'port' | 'token'>): Promise<SessionsReport> {
  return (await getHealth(daemon)).sessions;
}

/** The HTTP and WebSocket counts of `by_transport` (a stdio count, if listed, is not ours to check). */
function pick(byTransport: SessionsReport['by_transport']): { http?: number; ws?: number } {
  return { http: byTransport?.http, ws: byTransport?.ws };
}

async function httpSessionCount(daemon: Pick<DaemonHandle, 'port' | 'token'>): Promise<number | undefined> {
  return (await sessionsOf(daemon)).by_transport?.http;
}

/** The session `id` (an Mcp-Session-Id) as /health lists it; undefined once it is gone. */
async function sessionEntry(daemon: Pick<DaemonHandle, 'port' | 'token'>, id: string): Promise<SessionEntry | undefined> {
  return (await sessionsOf(daemon)).list?.find((s) => s.id === id);
}

/** The sessions /health lists for the client named `client`, by transport. */
async function sessionsNamed(daemon: Pick<DaemonHandle, 'port' | 'token'>, client: string): Promise<SessionEntry['transport'][]> {
  return ((await sessionsOf(daemon)).list ?? []).filter((s) => s.client === client).map((s) => s.transport);
}

/** A tools/call POSTed raw on a session. */
function rawCall(
  daemon: Pick<DaemonHandle, 'port' | 'token'>,
  sessionId: string,
  options: { id?: number; body?: string; headers?: Record<string, string> } = {},
): Promise<RawResponse> {
  const body =
    options.body ??
    JSON.stringify({ jsonrpc: '2.0', id: options.id ?? 7, method: 'tools/call', params: { name: 'version', arguments: {} } });
  return rawRequest(daemon.port, {
    headers: postHeaders(daemon.token, { 'mcp-session-id': sessionId, 'mcp-protocol-version': PROTOCOL, ...options.headers }),
    body,
  });
}

/**
 * An HTTP error answer: the status and a JSON-RPC error body with id null (the contract's shape
 * for every refusal on /mcp), with error code `code` when given.
 */
function assertRefused(response: RawResponse, status: number, what: string, code: number | 'any' = 'any'): void {
  assertStatus(response, status, what);
  assert.equal(response.json?.jsonrpc, '2.0', `${what}: the body is a JSON-RPC message: ${response.body.slice(0, 300)}`);
  assert.equal(response.json?.id, null, `${what}: the error has id null`);
  const got = (response.json?.error as { code?: unknown } | undefined)?.code;
  if (code === 'any') assert.equal(typeof got, 'number', `${what}: a JSON-RPC error code: ${response.body}`);
  else assert.equal(got, code, `${what}: error code ${code}: ${response.body}`);
}

/** The HTTP status alone (the body's shape is checked by {@link assertRefused}). */
function assertStatus(response: RawResponse, status: number, what: string): void {
  assert.equal(response.status, status, `${what}: expected HTTP ${status}, got ${response.status} ${response.body.slice(0, 300)}`);
}

/** The session still answers: a built-in call through the SDK client. */
async function assertServes(http: HttpClient, daemon: Pick<DaemonHandle, 'pid'>, what: string): Promise<void> {
  const version = await http.client.callTool({ name: 'version', arguments: {} });
  assert.equal((version.structuredContent as { pid?: number } | undefined)?.pid, daemon.pid, `${what}: the session still serves`);
}

function toolText(result: unknown): string {
  return (result as CallToolResult).content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}
// Each test has its own daemon, home and processes (but for the eight on sharedHostingBoth and the
// two groups below with a daemon each): they run side by side.
describe('Streamable HTTP at /mcp', { concurrency: 3 }, () => {
  test('the SDK Streamable HTTP client initializes at /mcp, lists and calls built-in and hosted tools', async (t) => {
    const cleanup = cleanupFor(t);
    const daemon = await sharedHostingBoth();
    const http = await connectHttp(cleanup, daemon);
    assert.match(http.sessionId, UUID, 'Mcp-Session-Id is a UUID');
    assert.equal(http.client.getServerVersion()?.name, 'exai-ws', 'the aggregated view answers initialize as exai-ws');

    const tools = (await http.client.listTools()).tools.map((tool) => tool.name);
    for (const name of ['version', 'echo', 'sleep', 'everything__echo', 'memory__create_entities']) {
      assert.ok(tools.includes(name), `tools/list over /mcp lists ${name}: ${tools.join(', ')}`);
    }

    const version = await http.client.callTool({ name: 'version', arguments: {} });
    assert.equal((version.structuredContent as { pid?: number }).pid, daemon.pid, 'the built-in tool ran in the daemon');
    assert.equal(textOf(await http.client.callTool({ name: 'echo', arguments: { text: 'built-in over http' } })), 'built-in over http');
    const echoed = textOf(await http.client.callTool({ name: 'everything__echo', arguments: { message: 'hosted over http' } }));
    assert.match(echoed, /hosted over http/, 'the hosted tool answered');
    const everything = await serverReport(daemon, 'everything');
    assert.equal(everything.state, 'ready', 'the hosted server runs under the daemon');

    // The SDK client negotiates 2025-11-25: each call is an SSE stream that opens with a priming
    // event (an id, empty data, the default retry) and holds nothing else but the response
    // (plain JSON answers are for older sessions: test/http-polling.test.ts).
    for (const tool of ['version', 'echo', 'everything__echo']) {
      const exchange = callExchange(http, tool);
      assert.equal(exchange?.status, 200, `${tool}: POST answered 200`);
      assert.equal(exchange.contentType, 'text/event-stream', `${tool}: a 2025-11-25 call is an SSE stream`);
      const blocks = (await exchange.text).split('\n\n').filter((b) => b !== '');
      assert.match(blocks[0] ?? '', /^id: \S+\nretry: 1000\ndata: $/, `${tool}: a priming event first: ${blocks.join(' | ')}`);
      assert.equal(blocks.length, 2, `${tool}: the priming event, then the response alone: ${blocks.join(' | ')}`);
      assert.match(blocks[1] ?? '', /^id: \S+\nevent: message\ndata: \{"jsonrpc":"2.0","id":\d+,"result"/, `${tool}: the response`);
    }
  });

  test('/mcp/NAME serves one hosted server alone, unprefixed, with its own initialize; an unknown NAME is 404', async (t) => {
    const cleanup = cleanupFor(t);
    const daemon = await sharedHostingBoth();
    const direct = await connectEverythingDirect(cleanup);
    const http = await connectHttp(cleanup, daemon, { path: '/mcp/everything' });
    assert.equal(http.client.getServerVersion()?.name, direct.getServerVersion()?.name, "the server's own initialize result");
    const tools = (await http.client.listTools()).tools.map((tool) => tool.name);
    assert.ok(tools.includes('echo'), `unprefixed names: ${tools.join(', ')}`);
    assert.deepEqual(
      tools.filter((name) => name.includes('__') || name === 'version'),
      [],
      'nothing of the aggregated view',
    );
    assert.match(textOf(await http.client.callTool({ name: 'echo', arguments: { message: 'alone' } })), /alone/);

    const { response } = await rawInitialize(daemon);
    assert.equal(response.status, 200, 'the aggregated view initializes beside it');
    const unknown = await rawRequest(daemon.port, {
      path: '/mcp/no-such-server',
      headers: postHeaders(daemon.token),
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: 'x', version: '1' } },
      }),
    });
    assertRefused(unknown, 404, 'initialize at /mcp/no-such-server');
  });

  test('progress reaches the HTTP client on the call’s own SSE stream, then the result (built-in and hosted)', async (t) => {
    const cleanup = cleanupFor(t);
    const daemon = await sharedHostingBoth();
    const http = await connectHttp(cleanup, daemon);

    const builtin: { progress: number; total?: number }[] = [];
    const done = await http.client.callTool({ name: 'progress', arguments: { steps: 3, interval_ms: 20 } }, undefined, {
      onprogress: (p) => builtin.push({ progress: p.progress, total: p.total }),
    });
    assert.equal(textOf(done), 'done 3');
    assert.deepEqual(
      builtin,
      [1, 2, 3].map((progress) => ({ progress, total: 3 })),
      'every progress notification of the built-in tool, in order',
    );
    const exchange = callExchange(http, 'progress');
    assert.equal(exchange?.contentType, 'text/event-stream', 'a call that reports progress is answered as an SSE stream');
    const streamed = await within(exchange.text, 10_000, 'the progress stream to end after the response');
    assert.match(streamed, /^id: ?\S+/m, 'SSE events carry ids (resumable)');
    const events = sseMessages(streamed);
    assert.deepEqual(
      events.map((m) => (m.method as string | undefined) ?? 'response'),
      ['notifications/progress', 'notifications/progress', 'notifications/progress', 'response'],
      'the stream holds the call’s progress, then its response, and ends',
    );

    const hosted: number[] = [];
    const long = await http.client.callTool(
      { name: 'everything__trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } },
      undefined,
      { onprogress: (p) => hosted.push(p.progress) },
    );
    assert.match(toolText(long), /Long running operation completed/);
    assert.deepEqual(hosted, [1, 2, 3], 'the hosted server’s progress reached the HTTP client');
    assert.equal(callExchange(http, 'everything__trigger-long-running-operation')?.contentType, 'text/event-stream');
  });

  test('a dropped POST stream resumes with Last-Event-ID on a GET: the events after it, then the response', async () => {
    const daemon = await sharedHostingBoth();
    const { sessionId } = await rawInitialize(daemon);
    assert.ok(sessionId);
    const steps = 6;
    const stream = await openRawStream(daemon.port, {
      headers: postHeaders(daemon.token, { 'mcp-session-id': sessionId, 'mcp-protocol-version': PROTOCOL }),
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 'p',
        method: 'tools/call',
        params: { name: 'progress', arguments: { steps, interval_ms: 150 }, _meta: { progressToken: 'tok' } },
      }),
    });
    assert.equal(stream.status, 200);
    assert.match(String(stream.headers['content-type']), /^text\/event-stream/);
    const first = await stream.next(10_000);
    assert.equal(first.message.method, 'notifications/progress', `the first event: ${JSON.stringify(first)}`);
    assert.equal((first.message.params as { progress?: number }).progress, 1);
    assert.ok(first.id, 'the event has an id to resume from');
    // The client loses the connection, and comes back only once the call has ended at the daemon:
    // it asks for what came after that event.
    stream.close();
    // Its own session's count: the shared daemon may be running other tests' calls.
    await waitFor(async () => (await sessionEntry(daemon, sessionId))?.inflight === 0, 'the call to end at the daemon', 15_000);
    const resumed = await openGetStream(daemon, sessionId, PROTOCOL, first.id);
    assert.equal(resumed.status, 200, 'the GET with Last-Event-ID is accepted');
    const after: Record<string, unknown>[] = [];
    const deadline = Date.now() + 20_000;
    while (after.at(-1)?.id !== 'p') after.push((await resumed.next(Math.max(1, deadline - Date.now()))).message);
    resumed.close();
    assert.deepEqual(
      after
        .slice(0, -1)
        .map((m) => [
          m.method,
          (m.params as { progressToken?: unknown; progress?: number }).progressToken,
          (m.params as { progress?: number }).progress,
        ]),
      [2, 3, 4, 5, 6].map((n) => ['notifications/progress', 'tok', n]),
      'every progress event after the one seen, once, in order',
    );
    assert.equal(textOf(after.at(-1)?.result), `done ${steps}`, 'then the call’s response');
  });

  test('cancelling a call over HTTP (AbortSignal) ends it at the daemon; the session and the daemon carry on', async (t) => {
    const cleanup = cleanupFor(t);
    const daemon = await sharedHostingBoth();
    const http = await connectHttp(cleanup, daemon);
    // The in-flight counts are the session's own: the shared daemon may be running other tests' calls.
    const inflight = async () => (await sessionEntry(daemon, http.sessionId))?.inflight;
    const controller = new AbortController();
    const reason = new Error('stopped by the user');
    const settled = http.client
      .callTool({ name: 'sleep', arguments: { ms: 60_000 } }, undefined, { signal: controller.signal, timeout: 120_000 })
      .then(
        (result) => ({ result }),
        (error: unknown) => ({ error }),
      );
    await waitFor(async () => ((await inflight()) ?? 0) >= 1, 'the 60 s sleep to run at the daemon');
    controller.abort(reason);
    const outcome = await within(settled, 5_000, 'the aborted call to settle at the client');
    // The SDK rejects an aborted request at once, with its reason wrapped in an McpError.
    const error = 'error' in outcome ? outcome.error : undefined;
    assert.ok(error instanceof Error && error.message.includes(reason.message), `the client gets its abort: ${String(error)}`);

    // notifications/cancelled reached the tool: the 60 s sleep is no longer in flight.
    await waitFor(async () => (await inflight()) === 0, 'the daemon to end the cancelled call', 15_000);

    await assertServes(http, daemon, 'after the cancellation');
    assert.equal(textOf(await http.client.callTool({ name: 'echo', arguments: { text: 'still here' } })), 'still here');
    assert.equal(http.transport.sessionId, http.sessionId, 'the same session');
    assert.equal(daemon.proc.exitCode, null, 'the daemon runs');
  });

  test('a session ended with DELETE is gone: its id gets 404 on POST, GET and DELETE, and /health drops it', async (t) => {
    const cleanup = cleanupFor(t);
    const daemon = await sharedHostingBoth();
    const http = await connectHttp(cleanup, daemon);
    await assertServes(http, daemon, 'before DELETE');
    const id = http.sessionId;
    // Its own entry in /health's list: the shared daemon holds other tests' sessions too.
    await waitFor(async () => (await sessionEntry(daemon, id))?.transport === 'http', '/health to list the HTTP session');

    await http.transport.terminateSession();
    const deleted = http.exchanges.filter((e) => e.method === 'DELETE');
    assert.equal(deleted.at(-1)?.status, 200, 'DELETE with the session id answers 200');

    assertRefused(await rawCall(daemon, id), 404, 'POST with the terminated session id');
    const get = await rawRequest(daemon.port, {
      method: 'GET',
      headers: { authorization: `Bearer ${daemon.token}`, accept: 'text/event-stream', 'mcp-session-id': id },
      timeoutMs: 5_000,
    });
    assertRefused(get, 404, 'GET with the terminated session id');
    const again = await rawRequest(daemon.port, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${daemon.token}`, 'mcp-session-id': id },
    });
    assertRefused(again, 404, 'DELETE again');
    await waitFor(async () => (await sessionEntry(daemon, id)) === undefined, '/health to drop the terminated session');
  });

  test('a hosted server’s state is shared between an HTTP window and a shim window', async (t) => {
    const cleanup = cleanupFor(t);
    const daemon = await sharedHostingBoth();
    const http = await connectHttp(cleanup, daemon, { name: 'http-window' });
    // A WebSocket window as a shim opens it (the shim's own part is test/shim.test.ts's).
    const shim = await connectWs(cleanup, daemon, { name: 'shim-window' });

    await http.client.callTool({
      name: 'memory__create_entities',
      arguments: { entities: [{ name: 'made-over-http', entityType: 'note', observations: ['written by the HTTP window'] }] },
    });
    const seenByShim = toolText(await shim.client.callTool({ name: 'memory__open_nodes', arguments: { names: ['made-over-http'] } }));
    assert.match(seenByShim, /written by the HTTP window/, `the shim window reads what the HTTP window wrote: ${seenByShim}`);

    await shim.client.callTool({
      name: 'memory__create_entities',
      arguments: { entities: [{ name: 'made-in-shim', entityType: 'note', observations: ['written by the shim window'] }] },
    });
    const seenByHttp = toolText(await http.client.callTool({ name: 'memory__open_nodes', arguments: { names: ['made-in-shim'] } }));
    assert.match(seenByHttp, /written by the shim window/, `the HTTP window reads what the shim window wrote: ${seenByHttp}`);

    const memory = await serverReport(daemon, 'memory');
    assert.equal(memory.restarts, 0, 'one server-memory process served both windows');
    // The two windows' own entries (by client name, unique in this file): the shared daemon holds other tests' sessions too.
    assert.deepEqual(await sessionsNamed(daemon, 'http-window'), ['http'], 'one HTTP session for the HTTP window');
    assert.deepEqual(await sessionsNamed(daemon, 'shim-window'), ['ws'], 'one WebSocket session for the shim window');
  });

  test('two HTTP clients get two sessions, and each only its own replies while both use the same request ids', async (t) => {
    const cleanup = cleanupFor(t);
    const daemon = await sharedHostingBoth();
    const [a, b] = [await connectHttp(cleanup, daemon, { name: 'A' }), await connectHttp(cleanup, daemon, { name: 'B' })];
    assert.notEqual(a.sessionId, b.sessionId, 'two sessions');
    // Their own entries: the shared daemon holds other tests' sessions too.
    await waitFor(
      async () =>
        (await sessionEntry(daemon, a.sessionId))?.transport === 'http' && (await sessionEntry(daemon, b.sessionId))?.transport === 'http',
      '/health to list the two HTTP sessions',
    );

    const CALLS = 8;
    const batch = (who: string, http: HttpClient) =>
      Array.from({ length: CALLS }, async (_, i) => {
        const marker = `${who}-${i}`;
        const result =
          i % 2 === 0
            ? await http.client.callTool({ name: 'echo', arguments: { text: marker } })
            : await http.client.callTool({ name: 'everything__echo', arguments: { message: marker } });
        return { who, marker, text: textOf(result) };
      });
    const results = await Promise.all([...batch('A', a), ...batch('B', b)]);
    for (const r of results) {
      assert.ok(r.text.includes(r.marker), `${r.who}'s call ${r.marker} got its own reply: ${r.text}`);
      assert.doesNotMatch(r.text, new RegExp(`${r.who === 'A' ? 'B' : 'A'}-\\d`), `${r.marker} got the other client's reply`);
    }
    const idsA = callIds(a);
    const idsB = callIds(b);
    assert.equal(idsA.length, CALLS);
    assert.deepEqual(idsA, idsB, 'both clients used the same request ids at the same time');
  });

  /**
   * One daemon hosting everything alone for two tests, one after the other: sampling needs the
   * server started once both of its windows are connected (the first test here), and the logging
   * test sets the server's logging level and turns its simulated logging on (the last here).
   */
  describe('one daemon hosting everything (one test after the other)', { concurrency: 1 }, () => {
    let started: Promise<DaemonHandle> | undefined;
    const everythingAlone = () => (started ??= startHostingDaemon(fileCleanup, () => ({ everything: everythingEntry() }), NO_LIST_LIMIT));

    test('sampling from a hosted server reaches the HTTP client whose call caused it, on that call’s stream', async (t) => {
      const cleanup = cleanupFor(t);
      const daemon = await everythingAlone();
      const asked: Record<string, string[]> = { A: [], B: [] };
      const open = async (who: 'A' | 'B') => {
        const http = await connectHttp(cleanup, daemon, { name: `window-${who}`, capabilities: { sampling: {} } });
        http.client.setRequestHandler(CreateMessageRequestSchema, (request) => {
          const content = request.params.messages[0]?.content as { text?: string } | undefined;
          asked[who]!.push(content?.text ?? '');
          return { model: 'exai-ws-test-model', role: 'assistant', content: { type: 'text', text: `window ${who} answers` } };
        });
        return http;
      };
      // Both connected before the first list starts the server: it offers its sampling tool then.
      const windows = { A: await open('A'), B: await open('B') };
      for (const [who, http] of Object.entries(windows)) {
        const tools = (await http.client.listTools()).tools.map((tool) => tool.name);
        assert.ok(tools.includes(SAMPLING), `window ${who} lists ${SAMPLING}: ${tools.join(', ')}`);
      }

      for (const who of ['A', 'B'] as const) {
        const other = who === 'A' ? 'B' : 'A';
        const before = { mine: asked[who]!.length, theirs: asked[other]!.length };
        const prompt = `prompt from ${who} ${randomUUID()}`;
        const result = await windows[who].client.callTool({ name: SAMPLING, arguments: { prompt, maxTokens: 20 } }, undefined, {
          timeout: 30_000,
        });
        const text = toolText(result);
        assert.ok(!(result as CallToolResult).isError, `${who}'s sampling call succeeded: ${text}`);
        assert.match(text, new RegExp(`window ${who} answers`), `${who}'s call carries its own window's answer: ${text}`);
        assert.deepEqual(asked[who]!.slice(before.mine), [`${SAMPLING_CONTEXT}${prompt}`], `window ${who} was asked, once, its own prompt`);
        assert.equal(asked[other]!.length, before.theirs, `window ${other} was not asked for ${who}'s call`);

        const exchange = callExchange(windows[who], SAMPLING, prompt);
        assert.equal(exchange?.contentType, 'text/event-stream', `${who}'s call was answered on a stream`);
        const stream = sseMessages(await within(exchange.text, 10_000, `${who}'s call stream to end`));
        const request = stream.find((m) => m.method === 'sampling/createMessage');
        assert.ok(request, `the sampling request came on the stream of ${who}'s call: ${JSON.stringify(stream)}`);
        assert.ok(
          stream.findIndex((m) => m.method === 'sampling/createMessage') < stream.findIndex((m) => m.method === undefined && 'result' in m),
          'the request came before the call’s response',
        );
      }
    });

    test('server-initiated messages reach the HTTP client on its GET stream (a hosted server’s log messages)', async (t) => {
      const cleanup = cleanupFor(t);
      const daemon = await everythingAlone();
      // The sampling test before this one started the server; its windows are closed.
      const http = await connectHttp(cleanup, daemon);
      await waitFor(() => http.exchanges.some((e) => e.method === 'GET' && e.status === 200), 'the SDK client’s GET stream to open');
      const logs: string[] = [];
      http.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void logs.push(JSON.stringify(n.params.data)));
      await http.client.setLoggingLevel('debug');
      const onPosts = async () => {
        const texts = await within(
          Promise.all(http.exchanges.filter((e) => e.method === 'POST').map((e) => e.text)),
          10_000,
          'the POST answers to end',
        );
        return texts.flatMap((text) => sseMessages(text)).filter((m) => m.method === 'notifications/message').length;
      };
      const started = textOf(await http.client.callTool({ name: 'everything__toggle-simulated-logging', arguments: {} }));
      assert.match(started, /^Started/i, `simulated logging started: ${started}`);
      try {
        // The server logs once at once (that one may travel with the toggle call), then every 5 s.
        await waitFor(async () => logs.length > (await onPosts()), 'a log message that came on no POST: on the GET stream', 20_000, 100);
      } finally {
        await http.client.callTool({ name: 'everything__toggle-simulated-logging', arguments: {} });
      }
    });
  });

  test('refusals over HTTP: token, Origin, Host, body size and shape, unknown sessions, methods and media types', async (t) => {
    const cleanup = cleanupFor(t);
    const daemon = await startDaemon(cleanup, { env: { EXAI_WS_MAX_BYTES: String(MAX_BYTES) } });
    const http = await connectHttp(cleanup, daemon);
    const port = daemon.port;
    const initBody = (id = 1) =>
      JSON.stringify({
        jsonrpc: '2.0',
        id,
        method: 'initialize',
        params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
      });

    await t.test('no token and a wrong token: 401 with WWW-Authenticate: Bearer, no session made', async () => {
      const before = await httpSessionCount(daemon);
      for (const [what, token] of [
        ['no token', null],
        ['wrong token', WRONG_TOKEN],
      ] as const) {
        const { response, sessionId } = await rawInitialize(daemon, {}, token);
        assertRefused(response, 401, what);
        assert.match(String(response.headers['www-authenticate'] ?? ''), /^Bearer\b/i, `${what}: WWW-Authenticate: Bearer`);
        assert.equal(sessionId, undefined, `${what}: no Mcp-Session-Id`);
        assert.ok(!response.body.includes(daemon.token), `${what}: the answer never shows the token`);
      }
      // A bearer token on an existing session is checked too: the session id alone is no key.
      assertRefused(await rawCall({ port, token: WRONG_TOKEN }, http.sessionId), 401, 'a live session id with a wrong token');
      assert.equal(await httpSessionCount(daemon), before, 'refused requests made no session');
    });

    await t.test('Origin: a foreign one is 403, loopback ones are accepted', async () => {
      for (const origin of ['http://evil.example', 'http://127.0.0.1.evil.example', 'https://localhost.evil.example:443', 'null']) {
        const { response, sessionId } = await rawInitialize(daemon, { origin });
        assertStatus(response, 403, `Origin: ${origin}`);
        assert.equal(sessionId, undefined, `Origin: ${origin} made no session`);
      }
      assertStatus(
        await rawCall(daemon, http.sessionId, { headers: { origin: 'http://evil.example' } }),
        403,
        'a live session from a foreign Origin',
      );
      for (const origin of ['http://localhost:1234', 'http://127.0.0.1:9', 'http://[::1]:8080', 'https://localhost']) {
        const { response, sessionId } = await rawInitialize(daemon, { origin });
        assert.equal(response.status, 200, `Origin: ${origin} is accepted: ${response.status} ${response.body.slice(0, 200)}`);
        assert.match(sessionId ?? '', UUID, `Origin: ${origin} got a session`);
        const called = await rawCall(daemon, sessionId ?? '', { headers: { origin } });
        assert.equal(called.status, 200, `Origin: ${origin}: a call on its session`);
        assert.equal(
          (messagesOf(called).find((m) => m.id === 7)?.result as { structuredContent?: { pid?: number } } | undefined)?.structuredContent
            ?.pid,
          daemon.pid,
        );
      }
    });

    await t.test('Host: anything but the daemon’s own address is 403; localhost:PORT is accepted', async () => {
      const otherPort = port === 65_535 ? port - 1 : port + 1;
      for (const host of ['evil.example', `evil.example:${port}`, `127.0.0.1:${otherPort}`, `localhost.evil.example:${port}`]) {
        const { response, sessionId } = await rawInitialize(daemon, { host });
        assertStatus(response, 403, `Host: ${host}`);
        assert.equal(sessionId, undefined, `Host: ${host} made no session`);
      }
      const { response } = await rawInitialize(daemon, { host: `localhost:${port}` });
      assert.equal(response.status, 200, `Host: localhost:${port} is accepted: ${response.body.slice(0, 200)}`);
    });

    await t.test('a 403 for a foreign Origin or Host carries a JSON-RPC error with id null, as every other refusal on /mcp', async () => {
      assertRefused((await rawInitialize(daemon, { origin: 'http://evil.example' })).response, 403, 'a foreign Origin');
      assertRefused((await rawInitialize(daemon, { host: 'evil.example' })).response, 403, 'a foreign Host');
    });

    await t.test(`a body over EXAI_WS_MAX_BYTES (${MAX_BYTES}) is 413; the session and the daemon still serve`, async () => {
      const big = JSON.stringify({
        jsonrpc: '2.0',
        id: 9,
        method: 'tools/call',
        params: { name: 'echo', arguments: { text: 'x'.repeat(MAX_BYTES * 2) } },
      });
      const sized = await rawCall(daemon, http.sessionId, { body: big, headers: { 'content-length': String(Buffer.byteLength(big)) } });
      assertRefused(sized, 413, 'an oversized body with Content-Length');
      const chunked = await rawCall(daemon, http.sessionId, { body: big });
      assertRefused(chunked, 413, 'an oversized chunked body');
      await assertServes(http, daemon, 'after 413');
      const fits = 'y'.repeat(MAX_BYTES / 2);
      assert.equal(textOf(await http.client.callTool({ name: 'echo', arguments: { text: fits } })), fits, 'a body under the limit passes');
    });

    await t.test('unknown session ids are 404; a request without one is 400', async () => {
      const unknown = randomUUID();
      assertRefused(await rawCall(daemon, unknown), 404, 'POST with an unknown session id');
      const get = await rawRequest(port, {
        method: 'GET',
        headers: { authorization: `Bearer ${daemon.token}`, accept: 'text/event-stream', 'mcp-session-id': unknown },
        timeoutMs: 5_000,
      });
      assertRefused(get, 404, 'GET with an unknown session id');
      const del = await rawRequest(port, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${daemon.token}`, 'mcp-session-id': unknown },
      });
      assertRefused(del, 404, 'DELETE with an unknown session id');
      const noSession = await rawRequest(port, {
        headers: postHeaders(daemon.token),
        body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list' }),
      });
      assertRefused(noSession, 400, 'a request other than initialize without Mcp-Session-Id');
    });

    await t.test('malformed JSON is 400 with -32700, a non-JSON-RPC body 400 with -32600; the session still works', async () => {
      assertRefused(await rawCall(daemon, http.sessionId, { body: '{"jsonrpc":"2.0","id":' }), 400, 'malformed JSON', -32700);
      assertRefused(await rawCall(daemon, http.sessionId, { body: '{"hello":"world"}' }), 400, 'not a JSON-RPC message', -32600);
      assertRefused(
        await rawRequest(port, { headers: postHeaders(daemon.token), body: '{' }),
        400,
        'malformed JSON without a session',
        -32700,
      );
      await assertServes(http, daemon, 'after the malformed bodies');
    });

    await t.test('wrong media types, methods and protocol versions get 415, 406, 405 and 400', async () => {
      const plain = await rawRequest(port, { headers: postHeaders(daemon.token, { 'content-type': 'text/plain' }), body: initBody() });
      assertRefused(plain, 415, 'Content-Type: text/plain');
      const jsonOnly = await rawRequest(port, { headers: postHeaders(daemon.token, { accept: 'application/json' }), body: initBody() });
      assertRefused(jsonOnly, 406, 'Accept without text/event-stream');
      const getJson = await rawRequest(port, {
        method: 'GET',
        headers: { authorization: `Bearer ${daemon.token}`, accept: 'application/json', 'mcp-session-id': http.sessionId },
        timeoutMs: 5_000,
      });
      assertRefused(getJson, 406, 'GET without Accept: text/event-stream');
      const put = await rawRequest(port, { method: 'PUT', headers: postHeaders(daemon.token), body: initBody() });
      assertRefused(put, 405, 'PUT');
      const allow = String(put.headers.allow ?? '')
        .split(',')
        .map((m) => m.trim())
        .sort();
      assert.deepEqual(allow, ['DELETE', 'GET', 'POST'], `Allow: ${String(put.headers.allow)}`);
      const version = await rawCall(daemon, http.sessionId, { headers: { 'mcp-protocol-version': '1999-01-01' } });
      // -32022 (2026-07-28), naming the request it refuses and listing the versions served.
      assertStatus(version, 400, 'an unsupported MCP-Protocol-Version');
      const refused = version.json as { id?: unknown; error?: { code?: unknown; data?: { supported?: string[] } } } | undefined;
      assert.notEqual(refused?.id, null, `the refusal names the request: ${version.body}`);
      assert.equal(refused?.error?.code, -32022, version.body);
      assert.ok(refused?.error?.data?.supported?.includes('2025-11-25'), version.body);
      await assertServes(http, daemon, 'after the refusals');
    });

    await t.test('the WebSocket upgrade: a loopback Origin is accepted, a foreign one is 403', async () => {
      const ws = await openSocket(cleanup, daemon, { headers: { origin: 'http://localhost:1234' } });
      const ack = await sendHello(ws);
      assert.equal(ack.ok, true, `hello from a loopback Origin: ${JSON.stringify(ack)}`);
      ws.close();
      await assert.rejects(openSocket(cleanup, daemon, { headers: { origin: 'http://evil.example' } }), /HTTP 403/);
    });

    assert.equal(daemon.proc.exitCode, null, 'the daemon survived every refusal');
    await assertServes(http, daemon, 'at the end');
  });

  test('HTTP sessions count in EXAI_WS_MAX_SESSIONS: one over the limit is 503, and a DELETE frees the place', async (t) => {
    const cleanup = cleanupFor(t);
    const daemon = await startDaemon(cleanup, { env: { EXAI_WS_MAX_SESSIONS: '1' } });
    const http = await connectHttp(cleanup, daemon);
    // In use once its GET stream is open: an idle session would give way to the new one instead.
    await waitFor(() => http.exchanges.some((e) => e.method === 'GET' && e.status === 200), 'the SDK client’s GET stream to open');
    const { response } = await rawInitialize(daemon);
    assertRefused(response, 503, 'a second session over the limit');
    await assert.rejects(
      openSocket(cleanup, daemon).then(async (ws) => {
        const ack = await sendHello(ws);
        if (ack.ok !== true) throw new Error(`refused: ${JSON.stringify(ack)}`);
      }),
      'a WebSocket session is refused too while the HTTP session holds the only place',
    );
    await http.transport.terminateSession();
    await waitFor(async () => (await httpSessionCount(daemon)) === 0, 'the terminated session to leave /health');
    const { response: again, sessionId } = await rawInitialize(daemon);
    assert.equal(again.status, 200, `a new session once the place is free: ${again.body.slice(0, 200)}`);
    assert.match(sessionId ?? '', UUID);
  });

  /**
   * One daemon with EXAI_WS_HTTP_IDLE_MS=1500 for the two tests of idle expiry, one after the
   * other: each counts the daemon's HTTP sessions, and the first ends with none left (its own
   * expired), so the second finds the daemon as a fresh one but for the time it has run.
   */
  describe('idle HTTP sessions (one daemon, one test after the other)', { concurrency: 1 }, () => {
    let started: Promise<DaemonHandle> | undefined;
    const idleDaemon = () => (started ??= startDaemon(fileCleanup, { env: { EXAI_WS_HTTP_IDLE_MS: String(IDLE_MS) } }));

    test('a cancelled call’s POST is ended by the daemon, so the session it belongs to can still go idle and expire', async () => {
      const daemon = await idleDaemon();
      const { sessionId } = await rawInitialize(daemon);
      assert.ok(sessionId);
      const call = rawRequest(daemon.port, {
        headers: postHeaders(daemon.token, { 'mcp-session-id': sessionId, 'mcp-protocol-version': PROTOCOL }),
        body: JSON.stringify({ jsonrpc: '2.0', id: 'slow', method: 'tools/call', params: { name: 'sleep', arguments: { ms: 60_000 } } }),
        timeoutMs: 30_000,
      });
      call.catch(() => undefined);
      await waitFor(async () => (await getHealth(daemon)).inflight >= 1, 'the 60 s sleep to run at the daemon');
      const cancelled = await rawCall(daemon, sessionId, {
        body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'slow', reason: 'stopped' } }),
      });
      assert.equal(cancelled.status, 202, 'a notification is accepted with 202');
      await waitFor(async () => (await getHealth(daemon)).inflight === 0, 'the daemon to end the cancelled call', 15_000);
      const answer = await within(call, 10_000, 'the cancelled call’s POST to end');
      assert.ok(answer.status > 0, 'the POST got an answer');
      assert.deepEqual(
        messagesOf(answer).filter((m) => m.id === 'slow' && 'result' in m),
        [],
        'a cancelled request gets no result',
      );
      await waitFor(async () => (await httpSessionCount(daemon)) === 0, 'the idle session to expire', 20_000, 100);
    });

    test('/health lists HTTP sessions with their transport; an idle one expires (404), one with its GET stream open does not', async (t) => {
      const cleanup = cleanupFor(t);
      const daemon = await idleDaemon();
      // The test before this one left no session behind: it waited for its own to expire (count 0).
      // The SDK client opens the session's GET stream once initialized: it is never idle.
      const http = await connectHttp(cleanup, daemon);
      await waitFor(() => http.exchanges.some((e) => e.method === 'GET' && e.status === 200), 'the SDK client’s GET stream to open');
      const ws = await connectWs(cleanup, daemon);
      await ws.client.ping();

      const { response, sessionId: idle } = await rawInitialize(daemon);
      assert.equal(response.status, 200);
      assert.ok(idle);
      const sessions = await sessionsOf(daemon);
      assert.deepEqual(pick(sessions.by_transport), { http: 2, ws: 1 }, `by_transport: ${JSON.stringify(sessions)}`);
      const transports = (sessions.list ?? []).map((s) => s.transport).sort();
      assert.deepEqual(transports, ['http', 'http', 'ws'], `sessions.list[].transport: ${JSON.stringify(sessions.list)}`);

      // The raw session made no request since and holds no stream: it ends after EXAI_WS_HTTP_IDLE_MS.
      await waitFor(async () => (await httpSessionCount(daemon)) === 1, 'the idle HTTP session to expire', 20_000, 100);
      assertRefused(await rawCall(daemon, idle), 404, 'POST on the expired session');
      const closed = readJsonLines(logPath(daemon.home)).filter((l) => l.msg === 'session closed' && l.session_id === idle);
      assert.deepEqual(
        closed.map((l) => l.reason),
        ['http_idle'],
        'the log says why the session ended',
      );

      // As long as the raw one was left idle, the SDK client's session was too, but with its stream open.
      await assertServes(http, daemon, 'the session with its GET stream open, after the idle time');
      assert.equal(http.transport.sessionId, http.sessionId);
      const after = await sessionsOf(daemon);
      assert.deepEqual(pick(after.by_transport), { http: 1, ws: 1 }, `by_transport after the expiry: ${JSON.stringify(after)}`);
    });
  });
});
