/**
 * Streamable HTTP (MCP 2025-03-26 .. 2025-11-25) on `/mcp`: the endpoint owns the HTTP side
 * (headers, bodies, session ids, the GET and DELETE methods, idle expiry) and gives each MCP
 * session an {@link HttpTransport} (http-transport.ts: where each message goes, SSE, resume).
 * The session behind it is the same kind of session WebSocket clients get.
 *
 * Shared limits live here, over all sessions: the bytes of request bodies being received
 * (past them a new body gets 503 with `Retry-After`), the bytes of SSE events kept for
 * resumption (a {@link ByteBudget} every transport reports to), and the idle sessions ordered
 * by last use, so that the least recently used one gives way when the session limit would
 * refuse a new session ({@link McpHttpEndpoint.evictIdle}).
 *
 * Security (Host, Origin, token) is checked by the daemon's server before a request gets here.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RpcCode } from '../protocol/codes.js';
import { clip, parseMessage, rpcError, type Classified, type RequestId } from '../protocol/jsonrpc.js';
import type { HttpSessionHost, OpenSession } from './http-session.js';
import { ByteBudget } from './byte-budget.js';
import { BodyIntake, DEFAULT_BODIES_MAX_BYTES } from './http-body.js';
import { HttpTransport, type SsePolling } from './http-transport.js';
import { accepts, header, writeJson } from './http-wire.js';
import { ModernHttp, isModernVersion, type HeldStates } from './http-modern.js';
import { unsupportedVersion } from '../protocol/eras.js';
import type { Selection } from '../protocol/hello.js';

export { HttpTransport, MAX_STORED_EVENTS, type SsePolling } from './http-transport.js';
export { DEFAULT_BODIES_MAX_BYTES } from './http-body.js';

/** SSE events kept for resumption by all HTTP sessions together, in bytes. */
export const DEFAULT_EVENTS_TOTAL_MAX_BYTES = 64 * 1024 * 1024;
/** How long a stateless request's session waits for the retry of its held call, unless told. */
export const DEFAULT_PARK_MS = 5 * 60_000;
/** What a POST refused for the bodies limit is told to wait before it tries again, in seconds. */
export const BODIES_RETRY_AFTER_S = 1;

/** Why the endpoint refused a request, for the metrics: `http_<status>` for a refusal by status. */
export type HttpRejectReason = 'invalid_message' | 'duplicate_id' | 'body_too_large' | 'bodies_full' | `http_${number}`;

/** Which era a POST is read in: by its `MCP-Protocol-Version`, or one served in neither. */
type PostEra = 'legacy' | 'modern' | 'unsupported';

/** Why the endpoint ends a session: the client's DELETE, idle expiry, room for a new session. */
export type HttpEndReason = 'client_closed' | 'http_idle' | 'http_session_limit' | 'request_answered';

/** Protocol versions a client may name in `MCP-Protocol-Version`. */
export const HTTP_PROTOCOL_VERSIONS: readonly string[] = ['2025-11-25', '2025-06-18', '2025-03-26'];

export type { HttpSessionHost, OpenSession } from './http-session.js';

export interface McpHttpEndpointOptions {
  /** Largest request body, in bytes (`EXAI_WS_MAX_BYTES`). */
  maxBodyBytes: number;
  /** An HTTP session with no request in flight and no stream open ends after this long (`EXAI_WS_HTTP_IDLE_MS`). */
  idleMs: number;
  /** Bytes of SSE events kept per session for resumption (`EXAI_WS_HTTP_EVENTS_MAX_BYTES`). */
  eventStoreBytes: number;
  /** Bytes of SSE events kept by all sessions together (`EXAI_WS_HTTP_EVENTS_TOTAL_MAX_BYTES`). */
  eventStoreTotalBytes?: number;
  /** Bytes of request bodies being received, all together (`EXAI_WS_BODIES_MAX_BYTES`). */
  bodiesMaxBytes?: number;
  /** Priming `retry` and poll time of 2025-11-25 sessions (`EXAI_WS_HTTP_RETRY_MS`, `EXAI_WS_HTTP_POLL_MS`). */
  sse: SsePolling;
  /** Calls held for their retry (2026-07-28 clients of legacy servers that ask them something). */
  held?: HeldStates;
  /** How long a stateless request's session waits for the retry of its held call (`EXAI_WS_CALL_TIMEOUT_MS` and a little). */
  parkMs?: number;
  /** Opens a session for an `initialize`: what it sees (`/mcp/NAME`, `?profile=NAME`). */
  open(selection: Selection, client: { name: string; version: string }): OpenSession;
  /** Ends a session for good (`DELETE`, idle, `http_session_limit`); the session closes its transport. */
  end(session: HttpSessionHost, reason: HttpEndReason): void;
  /** Counts a refused request (`http_400`, `body_too_large`, ...). */
  reject(reason: HttpRejectReason): void;
}

interface Entry {
  readonly transport: HttpTransport;
  readonly session: HttpSessionHost;
}

/**
 * The `/mcp` endpoint: sessions by id, the HTTP rules of Streamable HTTP, and the idle rule.
 */
