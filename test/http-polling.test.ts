/**
 * SSE polling (MCP 2025-11-25, SEP-1699) on the Streamable HTTP transport: a real node:http
 * server on 127.0.0.1 with the endpoint and a scripted session behind it, read byte for byte.
 * A session that negotiated 2025-11-25 gets every request's POST as an SSE stream opened by a
 * priming event (an id, empty data, `retry`); with a poll time, the POST's connection is
 * closed before the response and the client fetches the rest with GET and `Last-Event-ID`.
 * An older session keeps plain JSON answers. The conformance suite checks the same through the
 * daemon end to end (test/conformance.test.ts, server-sse-polling).
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { SsePolling } from '../src/transport/http.js';
import { nextChunk } from './fixtures/http-client.js';
import { closeHarnesses, harness, type Harness } from './fixtures/endpoint-harness.js';

after(closeHarnesses);

/** A harness whose sessions answer `initialize` with `version` (2025-11-25: polling applies). */
function pollingHarness(sse: SsePolling, version = '2025-11-25'): Promise<Harness> {
  return harness({ sse, version });
}

function post(h: Harness, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(h.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify(body),
  });
}

/** Initializes asking for `version`; returns the headers of the session's later requests. */
async function initialize(h: Harness, version = '2025-11-25'): Promise<Record<string, string>> {
  const res = await post(h, { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: version, capabilities: {} } });
  assert.equal(res.status, 200);
  // The initialize answer stays plain JSON: a client that loses it initializes again.
  assert.equal(res.headers.get('content-type'), 'application/json');
  const id = res.headers.get('mcp-session-id');
  assert.ok(id);
  await res.json();
  return { 'mcp-session-id': id, 'mcp-protocol-version': version };
}

/** One SSE block as sent: its fields, `data` joined. A block with no data is still listed. */
interface Block {
  id?: string;
  retry?: string;
  data?: string;
}

/** Reads a response body to its end (bounded), split into SSE blocks. */
async function readBlocks(res: Response, timeoutMs = 5_000): Promise<{ blocks: Block[]; ended: boolean }> {
  assert.ok(res.body);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  let ended = false;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const chunk = await nextChunk(reader, decoder, deadline);
    if (chunk === 'timeout') break;
    if (chunk === 'done') {
      ended = true;
      break;
    }
    text += chunk.text;
  }
  if (!ended) await reader.cancel();
  const blocks = text
    .split('\n\n')
    .filter((b) => b !== '')
    .map((b) => {
      const block: Block = {};
      for (const line of b.split('\n')) {
        const [, field, value] = /^(\w+): ?(.*)$/.exec(line) ?? [];
        if (field === 'id' || field === 'retry') block[field] = value;
        if (field === 'data') block.data = (block.data === undefined ? '' : `${block.data}\n`) + (value ?? '');
      }
      return block;
    });
  return { blocks, ended };
}

/** A test whose stream never comes fails rather than hangs. */
const BOUND = { timeout: 15_000 };

const messages = (blocks: Block[]) =>
  blocks.filter((b) => b.data !== undefined && b.data !== '').map((b) => JSON.parse(b.data as string) as unknown);
