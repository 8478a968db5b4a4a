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
 * What the store keeps is bounded (sse-store.ts). When a response to a request whose client
 * is away is not kept, or later dropped, a small JSON-RPC error for that request is kept in its
 * place, so a client that resumes the stream learns what became of its request instead of
 * waiting for a response that will not come. Events of a stream that can no longer be resumed
 * (delivered to its end, or forgotten) leave the store at once.
 *
 * Sessions that negotiated MCP 2025-11-25 or later get SSE polling (sse-polling.ts): every
 * POST is a primed SSE stream from the start (a plain JSON answer lost on the way is lost for
 * good; a primed stream can be fetched again), and with a poll time set its connection is ended
 * while the request runs on; the GET that resumes the stream keeps it to its response. Older
 * sessions keep the plain JSON answer (faster, one write).
 */
import type { ServerResponse } from 'node:http';
import { RpcCode } from '../protocol/codes.js';
import { idKey, rpcError, type RequestId } from '../protocol/jsonrpc.js';
import { ByteBudget } from './byte-budget.js';
import { SSE_HEADERS, isResponseTo, keyToId, negotiated, parseEventId, sseEvent, writeJson } from './http-wire.js';
import { POLLING_PROTOCOL_VERSION, endAfterPoll, primingEvent, type SsePolling } from './sse-polling.js';
import { SseEventStore, type StoredEvent } from './sse-store.js';
import type { Transport } from './transport.js';

export { MAX_STORED_EVENTS } from './sse-store.js';
export { POLLING_PROTOCOL_VERSION, type SsePolling } from './sse-polling.js';

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
  /** The HTTP status of a response sent as plain JSON (the modern era's errors have their own); 200 when absent. */
  readonly statusOf?: ((text: string) => number) | undefined;
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

export class HttpTransport implements Transport {
  readonly kind = 'http' as const;
  onmessage: ((text: string) => void) | undefined;
  onclose: ((code: number) => void) | undefined;
  /** A request got its response after its client hung up: the session may be idle now. */
  onsettled: (() => void) | undefined;
  /** A request's response went out (or was dropped, its client gone). */
  onanswered: ((id: RequestId, text: string) => void) | undefined;
  /** Last time a request of this session arrived or a stream closed, for the idle rule. */
  lastActiveMs = Date.now();
  readonly sessionId: string;
  private readonly exchanges = new Map<string, Exchange>();
  private readonly streams = new Map<number, StreamState>([[STANDALONE, { res: null, done: false }]]);
  /** The events kept for resumption, within their bounds. */
  private readonly store: SseEventStore;
  private nextStream = 1;
  /** Finished streams whose client was gone, oldest first. */
  private unclaimed: number[] = [];
  private nextSeq = 1;
  private closed = false;
  /** The session negotiated 2025-11-25 or later: its POSTs are primed SSE streams. */
  private polling = false;
  private readonly onended: (transport: HttpTransport) => void;
  private readonly sse: SsePolling;

  /**
   * `maxEventBytes`: what this session's store keeps; `budget`: what every session's store keeps
   * together (`EXAI_WS_HTTP_EVENTS_TOTAL_MAX_BYTES`); `onended`: called once, when it closes.
   */
  constructor(
    sessionId: string,
    maxEventBytes: number,
    onended: (transport: HttpTransport) => void,
    sse: SsePolling,
    budget: ByteBudget = new ByteBudget(Number.MAX_SAFE_INTEGER),
  ) {
    this.sessionId = sessionId;
    this.onended = onended;
    this.sse = sse;
    this.store = new SseEventStore(maxEventBytes, budget, (event, why) => this.lose(event, why));
  }

  /** Bytes of events this session's store keeps. */
  get keptBytes(): number {
    return this.store.keptBytes;
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
      if (this.onanswered) queueMicrotask(() => this.onanswered?.(related as RequestId, text));
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
      const status = exchange.statusOf?.(text) ?? 200;
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...exchange.headers });
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
    this.store.clear();
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
  expect(
    id: RequestId,
    res: ServerResponse,
    headers: Record<string, string>,
    initialize = false,
    statusOf?: (text: string) => number,
  ): void {
    const exchange: Exchange = { key: idKey(id), res, headersSent: false, stream: 0, headers, initialize, statusOf };
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
    for (const event of this.store.of(streamId)) {
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
   * Writes a POST stream's priming event (sse-polling.ts) and, with a poll time set, ends its
   * connection if the stream is still open then. The event is not kept (nothing to replay), only
   * its sequence number is taken.
   */
  private prime(streamId: number, res: ServerResponse): void {
    res.write(primingEvent(streamId, this.nextSeq++, this.sse.retryMs));
    const stream = this.streams.get(streamId);
    if (!stream) return;
    endAfterPoll(res, this.sse.pollMs, () => {
      if (stream.res !== res || stream.done) return false;
      stream.res = null;
      return true;
    });
  }

  /**
   * Writes one event to a stream (kept for resumption), or keeps it while the stream has no
   * connection. `answers`: the event is the response to that request, the stream's last.
   */
  private emit(streamId: number, text: string, written?: (error?: Error | null) => void, answers?: RequestId): void {
    const event: StoredEvent = { stream: streamId, seq: this.nextSeq++, text, bytes: Buffer.byteLength(text), delivered: false, answers };
    const kept = this.store.keep(event);
    const res = this.streams.get(streamId)?.res;
    // A response destroyed under us (its client gone, its close event not yet run) takes no writes.
    if (res && !res.writableEnded && !res.destroyed) {
      event.delivered = true;
      res.write(sseEvent(event), () => written?.());
      return;
    }
    if (!kept) this.lose(event, `was too large to keep for resumption (limit ${this.store.keepLimit} bytes)`);
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
    this.store.forget(streamId);
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
