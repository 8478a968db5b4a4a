/**
 * The Streamable HTTP transport and endpoint on their own: a real node:http server on
 * 127.0.0.1 with the endpoint, and a scripted session behind it, so each rule of the wire
 * (JSON or SSE per request, the GET stream, resumption, bounds, refusals, idle expiry) is
 * checked exactly. The daemon end to end is test/http-mcp.test.ts.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, test } from 'node:test';
import { waitFor } from './helpers.js';
import { nextChunk } from './fixtures/http-client.js';
import { ScriptedSession, closeHarnesses, harness, type Harness } from './fixtures/endpoint-harness.js';

after(closeHarnesses);

const JSON_AND_SSE = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

function post(h: Harness, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return fetch(h.url, {
    method: 'POST',
    headers: { ...JSON_AND_SSE, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal,
  });
}

async function initialize(h: Harness): Promise<{ id: string; session: ScriptedSession }> {
  const res = await post(h, { jsonrpc: '2.0', id: 0, method: 'initialize', params: { clientInfo: { name: 't', version: '1' } } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/json');
  const id = res.headers.get('mcp-session-id');
  assert.ok(id, 'initialize answers with Mcp-Session-Id');
  await res.json();
  const session = h.sessions.at(-1);
  assert.ok(session);
  return { id, session };
}

interface SseEvent {
  id: string | undefined;
  data: string;
}

/** Reads SSE events from a response body until `count` arrived or the stream ended. */
async function readEvents(res: Response, count: number, timeoutMs = 5_000): Promise<{ events: SseEvent[]; ended: boolean }> {
  assert.ok(res.body);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const events: SseEvent[] = [];
  let buffer = '';
  const deadline = Date.now() + timeoutMs;
  let ended = false;
  while (events.length < count) {
    const chunk = await nextChunk(reader, decoder, deadline);
    if (chunk === 'timeout') break;
    if (chunk === 'done') {
      ended = true;
      break;
    }
    buffer += chunk.text;
    let cut: number;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event: SseEvent = { id: undefined, data: '' };
      for (const line of block.split('\n')) {
        if (line.startsWith('id: ')) event.id = line.slice(4);
        else if (line.startsWith('data: ')) event.data += line.slice(6);
      }
      if (event.data !== '') events.push(event);
    }
  }
  if (!ended && events.length >= count) {
    // Whether the stream ends right after: one more read, briefly.
    const next = await Promise.race([reader.read(), new Promise<'open'>((r) => setTimeout(() => r('open'), 200))]);
    ended = next !== 'open' && next.done;
  }
  reader.releaseLock();
  return { events, ended };
}

test('a request whose response is all that goes out gets plain JSON; one with progress first becomes an SSE stream that ends with its response', async () => {
  const h = await harness();
  const { id, session } = await initialize(h);
  const headers = { 'mcp-session-id': id, 'mcp-protocol-version': '2025-11-25' };

  const plain = await post(h, { jsonrpc: '2.0', id: 1, method: 'ping' }, headers);
  assert.equal(plain.status, 200);
  assert.equal(plain.headers.get('content-type'), 'application/json');
  assert.deepEqual(await plain.json(), { jsonrpc: '2.0', id: 1, result: { echo: 'ping' } });

  const pending = post(h, { jsonrpc: '2.0', id: 'call-2', method: 'hold' }, headers);
  // The response is not due yet: the headers wait until something must go out.
  while (!session.taken.some((c) => c.kind === 'request' && c.message.id === 'call-2')) await new Promise((r) => setTimeout(r, 5));
  session.related('call-2', { method: 'notifications/progress', params: { progressToken: 't', progress: 1 } });
  const streamed = await pending;
  assert.equal(streamed.status, 200);
  assert.equal(streamed.headers.get('content-type'), 'text/event-stream');
  const first = readEvents(streamed, 3);
  session.related('call-2', { id: 'exai-ws-1', method: 'sampling/createMessage', params: {} });
  session.answer('call-2', { done: true });
  const { events, ended } = await first;
  assert.deepEqual(
    events.map((e) => JSON.parse(e.data) as unknown),
    [
      { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 't', progress: 1 } },
      { jsonrpc: '2.0', id: 'exai-ws-1', method: 'sampling/createMessage', params: {} },
      { jsonrpc: '2.0', id: 'call-2', result: { done: true } },
    ],
  );
  assert.ok(
    events.every((e) => e.id !== undefined),
    'every event has an id',
  );
  assert.equal(new Set(events.map((e) => e.id)).size, 3, 'event ids are unique');
  assert.equal(ended, true, 'the stream ends after the response');

  // Notifications and responses from the client: 202, no body, and the session got them.
  const accepted = await post(h, { jsonrpc: '2.0', id: 'exai-ws-1', result: { role: 'assistant' } }, headers);
  assert.equal(accepted.status, 202);
  assert.equal(await accepted.text(), '');
  assert.ok(session.taken.some((c) => c.kind === 'response'));
});

