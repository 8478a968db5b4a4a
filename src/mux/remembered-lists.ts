/**
 * The lists of hosted servers remembered once seen (tools, prompts, resources, templates and
 * the capabilities that say which of them a server offers), so that a list answered while a
 * lazy server is not running does not start it: its first call does. The hub keeps them in
 * memory here (stdio mode, tests); the daemon keeps them in files in its home
 * (daemon/files/remembered-lists.ts).
 *
 * A server's lists are remembered per config entry (its spec as JSON: an edited entry is
 * another key, and its old lists are pruned) and, for a `workspace` server, per folder. Both
 * stores are bounded by entry count and total bytes; the least recently seen go first.
 */
import type { ListKind } from './lists.js';

type Item = Record<string, unknown>;

/** Which server instance lists are remembered for. */
export interface ListsKey {
  /** The entry's name in `mcpServers`. */
  readonly name: string;
  /** The entry as JSON (its parsed spec): an edited entry is another key. */
  readonly entry: string;
  /** The folder of a `workspace` instance; '' for `shared` and `session` ones. */
  readonly folder: string;
}

/** What is remembered of one server instance. */
export interface RememberedServer {
  /** The capabilities its initialize (or discover) result declared. */
  readonly capabilities: Readonly<Record<string, unknown>>;
  /** Its own (unfiltered, unprefixed) items of each kind it offers. */
  readonly lists: Readonly<Partial<Record<ListKind, readonly Item[]>>>;
  /**
   * The client capabilities (names, sorted) the process that listed them was offered: a server
   * may list other tools to clients that can sample or elicit, so they are used only while a
   * start now would offer the same.
   */
  readonly offered: readonly string[];
}

/** Where remembered lists are kept. No method throws: a store that cannot keep something forgets it. */
export interface RememberedLists {
  /** The lists remembered for this instance, or undefined when none are (or they could not be read). */
  recall(key: ListsKey): RememberedServer | undefined;
  /** Keeps (replaces) the lists of this instance; the least recently seen others may go to stay within bounds. */
  remember(key: ListsKey, lists: RememberedServer): void;
  /** The entry of server `name` is now `entry`: what is remembered under any other entry of that name goes. */
  prune(name: string, entry: string): void;
}

/** Most server instances remembered. */
export const DEFAULT_REMEMBERED_MAX_ENTRIES = 256;
/** Most bytes (as JSON) remembered in all; one instance's lists larger than this are not kept. */
export const DEFAULT_REMEMBERED_MAX_BYTES = 16 * 1024 * 1024;

export interface RememberedBounds {
  maxEntries?: number;
  maxBytes?: number;
}

/** The store's key for an instance (a JSON array: no separator can be forged by a name or folder). */
export function keyText(key: ListsKey): string {
  return JSON.stringify([key.name, key.entry, key.folder]);
}

/** Remembered lists kept for the process's life, bounded like the file store. */
export class MemoryRememberedLists implements RememberedLists {
  /** Key text -> its key, lists and size; in the order last seen (oldest first). */
  private readonly kept = new Map<string, { key: ListsKey; lists: RememberedServer; bytes: number }>();
  private bytes = 0;
  private readonly maxEntries: number;
  private readonly maxBytes: number;

  constructor(bounds: RememberedBounds = {}) {
    this.maxEntries = bounds.maxEntries ?? DEFAULT_REMEMBERED_MAX_ENTRIES;
    this.maxBytes = bounds.maxBytes ?? DEFAULT_REMEMBERED_MAX_BYTES;
  }

  recall(key: ListsKey): RememberedServer | undefined {
    return this.kept.get(keyText(key))?.lists;
  }

  remember(key: ListsKey, lists: RememberedServer): void {
    const text = keyText(key);
    this.drop(text);
    let bytes: number;
    try {
      bytes = JSON.stringify(lists).length;
    } catch {
      return; // nested too deeply to serialise: not kept
    }
    if (bytes > this.maxBytes) return;
    this.kept.set(text, { key, lists, bytes });
    this.bytes += bytes;
    for (const oldest of this.kept.keys()) {
      if (this.kept.size <= this.maxEntries && this.bytes <= this.maxBytes) break;
      this.drop(oldest);
    }
  }

  prune(name: string, entry: string): void {
    for (const [text, { key }] of this.kept) if (key.name === name && key.entry !== entry) this.drop(text);
  }

  /** How many instances are remembered, and their bytes (for tests and reports). */
  get size(): { entries: number; bytes: number } {
    return { entries: this.kept.size, bytes: this.bytes };
  }

  private drop(text: string): void {
    const had = this.kept.get(text);
    if (!had) return;
    this.kept.delete(text);
    this.bytes -= had.bytes;
  }
}