// Each test has its own daemon, home and processes: they run side by side.
describe('http polling', { concurrency: true }, () => {
  test(
    'a 2025-11-25 session: every request is an SSE stream that opens with a priming event (id, empty data, retry) and ends with the response',
    BOUND,
    async () => {
      const h = await pollingHarness({ retryMs: 1234, pollMs: 0 });
      const headers = await initialize(h);
      const res = await post(h, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, headers);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'text/event-stream');
      const { blocks, ended } = await readBlocks(res);
      assert.equal(ended, true, 'the stream ends after its response');
      const [priming, ...rest] = blocks;
      assert.ok(priming?.id, `the first event has an id: ${JSON.stringify(blocks)}`);
      assert.equal(priming.data, '', 'the priming event has empty data');
      assert.equal(priming.retry, '1234', 'the priming event carries retry (EXAI_WS_HTTP_RETRY_MS)');
      assert.deepEqual(messages(rest), [{ jsonrpc: '2.0', id: 1, result: { echo: 'tools/list' } }]);
      assert.ok(rest[0]?.id !== undefined && rest[0].id !== priming.id, 'the response has an id of its own');
    },
  );

  test('an older session (2025-06-18) keeps plain JSON answers and gets no priming event', BOUND, async () => {
    const h = await pollingHarness({ retryMs: 1000, pollMs: 50 }, '2025-06-18');
    const headers = await initialize(h, '2025-06-18');
    const res = await post(h, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, headers);
    assert.equal(res.headers.get('content-type'), 'application/json');
    assert.deepEqual(await res.json(), { jsonrpc: '2.0', id: 1, result: { echo: 'tools/list' } });

    // One with progress first becomes a stream, without priming, and the poll time does not
    // close it: a client before 2025-11-25 was never told it may resume.
    const held = post(h, { jsonrpc: '2.0', id: 2, method: 'hold' }, headers);
    const session = h.session();
    await session.received(2);
    session.related(2, { method: 'notifications/progress', params: { progressToken: 't', progress: 1 } });
    const streamed = await held;
    assert.equal(streamed.headers.get('content-type'), 'text/event-stream');
    const reading = readBlocks(streamed);
    await new Promise((r) => setTimeout(r, 200));
    session.answer(2, { done: true });
    const { blocks, ended } = await reading;
    assert.equal(ended, true);
    assert.ok(
      blocks.every((b) => b.data !== '' && b.retry === undefined),
      `no priming event: ${JSON.stringify(blocks)}`,
    );
    assert.deepEqual(messages(blocks), [
      { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 't', progress: 1 } },
      { jsonrpc: '2.0', id: 2, result: { done: true } },
    ]);
  });

  test(
    'with a poll time, a POST stream still waiting is closed after its priming event; GET with Last-Event-ID gets the rest and ends with the response',
    BOUND,
    async () => {
      const h = await pollingHarness({ retryMs: 100, pollMs: 50 });
      const headers = await initialize(h);
      const res = await post(h, { jsonrpc: '2.0', id: 'call', method: 'hold' }, headers);
      assert.equal(res.headers.get('content-type'), 'text/event-stream');
      const first = await readBlocks(res);
      assert.equal(first.ended, true, 'the POST connection was closed before the response');
      assert.equal(first.blocks.length, 1, `only the priming event went out: ${JSON.stringify(first.blocks)}`);
      const lastEventId = first.blocks[0]?.id;
      assert.ok(lastEventId);

      // What the request sends while its client is away is kept for it.
      const session = h.session();
      session.related('call', { method: 'notifications/progress', params: { progressToken: 't', progress: 1 } });
      const resumed = await fetch(h.url, {
        headers: { accept: 'text/event-stream', 'last-event-id': lastEventId, ...headers },
      });
      assert.equal(resumed.status, 200);
      assert.equal(resumed.headers.get('content-type'), 'text/event-stream');
      const reading = readBlocks(resumed);
      // Past the poll time: the resumed connection is kept to the stream's end.
      await new Promise((r) => setTimeout(r, 200));
      session.answer('call', { done: true });
      const rest = await reading;
      assert.equal(rest.ended, true, 'the resumed stream ends with the response');
      assert.deepEqual(messages(rest.blocks), [
        { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 't', progress: 1 } },
        { jsonrpc: '2.0', id: 'call', result: { done: true } },
      ]);
    },
  );

  test('without a poll time, a waiting POST stream stays open until its response', BOUND, async () => {
    const h = await pollingHarness({ retryMs: 100, pollMs: 0 });
    const headers = await initialize(h);
    const res = await post(h, { jsonrpc: '2.0', id: 'call', method: 'hold' }, headers);
    const reading = readBlocks(res);
    await h.session().received('call');
    await new Promise((r) => setTimeout(r, 300));
    h.session().answer('call', { done: true });
    const { blocks, ended } = await reading;
    assert.equal(ended, true);
    assert.equal(blocks[0]?.data, '', 'priming first');
    assert.deepEqual(messages(blocks), [{ jsonrpc: '2.0', id: 'call', result: { done: true } }], 'the response came on the POST itself');
  });

  test('a client that hangs up after the priming event gets its response by resuming from it', BOUND, async () => {
    const h = await pollingHarness({ retryMs: 100, pollMs: 0 });
    const headers = await initialize(h);
    const controller = new AbortController();
    const res = await fetch(h.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'hold' }),
      signal: controller.signal,
    });
    assert.ok(res.body);
    const reader = res.body.getReader();
    // nextChunk clears its deadline timer: a 5 s timer left pending would hold this file's process open after its tests.
    const read = await nextChunk(reader, new TextDecoder(), Date.now() + 5_000);
    assert.ok(typeof read === 'object', `the POST stream opened with an event before any response (got ${String(read)})`);
    const first = read.text;
    const lastEventId = /^id: (\S+)$/m.exec(first)?.[1];
    assert.ok(lastEventId, `a priming event with an id: ${first}`);
    controller.abort();
    await reader.cancel().catch(() => undefined);

    const session = h.session();
    await session.received(7);
    // Answered while nobody listens: kept, not lost (a plain JSON answer would be).
    await new Promise((r) => setTimeout(r, 50));
    session.answer(7, { late: true });
    const resumed = await fetch(h.url, { headers: { accept: 'text/event-stream', 'last-event-id': lastEventId, ...headers } });
    const { blocks, ended } = await readBlocks(resumed);
    assert.equal(ended, true);
    assert.deepEqual(messages(blocks), [{ jsonrpc: '2.0', id: 7, result: { late: true } }]);
  });
});
