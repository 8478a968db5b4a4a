/**
 * Two {@link Transport} ends joined in memory, for unit tests of what sits on a transport (a
 * session, the router, the outbox) without a socket or a process. It keeps the contract the real
 * transports keep:
 *
 * - a message sent on one end arrives at the other's `onmessage` on a later microtask, in order,
 *   as text (nothing is shared between the ends but strings);
 * - backpressure is real: while the receiving end's input is paused, what is sent waits and
 *   counts in the sender's `bufferedBytes`, and `written` fires only once it is delivered;
 * - `close()` on either end closes both; each end fires `onclose` exactly once, with the code
 *   the closing end gave; what is sent on a closed end is dropped and `written` gets an error.
 *
 * `kind` is the transport this pair stands in for (it decides how a session is counted).
 */
import type { RequestId } from '../protocol/jsonrpc.js';
import type { Transport, TransportKind } from './transport.js';

interface Queued {
  text: string;
  written: ((error?: Error | null) => void) | undefined;
}

export class InMemoryTransport implements Transport {
  /** Two joined ends: what `a` sends arrives at `b`, and back. */
  static pair(kind: TransportKind = 'ws'): [InMemoryTransport, InMemoryTransport] {
    const a = new InMemoryTransport(kind);
    const b = new InMemoryTransport(kind);
    a.peer = b;
    b.peer = a;
    return [a, b];
  }

  readonly kind: TransportKind;
  onmessage: ((text: string) => void) | undefined;
  onclose: ((code: number) => void) | undefined;
  /** Every `related` id given to send(), in order: what an HTTP transport would route by. */
  readonly related: (RequestId | undefined)[] = [];
  /** The close code and reason this end closed with, once closed. */
  closed: { code: number; reason: string } | undefined;

  private peer: InMemoryTransport | undefined;
  private paused = false;
  private bytesInFlight = 0;
  private readonly inbox: Queued[] = [];
  private delivering = false;

  private constructor(kind: TransportKind) {
    this.kind = kind;
  }

  get open(): boolean {
    return this.closed === undefined;
  }

  get bufferedBytes(): number {
    return this.bytesInFlight;
  }

  send(text: string, related: RequestId | undefined, written?: (error?: Error | null) => void): void {
    const peer = this.peer;
    if (!this.open || peer === undefined || !peer.open) {
      if (written) queueMicrotask(() => written(new Error('the transport is closed')));
      return;
    }
    this.related.push(related);
    this.bytesInFlight += text.length;
    peer.inbox.push({
      text,
      written: (error) => {
        this.bytesInFlight -= text.length;
        written?.(error);
      },
    });
    peer.schedule();
  }

  pauseInput(): void {
    this.paused = true;
  }

  resumeInput(): void {
    this.paused = false;
    this.schedule();
  }

  close(code: number, reason: string): void {
    if (this.closed !== undefined) return;
    this.closed = { code, reason };
    const dropped = this.inbox.splice(0);
    queueMicrotask(() => {
      for (const item of dropped) item.written?.(new Error('the transport closed'));
      this.onclose?.(code);
    });
    this.peer?.close(code, reason);
  }

  private schedule(): void {
    if (this.delivering || this.paused || this.inbox.length === 0) return;
    this.delivering = true;
    queueMicrotask(() => this.deliver());
  }

  private deliver(): void {
    this.delivering = false;
    while (!this.paused && this.open && this.inbox.length > 0) {
      const item = this.inbox.shift() as Queued;
      item.written?.(null);
      this.onmessage?.(item.text);
    }
  }
}
