/**
 * Streamable HTTP the 2026-07-28 way, under the SDK's (2025) client transport: a `fetch` that
 * the transport is given (through the stream tagger, http-streams.ts) and that changes only
 * POSTs of modern requests (their `_meta` names 2026-07-28; a legacy server never sees one
 * after its era is known), and the cancellations of those requests:
 *
 * - the headers the modern era requires: `MCP-Protocol-Version`, `Mcp-Method` and, for
 *   `tools/call`, `resources/read` and `prompts/get`, `Mcp-Name` (the Base64 sentinel when the
 *   name is not plain ASCII) and, for `tools/call`, an `Mcp-Param-{Name}` header for each of the
 *   tool's parameters annotated `x-mcp-header` that the arguments give (x-mcp-header.ts), as the
 *   server's last `tools/list` described the tool;
 * - a `tools/list` answer is read on its way (learning each tool's header parameters) and loses
 *   the tools whose `x-mcp-header` annotations are invalid, as the spec requires of a client;
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
import type { FetchLike } from '@modelcontextprotocol/client';
import { RpcCode } from '../protocol/codes.js';
import { isObject, isRequestId, type RequestId } from '../protocol/jsonrpc.js';
import { MetaKey, NAMED_METHODS } from '../protocol/eras.js';
import { MODERN_VERSION, headerValue } from './modern.js';
import { headerParamsOf, paramHeaders, type HeaderParam } from './x-mcp-header.js';

interface ModernRequest {
  id: RequestId;
  method: string;
  params: Record<string, unknown>;
}

/** Told of each tool a `tools/list` answer loses, and why. */
export type RejectedTool = (tool: string, why: string) => void;

/**
 * Wraps `inner` so that modern requests travel as the 2026-07-28 Streamable HTTP binding says.
 * Use one per server: it keeps what that server's `tools/list` answers said of its tools.
 */
export function modernFetch(inner: FetchLike, onRejected: RejectedTool = () => {}): FetchLike {
  // The modern requests whose answers are still coming, by id: a cancellation aborts the stream.
  const streaming = new Map<RequestId, AbortController>();
  const tools = new ToolHeaders(onRejected);
  return async (url, init) => {
    if ((init?.method ?? 'GET').toUpperCase() !== 'POST' || typeof init?.body !== 'string') return inner(url, init);
    // A legacy server's requests (most bodies, some large) are not parsed again here: only a body
    // naming the modern version or a cancellation can be one this wrapper handles.
    if (!init.body.includes(MetaKey.PROTOCOL_VERSION) && !init.body.includes('notifications/cancelled')) return inner(url, init);
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
      response = await inner(url, { ...init, headers: modernHeaders(init.headers, request, tools), signal });
    } catch (error) {
      done();
      throw error;
    }
    if (!response.ok) {
      done();
      return errorAsAnswer(response, request.id);
    }
    const rewrite = request.method === 'tools/list' ? (result: Record<string, unknown>) => tools.learn(request, result) : undefined;
    if (!isEventStream(response.headers.get('content-type')) || response.body === null) {
      done();
      return rewrite ? rewriteJson(response, request.id, rewrite) : response;
    }
    const body = response.body.pipeThrough(answerAtEnd(request, done, rewrite));
    return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}

function modernHeaders(given: RequestInit['headers'], request: ModernRequest, tools: ToolHeaders): Headers {
  const headers = new Headers(given);
  headers.set('mcp-protocol-version', MODERN_VERSION);
  headers.set('mcp-method', request.method);
  // The field the revision names for the method: a resources/read's uri, whatever else it carries.
  const field = NAMED_METHODS.get(request.method);
  const name = field === undefined ? undefined : request.params[field];
  if (typeof name === 'string') headers.set('mcp-name', headerValue(name));
  if (request.method === 'tools/call' && typeof name === 'string')
    for (const [header, value] of paramHeaders(tools.of(name), request.params.arguments)) headers.set(header, value);
  return headers;
}

/**
 * Each tool's header parameters, by name, as the server's `tools/list` answers said: a page
 * updates the tools it names; a first page that is also the last (no cursor either way) is the
 * whole list and replaces what was known.
 */
