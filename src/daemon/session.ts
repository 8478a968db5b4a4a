/**
 * One client's MCP session. It outlives its socket: while detached (socket gone, within the
 * resume grace) its requests keep running and their messages are held, to be delivered in
 * order when a client attaches with the same session id.
 *
 * Clients that send acks (hello `acks: true`) also get every frame numbered (1, 2, ... over
 * all the session's connections) and kept until acked, so a resume naming how many frames
 * the client received replays exactly the ones the lost connection did not deliver. Kept and
 * held frames share the hold limit; past it the oldest kept ones go, and a resume that needs
 * them is refused (`resumable`). Clients without acks keep no copies.
 *
 * Flow control: at most `maxInflight` requests run at once; up to `queueLimit` more wait in
 * FIFO order; past that a request is refused with -32010 at once. Notifications are never
 * queued, so `notifications/cancelled` overtakes the requests it cancels.
 */
import { RpcCode } from '../protocol/codes.js';
import { corkUntilTick, rawSocketOf } from '../protocol/cork.js';
import {
  clip,
  idKey,
  parseMessage,
  rpcError,
  trySerialize,
  type RequestId,
  type Answer,
  type RpcRequest,
  type RpcResponse,
} from '../protocol/jsonrpc.js';
import { ACK_PREFIX, parseAck } from '../protocol/hello.js';
import type { Hub, View } from '../core/hub.js';
import type { DaemonConfig } from './config.js';
import { Cancellation } from '../core/cancellation.js';
import { KeptFrames } from './kept.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { Router, type RouterPeer } from './router.js';

/**
 * What a session writes to: a `ws` WebSocket satisfies it, and so does the stdout adapter
 * of `exai-ws stdio`.
 */
export interface SessionSocket {
  readonly readyState: number;
  readonly OPEN: number;
  /** Bytes accepted by send() and not yet written out. */
  readonly bufferedAmount: number;
  /** Queues one text message; `cb` fires once it is written out. */
  send(text: string, cb: (error?: Error | null) => void): void;
  /** Stops reading input from the client (output backpressure). */
  pause(): void;
  resume(): void;
  close(code?: number, reason?: string): void;
}

export type SessionState = 'attached' | 'detached' | 'closed';

/** Outbound bytes buffered on a socket before the session stops reading from it. */
export const OUTPUT_HIGH_WATER_BYTES = 4 * 1024 * 1024;
export const OUTPUT_LOW_WATER_BYTES = 1024 * 1024;
/**
 * Outbound bytes buffered on a socket past which notifications to that client are dropped
 * (counted as `output_overflow`): a server flooding log or progress notifications at a client
 * that stopped reading must not grow the daemon without bound. Responses and requests still
 * go; they are bounded by the in-flight limits, and the client's input is paused meanwhile.
 */
export const NOTIFY_DROP_BYTES = 2 * OUTPUT_HIGH_WATER_BYTES;
/** The retry hint sent with -32010. */
export const RETRY_AFTER_MS = 100;

export interface SessionDeps {
  hub: Hub;
  config: DaemonConfig;
  metrics: Metrics;
  logger: Logger;
  /** Asks the owner to end this session (hold overflow). */
  expire(session: Session, reason: string): void;
}

interface Inflight {
  cancel: Cancellation;
  request: RpcRequest;
  receivedMs: number;
}

/** How a connection attaches (from its hello). */
export interface AttachOptions {
  /** The connection sends ack frames: frames are kept until acked. */
  acks?: boolean;
  /**
   * Frames the client already received in this session: the kept ones after it are written
   * again before the held ones. Must have passed {@link Session.resumable}.
   */
  received?: number;
}

export interface ClientLabel {
  name: string;
  version: string;
}

export class Session implements RouterPeer {
  readonly id: string;
  readonly createdAtMs = Date.now();
  readonly router: Router;
  client: ClientLabel;
  cwd: string | undefined;
  state: SessionState = 'detached';
  socket: SessionSocket | null = null;
  /** The client's process id, when its hello named one this daemon can see. */
  pid: number | undefined;

