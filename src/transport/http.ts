/**
 * Streamable HTTP (MCP 2025-03-26 .. 2025-11-25) on `/mcp`: one {@link HttpTransport} per MCP
 * session, fed by the {@link McpHttpEndpoint} that owns the HTTP side (headers, bodies, session
 * ids, streams). The session behind it is the same kind of session WebSocket clients get.
 *
 * Where a message goes:
 * - a request's response, and whatever belongs to that request before it (its progress, a
 *   server request it caused), goes on that request's POST. The POST stays a plain JSON
 *   response when nothing but the response goes out; it becomes an SSE stream the moment
 *   something must go out before the response, and the stream ends with the response;
 * - everything else (list changes, resource updates, log messages, server requests with no
 *   request of this client behind them) goes on the session's GET stream, kept while none is
 *   open and delivered when one opens.
 *
 * Every SSE event has an id `<stream>-<seq>` and is kept in a bounded per-session event store,
 * so a client that lost a stream resumes it with `Last-Event-ID` on a GET: the events after it
 * are written again, then the stream goes on (a POST stream until its response).
 *
 * Security (Host, Origin, token) is checked by the daemon's server before a request gets here.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RpcCode } from '../protocol/codes.js';
import { classify, clip, idKey, rpcError, type Classified, type RequestId } from '../protocol/jsonrpc.js';
import type { Transport } from './transport.js';

/** Protocol versions a client may name in `MCP-Protocol-Version`. */
export const HTTP_PROTOCOL_VERSIONS: readonly string[] = ['2025-11-25', '2025-06-18', '2025-03-26'];
/** The version assumed when a request names none (the spec's rule for old clients). */
const DEFAULT_PROTOCOL_VERSION = '2025-03-26';

/** Events kept per session for resumption, whatever their size. */
export const MAX_STORED_EVENTS = 1024;

/** What the endpoint needs of a session. */
export interface HttpSessionHost {
  readonly id: string;
  /** Requests of this session still running (an HTTP session with one is not idle). */
  readonly inflightCount: number;
  /** Takes one message from the client, already parsed. */
  take(message: Classified): void;
  /** Binds the session to its transport (once, before the first message). */
  attach(transport: Transport): unknown;
}

export type OpenSession = { ok: true; session: HttpSessionHost } | { ok: false; status: number; code: number; message: string };

export interface McpHttpEndpointOptions {
  /** Largest request body, in bytes (`EXAI_WS_MAX_BYTES`). */
  maxBodyBytes: number;
  /** An HTTP session with no request in flight and no stream open ends after this long (`EXAI_WS_HTTP_IDLE_MS`). */
  idleMs: number;
  /** Bytes of SSE events kept per session for resumption (`EXAI_WS_HTTP_EVENTS_MAX_BYTES`). */
  eventStoreBytes: number;
  /** Opens a session for an `initialize`: `server` names the one hosted server of `/mcp/NAME`. */
  open(server: string | undefined, client: { name: string; version: string }): OpenSession;
  /** Ends a session for good (`DELETE`, idle); the session closes its transport. */
  end(session: HttpSessionHost, reason: string): void;
  /** Counts a refused request (`http_bad_request`, `body_too_large`, ...). */
  reject(reason: string): void;
}

/** One POST's request, waiting for its response. */
interface Exchange {
  readonly key: string;
  /** The response this request's messages go to; null once the client hung up. */
  res: ServerResponse | null;
  /** Nothing written yet: the response may still be plain JSON. */
  headersSent: boolean;
  /** The SSE stream of this exchange, once it became one. */
  stream: number;
  /** Extra headers of the first write (the new session's id). */
  headers: Record<string, string>;
}

interface StoredEvent {
  readonly stream: number;
  readonly seq: number;
  readonly text: string;
  readonly bytes: number;
  /** Written to a live stream at least once (the GET stream's kept events are not). */
  delivered: boolean;
}

/** A stream that can be resumed: the GET stream (0) or a POST that became SSE. */
interface StreamState {
  res: ServerResponse | null;
  /** Its response went out: after replay, a resumed stream ends. */
  done: boolean;
}

/** Finished POST streams kept for a client that lost them before their end. */
const MAX_UNCLAIMED_STREAMS = 64;

/** The GET stream's number. */
const STANDALONE = 0;

const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive' };