test('messages for no request go to the GET stream: kept while none is open, delivered when one opens; a second GET is 409', async () => {
  const h = await harness();
  const { id, session } = await initialize(h);
  session.unrelated({ method: 'notifications/tools/list_changed' });
  session.unrelated({ method: 'notifications/message', params: { level: 'info', data: 'kept' } });
  const get = await fetch(h.url, { headers: { accept: 'text/event-stream', 'mcp-session-id': id } });
  assert.equal(get.status, 200);
  assert.equal(get.headers.get('content-type'), 'text/event-stream');
  const reading = readEvents(get, 3);
  const second = await fetch(h.url, { headers: { accept: 'text/event-stream', 'mcp-session-id': id } });
  assert.equal(second.status, 409);
  await second.arrayBuffer();
  session.unrelated({ method: 'notifications/resources/updated', params: { uri: 'x://1' } });
  const { events } = await reading;
  assert.deepEqual(
    events.map((e) => (JSON.parse(e.data) as { method: string }).method),
    ['notifications/tools/list_changed', 'notifications/message', 'notifications/resources/updated'],
  );
  await get.body?.cancel();
});

test('a POST stream lost mid-way resumes with Last-Event-ID on a GET: the events after it, then its response, then the end', async () => {
  const h = await harness();
  const { id, session } = await initialize(h);
  const headers = { 'mcp-session-id': id };
  const abort = new AbortController();
  const pending = post(h, { jsonrpc: '2.0', id: 7, method: 'hold' }, headers, abort.signal);
  while (!session.taken.some((c) => c.kind === 'request' && c.message.id === 7)) await new Promise((r) => setTimeout(r, 5));
  session.related(7, { method: 'notifications/progress', params: { progressToken: 1, progress: 1 } });
  const res = await pending;
  const { events } = await readEvents(res, 1);
  const lastId = events[0]?.id;
  assert.ok(lastId);
  abort.abort();
  await new Promise((r) => setTimeout(r, 100));
  // While the client is away: more progress, then the response.
  session.related(7, { method: 'notifications/progress', params: { progressToken: 1, progress: 2 } });
  session.answer(7, { value: 'late' });
  const resumed = await fetch(h.url, { headers: { accept: 'text/event-stream', 'mcp-session-id': id, 'last-event-id': lastId } });
  assert.equal(resumed.status, 200);
  const replay = await readEvents(resumed, 2);
  assert.deepEqual(
    replay.events.map((e) => JSON.parse(e.data) as unknown),
    [
      { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 2 } },
      { jsonrpc: '2.0', id: 7, result: { value: 'late' } },
    ],
  );
  assert.equal(replay.ended, true, 'a resumed POST stream ends with its response');
});

