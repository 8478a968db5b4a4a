/**
 * The hosted servers' lists remembered across daemon runs (see mux/remembered-lists.ts), one
 * file per server instance in `<home>/lists/`: `<name>.<entry hash>.<folder hash>.json`, holding
 * `{"name", "entry", "folder", "capabilities", "lists": {"tools": [...], ...}, "offered"}` (the entry as a
 * SHA-256 hash: an entry's env and headers may hold secrets, and are never written here).
 *
 * Cheap at start: nothing is read until a list needs a server that is not running, and then only
 * that server's file. Each file is written whole (a reader or a crash never sees half of one),
 * owner-only. The directory is bounded by file count and total bytes: a write drops the least
 * recently seen files (by their time written) past either bound. A file that cannot be read or
 * is not what this daemon writes (bad JSON, another shape, too big) is logged once and taken as
 * nothing remembered; a write that fails (a full disk) is logged once and kept in memory only.
 * Nothing here throws into the daemon.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isObject } from '../../protocol/jsonrpc.js';
import { LISTS, type ListKind } from '../../mux/lists.js';
import {
  DEFAULT_REMEMBERED_MAX_BYTES,
  DEFAULT_REMEMBERED_MAX_ENTRIES,
  type ListsKey,
  type RememberedBounds,
  type RememberedLists,
  type RememberedServer,
} from '../../mux/remembered-lists.js';
import { replaceWhole } from '../../local/whole-file.js';

type Warn = (message: string, details: Record<string, unknown>) => void;

/** `<name>.<16 hex>.<16 hex>.json`: names are [A-Za-z0-9_.-], so the hashes are the last two parts. */
const FILE_PATTERN = /^(.+)\.([0-9a-f]{16})\.([0-9a-f]{16})\.json$/;