  private readonly deps: SessionDeps;
  private readonly inflight = new Map<string, Inflight>();
  private queue: { request: RpcRequest; receivedMs: number }[] = [];
  private held: string[] = [];
  private heldBytes = 0;
  private draining = false;
  private outputPaused = false;
  /** Notifications dropped since the client's socket filled up (see NOTIFY_DROP_BYTES). */
  private droppedNotifications = 0;
  /** Requests sent to the client on a server's behalf, by id, until it answers. */
  private readonly outgoing = new Map<string, { resolve: (outcome: Answer) => void; timer: NodeJS.Timeout }>();
  private nextOutgoingId = 1;
  /** The attached connection sends ack frames. */
  private acks = false;
  /** Sequence number of the last JSON-RPC frame written to a socket of this session. */
  private sentSeq = 0;
  /** Frames written and not acked, while the connection sends acks; null when none (idle memory). */
  private kept: KeptFrames | null = null;
  /** Kept frames dropped unacked to stay within the hold limit (logged once). */
  private trimmed = 0;

  constructor(id: string, client: ClientLabel, deps: SessionDeps, view: View = {}) {
    this.id = id;
    this.client = client;
    this.deps = deps;
    this.router = new Router(deps.hub, this, { callTimeoutMs: deps.config.callTimeoutMs, sessionId: id, view });
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  get queuedCount(): number {
    return this.queue.length;
  }

  /** Frames written to this session's sockets so far (the last sequence number). */
  get sentCount(): number {
    return this.sentSeq;
  }

  /**
   * True when a client that received `received` frames can be given every later one exactly
   * once: not more than were sent, and every frame after it still kept.
   */
  resumable(received: number): boolean {
    const oldest = this.kept?.oldestSeq ?? this.sentSeq + 1;
    return received <= this.sentSeq && received >= oldest - 1;
  }

  /**
   * Binds a socket: writes the kept frames after `received` again (see {@link resumable}),
   * then every held message, in order. Returns how many kept frames were written again.
   */
  attach(socket: SessionSocket, options: AttachOptions = {}): number {
    this.socket = socket;
    this.state = 'attached';
    let replayed = 0;
    if (options.received !== undefined && this.kept !== null) {
      for (const text of this.kept.after(options.received)) {
        this.write(socket, text, Buffer.byteLength(text));
        replayed++;
      }
    }
    this.acks = options.acks === true;
    if (!this.acks) this.kept = null; // nobody will ack them
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (const text of held) this.sendText(text);
    return replayed;
  }

  /** Unbinds the socket if it is still this session's; messages are held from now on. */
  detach(socket: SessionSocket): boolean {
    if (this.socket !== socket) return false;
    this.socket = null;
    this.outputPaused = false;
    if (this.state === 'attached') this.state = 'detached';
    return true;
  }

  /** Handles one text frame from the client. Bad input costs only its own reply. */
  receive(text: string): void {
    if (this.state === 'closed') return;
    // Acks come often: recognised by their first bytes, never parsed as JSON. A malformed
    // one, or one on a connection that does not send acks, is an invalid message below.
    if (this.acks && text.startsWith(ACK_PREFIX)) {
      const received = parseAck(text);
      if (received !== undefined) {
        this.ack(received);
        return;
      }
    }
    const c = parseMessage(text);
    switch (c.kind) {
      case 'invalid':
        this.deps.metrics.reject('invalid_message');
        this.send(c.reply);
        return;
      case 'request':
        this.admit(c.message, performance.now());
        return;
      case 'notification':
        if (c.message.method === 'notifications/cancelled') {
          this.cancel(c.message.params?.requestId);
        } else {
          this.router.notify(c.message);
        }
        return;
      case 'response': {
        // A reply to a request a server sent through this session (sampling, elicitation, roots).
        const id = c.message.id;
        const waiting = id === null ? undefined : this.outgoing.get(idKey(id));
        if (!waiting) return;
        this.outgoing.delete(idKey(id as RequestId));
        clearTimeout(waiting.timer);
        waiting.resolve('error' in c.message ? { error: c.message.error } : { result: c.message.result });
        return;
      }
    }
  }

  /**
   * Sends a request to the client on a server's behalf and resolves with its answer: the
   * client's result or error, -32001 past `timeoutMs`, -32000 if the session ends first.
   */
  request(method: string, params: Record<string, unknown> | undefined, timeoutMs: number): Promise<Answer> {
    if (this.state === 'closed')
      return Promise.resolve({ error: { code: RpcCode.CONNECTION_CLOSED, message: 'the client session is closed' } });
    const id = `exai-ws-${this.nextOutgoingId++}`;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.outgoing.delete(idKey(id));
        resolve({ error: { code: RpcCode.REQUEST_TIMEOUT, message: `the client did not answer ${method} within ${timeoutMs} ms` } });
      }, timeoutMs);
      this.outgoing.set(idKey(id), { resolve, timer });
      const sent = this.send(params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params });
      if (!sent) {
        clearTimeout(timer);
        this.outgoing.delete(idKey(id));
        resolve({
          error: { code: RpcCode.INTERNAL_ERROR, message: `${method} cannot be sent to the client: its params cannot be serialised` },
        });
      }
    });
  }

  /**
   * Sends one message to the client, or holds it while detached. A message that cannot be
   * serialised costs only itself: a response becomes a -32603 error for the same id, anything
   * else is dropped (counted as `unserializable`, logged at warn) and false is returned. A
   * notification is also dropped (false) while the client's socket holds more than
   * {@link NOTIFY_DROP_BYTES} it has not read.
   */
  send(message: object): boolean {
    const method = (message as { method?: unknown }).method;
    if ((message as { id?: unknown }).id === undefined && this.outputFull()) {
      this.dropNotification(method);
      return false;
    }
    const out = this.serialize(message);
    if (out === undefined) return false;
    this.sendText(out.text);
    return true;
  }

  /**
   * Sends one notification already serialised (the fan-out serialises once for every session);
   * dropped, and false returned, while the client leaves more than {@link NOTIFY_DROP_BYTES}
   * unread.
   */
  sendNotification(text: string, method: string): boolean {
    if (this.outputFull()) {
      this.dropNotification(method);
      return false;
    }
    this.sendText(text);
    return true;
  }

  /** The wire text of a message, or of the error that replaces an unserialisable response. */
  private serialize(message: object): { text: string; replaced: boolean } | undefined {
    const out = trySerialize(message);
    if (out.ok) return { text: out.text, replaced: false };
    const m = message as { id?: unknown; method?: unknown };
    const method = typeof m.method === 'string' ? clip(m.method, 100) : undefined;
    const isResponse = method === undefined && (typeof m.id === 'string' || typeof m.id === 'number');
    const kind = isResponse ? 'response' : 'id' in m ? 'request' : 'notification';
    reportUnserializable(this.deps, { session_id: this.id, kind, method, reason: out.reason }, isResponse);
    if (!isResponse) return undefined;
    const what = 'error' in m ? 'error' : 'result';
    const reply = rpcError(m.id as RequestId, RpcCode.INTERNAL_ERROR, `Internal error: the ${what} cannot be sent: ${out.reason}`);
    return { text: JSON.stringify(reply), replaced: true };
  }

  /** Stops taking new work: queued and new requests are answered -32000 from now on. */
  drain(reason: string): void {
    this.draining = true;
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) this.answer(q.request, q.receivedMs, closedError(q.request.id, reason));
  }

  /** Answers every request still running with -32000 and cancels it at its server. */
  abortInflight(reason: string): void {
    for (const entry of [...this.inflight.values()]) {
      this.inflight.delete(idKey(entry.request.id));
      entry.cancel.abort(reason);
      this.answer(entry.request, entry.receivedMs, closedError(entry.request.id, reason));
    }
  }

  /**
   * Ends the session: running requests are cancelled at their servers (nobody is left to
   * answer), the socket, if any, is closed with `code`. Idempotent.
   */
  close(code: number, reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.queue = [];
    this.held = [];
    this.heldBytes = 0;
    this.kept = null;
    for (const entry of this.inflight.values()) entry.cancel.abort(reason);
    this.inflight.clear();
    for (const waiting of this.outgoing.values()) {
      clearTimeout(waiting.timer);
      waiting.resolve({ error: { code: RpcCode.CONNECTION_CLOSED, message: `the client session closed: ${reason}` } });
    }
    this.outgoing.clear();
    const socket = this.socket;
    this.socket = null;
    socket?.close(code, reason);
  }

  private admit(request: RpcRequest, receivedMs: number): void {
    const { config, metrics } = this.deps;
    if (this.draining) {
      this.answer(request, receivedMs, closedError(request.id, 'daemon is shutting down'));
      return;
    }
    if (this.inflight.has(idKey(request.id)) || this.queue.some((q) => q.request.id === request.id)) {
      metrics.reject('duplicate_id');
      this.answer(
        request,
        receivedMs,
        rpcError(request.id, RpcCode.INVALID_REQUEST, `Invalid request: id ${clip(JSON.stringify(request.id))} is already in flight`),
      );
      return;
    }
    if (this.inflight.size < config.maxInflight) {
      this.start(request, receivedMs);
    } else if (this.queue.length < config.queueLimit) {
      this.queue.push({ request, receivedMs });
    } else {
      metrics.reject('queue_full');
      this.answer(
        request,
        receivedMs,
        rpcError(
          request.id,
          RpcCode.OVER_CAPACITY,
          `session over capacity: ${config.maxInflight} in flight and ${config.queueLimit} queued`,
          {
            retry_after_ms: RETRY_AFTER_MS,
          },
        ),
      );
    }
  }

  private start(request: RpcRequest, receivedMs: number): void {
    if (request.method === 'initialize') {
      const info = request.params?.clientInfo as { name?: unknown; version?: unknown } | undefined;
      // The client's own strings, of any size: logged short.
      const label = (value: unknown) => (typeof value === 'string' ? clip(value, 256) : undefined);
      this.deps.logger.info(
        {
          session_id: this.id,
          mcp_client: label(info?.name),
          mcp_client_version: label(info?.version),
          protocol: label(request.params?.protocolVersion),
        },
        'session initialized',
      );
    }
    const key = idKey(request.id);
    const entry: Inflight = { cancel: new Cancellation(), request, receivedMs };
    this.inflight.set(key, entry);
    this.router.handle(request, entry.cancel).then(
      (response) => this.finish(key, entry, response),
      (error: unknown) =>
        this.finish(
          key,
          entry,
          rpcError(request.id, RpcCode.INTERNAL_ERROR, `internal error: ${error instanceof Error ? error.message : String(error)}`),
        ),
    );
  }

  private finish(key: string, entry: Inflight, response: RpcResponse | null): void {
    // Already answered by a drain or dropped by close(): exactly one response per request.
    if (this.inflight.get(key) !== entry) return;
    this.inflight.delete(key);
    if (response === null) {
      this.deps.metrics.request(entry.request.method, toolOf(entry.request), performance.now() - entry.receivedMs, false);
    } else {
      this.answer(entry.request, entry.receivedMs, response);
    }
    while (this.inflight.size < this.deps.config.maxInflight && this.queue.length > 0 && !this.draining) {
      const next = this.queue.shift();
      if (next) this.start(next.request, next.receivedMs);
    }
  }

  private answer(request: RpcRequest, receivedMs: number, response: RpcResponse): void {
    const out = this.serialize(response);
    const isError = out === undefined || out.replaced || 'error' in response;
    // Method and tool names are the client's strings: Metrics keeps its own series only for
    // names the daemon knows and counts the rest as `other`, so a client cannot grow it.
    this.deps.metrics.request(request.method, toolOf(request), performance.now() - receivedMs, isError);
    if (out) this.sendText(out.text);
  }

  private cancel(requestId: unknown): void {
    if (typeof requestId !== 'string' && typeof requestId !== 'number') return;
    const queuedAt = this.queue.findIndex((q) => q.request.id === requestId);
    if (queuedAt >= 0) {
      this.queue.splice(queuedAt, 1);
      return;
    }
    this.inflight.get(idKey(requestId))?.cancel.abort('cancelled by the client');
  }

  /** True while the attached client has left more than NOTIFY_DROP_BYTES unread. */
  private outputFull(): boolean {
    const socket = this.socket;
    if (socket === null || socket.bufferedAmount <= NOTIFY_DROP_BYTES) {
      if (this.droppedNotifications > 0) {
        this.deps.logger.info({ session_id: this.id, dropped: this.droppedNotifications }, 'client reading again: notifications resume');
        this.droppedNotifications = 0;
      }
      return false;
    }
    return true;
  }

  private dropNotification(method: unknown): void {
    this.deps.metrics.reject('output_overflow');
    if (this.droppedNotifications++ === 0) {
      this.deps.logger.warn(
        {
          session_id: this.id,
          method: typeof method === 'string' ? clip(method, 100) : undefined,
          unread_bytes: this.socket?.bufferedAmount,
        },
        'client not reading: notifications to it are dropped until it catches up',
      );
    }
  }

  /** The client has received `received` frames: the kept ones up to there go. */
  private ack(received: number): void {
    const kept = this.kept;
    if (kept === null) return;
    kept.dropThrough(Math.min(received, this.sentSeq));
    if (kept.count === 0) this.kept = null;
  }

  /** Writes a message (the next sequence number, kept while the client acks) or holds it while detached. */
  private sendText(text: string): void {
    if (this.state === 'closed') return;
    const socket = this.socket;
    const bytes = Buffer.byteLength(text);
    if (socket === null || socket.readyState !== socket.OPEN) {
      this.held.push(text);
      this.heldBytes += bytes;
      this.bound();
      return;
    }
    this.sentSeq++;
    if (this.acks) {
      this.kept ??= new KeptFrames(this.sentSeq);
      this.kept.push(text, bytes);
      this.bound();
    }
    this.write(socket, text, bytes);
  }

  /**
   * Keeps kept and held frames within the hold limit together: the oldest kept frames go
   * first (a resume from before them is then refused, not answered with a gap); when the held
   * ones alone are past it, the session ends.
   */
  private bound(): void {
    const max = this.deps.config.holdMaxBytes;
    const kept = this.kept;
    if (kept !== null && kept.bytes + this.heldBytes > max) {
      const dropped = kept.trimTo(Math.max(0, max - this.heldBytes));
      if (kept.count === 0) this.kept = null;
      if (this.trimmed === 0) {
        this.deps.logger.info(
          { session_id: this.id, hold_max_bytes: max, oldest_kept_seq: this.kept?.oldestSeq ?? this.sentSeq + 1 },
          'unacked frames past the hold limit dropped: a resume from before them starts a new session',
        );
      }
      this.trimmed += dropped;
    }
    if (this.heldBytes > max) this.deps.expire(this, 'hold_overflow');
  }

  private write(socket: SessionSocket, text: string, bytes: number): void {
    this.deps.metrics.bytesOut += bytes;
    corkUntilTick(rawSocketOf(socket));
    socket.send(text, () => {
      if (this.outputPaused && this.socket === socket && socket.bufferedAmount < OUTPUT_LOW_WATER_BYTES) {
        this.outputPaused = false;
        socket.resume();
      }
    });
    if (!this.outputPaused && socket.bufferedAmount > OUTPUT_HIGH_WATER_BYTES) {
      // The client is not reading; stop reading its requests until it catches up.
      this.outputPaused = true;
      socket.pause();
    }
  }
}

/**
 * Counts (`unserializable`) and logs at warn a message that could not be serialised: a
 * response is replaced by an error, anything else is dropped. One place for the session and
 * the fan-out, so both read alike in the log.
 */
export function reportUnserializable(
  deps: Pick<SessionDeps, 'logger' | 'metrics'>,
  details: { session_id?: string; kind: string; method: string | undefined; reason: string },
  replaced = false,
): void {
  deps.metrics.reject('unserializable');
  deps.logger.warn(
    details,
    replaced ? 'response replaced by an error: it cannot be serialised' : 'message dropped: it cannot be serialised',
  );
}

function closedError(id: RequestId, reason: string): RpcResponse {
  return rpcError(id, RpcCode.CONNECTION_CLOSED, `connection closed: ${reason}`);
}

function toolOf(request: RpcRequest): string | undefined {
  if (request.method !== 'tools/call') return undefined;
  const name = request.params?.name;
  return typeof name === 'string' ? name : undefined;
}
