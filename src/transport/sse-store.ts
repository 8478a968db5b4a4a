/**
 * One HTTP session's store of SSE events kept for resumption (`Last-Event-ID`), and its bounds.
 *
 * What it keeps is bounded three ways: per session (`maxBytes` and {@link MAX_STORED_EVENTS}, the
 * oldest go first), for all sessions together (a shared {@link ByteBudget}: the largest store
 * gives up its oldest first), and per event: one larger than either bound is never kept (it
 * would push out everything else and still be too much). An event that leaves the store before
 * its client received it is reported to `onlost` (the transport keeps a small error in place of
 * a response that was lost that way).
 */
import type { RequestId } from '../protocol/jsonrpc.js';
import type { BudgetHolder, ByteBudget } from './byte-budget.js';

/** Events kept per session for resumption, whatever their size. */
export const MAX_STORED_EVENTS = 1024;

export interface StoredEvent {
  readonly stream: number;
  readonly seq: number;
  readonly text: string;
  readonly bytes: number;
  /** Written to a live stream at least once (the GET stream's kept events are not). */
  delivered: boolean;
  /** The response to this request (the stream's last event). */
  readonly answers?: RequestId | undefined;
}

export class SseEventStore implements BudgetHolder {
  private events: StoredEvent[] = [];
  private bytes = 0;
  private readonly maxBytes: number;
  private readonly budget: ByteBudget;
  private readonly onlost: (event: StoredEvent, why: string) => void;

  /**
   * `maxBytes`: this store's bound; `budget`: the bound of every store together, reported to as
   * this store keeps and frees; `onlost`: an undelivered event was dropped, and why (in words).
   */
  constructor(maxBytes: number, budget: ByteBudget, onlost: (event: StoredEvent, why: string) => void) {
    this.maxBytes = maxBytes;
    this.budget = budget;
    this.onlost = onlost;
  }

  /** Bytes of the events kept. */
  get keptBytes(): number {
    return this.bytes;
  }

  /** The largest event the store keeps: its own bound, or the shared one if smaller. */
  get keepLimit(): number {
    return Math.min(this.maxBytes, this.budget.maxBytes);
  }

  /** The kept events of one stream, oldest first. */
  *of(streamId: number): IterableIterator<StoredEvent> {
    for (const event of this.events) if (event.stream === streamId) yield event;
  }

  /**
   * Keeps an event within the store's bounds: the oldest go first, and past the shared budget
   * the largest store's oldest. False when the event alone is larger than a bound: not kept.
   */
  keep(event: StoredEvent): boolean {
    if (event.bytes > this.keepLimit) return false;
    this.events.push(event);
    this.bytes += event.bytes;
    this.budget.change(this, event.bytes);
    let drop = 0;
    while (drop < this.events.length - 1 && (this.bytes > this.maxBytes || this.events.length - drop > MAX_STORED_EVENTS)) {
      drop++;
    }
    this.dropOldest(drop, `was dropped to keep this session's stored events within their limit (${this.maxBytes} bytes)`);
    this.budget.enforce();
    return true;
  }

  /** A stream that can no longer be resumed: its events leave the store. */
  forget(streamId: number): void {
    if (!this.events.some((event) => event.stream === streamId)) return;
    const kept: StoredEvent[] = [];
    let freed = 0;
    for (const event of this.events) {
      if (event.stream === streamId) freed += event.bytes;
      else kept.push(event);
    }
    this.events = kept;
    this.bytes -= freed;
    this.budget.change(this, -freed);
  }

  /** The shared budget is past its bound and this store holds the most: its oldest events go. */
  giveWay(excessBytes: number): void {
    let drop = 0;
    let freed = 0;
    while (drop < this.events.length && freed < excessBytes) freed += (this.events[drop++] as StoredEvent).bytes;
    this.dropOldest(drop, `was dropped to keep the stored events of all sessions within their limit (${this.budget.maxBytes} bytes)`);
  }

  /** Empties the store for good (its session closed) and leaves the shared budget. */
  clear(): void {
    this.events = [];
    this.bytes = 0;
    this.budget.release(this);
  }

  private dropOldest(count: number, why: string): void {
    if (count <= 0) return;
    let freed = 0;
    for (let i = 0; i < count; i++) {
      const event = this.events[i] as StoredEvent;
      freed += event.bytes;
      if (!event.delivered) this.onlost(event, why);
    }
    this.events = this.events.slice(count);
    this.bytes -= freed;
    this.budget.change(this, -freed);
  }
}
