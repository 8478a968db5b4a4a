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
 */

/** What a table needs of timers; the handle is whatever `setTimeout` returns. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
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
  timer: unknown;
}

export class PendingRequests<K, V> {
  private readonly entries = new Map<K, Entry<V>>();

  constructor(private readonly timers: Timers = GLOBAL_TIMERS) {}

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
    let timer: unknown;
    if (deadline !== undefined) {
      timer = this.timers.setTimeout(() => {
        const entry = this.entries.get(key);
        if (entry === undefined || entry.timer !== timer) return;
        this.entries.delete(key);
        deadline.onexpire(entry.value);
      }, deadline.ms);
    }
    this.entries.set(key, { value, timer });
  }

  /** Takes the entry under `key` out and stops its deadline; `undefined` when none waits there. */
  settle(key: K): V | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    this.entries.delete(key);
    if (entry.timer !== undefined) this.timers.clearTimeout(entry.timer);
    return entry.value;
  }

  /** Takes every entry out, oldest first, stopping their deadlines, and hands each to `fail`. */
  failAll(fail: (value: V, key: K) => void): void {
    const all = [...this.entries];
    this.entries.clear();
    for (const [key, entry] of all) {
      if (entry.timer !== undefined) this.timers.clearTimeout(entry.timer);
      fail(entry.value, key);
    }
  }
}
