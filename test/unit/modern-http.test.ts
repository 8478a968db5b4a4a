/**
 * Streamable HTTP the 2026-07-28 way under the SDK's client transport (modern-http.ts, through
 * the stream tagger): the headers of a modern request, a modern error in a 4xx body handed on as
 * the request's answer, an SSE answer that ends without the response, a cancellation that closes
 * the stream; and legacy traffic left as it was.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FetchLike } from '@modelcontextprotocol/client';
import { tagStreams } from '../../src/hosting/http-streams.js';

const URL_ = new URL('http://127.0.0.1:1/mcp');
const META = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} };

interface Seen {
  headers: Headers;
  body: string;
  signal: AbortSignal | undefined;
}

/** A fetch that records what it is given and answers with `answer`. */
function fakeFetch(answer: (seen: Seen) => Response): { fetch: FetchLike; seen: Seen[] } {
  const seen: Seen[] = [];
  const fetch: FetchLike = (_url, init) => {
    const one = { headers: new Headers(init?.headers), body: String(init?.body), signal: init?.signal ?? undefined };
    seen.push(one);
    return Promise.resolve(answer(one));
  };
  return { fetch, seen };
}

function post(body: unknown): RequestInit {
  return { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
}

test('a modern request carries MCP-Protocol-Version, Mcp-Method and Mcp-Name (Base64 sentinel when not plain ASCII)', async () => {
  const inner = fakeFetch(() => Response.json({ jsonrpc: '2.0', id: 1, result: {} }));
  const { fetch } = tagStreams(inner.fetch);
  await fetch(URL_, post({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'get_weather', _meta: META } }));
  await fetch(URL_, post({ jsonrpc: '2.0', id: 2, method: 'resources/read', params: { uri: 'file:///é', _meta: META } }));
  await fetch(URL_, post({ jsonrpc: '2.0', id: 3, method: 'tools/list', params: { _meta: META } }));
  const [call, read, list] = inner.seen.map((s) => s.headers);
  assert.equal(call?.get('mcp-protocol-version'), '2026-07-28');
  assert.equal(call?.get('mcp-method'), 'tools/call');
  assert.equal(call?.get('mcp-name'), 'get_weather');
  assert.equal(call?.get('content-type'), 'application/json', 'the transport’s own headers stay');
  assert.equal(read?.get('mcp-name'), `=?base64?${Buffer.from('file:///é').toString('base64')}?=`);
  assert.equal(list?.get('mcp-method'), 'tools/list');
  assert.equal(list?.get('mcp-name'), null, 'no name for a method that has none');
});

test("Mcp-Name is the field the method names: a resources/read's uri even when its params also carry a name", async () => {
  const inner = fakeFetch(() => Response.json({ jsonrpc: '2.0', id: 1, result: {} }));
  const { fetch } = tagStreams(inner.fetch);
  const params = { uri: 'file:///notes.txt', name: 'notes', _meta: META };
  await fetch(URL_, post({ jsonrpc: '2.0', id: 1, method: 'resources/read', params }));
  assert.equal(inner.seen[0]?.headers.get('mcp-name'), 'file:///notes.txt');
});

test('a legacy request goes as it is', async () => {
  const inner = fakeFetch(() => new Response('{"error":"x"}', { status: 400, headers: { 'content-type': 'application/json' } }));
  const { fetch } = tagStreams(inner.fetch);
  const response = await fetch(URL_, post({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }));
  assert.equal(response.status, 400, 'a 2025 failure is not rewritten');
  assert.equal(inner.seen[0]?.headers.get('mcp-method'), null);
});

test('a modern error in a 4xx body becomes the request’s answer; a 4xx without one stays a failure', async () => {
  const error = { code: -32022, message: 'Unsupported protocol version', data: { supported: ['2027-01-01'] } };
  const modern = fakeFetch(() => Response.json({ jsonrpc: '2.0', id: null, error }, { status: 400 }));
  const answered = await tagStreams(modern.fetch).fetch(
    URL_,
    post({ jsonrpc: '2.0', id: 'd1', method: 'server/discover', params: { _meta: META } }),
  );
  assert.equal(answered.status, 200);
  assert.deepEqual(await answered.json(), { jsonrpc: '2.0', id: 'd1', error });

  const legacy = fakeFetch(() => new Response('Bad Request: Server not initialized', { status: 400 }));
  const failed = await tagStreams(legacy.fetch).fetch(
    URL_,
    post({ jsonrpc: '2.0', id: 'd1', method: 'server/discover', params: { _meta: META } }),
  );
  assert.equal(failed.status, 400);
  assert.equal(await failed.text(), 'Bad Request: Server not initialized');
});

test('an SSE answer that ends without the response gets an error answer at its end; one that has it is left alone', async () => {
  const sse = (text: string) => new Response(text, { headers: { 'content-type': 'text/event-stream' } });
  const ack = 'data: {"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{}}\n\n';
  const cut = await tagStreams(fakeFetch(() => sse(ack)).fetch).fetch(
    URL_,
    post({ jsonrpc: '2.0', id: 7, method: 'subscriptions/listen', params: { _meta: META, notifications: {} } }),
  );
  const text = await cut.text();
  assert.ok(text.startsWith(ack), 'what the server sent comes first, unchanged');
  const added = /data: (.*)\n\n$/.exec(text)?.[1];
  const message = JSON.parse(added ?? 'null') as { id?: unknown; error?: { code?: number } };
  assert.equal(message.id, 7);
  assert.equal(message.error?.code, -32011);

  const whole = `${ack}data: {"jsonrpc":"2.0","id":8,"result":{}}\n\n`;
  const done = await tagStreams(fakeFetch(() => sse(whole)).fetch).fetch(
    URL_,
    post({ jsonrpc: '2.0', id: 8, method: 'tools/list', params: { _meta: META } }),
  );
  assert.equal(await done.text(), whole);
});

test('cancelling a modern request still streaming closes its stream instead of sending notifications/cancelled', async () => {
  let push: ((chunk: string) => void) | undefined;
  const inner = fakeFetch((seen) => {
    // As a real fetch does: aborting its signal errors the body being read.
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        push = (chunk) => c.enqueue(new TextEncoder().encode(chunk));
        seen.signal?.addEventListener('abort', () => c.error(new DOMException('This operation was aborted', 'AbortError')));
      },
    });
    return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
  });
  const { fetch } = tagStreams(inner.fetch);
  const response = await fetch(URL_, post({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'slow', _meta: META } }));
  push?.('data: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":9,"progress":1}}\n\n');
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  await reader.read();
  const cancelled = await fetch(URL_, post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 9 } }));
  assert.equal(cancelled.status, 202);
  assert.equal(inner.seen.length, 1, 'the cancellation was not sent to the server');
  assert.equal(inner.seen[0]?.signal?.aborted, true, 'the request’s stream was closed');
  await assert.rejects(reader.read());

  // A cancellation of a request no longer streaming (or a legacy one) is sent as it is.
  await fetch(URL_, post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 9 } }));
  assert.equal(inner.seen.length, 2);
});
