/**
 * Streamable HTTP the 2026-07-28 way, under the SDK's (2025) client transport: a `fetch` that
 * the transport is given (through the stream tagger, http-streams.ts) and that changes only
 * POSTs of modern requests (their `_meta` names 2026-07-28; a legacy server never sees one
 * after its era is known), and the cancellations of those requests:
 *
 * - the headers the modern era requires: `MCP-Protocol-Version`, `Mcp-Method` and, for
 *   `tools/call`, `resources/read` and `prompts/get`, `Mcp-Name` (the Base64 sentinel when the
 *   name is not plain ASCII);
 * - a 4xx whose body is a JSON-RPC error (a modern server's HeaderMismatch, Unsupported
 *   ProtocolVersion, ...) is handed to the transport as that error's answer (HTTP 200), so the
 *   call, and a `server/discover` probe, get the error itself rather than "Error POSTing";
 * - an SSE answer that ends without the request's response (a listen stream the server or a
 *   proxy closed) gets a JSON-RPC error answer at its end, so the call ends instead of waiting
 *   forever (modern streams are not resumed);
 * - `notifications/cancelled` for a modern request whose answer is still streaming is not sent:
 *   closing that stream is the cancellation in this era, so the stream is aborted instead and
 *   the transport is told 202 Accepted.
 *
 * Anything else, legacy traffic included, goes to the inner fetch as it is.
 */
import { createParser } from 'eventsource-parser';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import { RpcCode } from '../protocol/codes.js';
import { isObject, type RequestId } from '../protocol/jsonrpc.js';
import { META_PROTOCOL_VERSION, MODERN_VERSION, headerValue } from './modern.js';

/** The methods whose `params.name` or `params.uri` goes in the `Mcp-Name` header. */
const NAMED_METHODS: ReadonlySet<string> = new Set(['tools/call', 'resources/read', 'prompts/get']);

interface ModernRequest {
  id: RequestId;
  method: string;
  params: Record<string, unknown>;
}

/** Wraps `inner` so that modern requests travel as the 2026-07-28 Streamable HTTP binding says. */
export function modernFetch(inner: FetchLike): FetchLike {
  // The modern requests whose answers are still coming, by id: a cancellation aborts the stream.
  const streaming = new Map<RequestId, AbortController>();
  return async (url, init) => {
    if ((init?.method ?? 'GET').toUpperCase() !== 'POST' || typeof init?.body !== 'string') return inner(url, init);
    const message = parseJson(init.body);
    const cancelled = cancelledId(message);
    const stream = cancelled === undefined ? undefined : streaming.get(cancelled);
    if (stream && cancelled !== undefined) {
      streaming.delete(cancelled);
      stream.abort();
      return new Response(null, { status: 202 });
    }
    const request = modernRequest(message);
    if (!request) return inner(url, init);
    // Aborted by a cancellation of this request, or by the transport's own signal (it closes). An
    // own controller that follows the transport's, rather than AbortSignal.any (whose composite
    // signals some Node 20 releases could collect early), and lets go of it once done.
    const abort = new AbortController();
    const outer = init.signal ?? undefined;
    const follow = () => abort.abort(outer?.reason);
    outer?.addEventListener('abort', follow, { once: true });
    streaming.set(request.id, abort);
    const done = () => {
      outer?.removeEventListener('abort', follow);
      if (streaming.get(request.id) === abort) streaming.delete(request.id);
    };
    abort.signal.addEventListener('abort', done, { once: true });
    const signal = abort.signal;
    let response: Response;
    try {
      response = await inner(url, { ...init, headers: modernHeaders(init.headers, request), signal });
    } catch (error) {
      done();
      throw error;
    }
    if (!response.ok) {
      done();
      return errorAsAnswer(response, request.id);
    }
    if (!isEventStream(response.headers.get('content-type')) || response.body === null) {
      done();
      return response;
    }
    const body = response.body.pipeThrough(answerAtEnd(request, done));
    return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}

function modernHeaders(given: RequestInit['headers'], request: ModernRequest): Headers {
  const headers = new Headers(given);
  headers.set('mcp-protocol-version', MODERN_VERSION);
  headers.set('mcp-method', request.method);
  const name = request.params.name ?? request.params.uri;
  if (NAMED_METHODS.has(request.method) && typeof name === 'string') headers.set('mcp-name', headerValue(name));
  return headers;
}

/**
 * A failed answer to a modern request: when its body is a JSON-RPC error, that error as the
 * request's answer (HTTP 200, the request's id); else the failure as it came.
 */
async function errorAsAnswer(response: Response, id: RequestId): Promise<Response> {
  const text = await response.text().catch(() => '');
  const parsed = parseJson(text);
  const error = isObject(parsed) ? parsed.error : undefined;
  if (isObject(error) && Number.isInteger(error.code) && typeof error.message === 'string') {
    const body = JSON.stringify({ jsonrpc: '2.0', id, error });
    return new Response(body, { status: 200, headers: { 'content-type': 'application/json' } });
  }
  return new Response(text, { status: response.status, statusText: response.statusText, headers: response.headers });
}

/**
 * Passes an SSE answer on unchanged, and at its end, when no response to the request came on
 * it, adds one: a -32011 error saying the stream ended.
 */
function answerAtEnd(request: ModernRequest, done: () => void): TransformStream<Uint8Array, Uint8Array> {
  const decoder = new TextDecoder();
  let answered = false;
  const parser = createParser({
    onEvent: (event) => {
      if (answered || !event.data.includes('"id"')) return;
      const message = parseJson(event.data);
      if (isObject(message) && message.method === undefined && message.id === request.id) answered = true;
    },
  });
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      if (!answered) parser.feed(decoder.decode(chunk, { stream: true }));
      controller.enqueue(chunk);
    },
    flush(controller) {
      done();
      if (answered) return;
      const error = { code: RpcCode.UPSTREAM_UNAVAILABLE, message: `the server ended the stream of ${request.method} without an answer` };
      controller.enqueue(new TextEncoder().encode(`\n\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: request.id, error })}\n\n`));
    },
  });
}

/** The request a POST body carries when it is one modern request. */
function modernRequest(message: unknown): ModernRequest | undefined {
  if (!isObject(message) || typeof message.method !== 'string' || !isRequestId(message.id)) return undefined;
  const params = message.params;
  if (!isObject(params) || !isObject(params._meta) || params._meta[META_PROTOCOL_VERSION] !== MODERN_VERSION) return undefined;
  return { id: message.id, method: message.method, params };
}

/** The request id a `notifications/cancelled` body names. */
function cancelledId(message: unknown): RequestId | undefined {
  if (!isObject(message) || message.method !== 'notifications/cancelled' || !isObject(message.params)) return undefined;
  const id = message.params.requestId;
  return isRequestId(id) ? id : undefined;
}

function isRequestId(value: unknown): value is RequestId {
  return typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value));
}

function isEventStream(contentType: string | null): boolean {
  return contentType?.split(';', 1)[0]?.trim().toLowerCase() === 'text/event-stream';
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