export class HttpTransport implements Transport {
  readonly kind = 'http' as const;
  onmessage: ((text: string) => void) | undefined;
  onclose: ((code: number) => void) | undefined;
  /** Last time a request of this session arrived or a stream closed, for the idle rule. */
  lastActiveMs = Date.now();
  readonly sessionId: string;
  private readonly exchanges = new Map<string, Exchange>();
  private readonly streams = new Map<number, StreamState>([[STANDALONE, { res: null, done: false }]]);
  private events: StoredEvent[] = [];
  private eventBytes = 0;
  private nextStream = 1;
  /** Finished streams whose client was gone, oldest first. */
  private unclaimed: number[] = [];
  private nextSeq = 1;
  private closed = false;
  private readonly maxEventBytes: number;
  private readonly onended: (transport: HttpTransport) => void;

  constructor(sessionId: string, maxEventBytes: number, onended: (transport: HttpTransport) => void) {
    this.sessionId = sessionId;
    this.maxEventBytes = maxEventBytes;
    this.onended = onended;
  }

  get open(): boolean {
    return !this.closed;
  }

  /**
   * Unwritten bytes of the session's open streams together: a client that stops reading one
   * (a POST stream flooded with progress, or its GET stream) gets its notifications dropped
   * like a WebSocket client that stops reading.
   */
  get bufferedBytes(): number {
    let bytes = 0;
    for (const stream of this.streams.values()) bytes += stream.res?.writableLength ?? 0;
    return bytes;
  }

  /** True while a request is waiting for its response or a stream is open. */
  get busy(): boolean {
    if (this.exchanges.size > 0) return true;
    for (const stream of this.streams.values()) if (stream.res !== null) return true;
    return false;
  }

  /** The request `id` is waiting for its response on a POST. */
  waiting(id: RequestId): boolean {
    return this.exchanges.has(idKey(id));
  }