export class McpHttpEndpoint {
  private readonly options: McpHttpEndpointOptions;
  private readonly sessions = new Map<string, Entry>();
  /**
   * Sessions with no request waiting for its response and no stream open, least recently used
   * first (a Map keeps insertion order: a session that settles again is deleted and re-added).
   * A session leaves it when a request or a GET stream arrives, and comes back when the last
   * of them settles, so taking the oldest is O(1).
   */
  private readonly idle = new Map<string, Entry>();
  private idleTimer: NodeJS.Timeout | undefined;
  /** SSE events kept by every session's transport together. */
  readonly eventBudget: ByteBudget;
  /** The request bodies being received, within their bounds. */
  private readonly bodies: BodyIntake;
  /** The modern era's requests: stateless, a session each while it runs. */
  private readonly modern: ModernHttp;

  constructor(options: McpHttpEndpointOptions) {
    this.options = options;
    this.eventBudget = new ByteBudget(options.eventStoreTotalBytes ?? DEFAULT_EVENTS_TOTAL_MAX_BYTES);
    this.bodies = new BodyIntake(options.maxBodyBytes, options.bodiesMaxBytes ?? DEFAULT_BODIES_MAX_BYTES);
    this.modern = new ModernHttp({
      sse: options.sse,
      held: options.held,
      parkMs: options.parkMs ?? DEFAULT_PARK_MS,
      eventBudget: this.eventBudget,
      open: (selection, client) => options.open(selection, client),
      end: (session) => options.end(session, 'request_answered'),
      refuse: (res, status, body) => this.refuseWith(res, status, body),
    });
  }

  /** Bytes of request bodies being received now, all together. */
  get receivingBytes(): number {
    return this.bodies.receivingBytes;
  }

  /** HTTP sessions that are idle (nothing in flight, no stream open), as far as the endpoint knows. */
  get idleCount(): number {
    return this.idle.size;
  }

  /**
   * Ends the least recently used idle HTTP session (reason `http_session_limit`) to make room for
   * a new one; false when there is none. Its client's next request gets 404 and it initializes
   * again, as the protocol allows. A session whose requests run on after the client cancelled
   * them is in use: it is passed over (and kept, as most recently used).
   */
  evictIdle(): boolean {
    const running: Entry[] = [];
    let evicted: Entry | undefined;
    for (const [id, entry] of this.idle) {
      this.idle.delete(id);
      if (!entry.transport.open || entry.transport.busy || this.sessions.get(id) !== entry) continue;
      if (entry.session.inflightCount > 0) {
        running.push(entry);
        continue;
      }
      evicted = entry;
      break;
    }
    for (const entry of running) this.idle.set(entry.session.id, entry);
    if (!evicted) return false;
    this.options.end(evicted.session, 'http_session_limit');
    evicted.transport.close(1000, 'session ended to make room for a new one (session limit)');
    return true;
  }

