/**
 * One client's MCP session. It outlives its socket: while detached (socket gone, within the
 * resume grace) its requests keep running and their messages are held, to be delivered in
 * order when a client attaches with the same session id.
 *
 * What goes out to the client (backpressure, held frames, the frames kept for a lossless
 * resume) is its {@link Outbox}'s business.
 *
 * Flow control: at most `maxInflight` requests run at once; up to `queueLimit` more wait in
 * FIFO order; past that a request is refused with -32010 at once. Notifications are never
 * queued, so `notifications/cancelled` overtakes the requests it cancels.
 */
import { RpcCode } from '../../protocol/codes.js';
import {
  clip,
  idKey,
  parseMessage,
  rpcError,
  trySerialize,
  type RequestId,
  type Answer,
  type Classified,
  type RpcRequest,
  type RpcResponse,
} from '../../protocol/jsonrpc.js';
import type { Hub } from '../../mux/hub.js';
import type { View } from '../../mux/view.js';
import type { SessionContext } from '../../mux/session-context.js';
import type { DaemonConfig } from '../files/config.js';
import { Cancellation } from '../../hosting/cancellation.js';
import { Outbox, type AttachOptions } from './outbox.js';
import type { Transport, TransportKind } from '../../transport/transport.js';
import type { ByteBudget } from '../../transport/byte-budget.js';
import type { Logger } from '../files/logger.js';
import type { CloseReason, Metrics } from '../files/metrics.js';
import { LatencyRing } from './latency-ring.js';
import { Router, type RouterPeer } from './router.js';

export type { AttachOptions } from './outbox.js';
export { NOTIFY_DROP_BYTES, OUTPUT_HIGH_WATER_BYTES, OUTPUT_LOW_WATER_BYTES } from './outbox.js';

export type SessionState = 'attached' | 'detached' | 'closed';

/** The retry hint sent with -32010. */
export const RETRY_AFTER_MS = 100;

export interface SessionDeps {
  hub: Hub;
  config: DaemonConfig;
  metrics: Metrics;
  logger: Logger;
  /** Asks the owner to end this session (hold overflow). */
  expire(session: Session, reason: CloseReason): void;
  /** Held messages of every detached session together (`EXAI_WS_HOLD_TOTAL_MAX_BYTES`). */
  holdBudget?: ByteBudget;
}

interface Inflight {
  cancel: Cancellation;
  request: RpcRequest;
  receivedMs: number;
}

export interface ClientLabel {
  name: string;
  version: string;
}

export class Session implements RouterPeer {
  readonly id: string;
  readonly createdAtMs = Date.now();
  readonly router: Router;
  /** What the core knows of this session; released in close(). */
  readonly context: SessionContext;
  client: ClientLabel;
  cwd: string | undefined;
  state: SessionState = 'detached';
  /** The client's process id, when its hello named one this daemon can see. */
  pid: number | undefined;
  /** How the client is connected (its last transport's kind). */
  kind: TransportKind = 'ws';
  /** This session's answered requests: how many, and the latency of the latest ones (for its p99). */
  readonly latency = new LatencyRing();

  private readonly deps: SessionDeps;
  private readonly inflight = new Map<string, Inflight>();
  private queue: { request: RpcRequest; receivedMs: number }[] = [];
  private readonly outbox: Outbox;
  private draining = false;
  /** Requests sent to the client on a server's behalf, by id, until it answers. */
  private readonly outgoing = new Map<string, { resolve: (outcome: Answer) => void; timer: NodeJS.Timeout }>();
  private nextOutgoingId = 1;

