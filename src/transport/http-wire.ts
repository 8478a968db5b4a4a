/**
 * The text of Streamable HTTP on the wire, with no state: request headers read, JSON bodies and
 * SSE events written, event ids parsed, and the cheap look at a message the transport needs to
 * route it (is it the response to this request? which version did initialize settle on?).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestId } from '../protocol/jsonrpc.js';

export const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive' };

/** Writes one JSON body with its status (or just ends a response whose headers went out). */
export function writeJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** One SSE event of a stream: id `<stream>-<seq>`, type `message`, the JSON-RPC text as data. */
export function sseEvent(event: { stream: number; seq: number; text: string }): string {
  return `id: ${event.stream}-${event.seq}\nevent: message\ndata: ${event.text}\n\n`;
}

/** The stream and sequence number of a `Last-Event-ID`; undefined when it is not one of ours. */
export function parseEventId(value: string | undefined): { stream: number; seq: number } | undefined {
  const match = value === undefined ? null : /^(\d{1,9})-(\d{1,15})$/.exec(value.trim());
  if (!match) return undefined;
  return { stream: Number(match[1]), seq: Number(match[2]) };
}

/**
 * True when `text` is the response to request `id`: the session writes responses as
 * `{"jsonrpc":"2.0","id":<id>,"result"|"error"...`, requests and notifications carry `method`.
 */
export function isResponseTo(text: string, id: RequestId): boolean {
  const prefix = `{"jsonrpc":"2.0","id":${JSON.stringify(id)},`;
  if (text.startsWith(prefix)) {
    const rest = text.slice(prefix.length);
    return rest.startsWith('"result"') || rest.startsWith('"error"');
  }
  // Any other layout: parse (rare; never on the hot path of the daemon's own messages).
  try {
    const value = JSON.parse(text) as { id?: unknown; method?: unknown };
    return value.method === undefined && value.id === id;
  } catch {
    return false;
  }
}

/** The protocol version an initialize response names ('' when it names none: an error). */
export function negotiated(text: string): string {
  try {
    const version = (JSON.parse(text) as { result?: { protocolVersion?: unknown } }).result?.protocolVersion;
    return typeof version === 'string' ? version : '';
  } catch {
    return '';
  }
}

/** The inverse of `idKey` (protocol/jsonrpc.ts). */
export function keyToId(key: string): RequestId {
  return key.startsWith('s') ? key.slice(1) : Number(key.slice(1));
}

/** A request header's first value. */
export function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** True when the request's `Accept` takes `type` (exactly, or by `*\/*` or `type/*`). */
export function accepts(req: IncomingMessage, type: string): boolean {
  const accept = header(req, 'accept');
  if (accept === undefined) return false;
  return accept.split(',').some((part) => {
    const media = part.split(';')[0]?.trim().toLowerCase();
    return media === type || media === '*/*' || media === `${type.split('/')[0]}/*`;
  });
}

/** The query of a request URL: all after the first `?` (a query may hold more, RFC 3986 3.4); '' when none. */
export function queryOf(url: string | undefined): string {
  const at = (url ?? '').indexOf('?');
  return at < 0 ? '' : (url as string).slice(at + 1);
}