test('the event store is bounded: a client that never opens a GET stream costs at most the bound', async () => {
  const h = await harness({ eventStoreBytes: 10_000 });
  const { id, session } = await initialize(h);
  const filler = 'x'.repeat(1000);
  for (let i = 0; i < 200; i++) session.unrelated({ method: 'notifications/message', params: { level: 'info', data: `${i}:${filler}` } });
  const get = await fetch(h.url, { headers: { accept: 'text/event-stream', 'mcp-session-id': id } });
  const { events } = await readEvents(get, 200, 1_000);
  await get.body?.cancel();
  assert.ok(events.length > 0 && events.length <= 10, `${events.length} events kept`);
  const data = (e: SseEvent) => String((JSON.parse(e.data) as { params: { data: string } }).params.data);
  assert.ok(data(events.at(-1) as SseEvent).startsWith('199:'), 'the newest are the ones kept');
});

test('bad requests get the HTTP status and JSON-RPC error for them and harm nothing else', async () => {
  const h = await harness({ maxBodyBytes: 4096, maxSessions: 1 });
  const { id, session } = await initialize(h);
  const headers = { 'mcp-session-id': id };
  const status = async (res: Promise<Response>) => {
    const r = await res;
    const body = await r.text();
    return { status: r.status, body: body === '' ? undefined : (JSON.parse(body) as { error?: { code: number } }) };
  };
  const ping = { jsonrpc: '2.0', id: 99, method: 'ping' };
  assert.equal(
    (
      await status(
        fetch(h.url, { method: 'POST', headers: { ...headers, accept: JSON_AND_SSE.accept, 'content-type': 'text/plain' }, body: '{}' }),
      )
    ).status,
    415,
  );
  assert.equal(
    (
      await status(
        fetch(h.url, {
          method: 'POST',
          headers: { ...headers, 'content-type': 'application/json', accept: 'application/json' },
          body: JSON.stringify(ping),
        }),
      )
    ).status,
    406,
  );
  const big = await status(post(h, { jsonrpc: '2.0', id: 5, method: 'ping', params: { pad: 'y'.repeat(10_000) } }, headers));
  assert.equal(big.status, 413);
  const parse = await status(post(h, '{not json', headers));
  assert.equal(parse.status, 400);
  assert.equal(parse.body?.error?.code, -32700);
  const batch = await status(post(h, [ping], headers));
  assert.equal(batch.status, 400);
  assert.equal(batch.body?.error?.code, -32600);
  assert.equal((await status(post(h, ping))).status, 400, 'no session id');
  assert.equal((await status(post(h, ping, { 'mcp-session-id': 'nope' }))).status, 404);
  assert.equal((await status(post(h, ping, { ...headers, 'mcp-protocol-version': '1999-01-01' }))).status, 400);
  assert.equal((await status(fetch(h.url, { method: 'PUT', headers }))).status, 405);
  assert.equal((await status(post(h, { jsonrpc: '2.0', id: 0, method: 'initialize', params: {} }))).status, 503, 'session limit');
  // The same id while the first is still waiting: refused, the first still gets its answer.
  const first = post(h, { jsonrpc: '2.0', id: 'dup', method: 'hold' }, headers);
  while (!session.taken.some((c) => c.kind === 'request' && c.message.id === 'dup')) await new Promise((r) => setTimeout(r, 5));
  assert.equal((await status(post(h, { jsonrpc: '2.0', id: 'dup', method: 'ping' }, headers))).status, 409);
  session.answer('dup', { first: true });
  assert.deepEqual(await (await first).json(), { jsonrpc: '2.0', id: 'dup', result: { first: true } });
  // After all of it the session still serves.
  const ok = await post(h, ping, headers);
  assert.deepEqual(await ok.json(), { jsonrpc: '2.0', id: 99, result: { echo: 'ping' } });
});

