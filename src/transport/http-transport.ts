/**
 * One Streamable HTTP session's transport: where each message the session sends goes.
 *
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
 * What the store keeps is bounded three ways: per session (`maxEventBytes`, the oldest go
 * first), for all sessions together (a shared {@link ByteBudget}: the largest store gives up
 * its oldest first), and per event: one larger than either bound is never kept (it would
 * push out everything else and still be too much). When a response to a request whose client
 * is away is not kept, or later dropped, a small JSON-RPC error for that request is kept in its
 * place, so a client that resumes the stream learns what became of its request instead of
 * waiting for a response that will not come. Events of a stream that can no longer be resumed
 * (delivered to its end, or forgotten) leave the store at once.
 *
 * Sessions that negotiated MCP 2025-11-25 or later get what that revision describes (SEP-1699,
 * "SSE polling"), as the official SDK's server gives them:
 * - every request's POST is an SSE stream from the start, opened with a priming event (an id,
 *   empty data) that carries `retry`: the client holds a `Last-Event-ID` before anything else,
 *   so whatever happens to the connection, the request's messages can be fetched again (a
 *   plain JSON answer lost on the way is lost for good);
 * - with a poll time set, a POST whose response has not gone out after it has its connection
 *   closed (the stream goes on): the client waits `retry` and resumes with GET and
 *   `Last-Event-ID`, and that GET keeps the stream to its response.
 * Older sessions keep the plain JSON answer (faster, one write) and get no priming event:
 * clients before 2025-11-25 may not take an event with empty data, which is why the SDK and
 * the spec tie priming to that version.
 */
import type { ServerResponse } from 'node:http';
import { RpcCode } from '../protocol/codes.js';
import { idKey, rpcError, type RequestId } from '../protocol/jsonrpc.js';
import { ByteBudget, type BudgetHolder } from './byte-budget.js';
import type { Transport } from './transport.js';

/** Events kept per session for resumption, whatever their size. */
export const MAX_STORED_EVENTS = 1024;

/** The first protocol revision with priming events and SSE polling (SEP-1699). */
export const POLLING_PROTOCOL_VERSION = '2025-11-25';

/** How a 2025-11-25 session's POST streams are primed and polled. */
export interface SsePolling {
  /** The `retry` of each priming event: how long a client waits before it reconnects, in ms. */
  retryMs: number;
  /**
   * A connection of a POST stream whose response has not gone out after this long is closed
   * (the stream is not: the client resumes it), in ms; 0 = never.
   */
  pollMs: number;
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
  /** The session's initialize: its response names the protocol version the session speaks. */
  readonly initialize: boolean;
}

interface StoredEvent {
  readonly stream: number;
  readonly seq: number;
  readonly text: string;
  readonly bytes: number;
  /** Written to a live stream at least once (the GET stream's kept events are not). */
  delivered: boolean;
  /** The response to this request (the stream's last event). */
  readonly answers?: RequestId;
}

/** A stream that can be resumed: the GET stream (0) or a POST that became SSE. */
interface StreamState {
  res: ServerResponse | null;
  /** Its response went out: after replay, a resumed stream ends. */
  done: boolean;
  /** Kept in place of its response when that was not kept (too large) or dropped: an error event. */
  lost?: { seq: number; text: string };
}

/** Finished POST streams kept for a client that lost them before their end. */
const MAX_UNCLAIMED_STREAMS = 64;

/** The GET stream's number. */
const STANDALONE = 0;

const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive' };

export class HttpTransport implements Transport, BudgetHolder {
  readonly kind = 'http' as const;
  onmessage: ((text: string) => void) | undefined;
  onclose: ((code: number) => void) | undefined;
  /** A request got its response after its client hung up: the session may be idle now. */
  onsettled: (() => void) | undefined;
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
  /** The session negotiated 2025-11-25 or later: its POSTs are primed SSE streams. */
  private polling = false;
  private readonly maxEventBytes: number;
  private readonly onended: (transport: HttpTransport) => void;
  /** Bytes of events kept by every session's store together (`EXAI_WS_HTTP_EVENTS_TOTAL_MAX_BYTES`). */
  private readonly budget: ByteBudget;
  private readonly sse: SsePolling;

