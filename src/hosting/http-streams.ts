/**
 * Which SSE stream a server-to-client request came on, for hosted servers reached over
 * Streamable HTTP.
 *
 * A shared server sends the sampling, elicitation and roots requests a tool call causes on the
 * SSE stream that answers the POST of that `tools/call` (the spec asks it to; the SDK server does
 * it for `extra.sendRequest`). That stream is the one certain sign of which call, and so which
 * window, asked. The SDK's StreamableHTTPClientTransport reads every stream into one `onmessage`
 * and forgets where a message came from, so we wrap the `fetch` it is given: the body of an SSE
 * answer to a POST of one request is passed on byte for byte, in the same chunks, while a second
 * SSE parser reads along and notes "server request X came on the stream of client request Y".
 * The note is made before the chunk is handed on, so it exists by the time the transport's
 * `onmessage` fires for X.
 *
 * Tagging is best effort and never in the way: anything unexpected (a body that is not one
 * JSON-RPC request, an event that does not parse, an event too big to follow) only means no
 * note; the bytes flow on unchanged and unslowed. GET and DELETE, JSON answers and failed
 * answers are returned as the inner fetch gave them.
 */
import { createParser, type EventSourceMessage, type EventSourceParser } from 'eventsource-parser';
import type { FetchLike } from '@modelcontextprotocol/client';
import { isObject, isRequestId, type RequestId } from '../protocol/jsonrpc.js';
import { isEventStream, modernFetch, parseJson, type RejectedTool } from './modern-http.js';

/** Default bound on notes not yet taken; past it the oldest is dropped. */
export const MAX_TAGGED_REQUESTS = 4096;

/**
 * Default bound, in characters, on one SSE event the tagger follows. A bigger event (say a large
 * tool result) is skipped, so the tagger never holds more than this much of a stream at a time.
 */
export const MAX_TAGGED_EVENT_CHARS = 16 * 1024 * 1024;

export interface StreamTaggerOptions {
  /** Bound on untaken notes (positive integer); default {@link MAX_TAGGED_REQUESTS}. */
  maxTagged?: number;
  /** Bound on one followed SSE event in characters (positive integer); default {@link MAX_TAGGED_EVENT_CHARS}. */
  maxEventChars?: number;
  /** Told of each tool a modern `tools/list` answer loses for its invalid `x-mcp-header` annotations. */
  onRejectedTool?: RejectedTool;
}

export interface StreamTagger {
  /** Give it to the SDK's StreamableHTTPClientTransport as its `fetch` option. */
  fetch: FetchLike;
  /**
   * The id of the client request (as sent in the POST body) whose SSE response stream carried the
   * server-to-client request with this id; undefined when it came on the GET stream, in a JSON
   * body, or is unknown. Each answer is given once (the note is removed).
   */
  takeStreamOf(serverRequestId: RequestId): RequestId | undefined;
  /** Notes recorded and not yet taken (never more than `maxTagged`). */
  readonly size: number;
}

/**
 * Wraps `inner` (default: the global fetch, looked up at each call) so that server-to-client
 * requests can be traced to the POST whose SSE stream carried them, and 2026-07-28 requests
 * travel as their era's binding says (see modern-http.ts).
 *
 * Use one tagger per transport: server request ids are only unique within one server session,
 * and a note left untaken (the transport dropped the message) must not answer for a request of
 * a later session. Throws TypeError on an option that is not a positive integer.
 */
export function tagStreams(inner?: FetchLike, options: StreamTaggerOptions = {}): StreamTagger {
  const maxTagged = positiveInteger('maxTagged', options.maxTagged ?? MAX_TAGGED_REQUESTS);
  const maxEventChars = positiveInteger('maxEventChars', options.maxEventChars ?? MAX_TAGGED_EVENT_CHARS);
  // Under the tagging, modern requests travel the 2026-07-28 way (modern-http.ts).
  const baseFetch: FetchLike = modernFetch(inner ?? ((url, init) => fetch(url, init)), options.onRejectedTool);
  // Map keeps insertion order, so its first key is the oldest note.
  const notes = new Map<RequestId, RequestId>();

  const note = (serverRequestId: RequestId, clientRequestId: RequestId): void => {
    notes.delete(serverRequestId);
    notes.set(serverRequestId, clientRequestId);
    while (notes.size > maxTagged) {
      const oldest = notes.keys().next();
      if (oldest.done === true) break;
      notes.delete(oldest.value);
    }
  };

  const tagged: FetchLike = async (url, init) => {
    const response = await baseFetch(url, init);
    if ((init?.method ?? 'GET').toUpperCase() !== 'POST' || !response.ok || response.body === null) return response;
    if (!isEventStream(response.headers.get('content-type'))) return response;
    const clientRequestId = soleRequestId(init?.body);
    if (clientRequestId === undefined) return response;
    const piped = response.body.pipeThrough(follow(maxEventChars, (serverRequestId) => note(serverRequestId, clientRequestId)));
    return new Response(piped, { status: response.status, statusText: response.statusText, headers: response.headers });
  };

  return {
    fetch: tagged,
    takeStreamOf(serverRequestId) {
      const clientRequestId = notes.get(serverRequestId);
      notes.delete(serverRequestId);
      return clientRequestId;
    },
    get size() {
      return notes.size;
    },
  };
}

/**
 * A pass-through stream that calls `onRequest` for each JSON-RPC request event in the SSE bytes
 * going by, before the chunk that completes the event is passed on.
 */
function follow(maxEventChars: number, onRequest: (id: RequestId) => void): TransformStream<Uint8Array, Uint8Array> {
  const decoder = new TextDecoder();
  let overflowed = false;
  // Once the parser misbehaves this stream is no longer followed; its bytes still flow.
  let broken = false;
  const parser: EventSourceParser = createParser({
    maxBufferSize: maxEventChars,
    onEvent: (event) => {
      const id = requestIdOf(event);
      if (id !== undefined) onRequest(id);
    },
    onError: (error) => {
      if (error.type === 'max-buffer-size-exceeded') overflowed = true;
    },
  });
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      if (!broken) {
        try {
          parser.feed(decoder.decode(chunk, { stream: true }));
          if (overflowed) {
            // Resume at the next line; the rest of the oversized event reads as unknown fields.
            overflowed = false;
            parser.reset();
          }
        } catch {
          broken = true;
        }
      }
      controller.enqueue(chunk);
    },
  });
}

/** The id of the server request an SSE event carries, read the way the SDK transport reads it. */
function requestIdOf(event: EventSourceMessage): RequestId | undefined {
  // The transport delivers only unnamed and `message` events; a note for any other would never be taken.
  if (event.event !== undefined && event.event !== 'message') return undefined;
  // Cheap test first, so large results are not parsed a second time.
  if (!event.data.includes('"method"')) return undefined;
  const message = parseJson(event.data);
  if (!isObject(message) || typeof message.method !== 'string') return undefined;
  return isRequestId(message.id) ? message.id : undefined;
}

/** The id of the one request in a POST body, or undefined when there is none or more than one. */
function soleRequestId(body: RequestInit['body']): RequestId | undefined {
  if (typeof body !== 'string') return undefined;
  const parsed = parseJson(body);
  const messages: unknown[] = Array.isArray(parsed) ? parsed : [parsed];
  const ids = messages.filter(isObject).flatMap((m) => (typeof m.method === 'string' && isRequestId(m.id) ? [m.id] : []));
  return ids.length === 1 ? ids[0] : undefined;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new TypeError(`${name} must be a positive integer, got ${String(value)}`);
  return value;
}