test('DELETE ends the session (404 afterwards); an idle session ends by itself, one with a GET stream open does not', async () => {
  const h = await harness({ idleMs: 300 });
  const a = await initialize(h);
  const del = await fetch(h.url, { method: 'DELETE', headers: { 'mcp-session-id': a.id } });
  assert.equal(del.status, 200);
  assert.deepEqual(h.ended.at(-1), { id: a.session.id, reason: 'client_closed' });
  const after = await post(h, { jsonrpc: '2.0', id: 1, method: 'ping' }, { 'mcp-session-id': a.id });
  assert.equal(after.status, 404);
  await after.arrayBuffer();

  const idle = await initialize(h);
  const watching = await initialize(h);
  const get = await fetch(h.url, { headers: { accept: 'text/event-stream', 'mcp-session-id': watching.id } });
  assert.equal(get.status, 200);
  const deadline = Date.now() + 10_000;
  while (!h.ended.some((e) => e.id === idle.session.id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.ok(
    h.ended.some((e) => e.id === idle.session.id && e.reason === 'http_idle'),
    'the idle session ended',
  );
  assert.ok(!h.ended.some((e) => e.id === watching.session.id), 'a session with its GET stream open is not idle');
  const gone = await post(h, { jsonrpc: '2.0', id: 1, method: 'ping' }, { 'mcp-session-id': idle.id });
  assert.equal(gone.status, 404);
  await gone.arrayBuffer();
  await get.body?.cancel();
});

test('a request the client cancels gets no response: its POST ends without one and the session can go idle', async () => {
  const h = await harness({ idleMs: 300 });
  const { id, session } = await initialize(h);
  const headers = { 'mcp-session-id': id };
  const pending = post(h, { jsonrpc: '2.0', id: 'long', method: 'hold' }, headers);
  while (!session.taken.some((c) => c.kind === 'request' && c.message.id === 'long')) await new Promise((r) => setTimeout(r, 5));
  const cancel = await post(
    h,
    { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'long', reason: 'user' } },
    headers,
  );
  assert.equal(cancel.status, 202);
  await cancel.arrayBuffer();
  const ended = await pending;
  assert.equal(ended.status, 200);
  assert.equal(await ended.text(), '', 'no response for a cancelled request');
  const deadline = Date.now() + 10_000;
  while (!h.ended.some((e) => e.id === session.id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(
    h.ended.find((e) => e.id === session.id),
    { id: session.id, reason: 'http_idle' },
    'nothing is left waiting: the session goes idle',
  );
});

/** A request `id` of `session` whose POST became a stream (one progress), read to its first event, then dropped. */
async function lostStream(h: Harness, sessionId: string, session: ScriptedSession, id: number): Promise<string> {
  const abort = new AbortController();
  const pending = post(h, { jsonrpc: '2.0', id, method: 'hold' }, { 'mcp-session-id': sessionId }, abort.signal);
  while (!session.taken.some((c) => c.kind === 'request' && c.message.id === id)) await new Promise((r) => setTimeout(r, 5));
  session.related(id, { method: 'notifications/progress', params: { progressToken: id, progress: 1 } });
  const { events } = await readEvents(await pending, 1);
  abort.abort();
  // The endpoint sees the client go.
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(events[0]?.id);
  return events[0].id;
}

function resume(h: Harness, sessionId: string, lastEventId: string): Promise<Response> {
  return fetch(h.url, { headers: { accept: 'text/event-stream', 'mcp-session-id': sessionId, 'last-event-id': lastEventId } });
}

test('a response larger than the store bound for a client that is away is not kept: a resume gets an error for that request instead', async () => {
  const h = await harness({ eventStoreBytes: 1_000 });
  const { id, session } = await initialize(h);
  const lastId = await lostStream(h, id, session, 9);
  session.answer(9, { text: 'x'.repeat(5_000) });
  assert.ok(h.endpoint.eventBudget.usedBytes < 1_000, `the big response is not kept (${h.endpoint.eventBudget.usedBytes} bytes kept)`);
  const replay = await readEvents(await resume(h, id, lastId), 2, 2_000);
  assert.equal(replay.events.length, 1);
  const error = (JSON.parse(replay.events[0]!.data) as { id: number; error: { code: number; message: string } }).error;
  assert.equal((JSON.parse(replay.events[0]!.data) as { id: number }).id, 9);
  assert.equal(error.code, -32603);
  assert.match(error.message, /^the result \(50\d\d bytes\) was too large to keep for resumption \(limit 1000 bytes\)$/);
  assert.equal(replay.ended, true, 'the resumed stream ends after the error');

  // A response within the bound is kept and resumed as it was.
  const again = await lostStream(h, id, session, 10);
  session.answer(10, { text: 'small' });
  const kept = await readEvents(await resume(h, id, again), 1, 2_000);
  assert.deepEqual(JSON.parse(kept.events[0]!.data), { jsonrpc: '2.0', id: 10, result: { text: 'small' } });
});

test('a response the store bound pushes out for a client that is away leaves an error in its place', async () => {
  const h = await harness({ eventStoreBytes: 3_000 });
  const { id, session } = await initialize(h);
  const lastId = await lostStream(h, id, session, 11);
  session.answer(11, { text: 'y'.repeat(2_000) });
  // Messages for the GET stream (none open) push the response out of the store.
  for (let i = 0; i < 3; i++) session.unrelated({ method: 'notifications/message', params: { level: 'info', data: 'z'.repeat(1_000) } });
  const replay = await readEvents(await resume(h, id, lastId), 1, 2_000);
  const message = JSON.parse(replay.events[0]!.data) as { id: number; error?: { code: number; message: string } };
  assert.equal(message.id, 11);
  assert.equal(message.error?.code, -32603);
  assert.match(
    message.error?.message ?? '',
    /^the result \(\d+ bytes\) was dropped to keep this session's stored events within their limit \(3000 bytes\)$/,
  );
  assert.equal(replay.ended, true);
});

test('all stores together stay within the shared budget: the store keeping the most gives up its oldest events first', async () => {
  const h = await harness({ eventStoreBytes: 10_000, eventStoreTotalBytes: 12_000 });
  const a = await initialize(h);
  const b = await initialize(h);
  const note = (n: number) => ({ method: 'notifications/message', params: { level: 'info', data: `${n}:${'q'.repeat(990)}` } });
  // a keeps about 8 KB, b about 3 KB: 11 KB together, within 12 KB.
  for (let i = 0; i < 8; i++) a.session.unrelated(note(i));
  for (let i = 0; i < 3; i++) b.session.unrelated(note(100 + i));
  const within = h.endpoint.eventBudget.usedBytes;
  assert.ok(within > 10_000 && within <= 12_000, `${within} bytes kept`);
  // Two more for b: 13 KB, past the budget. a holds the most and gives way, not b.
  for (let i = 3; i < 5; i++) b.session.unrelated(note(100 + i));
  assert.ok(h.endpoint.eventBudget.usedBytes <= 12_000, `${h.endpoint.eventBudget.usedBytes} bytes kept, bound 12000`);
  const numbers = async (sessionId: string) => {
    const get = await fetch(h.url, { headers: { accept: 'text/event-stream', 'mcp-session-id': sessionId } });
    const { events } = await readEvents(get, 20, 500);
    await get.body?.cancel();
    return events.map((e) => Number(String((JSON.parse(e.data) as { params: { data: string } }).params.data).split(':')[0]));
  };
  assert.deepEqual(await numbers(b.id), [100, 101, 102, 103, 104], 'the smaller store keeps everything');
  const kept = await numbers(a.id);
  assert.ok(kept.length < 8 && kept.length >= 6, `the larger store gave up its oldest: ${kept.join(',')}`);
  assert.deepEqual(kept, [0, 1, 2, 3, 4, 5, 6, 7].slice(8 - kept.length));
  // A session that ends gives its share back.
  const before = h.endpoint.eventBudget.usedBytes;
  const del = await fetch(h.url, { method: 'DELETE', headers: { 'mcp-session-id': b.id } });
  assert.equal(del.status, 200);
  assert.ok(h.endpoint.eventBudget.usedBytes <= before - 5_000, "b's events are no longer counted");
});

test('at the session limit the least recently used idle session gives way: in-use ones (a request waiting, a GET stream open) never do', async () => {
  const h = await harness();
  const one = await initialize(h);
  const two = await initialize(h);
  const three = await initialize(h);
  const four = await initialize(h);
  // one is used again after two: two is now the least recently used.
  const ping = await post(h, { jsonrpc: '2.0', id: 1, method: 'ping' }, { 'mcp-session-id': one.id });
  await ping.json();
  // three has a GET stream open, four a request waiting for its response: both in use.
  const get = await fetch(h.url, { headers: { accept: 'text/event-stream', 'mcp-session-id': three.id } });
  assert.equal(get.status, 200);
  const waiting = post(h, { jsonrpc: '2.0', id: 2, method: 'hold' }, { 'mcp-session-id': four.id });
  while (!four.session.taken.some((c) => c.kind === 'request' && c.message.id === 2)) await new Promise((r) => setTimeout(r, 5));
  assert.equal(h.endpoint.idleCount, 2);

  assert.equal(h.endpoint.evictIdle(), true);
  assert.deepEqual(h.ended.at(-1), { id: two.session.id, reason: 'http_session_limit' });
  const gone = await post(h, { jsonrpc: '2.0', id: 3, method: 'ping' }, { 'mcp-session-id': two.id });
  assert.equal(gone.status, 404, 'the ended session is gone: its client initializes again');
  await gone.arrayBuffer();
  assert.equal(h.endpoint.evictIdle(), true);
  assert.deepEqual(h.ended.at(-1), { id: one.session.id, reason: 'http_session_limit' });
  assert.equal(h.endpoint.evictIdle(), false, 'no idle session left: the ones in use stay');
  assert.equal(h.ended.length, 2);

  // four's request answered, three's stream closed: both idle again.
  four.session.answer(2, { ok: true });
  await (await waiting).arrayBuffer();
  await get.body?.cancel();
  await waitFor(() => h.endpoint.idleCount === 2, 'three and four to be idle');
  assert.equal(h.endpoint.evictIdle(), true);
  assert.deepEqual(h.ended.at(-1)?.reason, 'http_session_limit');
});

test('request bodies being received are bounded together: past the bound a new body gets 503 with Retry-After; the others go on', async () => {
  const h = await harness({ bodiesMaxBytes: 4_096 });
  const { id } = await initialize(h);
  const port = Number(new URL(h.url).port);
  // A body of 3000 bytes arriving slowly: its first 2500 bytes are in.
  const body = JSON.stringify({ jsonrpc: '2.0', id: 'slow', method: 'ping', params: { pad: 'p'.repeat(2_950) } });
  const answer = new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/mcp',
        headers: { ...JSON_AND_SSE, 'mcp-session-id': id, 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.write(body.slice(0, 2_500));
    waitFor(() => h.endpoint.receivingBytes >= 2_500, 'the first part to arrive')
      .then(async () => {
        const refused = await post(
          h,
          { jsonrpc: '2.0', id: 'other', method: 'ping', params: { pad: 'o'.repeat(2_000) } },
          { 'mcp-session-id': id },
        );
        assert.equal(refused.status, 503);
        assert.equal(refused.headers.get('retry-after'), '1');
        const json = (await refused.json()) as { error: { code: number; message: string } };
        assert.match(json.error.message, /request bodies being received have reached their limit \(4096 bytes\)/);
        // A small one still fits beside the slow one.
        const small = await post(h, { jsonrpc: '2.0', id: 'small', method: 'ping' }, { 'mcp-session-id': id });
        assert.equal(small.status, 200);
        await small.arrayBuffer();
        req.end(body.slice(2_500));
      })
      .catch(reject);
  });
  const slow = await answer;
  assert.equal(slow.status, 200, 'the body being received when the others came is answered');
  assert.deepEqual(JSON.parse(slow.text), { jsonrpc: '2.0', id: 'slow', result: { echo: 'ping' } });
  assert.equal(h.endpoint.receivingBytes, 0, 'every body gave its share back');
});