  send(text: string, related: RequestId | undefined, written?: (error?: Error | null) => void): void {
    if (this.closed) {
      written?.();
      return;
    }
    const key = related === undefined ? undefined : idKey(related);
    const exchange = key === undefined ? undefined : this.exchanges.get(key);
    if (!exchange) {
      this.emit(STANDALONE, text, written);
      return;
    }
    const final = isResponseTo(text, related as RequestId);
    if (final) this.exchanges.delete(exchange.key);
    if (exchange.res === null && !exchange.headersSent) {
      // Its client hung up before anything went out: a JSON response has no event id to
      // resume from, so nothing is kept (a disconnect is not a cancellation: the work went on).
      written?.();
      return;
    }
    if (!exchange.headersSent && final && exchange.res !== null) {
      // Nothing went before the response: plain JSON, no stream.
      exchange.headersSent = true;
      const res = exchange.res;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...exchange.headers });
      res.end(text, () => written?.());
      return;
    }
    if (!exchange.headersSent) {
      exchange.headersSent = true;
      exchange.stream = this.nextStream++;
      this.streams.set(exchange.stream, { res: exchange.res, done: false });
      if (exchange.res !== null) this.openStream(exchange.res, exchange.stream, exchange.headers);
    }
    this.emit(exchange.stream, text, written);
    if (final) this.finishStream(exchange.stream);
  }

  /** Each POST is its own HTTP request: the in-flight limit and queue bound what a client sends. */
  pauseInput(): void {}

  resumeInput(): void {}

  /** Ends every stream and waiting POST; later requests with this session id get 404. Idempotent. */
  close(code = 1000, reason = 'session closed'): void {
    if (this.closed) return;
    this.closed = true;
    for (const exchange of this.exchanges.values()) {
      const res = exchange.res;
      if (res === null) continue;
      if (!exchange.headersSent) {
        exchange.headersSent = true;
        writeJson(res, 200, rpcError(keyToId(exchange.key), RpcCode.CONNECTION_CLOSED, `connection closed: ${reason}`));
      } else res.end();
    }
    this.exchanges.clear();
    for (const stream of this.streams.values()) stream.res?.end();
    this.streams.clear();
    this.events = [];
    this.eventBytes = 0;
    this.onended(this);
    const onclose = this.onclose;
    this.onclose = undefined;
    onclose?.(code);
  }

  /**
   * Registers a POST's request before the session sees it, so that what the session sends for
   * it finds its response. `headers` go out with the first write (a new session's id).
   */
  expect(id: RequestId, res: ServerResponse, headers: Record<string, string>): void {
    const exchange: Exchange = { key: idKey(id), res, headersSent: false, stream: 0, headers };
    this.exchanges.set(exchange.key, exchange);
    res.on('close', () => {
      if (exchange.res !== res) return;
      exchange.res = null;
      this.lastActiveMs = Date.now();
      const stream = this.streams.get(exchange.stream);
      if (stream?.res === res) stream.res = null;
      // A request whose client hung up before anything went out cannot be resumed: the
      // session still answers it (a disconnect is not a cancellation), into the void.
    });
  }

  /**
   * The client cancelled request `id`: no response will come, so its POST ends now (an SSE
   * stream with what went out so far; an empty one when nothing did).
   */
  abandon(id: RequestId): void {
    const exchange = this.exchanges.get(idKey(id));
    if (!exchange) return;
    this.exchanges.delete(exchange.key);
    if (exchange.headersSent) {
      this.finishStream(exchange.stream);
      return;
    }
    exchange.headersSent = true;
    const res = exchange.res;
    if (res === null) return;
    this.openStream(res, 0, exchange.headers);
    res.end();
  }

  /**
   * Opens (or resumes, after `lastEventId`) a GET stream. Returns an HTTP status when it
   * cannot: 409 while the session's GET stream is already open.
   */
  listen(res: ServerResponse, lastEventId: string | undefined): number | undefined {
    const resumed = parseEventId(lastEventId);
    const streamId = resumed && this.streams.has(resumed.stream) ? resumed.stream : STANDALONE;
    const stream = this.streams.get(streamId);
    if (!stream) return 404;
    if (stream.res !== null && !stream.res.writableEnded) return 409;
    stream.res = res;
    this.lastActiveMs = Date.now();
    this.openStream(res, streamId, {});
    res.on('close', () => {
      if (stream.res === res) stream.res = null;
      this.lastActiveMs = Date.now();
    });
    const after = resumed && resumed.stream === streamId ? resumed.seq : undefined;
    for (const event of this.events) {
      if (event.stream !== streamId) continue;
      if (after !== undefined ? event.seq <= after : event.delivered) continue;
      event.delivered = true;
      res.write(sseEvent(event));
    }
    if (stream.done) {
      res.end();
      this.streams.delete(streamId);
    }
    return undefined;
  }

  private openStream(res: ServerResponse, _stream: number, headers: Record<string, string>): void {
    res.writeHead(200, { ...SSE_HEADERS, ...headers });
    res.flushHeaders();
  }

  /** Writes one event to a stream (kept for resumption), or keeps it while the stream has no connection. */
  private emit(streamId: number, text: string, written?: (error?: Error | null) => void): void {
    const event: StoredEvent = { stream: streamId, seq: this.nextSeq++, text, bytes: Buffer.byteLength(text), delivered: false };
    this.store(event);
    const res = this.streams.get(streamId)?.res;
    if (res && !res.writableEnded) {
      event.delivered = true;
      res.write(sseEvent(event), () => written?.());
      return;
    }
    written?.();
  }

  private finishStream(streamId: number): void {
    const stream = this.streams.get(streamId);
    if (!stream) return;
    stream.done = true;
    if (stream.res !== null) {
      stream.res.end();
      this.streams.delete(streamId);
      return;
    }
    // Finished while its client was away: kept for a resume, the oldest such ones forgotten.
    this.unclaimed.push(streamId);
    if (this.unclaimed.length > MAX_UNCLAIMED_STREAMS) this.streams.delete(this.unclaimed.shift() as number);
  }

  /** Keeps an event within the store's bounds: the oldest go first. */
  private store(event: StoredEvent): void {
    this.events.push(event);
    this.eventBytes += event.bytes;
    let drop = 0;
    while (drop < this.events.length - 1 && (this.eventBytes > this.maxEventBytes || this.events.length - drop > MAX_STORED_EVENTS)) {
      this.eventBytes -= (this.events[drop] as StoredEvent).bytes;
      drop++;
    }
    if (drop > 0) this.events = this.events.slice(drop);
  }
}

/**
 * The `/mcp` endpoint: sessions by id, the HTTP rules of Streamable HTTP, and the idle rule.
 */