class ToolHeaders {
  private byName = new Map<string, readonly HeaderParam[]>();

  constructor(private readonly onRejected: RejectedTool) {}

  /** The header parameters of a tool; none for a tool no answer described. */
  of(name: string): readonly HeaderParam[] {
    return this.byName.get(name) ?? [];
  }

  /** Learns one `tools/list` result and returns it without its invalid tools. */
  learn(request: ModernRequest, result: Record<string, unknown>): Record<string, unknown> {
    if (!Array.isArray(result.tools)) return result;
    const whole = request.params.cursor === undefined && result.nextCursor === undefined;
    const known = whole ? new Map<string, readonly HeaderParam[]>() : this.byName;
    const kept = result.tools.filter((tool: unknown) => {
      if (!isObject(tool) || typeof tool.name !== 'string') return true;
      const verdict = headerParamsOf(tool.inputSchema);
      if (verdict.ok) known.set(tool.name, verdict.params);
      else {
        known.delete(tool.name);
        this.onRejected(tool.name, verdict.why);
      }
      return verdict.ok;
    });
    this.byName = known;
    return kept.length === result.tools.length ? result : { ...result, tools: kept };
  }
}

/** A JSON answer with its result given to `rewrite`; any other body as it came. */
async function rewriteJson(response: Response, id: RequestId, rewrite: Rewrite): Promise<Response> {
  const text = await response.text();
  const message = parseJson(text);
  const headers = new Headers(response.headers);
  headers.delete('content-length');
  const init = { status: response.status, statusText: response.statusText, headers };
  if (!isObject(message) || message.id !== id || !isObject(message.result)) return new Response(text, init);
  return new Response(JSON.stringify({ ...message, result: rewrite(message.result) }), init);
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

type Rewrite = (result: Record<string, unknown>) => Record<string, unknown>;

/**
 * Passes an SSE answer on, and at its end, when no response to the request came on it, adds
 * one: a -32011 error saying the stream ended. Unchanged without `rewrite`; with it, each event
 * is written anew, the response's result as `rewrite` gives it.
 */
function answerAtEnd(request: ModernRequest, done: () => void, rewrite?: Rewrite): TransformStream<Uint8Array, Uint8Array> {
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  let answered = false;
  let out: TransformStreamDefaultController<Uint8Array> | undefined;
  const parser = createParser({
    onEvent: (event) => {
      let data = event.data;
      if (!answered && data.includes('"id"')) {
        const message = parseJson(data);
        if (isObject(message) && message.method === undefined && message.id === request.id) {
          answered = true;
          if (rewrite && isObject(message.result)) data = JSON.stringify({ ...message, result: rewrite(message.result) });
        }
      }
      if (rewrite) out?.enqueue(encoder.encode(sseEvent(event.id, event.event, data)));
    },
  });
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      out = controller;
      if (!answered || rewrite) parser.feed(decoder.decode(chunk, { stream: true }));
      if (!rewrite) controller.enqueue(chunk);
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
  if (!isObject(params) || !isObject(params._meta) || params._meta[MetaKey.PROTOCOL_VERSION] !== MODERN_VERSION) return undefined;
  return { id: message.id, method: message.method, params };
}

/** The request id a `notifications/cancelled` body names. */
function cancelledId(message: unknown): RequestId | undefined {
  if (!isObject(message) || message.method !== 'notifications/cancelled' || !isObject(message.params)) return undefined;
  const id = message.params.requestId;
  return isRequestId(id) ? id : undefined;
}

/** One SSE event, written out. */
function sseEvent(id: string | undefined, event: string | undefined, data: string): string {
  const lines = id === undefined ? [] : [`id: ${id}`];
  if (event !== undefined) lines.push(`event: ${event}`);
  for (const line of data.split('\n')) lines.push(`data: ${line}`);
  return `${lines.join('\n')}\n\n`;
}

/** True when a response's Content-Type is an SSE stream. */
export function isEventStream(contentType: string | null): boolean {
  return contentType?.split(';', 1)[0]?.trim().toLowerCase() === 'text/event-stream';
}

/** The JSON value of `text`, or undefined when it is not JSON. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