/** A file with nothing usable, as the cache counts it. */
const NOTHING = { lists: null, bytes: 64 } as const;

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export class FileRememberedLists implements RememberedLists {
  private readonly dir: string;
  private readonly warn: Warn;
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  /**
   * Files read (or written) by this daemon: their lists, or null for nothing usable, and their
   * size; bounded like the directory (the least recently used go first), so that folders named
   * by clients or a full disk grow nothing without end.
   */
  private readonly cache = new Map<string, { lists: RememberedServer | null; bytes: number }>();
  private cachedBytes = 0;
  /** The digest of what each file holds, as this daemon last wrote it: an unchanged list is not written again. */
  private readonly written = new Map<string, string>();
  /** The directory's files, their bytes and when they were last written; read at the first write. */
  private index: Map<string, { bytes: number; seenMs: number }> | undefined;
  private failing = false;

  /** `dir` is made at the first write (owner-only); nothing is read here. */
  constructor(dir: string, warn: Warn, bounds: RememberedBounds = {}) {
    this.dir = dir;
    this.warn = warn;
    this.maxEntries = bounds.maxEntries ?? DEFAULT_REMEMBERED_MAX_ENTRIES;
    this.maxBytes = bounds.maxBytes ?? DEFAULT_REMEMBERED_MAX_BYTES;
  }

  recall(key: ListsKey): RememberedServer | undefined {
    const file = this.fileOf(key);
    const cached = this.cache.get(file);
    if (cached !== undefined) {
      this.cache.delete(file); // to the end: the most recently used
      this.cache.set(file, cached);
      return cached.lists ?? undefined;
    }
    const read = this.read(file, key);
    this.keep(file, read.lists, read.bytes);
    return read.lists ?? undefined;
  }

  remember(key: ListsKey, lists: RememberedServer): void {
    const file = this.fileOf(key);
    let text: string;
    try {
      text = `${JSON.stringify({ name: key.name, entry: digest(key.entry), folder: key.folder, ...lists })}\n`;
    } catch (error) {
      this.warn('server lists not remembered on disk: they cannot be serialised', { server: key.name, err: (error as Error).message });
      return;
    }
    const bytes = Buffer.byteLength(text);
    const sum = digest(text);
    const same = this.written.get(file) === sum;
    if (bytes > this.maxBytes) {
      this.noteWritten(file, sum); // said once, not at each list_changed
      this.forgetCached(file);
      if (!same) this.warn('server lists not remembered: larger than the bound', { server: key.name, bytes, max_bytes: this.maxBytes });
      return;
    }
    this.keep(file, lists, bytes);
    if (same) return; // a list_changed that changed nothing: no write
    try {
      const index = this.files();
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      replaceWhole(join(this.dir, file), text, 0o600);
      this.noteWritten(file, sum);
      index.delete(file); // to the end: the most recently seen
      index.set(file, { bytes, seenMs: Date.now() });
      this.prune(key.name, key.entry); // an entry edited while no daemon ran
      this.evict(file);
      if (this.failing) this.warn('server lists written again', { dir: this.dir });
      this.failing = false;
    } catch (error) {
      if (!this.failing) this.warn('server lists cannot be written: kept in memory only', { dir: this.dir, err: (error as Error).message });
      this.failing = true;
    }
  }

  prune(name: string, entry: string): void {
    const current = digest(entry).slice(0, 16);
    for (const file of [...this.files().keys()]) {
      const parts = FILE_PATTERN.exec(file);
      if (parts?.[1] === name && parts[2] !== current) this.remove(file);
    }
    for (const file of [...this.cache.keys()]) {
      const parts = FILE_PATTERN.exec(file);
      if (parts?.[1] === name && parts[2] !== current) this.forgetCached(file);
    }
  }

  private fileOf(key: ListsKey): string {
    return `${key.name}.${digest(key.entry).slice(0, 16)}.${digest(key.folder).slice(0, 16)}.json`;
  }

  /** One file's lists, or null (a missing file silently; anything else unusable logged). */
  private read(file: string, key: ListsKey): { lists: RememberedServer | null; bytes: number } {
    const path = join(this.dir, file);
    let text: string;
    try {
      const { size } = statSync(path);
      if (size > this.maxBytes) {
        this.warn('server lists file ignored: larger than the bound', { path, bytes: size, max_bytes: this.maxBytes });
        return NOTHING;
      }
      text = readFileSync(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
        this.warn('server lists file ignored: it cannot be read', { path, err: (error as Error).message });
      return NOTHING;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      this.warn('server lists file ignored: it is not JSON', { path, err: (error as Error).message });
      return NOTHING;
    }
    const lists = parseRemembered(json, key);
    if (!lists) this.warn('server lists file ignored: not the shape this daemon writes', { path });
    return { lists, bytes: text.length };
  }

  /** The directory's files, read once (names and sizes only). */
  private files(): Map<string, { bytes: number; seenMs: number }> {
    if (this.index) return this.index;
    const index = new Map<string, { bytes: number; seenMs: number }>();
    let names: string[] = [];
    try {
      names = readdirSync(this.dir);
    } catch {
      // No directory yet (or none we may read): nothing to bound.
    }
    for (const name of names) {
      if (!FILE_PATTERN.test(name)) continue;
      try {
        const stat = statSync(join(this.dir, name));
        index.set(name, { bytes: stat.size, seenMs: stat.mtimeMs });
      } catch {
        // Gone meanwhile.
      }
    }
    this.index = index;
    return index;
  }

  /** Drops the least recently written files past the bounds, never `keep` (just written). */
  private evict(keep: string): void {
    const index = this.files();
    let bytes = 0;
    for (const { bytes: b } of index.values()) bytes += b;
    const oldest = [...index.entries()].filter(([file]) => file !== keep).sort((a, b) => a[1].seenMs - b[1].seenMs);
    for (const [file, { bytes: b }] of oldest) {
      if (index.size <= this.maxEntries && bytes <= this.maxBytes) break;
      this.remove(file);
      bytes -= b;
    }
  }

  private noteWritten(file: string, sum: string): void {
    // Files too big to write are noted too (their warning is said once): bounded all the same.
    if (this.written.size >= 4 * this.maxEntries && !this.written.has(file)) this.written.clear();
    this.written.set(file, sum);
  }

  /** Keeps a file's lists in the cache, dropping the least recently used past the bounds. */
  private keep(file: string, lists: RememberedServer | null, bytes: number): void {
    this.forgetCached(file);
    this.cache.set(file, { lists, bytes });
    this.cachedBytes += bytes;
    for (const [old, { bytes: b }] of this.cache) {
      if (this.cache.size <= this.maxEntries && this.cachedBytes <= this.maxBytes) break;
      if (old === file) continue;
      this.cache.delete(old);
      this.cachedBytes -= b;
    }
  }

  private forgetCached(file: string): void {
    const cached = this.cache.get(file);
    if (cached === undefined) return;
    this.cache.delete(file);
    this.cachedBytes -= cached.bytes;
  }

  private remove(file: string): void {
    this.index?.delete(file);
    this.written.delete(file);
    this.forgetCached(file);
    try {
      rmSync(join(this.dir, file), { force: true });
    } catch {
      // Left for the next eviction.
    }
  }
}

/** The lists in a file's JSON when it is what remember() writes for this key; else null. */
export function parseRemembered(json: unknown, key: ListsKey): RememberedServer | null {
  if (!isObject(json) || json.name !== key.name || json.entry !== digest(key.entry) || json.folder !== key.folder) return null;
  const { capabilities, lists, offered } = json;
  if (!isObject(capabilities) || !isObject(lists)) return null;
  if (!Array.isArray(offered) || !(offered as unknown[]).every((name) => typeof name === 'string')) return null;
  const kept: Partial<Record<ListKind, Record<string, unknown>[]>> = {};
  for (const kind of Object.keys(LISTS) as ListKind[]) {
    const items = lists[kind];
    if (items === undefined) continue;
    if (!Array.isArray(items) || !(items as unknown[]).every(isObject)) return null;
    kept[kind] = items as Record<string, unknown>[];
  }
  return { capabilities, lists: kept, offered: offered as string[] };
}