export class McpHttpEndpoint {
  private readonly options: McpHttpEndpointOptions;
  private readonly sessions = new Map<string, { transport: HttpTransport; session: HttpSessionHost }>();
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(options: McpHttpEndpointOptions) {
    this.options = options;
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Handles one request to `/mcp` or `/mcp/NAME` (`server`), already past Host, Origin and token. */
  handle(req: IncomingMessage, res: ServerResponse, server: string | undefined): void {
    const version = header(req, 'mcp-protocol-version');
    if (version !== undefined && !HTTP_PROTOCOL_VERSIONS.includes(version)) {
      return this.refuse(
        res,
        400,
        RpcCode.INVALID_REQUEST,
        `Bad Request: unsupported MCP-Protocol-Version ${clip(version, 40)} (supported: ${HTTP_PROTOCOL_VERSIONS.join(', ')})`,
      );
    }
    switch (req.method) {
      case 'POST':
        return this.post(req, res, server);
      case 'GET':
        return this.get(req, res);
      case 'DELETE':
        return this.delete(req, res);
      default:
        res.setHeader('allow', 'GET, POST, DELETE');
        return this.refuse(res, 405, RpcCode.INVALID_REQUEST, 'Method not allowed: use POST, GET or DELETE');
    }
  }

  /** Ends every session's streams (shutdown closes the sessions themselves first). */
  close(): void {
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.idleTimer = undefined;
    for (const { transport } of [...this.sessions.values()]) transport.close(1001, 'daemon shutting down');
  }

  private post(req: IncomingMessage, res: ServerResponse, server: string | undefined): void {
    const type = header(req, 'content-type') ?? '';
    if (!/^application\/json\b/i.test(type)) {
      return this.refuse(res, 415, RpcCode.INVALID_REQUEST, 'Unsupported Media Type: Content-Type must be application/json');
    }
    if (!accepts(req, 'application/json') || !accepts(req, 'text/event-stream')) {
      return this.refuse(res, 406, RpcCode.INVALID_REQUEST, 'Not Acceptable: Accept must list application/json and text/event-stream');
    }
    const max = this.options.maxBodyBytes;
    const declared = Number(header(req, 'content-length'));
    if (Number.isFinite(declared) && declared > max) return this.tooLarge(req, res, max);
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > max) {
        over = true;
        chunks.length = 0;
        this.tooLarge(req, res, max);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!over) this.message(req, res, server, Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', () => res.destroy());
  }

  private message(req: IncomingMessage, res: ServerResponse, server: string | undefined, body: string): void {
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch {
      this.options.reject('invalid_message');
      return this.refuse(res, 400, RpcCode.PARSE_ERROR, 'Parse error: the body is not valid JSON');
    }
    const c = classify(value);
    if (c.kind === 'invalid') {
      this.options.reject('invalid_message');
      return writeJson(res, 400, c.reply);
    }
    const sessionId = header(req, 'mcp-session-id');
    if (c.kind === 'request' && c.message.method === 'initialize') {
      if (sessionId !== undefined) {
        return this.refuse(
          res,
          400,
          RpcCode.INVALID_REQUEST,
          'Bad Request: initialize opens a new session; send it without Mcp-Session-Id',
        );
      }
      return this.initialize(res, server, c);
    }
    if (sessionId === undefined) {
      return this.refuse(res, 400, RpcCode.INVALID_REQUEST, 'Bad Request: Mcp-Session-Id header is required (initialize first)');
    }
    const entry = this.sessions.get(sessionId);
    if (!entry) return this.unknown(res);
    const { transport, session } = entry;
    transport.lastActiveMs = Date.now();
    if (c.kind !== 'request') {
      session.take(c);
      if (c.kind === 'notification' && c.message.method === 'notifications/cancelled') {
        // A cancelled request gets no response (MCP): its POST ends without one.
        const cancelled = c.message.params?.requestId;
        if (typeof cancelled === 'string' || typeof cancelled === 'number') transport.abandon(cancelled);
      }
      res.writeHead(202).end();
      return;
    }
    if (transport.waiting(c.message.id)) {
      this.options.reject('duplicate_id');
      return writeJson(
        res,
        409,
        rpcError(c.message.id, RpcCode.INVALID_REQUEST, `Invalid request: id ${clip(JSON.stringify(c.message.id))} is already in flight`),
      );
    }
    transport.expect(c.message.id, res, {});
    session.take(c);
  }

  private initialize(res: ServerResponse, server: string | undefined, c: Classified & { kind: 'request' }): void {
    const info = c.message.params?.clientInfo as { name?: unknown; version?: unknown } | undefined;
    const label = (value: unknown) => (typeof value === 'string' ? value.slice(0, 256) : 'unknown');
    const opened = this.options.open(server, { name: label(info?.name), version: label(info?.version) });
    if (!opened.ok) return this.refuse(res, opened.status, opened.code, opened.message);
    const { session } = opened;
    const transport = new HttpTransport(session.id, this.options.eventStoreBytes, (t) => {
      if (this.sessions.get(t.sessionId)?.transport === t) this.sessions.delete(t.sessionId);
    });
    this.sessions.set(session.id, { transport, session });
    session.attach(transport);
    this.watchIdle();
    transport.expect(c.message.id, res, { 'mcp-session-id': session.id });
    session.take(c);
  }

  private get(req: IncomingMessage, res: ServerResponse): void {
    if (!accepts(req, 'text/event-stream')) {
      return this.refuse(res, 406, RpcCode.INVALID_REQUEST, 'Not Acceptable: Accept must list text/event-stream');
    }
    const sessionId = header(req, 'mcp-session-id');
    if (sessionId === undefined) return this.refuse(res, 400, RpcCode.INVALID_REQUEST, 'Bad Request: Mcp-Session-Id header is required');
    const entry = this.sessions.get(sessionId);
    if (!entry) return this.unknown(res);
    const status = entry.transport.listen(res, header(req, 'last-event-id'));
    if (status === 409) return this.refuse(res, 409, RpcCode.INVALID_REQUEST, 'Conflict: this session already has a GET stream open');
    if (status !== undefined) return this.refuse(res, status, RpcCode.INVALID_REQUEST, 'Not Found: no such stream');
  }

  private delete(req: IncomingMessage, res: ServerResponse): void {
    const sessionId = header(req, 'mcp-session-id');
    if (sessionId === undefined) return this.refuse(res, 400, RpcCode.INVALID_REQUEST, 'Bad Request: Mcp-Session-Id header is required');
    const entry = this.sessions.get(sessionId);
    if (!entry) return this.unknown(res);
    this.sessions.delete(sessionId);
    this.options.end(entry.session, 'client_closed');
    entry.transport.close(1000, 'session deleted by the client');
    res.writeHead(200).end();
  }

  /** One timer for every HTTP session, running only while there are some. */
  private watchIdle(): void {
    if (this.idleTimer || this.options.idleMs <= 0) return;
    const every = Math.max(100, Math.min(30_000, Math.floor(this.options.idleMs / 4)));
    this.idleTimer = setInterval(() => this.reapIdle(), every);
    this.idleTimer.unref();
  }

  private reapIdle(): void {
    const now = Date.now();
    for (const { transport, session } of [...this.sessions.values()]) {
      if (transport.busy || session.inflightCount > 0) {
        transport.lastActiveMs = now;
        continue;
      }
      if (now - transport.lastActiveMs < this.options.idleMs) continue;
      this.sessions.delete(transport.sessionId);
      this.options.end(session, 'http_idle');
      transport.close(1000, 'session idle');
    }
    if (this.sessions.size === 0 && this.idleTimer) {
      clearInterval(this.idleTimer);
      this.idleTimer = undefined;
    }
  }

  private tooLarge(req: IncomingMessage, res: ServerResponse, max: number): void {
    this.options.reject('body_too_large');
    // The rest of the body is not read: the connection goes with the answer.
    res.setHeader('connection', 'close');
    this.refuse(res, 413, RpcCode.INVALID_REQUEST, `Payload Too Large: the body exceeds the ${max}-byte limit`);
    req.resume();
  }

  private unknown(res: ServerResponse): void {
    this.refuse(res, 404, RpcCode.INVALID_REQUEST, 'Not Found: no such session (it ended or never existed); initialize a new one');
  }

  private refuse(res: ServerResponse, status: number, code: number, message: string): void {
    if (status >= 400 && status !== 404) this.options.reject(`http_${status}`);
    writeJson(res, status, rpcError(null, code, message));
  }
}

/** The protocol version a request speaks (its header, or the spec's default). */
export function requestProtocolVersion(req: IncomingMessage): string {
  return header(req, 'mcp-protocol-version') ?? DEFAULT_PROTOCOL_VERSION;
}

/** A new session id: a UUID, unguessable and visible ASCII as the spec requires. */
export function newSessionId(): string {
  return randomUUID();
}

function writeJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function accepts(req: IncomingMessage, type: string): boolean {
  const accept = header(req, 'accept');
  if (accept === undefined) return false;
  return accept.split(',').some((part) => {
    const media = part.split(';')[0]?.trim().toLowerCase();
    return media === type || media === '*/*' || media === `${type.split('/')[0]}/*`;
  });
}

function sseEvent(event: StoredEvent): string {
  return `id: ${event.stream}-${event.seq}\nevent: message\ndata: ${event.text}\n\n`;
}

function parseEventId(value: string | undefined): { stream: number; seq: number } | undefined {
  const match = value === undefined ? null : /^(\d{1,9})-(\d{1,15})$/.exec(value.trim());
  if (!match) return undefined;
  return { stream: Number(match[1]), seq: Number(match[2]) };
}

/**
 * True when `text` is the response to request `id`: the session writes responses as
 * `{"jsonrpc":"2.0","id":<id>,"result"|"error"...`, requests and notifications carry `method`.
 */
function isResponseTo(text: string, id: RequestId): boolean {
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

/** The inverse of `idKey`. */
function keyToId(key: string): RequestId {
  return key.startsWith('s') ? key.slice(1) : Number(key.slice(1));
}
