/**
 * The requests one side sent and still awaits answers to, by id: the bookkeeping every JSON-RPC
 * peer of the project does (a session asking its client, a server link asking a hosted server,
 * the shim relaying a client's requests). Written once, here:
 *
 * - {@link PendingRequests.add} keeps an entry, optionally with a deadline; at the deadline the
 *   entry is removed first and then handed to `onexpire` (the caller answers -32001), so a late
 *   answer finds nothing and is dropped, never delivered twice.
 * - {@link PendingRequests.settle} takes an entry out when its answer arrives and stops its
 *   deadline; an unknown or already settled id gives `undefined`.
 * - {@link PendingRequests.failAll} takes every entry out at once, in the order they were added,
 *   for a closed connection (the caller answers each -32000).
 *
 * No I/O and no wire format: what an entry holds and how it is answered is the caller's. Timers
 * are a constructor parameter (the global ones by default) so tests can pass fake ones; this file
 * is compiled without Node's types, like the rest of protocol/.
 *
 * Shared deadlines (`{ sharedDeadlines: true }`, for a server link's many calls): instead of a
 * timer per entry, entries with the same `ms` wait in one queue in the order they were added
 * (their deadlines come in that order too), watched by one timer set for the oldest; a settled
 * entry only leaves a mark in its queue. The table then costs no timer per request, which a
 * link with thousands of calls a second would otherwise set and clear each time. Expiry works
 * the same in both modes.
 */

/** What a table needs of timers; the handle is whatever `setTimeout` returns. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** The clock the timers keep, in milliseconds (shared deadlines only); `Date.now` when absent. */
  now?(): number;
}

export interface PendingOptions {
  /** One timer per deadline length instead of one per entry (see the header). */
  sharedDeadlines?: boolean;
}

interface GlobalTimers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const host = globalThis as unknown as GlobalTimers;

/** The process's own timers. Unref'd where the runtime allows: a pending deadline never keeps a process alive. */
export const GLOBAL_TIMERS: Timers = {
  setTimeout: (callback, ms) => {
    const handle = host.setTimeout(callback, ms) as { unref?: () => void };
    handle.unref?.();
    return handle;
  },
  clearTimeout: (handle) => host.clearTimeout(handle),
};

/** A deadline for one entry: after `ms` the entry leaves the table and `onexpire` gets it. */
export interface Deadline<V> {
  ms: number;
  onexpire: (value: V) => void;
}

interface Entry<V> {
  value: V;
  /** Its own timer (per-entry deadlines). */
  timer: unknown;
  /** Its place in a deadline queue (shared deadlines), until it leaves the table. */
  place: Queued | undefined;
}

export class PendingRequests<K, V> {
  private readonly entries = new Map<K, Entry<V>>();
  private readonly timers: Timers;
  /** Shared deadlines: a queue per deadline length in ms; undefined for a timer per entry. */
  private readonly queues: Map<number, DeadlineQueue> | undefined;

  constructor(timers: Timers = GLOBAL_TIMERS, options: PendingOptions = {}) {
    this.timers = timers;
    this.queues = options.sharedDeadlines === true ? new Map() : undefined;
  }

  get size(): number {
    return this.entries.size;
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }

  /** The entry under `key`, left in the table (progress and cancellation look entries up). */
  get(key: K): V | undefined {
    return this.entries.get(key)?.value;
  }

  /** The waiting entries, oldest first. */
  *values(): IterableIterator<V> {
    for (const entry of this.entries.values()) yield entry.value;
  }

  /** Keeps `value` under `key`. A key already waiting is a caller's bug: it throws rather than lose an answer. */
  add(key: K, value: V, deadline?: Deadline<V>): void {
    if (this.entries.has(key)) throw new Error(`a request with id ${String(key)} is already waiting`);
    const entry: Entry<V> = { value, timer: undefined, place: undefined };
    if (deadline !== undefined && this.queues !== undefined) {
      let queue = this.queues.get(deadline.ms);
      if (queue === undefined) {
        queue = new DeadlineQueue(this.timers, deadline.ms, (q) => {
          if (this.queues?.get(q.ms) === q) this.queues.delete(q.ms);
        });
        this.queues.set(deadline.ms, queue);
      }
      entry.place = { queue, due: queue.now() + deadline.ms, expire: () => this.expire(key, entry, deadline) };
      queue.push(entry.place);
    } else if (deadline !== undefined) {
      const timer = this.timers.setTimeout(() => {
        if (this.entries.get(key) === entry) this.expire(key, entry, deadline);
      }, deadline.ms);
      entry.timer = timer;
    }
    this.entries.set(key, entry);
  }