  constructor(
    sessionId: string,
    maxEventBytes: number,
    onended: (transport: HttpTransport) => void,
    sse: SsePolling,
    budget: ByteBudget = new ByteBudget(Number.MAX_SAFE_INTEGER),
  ) {
    this.sessionId = sessionId;
    this.maxEventBytes = maxEventBytes;
    this.onended = onended;
    this.sse = sse;
    this.budget = budget;
  }

  /** Bytes of events this session's store keeps. */
  get keptBytes(): number {
    return this.eventBytes;
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
    if (final) {
      this.exchanges.delete(exchange.key);
      // Its client is away: no close event will tell the endpoint that this request settled.
      if (exchange.res === null) this.onsettled?.();
      if (exchange.initialize) this.polling = negotiated(text) >= POLLING_PROTOCOL_VERSION;
    }
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
      if (exchange.res !== null) this.openStream(exchange.res, exchange.headers);
    }
    this.emit(exchange.stream, text, written, final ? related : undefined);
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
    this.budget.release(this);
    this.onended(this);
    const onclose = this.onclose;
    this.onclose = undefined;
    onclose?.(code);
  }

  /**
   * Registers a POST's request before the session sees it, so that what the session sends for
   * it finds its response. `headers` go out with the first write (a new session's id);
   * `initialize` marks the session's initialize, whose answer is always plain JSON (a client
   * that loses it has no session to resume and simply initializes again).
   */
  expect(id: RequestId, res: ServerResponse, headers: Record<string, string>, initialize = false): void {
    const exchange: Exchange = { key: idKey(id), res, headersSent: false, stream: 0, headers, initialize };
    this.exchanges.set(exchange.key, exchange);
    if (this.polling) {
      // SEP-1699: the stream opens at once with its priming event, before the session has
      // even seen the request.
      exchange.headersSent = true;
      exchange.stream = this.nextStream++;
      this.streams.set(exchange.stream, { res, done: false });
      // Not flushed on their own: the headers go out in one write with the priming event.
      res.writeHead(200, { ...SSE_HEADERS, ...headers });
      this.prime(exchange.stream, res);
    }
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
    this.openStream(res, exchange.headers);
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
    this.openStream(res, {});
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
    const lost = stream.lost;
    if (stream.done && lost !== undefined && (after === undefined || lost.seq > after)) {
      res.write(sseEvent({ stream: streamId, seq: lost.seq, text: lost.text }));
    }
    if (stream.done) {
      res.end();
      this.forget(streamId);
    }
    return undefined;
  }

  private openStream(res: ServerResponse, headers: Record<string, string>): void {
    res.writeHead(200, { ...SSE_HEADERS, ...headers });
    res.flushHeaders();
  }

  /**
   * Writes a POST stream's priming event: an id the client can resume after, empty data, and
   * `retry`. It is not kept (nothing to replay), only its sequence number is taken.
   */
  private prime(streamId: number, res: ServerResponse): void {
    res.write(`id: ${streamId}-${this.nextSeq++}\nretry: ${this.sse.retryMs}\ndata: \n\n`);
    const stream = this.streams.get(streamId);
    if (stream) this.pollLater(stream, res);
  }

  /**
   * With a poll time set, closes a POST's own connection once it has been open that long
   * without the stream's end: the stream stays, kept events and all, for the client's GET with
   * `Last-Event-ID`. The daemon cannot know when the server behind it would close its own
   * stream (a stdio server has none), so the time is the daemon's. Only the POST's connection:
   * the GET that resumes the stream keeps it to its end, as the SDK's server does, so a request
   * costs one reconnection at most, and a client that resumes once (the conformance suite's
   * does) gets its response.
   */
  private pollLater(stream: StreamState, res: ServerResponse): void {
    if (this.sse.pollMs <= 0) return;
    const timer = setTimeout(() => {
      if (stream.res !== res || stream.done || res.writableEnded) return;
      stream.res = null;
      // The spec asks for a `retry` before such a close: the priming event on this connection
      // carried it.
      res.end();
    }, this.sse.pollMs);
    timer.unref();
    res.once('close', () => clearTimeout(timer));
  }

  /**
   * Writes one event to a stream (kept for resumption), or keeps it while the stream has no
   * connection. `answers`: the event is the response to that request, the stream's last.
   */
  private emit(streamId: number, text: string, written?: (error?: Error | null) => void, answers?: RequestId): void {
    const event: StoredEvent = { stream: streamId, seq: this.nextSeq++, text, bytes: Buffer.byteLength(text), delivered: false, answers };
    const kept = this.store(event);
    const res = this.streams.get(streamId)?.res;
    // A response destroyed under us (its client gone, its close event not yet run) takes no writes.
    if (res && !res.writableEnded && !res.destroyed) {
      event.delivered = true;
      res.write(sseEvent(event), () => written?.());
      return;
    }
    if (!kept) this.lose(event, `was too large to keep for resumption (limit ${this.keepLimit} bytes)`);
    written?.();
  }

  private finishStream(streamId: number): void {
    const stream = this.streams.get(streamId);
    if (!stream) return;
    stream.done = true;
    // A response destroyed under us counts as away (see emit): what it missed stays resumable.
    if (stream.res !== null && !stream.res.destroyed) {
      stream.res.end();
      this.forget(streamId);
      return;
    }
    // Finished while its client was away: kept for a resume, the oldest such ones forgotten.
    this.unclaimed.push(streamId);
    if (this.unclaimed.length > MAX_UNCLAIMED_STREAMS) this.forget(this.unclaimed.shift() as number);
  }

  /** A stream that can no longer be resumed: it goes, and its events leave the store. */
  private forget(streamId: number): void {
    this.streams.delete(streamId);
    if (!this.events.some((event) => event.stream === streamId)) return;
    const kept: StoredEvent[] = [];
    let freed = 0;
    for (const event of this.events) {
      if (event.stream === streamId) freed += event.bytes;
      else kept.push(event);
    }
    this.events = kept;
    this.eventBytes -= freed;
    this.budget.change(this, -freed);
  }

  /** The largest event a store keeps: its own bound, or the shared one if smaller. */
  private get keepLimit(): number {
    return Math.min(this.maxEventBytes, this.budget.maxBytes);
  }

  /**
   * Keeps an event within the store's bounds: the oldest go first, and past the shared budget
   * the largest store's oldest. False when the event alone is larger than a bound: not kept.
   */
  private store(event: StoredEvent): boolean {
    if (event.bytes > this.keepLimit) return false;
    this.events.push(event);
    this.eventBytes += event.bytes;
    this.budget.change(this, event.bytes);
    let drop = 0;
    while (drop < this.events.length - 1 && (this.eventBytes > this.maxEventBytes || this.events.length - drop > MAX_STORED_EVENTS)) {
      drop++;
    }
    this.dropOldest(drop, `was dropped to keep this session's stored events within their limit (${this.maxEventBytes} bytes)`);
    this.budget.enforce();
    return true;
  }

  /** The shared budget is past its bound and this store holds the most: its oldest events go. */
  giveWay(excessBytes: number): void {
    let drop = 0;
    let freed = 0;
    while (drop < this.events.length && freed < excessBytes) freed += (this.events[drop++] as StoredEvent).bytes;
    this.dropOldest(drop, `was dropped to keep the stored events of all sessions within their limit (${this.budget.maxBytes} bytes)`);
  }

  private dropOldest(count: number, why: string): void {
    if (count <= 0) return;
    let freed = 0;
    for (let i = 0; i < count; i++) {
      const event = this.events[i] as StoredEvent;
      freed += event.bytes;
      if (!event.delivered) this.lose(event, why);
    }
    this.events = this.events.slice(count);
    this.eventBytes -= freed;
    this.budget.change(this, -freed);
  }

  /**
   * A response its client has not received is not (or no longer) kept: a small error for the
   * same request is kept in its place, for a client that resumes the stream.
   */
  private lose(event: StoredEvent, why: string): void {
    if (event.answers === undefined) return;
    const stream = this.streams.get(event.stream);
    if (!stream) return;
    const error = rpcError(event.answers, RpcCode.INTERNAL_ERROR, `the result (${event.bytes} bytes) ${why}`);
    stream.lost = { seq: event.seq, text: JSON.stringify(error) };
  }
}

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

function sseEvent(event: Pick<StoredEvent, 'stream' | 'seq' | 'text'>): string {
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

/** The protocol version an initialize response names ('' when it names none: an error). */
function negotiated(text: string): string {
  try {
    const version = (JSON.parse(text) as { result?: { protocolVersion?: unknown } }).result?.protocolVersion;
    return typeof version === 'string' ? version : '';
  } catch {
    return '';
  }
}

/** The inverse of `idKey`. */
function keyToId(key: string): RequestId {
  return key.startsWith('s') ? key.slice(1) : Number(key.slice(1));
}