  /** Handles one request to `/mcp` or `/mcp/NAME` (`selection`), already past Host, Origin and token. */
  handle(req: IncomingMessage, res: ServerResponse, server: Selection): void {
    const version = header(req, 'mcp-protocol-version');
    if (isModernVersion(version)) {
      if (req.method === 'POST') return this.post(req, res, server, 'modern');
      // The modern era has no GET stream and no session to delete.
      res.setHeader('allow', 'POST');
      return this.refuse(res, 405, RpcCode.INVALID_REQUEST, `Method not allowed: protocol ${version} uses POST only`);
    }
    if (version !== undefined && !HTTP_PROTOCOL_VERSIONS.includes(version)) {
      // A POST's body is read first, so that the refusal names the request it refuses.
      if (req.method === 'POST') return this.post(req, res, server, 'unsupported');
      return this.unsupported(res, version, null);
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
    this.modern.close();
  }

  private post(req: IncomingMessage, res: ServerResponse, server: Selection, era: PostEra = 'legacy'): void {
    const type = header(req, 'content-type') ?? '';
    if (!/^application\/json\b/i.test(type)) {
      return this.refuse(res, 415, RpcCode.INVALID_REQUEST, 'Unsupported Media Type: Content-Type must be application/json');
    }
    if (!accepts(req, 'application/json') || !accepts(req, 'text/event-stream')) {
      return this.refuse(res, 406, RpcCode.INVALID_REQUEST, 'Not Acceptable: Accept must list application/json and text/event-stream');
    }
    this.bodies.read(req, {
      done: (body) => this.message(req, res, server, body, era),
      refused: (why) => (why === 'too_large' ? this.tooLarge(req, res) : this.bodiesFull(req, res)),
      failed: () => res.destroy(),
    });
  }

  private message(req: IncomingMessage, res: ServerResponse, server: Selection, body: string, era: PostEra): void {
    const c = parseMessage(body);
    if (c.kind === 'invalid') {
      this.options.reject('invalid_message');
      return writeJson(res, 400, c.reply);
    }
    if (era === 'modern') return this.modern.message(req, res, server, c);
    if (era === 'unsupported')
      return this.unsupported(res, header(req, 'mcp-protocol-version') ?? '', c.kind === 'request' ? c.message.id : null);
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
      this.settled(entry);
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
    this.inUse(entry, res);
    session.take(c);
  }

  private initialize(res: ServerResponse, server: Selection, c: Classified & { kind: 'request' }): void {
    const info = c.message.params?.clientInfo as { name?: unknown; version?: unknown } | undefined;
    const label = (value: unknown) => (typeof value === 'string' ? value.slice(0, 256) : 'unknown');
    const opened = this.options.open(server, { name: label(info?.name), version: label(info?.version) });
    if (!opened.ok) return this.refuse(res, opened.status, opened.code, opened.message);
    const { session } = opened;
    const transport = new HttpTransport(
      session.id,
      this.options.eventStoreBytes,
      (t) => {
        if (this.sessions.get(t.sessionId)?.transport !== t) return;
        this.sessions.delete(t.sessionId);
        this.idle.delete(t.sessionId);
      },
      this.options.sse,
      this.eventBudget,
    );
    const entry: Entry = { transport, session };
    // A response that goes out after its client hung up leaves no close event to see.
    transport.onsettled = () => this.settled(entry);
    this.sessions.set(session.id, entry);
    session.attach(transport);
    this.watchIdle();
    transport.expect(c.message.id, res, { 'mcp-session-id': session.id }, true);
    this.inUse(entry, res);
    session.take(c);
  }

  /** A request or stream of `entry` holds `res`: not idle until it settles. */
  private inUse(entry: Entry, res: ServerResponse): void {
    this.idle.delete(entry.session.id);
    res.once('close', () => this.settled(entry));
  }

  /** Something of `entry` ended: if nothing else is waiting or open, it is idle, and the most recently used. */
  private settled(entry: Entry): void {
    const id = entry.session.id;
    if (this.sessions.get(id) !== entry || entry.transport.busy) return;
    this.idle.delete(id);
    this.idle.set(id, entry);
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
    if (status === undefined) this.inUse(entry, res);
    if (status === 409) return this.refuse(res, 409, RpcCode.INVALID_REQUEST, 'Conflict: this session already has a GET stream open');
    if (status !== undefined) return this.refuse(res, status, RpcCode.INVALID_REQUEST, 'Not Found: no such stream');
  }

  private delete(req: IncomingMessage, res: ServerResponse): void {
    const sessionId = header(req, 'mcp-session-id');
    if (sessionId === undefined) return this.refuse(res, 400, RpcCode.INVALID_REQUEST, 'Bad Request: Mcp-Session-Id header is required');
    const entry = this.sessions.get(sessionId);
    if (!entry) return this.unknown(res);
    // Closing the transport (the session does it, and so does this) takes it out of the map.
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
      this.options.end(session, 'http_idle');
      transport.close(1000, 'session idle');
    }
    if (this.sessions.size === 0 && this.idleTimer) {
      clearInterval(this.idleTimer);
      this.idleTimer = undefined;
    }
  }

  private tooLarge(req: IncomingMessage, res: ServerResponse): void {
    this.options.reject('body_too_large');
    // The rest of the body is not read: the connection goes with the answer.
    res.setHeader('connection', 'close');
    this.refuse(res, 413, RpcCode.INVALID_REQUEST, `Payload Too Large: the body exceeds the ${this.bodies.maxBodyBytes}-byte limit`);
    req.resume();
  }

  /**
   * The bodies being received together would pass their limit: this one is refused with 503 and
   * `Retry-After` (413 would tell the client its body is too large, which it is not: the daemon
   * is busy, and the same request may be sent again in a moment). The others go on.
   */
  private bodiesFull(req: IncomingMessage, res: ServerResponse): void {
    this.options.reject('bodies_full');
    // The rest of the body is not read: the connection goes with the answer.
    res.setHeader('connection', 'close');
    res.setHeader('retry-after', String(BODIES_RETRY_AFTER_S));
    this.refuse(
      res,
      503,
      RpcCode.OVER_CAPACITY,
      `Service Unavailable: request bodies being received have reached their limit (${this.bodies.bodiesMaxBytes} bytes); try again shortly`,
    );
    req.resume();
  }

  /** -32022 and 400: the protocol version named is served in neither era. */
  private unsupported(res: ServerResponse, version: string, id: RequestId | null): void {
    const error = unsupportedVersion(version);
    this.refuseWith(res, 400, rpcError(id, error.code, `Bad Request: ${error.message}`, error.data));
  }

  private unknown(res: ServerResponse): void {
    this.refuse(res, 404, RpcCode.INVALID_REQUEST, 'Not Found: no such session (it ended or never existed); initialize a new one');
  }

  private refuse(res: ServerResponse, status: number, code: number, message: string): void {
    this.refuseWith(res, status, rpcError(null, code, message));
  }

  /** Every refusal of both eras: counted as `http_<status>` (a 404 is not), then answered with `body`. */
  private refuseWith(res: ServerResponse, status: number, body: object): void {
    if (status >= 400 && status !== 404) this.options.reject(`http_${status}`);
    writeJson(res, status, body);
  }
}