  private expire(key: K, entry: Entry<V>, deadline: Deadline<V>): void {
    this.entries.delete(key);
    entry.place = undefined;
    deadline.onexpire(entry.value);
  }

  /** Takes the entry under `key` out and stops its deadline; `undefined` when none waits there. */
  settle(key: K): V | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    this.entries.delete(key);
    this.stop(entry);
    return entry.value;
  }

  /**
   * Stops an entry's deadline: its timer, or its place in its queue. The place stays in the
   * queue as a mark but lets go of the entry: an answered call's value (and through it the
   * promise it resolved and that promise's result) must not live on until its deadline.
   */
  private stop(entry: Entry<V>): void {
    if (entry.timer !== undefined) this.timers.clearTimeout(entry.timer);
    const place = entry.place;
    entry.place = undefined;
    if (place === undefined) return;
    place.expire = undefined;
    place.queue.left();
  }

  /** Takes every entry out, oldest first, stopping their deadlines, and hands each to `fail`. */
  failAll(fail: (value: V, key: K) => void): void {
    const all = [...this.entries];
    this.entries.clear();
    for (const [key, entry] of all) {
      this.stop(entry);
      fail(entry.value, key);
    }
  }
}

/**
 * An entry's place in a deadline queue: when it expires on the queue's clock, and what expires
 * it while it waits; `expire` is undefined once the entry left (a mark that holds nothing of it).
 */
interface Queued {
  readonly queue: DeadlineQueue;
  readonly due: number;
  expire: (() => void) | undefined;
}

/**
 * The entries of one deadline length, oldest first, and one timer set for the oldest that still
 * waits. Entries that left (settled, failed) stay as marks until they reach the front, or until
 * they outnumber the waiting ones (compacted then, so a stuck oldest call cannot pile them up).
 */
class DeadlineQueue {
  private items: Queued[] = [];
  private head = 0;
  /** Entries in `items` from `head` on that have left the table. */
  private gone = 0;
  private timer: unknown;
  /** The due time the timer was set for: when it fires, everything due by then expires. */
  private armedFor = 0;

  constructor(
    private readonly timers: Timers,
    readonly ms: number,
    private readonly emptied: (queue: DeadlineQueue) => void,
  ) {}

  now(): number {
    return this.timers.now?.() ?? Date.now();
  }

  push(item: Queued): void {
    this.items.push(item);
    if (this.timer === undefined) this.arm();
  }

  /** One of its entries left the table (settled or failed before its deadline). */
  left(): void {
    this.gone++;
    this.trim();
    const waiting = this.items.length - this.head - this.gone;
    if (this.gone > 1_024 && this.gone > waiting) {
      this.items = this.items.slice(this.head).filter((item) => item.expire !== undefined);
      this.head = 0;
      this.gone = 0;
    }
  }

  /** Drops the marks at the front; an empty queue stops its timer and leaves its table. */
  private trim(): void {
    const items = this.items;
    while (this.head < items.length && (items[this.head] as Queued).expire === undefined) {
      this.head++;
      this.gone--;
    }
    if (this.head < items.length) return;
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
    this.items = [];
    this.head = 0;
    this.gone = 0;
    this.emptied(this);
  }

  private arm(): void {
    const first = this.items[this.head] as Queued;
    this.armedFor = first.due;
    this.timer = this.timers.setTimeout(() => this.fire(), Math.max(0, first.due - this.now()));
  }

  /** Expires every entry due by now (or by the time the timer was set for), oldest first. */
  private fire(): void {
    this.timer = undefined;
    const by = Math.max(this.now(), this.armedFor);
    // `this.items`, not a copy: onexpire may add or settle entries of this queue meanwhile.
    while (this.head < this.items.length) {
      const item = this.items[this.head] as Queued;
      const expire = item.expire;
      if (expire === undefined) {
        this.head++;
        this.gone--;
        continue;
      }
      if (item.due > by) break;
      this.head++;
      item.expire = undefined;
      expire();
    }
    this.trim();
    if (this.head < this.items.length && this.timer === undefined) this.arm();
  }
}
