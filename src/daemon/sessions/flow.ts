/**
 * A session's client requests from receipt to answer: at most `maxInflight` run at once; up to
 * `queueLimit` more wait in FIFO order; past that a request is refused with -32010 at once.
 * Exactly one answer per request: one finished after a drain or a close answered it is dropped,
 * and a cancelled one (its handler resolved null) gets none. Notifications never come here, so
 * `notifications/cancelled` overtakes the requests it cancels.
 */
import { RpcCode } from '../../protocol/codes.js';
import { clip, idKey, rpcError, type RequestId, type RpcRequest, type RpcResponse } from '../../protocol/jsonrpc.js';
import { Cancellation } from '../../hosting/cancellation.js';
import type { Metrics } from '../files/metrics.js';

/** The retry hint sent with -32010. */
export const RETRY_AFTER_MS = 100;

export interface RequestFlowDeps {
  maxInflight: number;
  queueLimit: number;
  metrics: Metrics;
  /** Runs one request (the router); resolves with its response, or null when it was cancelled. */
  run(request: RpcRequest, cancel: Cancellation): Promise<RpcResponse | null>;
  /** Sends one request's response (counted there, with its latency from `receivedMs`). */
  answer(request: RpcRequest, receivedMs: number, response: RpcResponse): void;
}

interface Inflight {
  cancel: Cancellation;
  request: RpcRequest;
  receivedMs: number;
}

export class RequestFlow {
  private readonly deps: RequestFlowDeps;
  private readonly inflight = new Map<string, Inflight>();
  private queue: { request: RpcRequest; receivedMs: number }[] = [];
  private draining = false;

  constructor(deps: RequestFlowDeps) {
    this.deps = deps;
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  get queuedCount(): number {
    return this.queue.length;
  }

  /** Runs a request now, queues it, or refuses it (draining -32000, duplicate id -32600, full -32010). */
  admit(request: RpcRequest, receivedMs: number): void {
    const { maxInflight, queueLimit, metrics } = this.deps;
    if (this.draining) {
      this.deps.answer(request, receivedMs, closedError(request.id, 'daemon is shutting down'));
      return;
    }
    if (this.inflight.has(idKey(request.id)) || this.queue.some((q) => q.request.id === request.id)) {
      metrics.reject('duplicate_id');
      const text = `Invalid request: id ${clip(JSON.stringify(request.id))} is already in flight`;
      this.deps.answer(request, receivedMs, rpcError(request.id, RpcCode.INVALID_REQUEST, text));
      return;
    }
    if (this.inflight.size < maxInflight) {
      this.start(request, receivedMs);
    } else if (this.queue.length < queueLimit) {
      this.queue.push({ request, receivedMs });
    } else {
      metrics.reject('queue_full');
      const text = `session over capacity: ${maxInflight} in flight and ${queueLimit} queued`;
      this.deps.answer(request, receivedMs, rpcError(request.id, RpcCode.OVER_CAPACITY, text, { retry_after_ms: RETRY_AFTER_MS }));
    }
  }

  /** The client cancelled a request: a queued one is dropped, a running one cancelled at its server. */
  cancel(requestId: unknown): void {
    if (typeof requestId !== 'string' && typeof requestId !== 'number') return;
    const queuedAt = this.queue.findIndex((q) => q.request.id === requestId);
    if (queuedAt >= 0) {
      this.queue.splice(queuedAt, 1);
      return;
    }
    this.inflight.get(idKey(requestId))?.cancel.abort('cancelled by the client');
  }

  /** Stops taking new work: queued and new requests are answered -32000 from now on. */
  drain(reason: string): void {
    this.draining = true;
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) this.deps.answer(q.request, q.receivedMs, closedError(q.request.id, reason));
  }

  /** Answers every request still running with -32000 and cancels it at its server. */
  abortInflight(reason: string): void {
    for (const entry of [...this.inflight.values()]) {
      this.inflight.delete(idKey(entry.request.id));
      entry.cancel.abort(reason);
      this.deps.answer(entry.request, entry.receivedMs, closedError(entry.request.id, reason));
    }
  }

  /** The session ended: queued requests go, running ones are cancelled at their servers, nobody is answered. */
  close(reason: string): void {
    this.queue = [];
    for (const entry of this.inflight.values()) entry.cancel.abort(reason);
    this.inflight.clear();
  }

  private start(request: RpcRequest, receivedMs: number): void {
    const key = idKey(request.id);
    const entry: Inflight = { cancel: new Cancellation(), request, receivedMs };
    this.inflight.set(key, entry);
    this.deps.run(request, entry.cancel).then(
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
      this.deps.answer(entry.request, entry.receivedMs, response);
    }
    while (this.inflight.size < this.deps.maxInflight && this.queue.length > 0 && !this.draining) {
      const next = this.queue.shift();
      if (next) this.start(next.request, next.receivedMs);
    }
  }
}

function closedError(id: RequestId, reason: string): RpcResponse {
  return rpcError(id, RpcCode.CONNECTION_CLOSED, `connection closed: ${reason}`);
}

/** A `tools/call`'s tool name (the client's string: Metrics counts unknown names as `other`). */
export function toolOf(request: RpcRequest): string | undefined {
  if (request.method !== 'tools/call') return undefined;
  const name = request.params?.name;
  return typeof name === 'string' ? name : undefined;
}