  constructor(id: string, client: ClientLabel, deps: SessionDeps, view: View = {}) {
    this.id = id;
    this.client = client;
    this.deps = deps;
    this.outbox = new Outbox({
      holdMaxBytes: deps.config.holdMaxBytes,
      metrics: deps.metrics,
      logger: deps.logger,
      sessionId: id,
      overflow: () => deps.expire(this, 'hold_overflow'),
      holdBudget: deps.holdBudget,
    });
    this.context = deps.hub.openSession(id, view, this);
    this.router = new Router(deps.hub, this, { callTimeoutMs: deps.config.callTimeoutMs, context: this.context });
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  get queuedCount(): number {
    return this.queue.length;
  }

  /** The attached transport, or null while detached. */
  get transport(): Transport | null {
    return this.outbox.transport;
  }

  /** JSON-RPC frames written to this session's sockets so far (the last sequence number). */
  get sentCount(): number {
    return this.outbox.sentCount;
  }

  /** See {@link Outbox.resumable}. */
  resumable(received: number): boolean {
    return this.outbox.resumable(received);
  }

  /**
   * Binds a transport: the kept frames after `options.received` are written again, then every
   * held message, in order. Returns how many kept frames were written again.
   */
  attach(transport: Transport, options: AttachOptions = {}): number {
    this.state = 'attached';
    this.kind = transport.kind;
    return this.outbox.attach(transport, options);
  }

  /** Unbinds the transport if it is still this session's; messages are held from now on. */
  detach(transport: Transport): boolean {
    if (!this.outbox.detach(transport)) return false;
    if (this.state === 'attached') this.state = 'detached';
    return true;
  }

  /** Handles one text frame from the client. Bad input costs only its own reply. */
  receive(text: string): void {
    if (this.state === 'closed') return;
    // Before JSON-RPC parsing: a malformed ack is an invalid message like any other.
    if (this.outbox.takeAck(text)) return;
    this.take(parseMessage(text));
  }

  /** Handles one message already parsed and classified (a transport that parses its input). */
  take(c: Classified): void {
    if (this.state === 'closed') return;
    switch (c.kind) {
      case 'invalid':
        this.deps.metrics.reject('invalid_message');
        this.send(c.reply, c.reply.id ?? undefined);
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
  request(method: string, params: Record<string, unknown> | undefined, timeoutMs: number, related?: RequestId): Promise<Answer> {
    if (this.state === 'closed')
      return Promise.resolve({ error: { code: RpcCode.CONNECTION_CLOSED, message: 'the client session is closed' } });
    const id = `exai-ws-${this.nextOutgoingId++}`;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.outgoing.delete(idKey(id));
        resolve({ error: { code: RpcCode.REQUEST_TIMEOUT, message: `the client did not answer ${method} within ${timeoutMs} ms` } });
      }, timeoutMs);
      this.outgoing.set(idKey(id), { resolve, timer });
      const sent = this.send(params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params }, related);
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
   * {@link NOTIFY_DROP_BYTES} it has not read. `related`: the client request it belongs to.
   */
  send(message: object, related?: RequestId): boolean {
    const method = (message as { method?: unknown }).method;
    if ((message as { id?: unknown }).id === undefined && !this.outbox.admitNotification(method)) return false;
    const out = this.serialize(message);
    if (out === undefined) return false;
    this.outbox.send(out.text, related);
    return true;
  }

  /**
   * Sends one notification already serialised (the fan-out serialises once for every session);
   * dropped, and false returned, while the client leaves more than {@link NOTIFY_DROP_BYTES}
   * unread.
   */
  sendNotification(text: string, method: string): boolean {
    if (!this.outbox.admitNotification(method)) return false;
    this.outbox.send(text);
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
   * answer), the transport, if any, is closed with `code`. Idempotent.
   */
  close(code: number, reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.queue = [];
    const transport = this.outbox.close();
    for (const entry of this.inflight.values()) entry.cancel.abort(reason);
    this.inflight.clear();
    for (const waiting of this.outgoing.values()) {
      clearTimeout(waiting.timer);
      waiting.resolve({ error: { code: RpcCode.CONNECTION_CLOSED, message: `the client session closed: ${reason}` } });
    }
    this.outgoing.clear();
    this.context.close();
    transport?.close(code, reason);
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
    const latencyMs = performance.now() - receivedMs;
    this.deps.metrics.request(request.method, toolOf(request), latencyMs, isError);
    this.latency.add(latencyMs);
    if (out) this.outbox.send(out.text, request.id);
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
