/**
 * Each server's own lists, as the catalog (catalog.ts) merges them: fetched from the running
 * server and cached per kind until it says `list_changed` or restarts; filtered by its entry's
 * `include_*` / `exclude_*` globs (an excluded tool or prompt is never listed, and never
 * resolves: see {@link ServerLists.allows}); and remembered (remembered-lists.ts) once seen, so
 * that a server that is not running is listed from memory instead of being started by a list.
 *
 * Remembered lists are refreshed when the server runs: each time it becomes ready its lists
 * are fetched in the background and kept, and when they differ from what was shown from memory
 * its sessions are told (`onchanged`); on its `list_changed` they are fetched again. A server
 * whose last start failed (or that crashed and waits to restart) is not listed from memory: it
 * is tried, and left out when it cannot start, as a server with nothing remembered is.
 */
import { isObject, trySerialize } from '../protocol/jsonrpc.js';
import { LISTS, ListError, UnavailableError, type ListKind, type ListSpec } from './lists.js';
import { FORWARDED_CAPABILITIES } from './server-requests.js';
import { MemoryRememberedLists, type ListsKey, type RememberedLists, type RememberedServer } from './remembered-lists.js';
import { capabilityOf, type Upstream } from '../hosting/upstream.js';
import { PREFIX_SEPARATOR, type UpstreamSpec } from '../hosting/upstream-config.js';
import { entryFilter, type NameTest } from '../local/name-globs.js';

export type Item = Record<string, unknown>;

/** A server's share of a merged list when it could not start (its report says why). */
export const DOWN = Symbol('down');
/** One server's part of a merged list: its items, DOWN, or undefined when its list failed (logged). */
export type Share = Item[] | typeof DOWN | undefined;

const KINDS = Object.keys(LISTS) as ListKind[];
/** The least time between two background fetches of one server's lists (a flood of list_changed). */
const MIN_REFRESH_MS = 1_000;

/** What the lists need of a server's config entry. */
interface Entry {
  /** The entry as JSON: the key its lists are remembered under. */
  text: string;
  /** Its names are shown under its prefix in merged views. */
  prefixed: boolean;
  tools: NameTest | undefined;
  prompts: NameTest | undefined;
}

export interface ServerListsOptions {
  /** Deadline for list calls to servers, in milliseconds. */
  listTimeoutMs: number;
  log?: ((event: string, details: Record<string, unknown>) => void) | undefined;
  /** Where lists are remembered across starts; in memory when not given. */
  remembered?: RememberedLists | undefined;
  /** The client capabilities a server started now would be offered (what the sessions declare together). */
  declared?: (() => Readonly<Record<string, unknown>>) | undefined;
  /** A running server's lists of this kind differ from what was shown from memory: its sessions should list again. */
  onchanged?: ((server: Upstream, kind: ListKind) => void) | undefined;
}

export class ServerLists {
  private readonly perServer = new Map<Upstream, Map<ListKind, Promise<Item[]>>>();
  /** Hosted servers' entries by name (the built-in server has none: always running, never filtered). */
  private readonly entries = new Map<string, Entry>();
  /** A server's own list -> the same filtered by its entry, kept so each list is filtered once. */
  private readonly filteredOf = new WeakMap<readonly Item[], Item[]>();
  /** Servers some merged list left out because they could not start: their sessions must hear when they do. */
  private readonly leftOut = new WeakSet<Upstream>();
  /** What was listed from memory of a server not running: compared with its own lists once it runs. */
  private readonly shown = new WeakMap<Upstream, RememberedServer>();
  /** Servers whose lists are being fetched to be remembered; `again` when they changed meanwhile. */
  private readonly refreshing = new WeakMap<Upstream, { again: boolean }>();
  private readonly remembered: RememberedLists;
  private readonly options: ServerListsOptions;

  constructor(options: ServerListsOptions) {
    this.options = options;
    this.remembered = options.remembered ?? new MemoryRememberedLists();
  }

  /**
   * A hosted server's entry, at start or reload: its filters apply from now on. An edited entry
   * is a new key: what was remembered under the old one is pruned.
   */
  configure(spec: UpstreamSpec): void {
    const text = JSON.stringify(spec);
    const before = this.entries.get(spec.name);
    const f = spec.filters;
    this.entries.set(spec.name, {
      text,
      prefixed: spec.prefix,
      tools: entryFilter(f?.includeTools, f?.excludeTools),
      prompts: entryFilter(f?.includePrompts, f?.excludePrompts),
    });
    if (before !== undefined && before.text !== text) this.remembered.prune(spec.name, text);
  }

  /** False when the server's entry filters this tool or prompt (its own name) out: it is neither listed nor callable. */
  allows(server: Upstream, kind: ListKind, name: string): boolean {
    return this.allowsName(server.name, kind, name);
  }

  /**
   * True when a visible name is, by its prefix in a merged view (or by the server of a
   * single-server view, `single`), one its server's entry filters out: known without starting it.
   */
  refuses(kind: ListKind, key: string, single: string | undefined): boolean {
    if (single !== undefined) return !this.allowsName(single, kind, key);
    const at = key.indexOf(PREFIX_SEPARATOR);
    const name = at > 0 ? key.slice(0, at) : undefined;
    const prefixed = name !== undefined && this.entries.get(name)?.prefixed === true;
    return prefixed && !this.allowsName(name, kind, key.slice(at + PREFIX_SEPARATOR.length));
  }

  /** {@link allows} by the server's name, before any instance of it is made. */
  allowsName(server: string, kind: ListKind, name: string): boolean {
    const test = this.filterOf(server, kind);
    return test === undefined || test(name);
  }

  /**
   * True when the server declares this capability: the running server's own, else the one
   * remembered of it (so a URI no list names still finds the only server offering resources).
   */
  offers(server: Upstream, capability: string): boolean {
    if (capabilityOf(server, capability) !== undefined) return true;
    const key = server.state === 'ready' ? undefined : this.keyOf(server);
    return key !== undefined && this.remembered.recall(key)?.capabilities[capability] !== undefined;
  }

  /**
   * One server's share of a merged list: from memory when it is not running (or starting for
   * the first time) and its lists were seen before, else from the server, which is started for
   * it. In a single-server view its failures are thrown instead: they are the view's.
   */
  async share(server: Upstream, kind: ListKind, single: boolean): Promise<Share> {
    const spec = LISTS[kind];
    const memory = this.fromMemory(server, kind);
    if (memory) return memory;
    try {
      await server.connect();
    } catch (error) {
      this.leftOut.add(server);
      if (single) throw new UnavailableError(server, (error as Error).message);
      return DOWN;
    }
    if (capabilityOf(server, spec.capability) === undefined) return [];
    try {
      return this.filtered(server, kind, await this.serverList(server, kind));
    } catch (error) {
      if (single) throw error;
      this.options.log?.('list failed', { server: server.name, method: spec.method, error: (error as Error).message });
      return undefined;
    }
  }

  /**
   * True once when a merged list left this server out because it could not start (and clears
   * that): now that it runs, the sessions that listed without it should list again.
   */
  missed(server: Upstream): boolean {
    return this.leftOut.delete(server);
  }

  /**
   * A start of the server failed: when it was listed from memory, `onchanged` tells its sessions
   * to list again, and it is left out now (a failed server is never listed from memory).
   */
  failed(server: Upstream): void {
    if (!this.shown.delete(server)) return;
    this.leftOut.add(server); // and told again once it starts (missed)
    this.tellChanged(server, KINDS);
  }

  /**
   * Drops cached lists of one server (some kinds, or all when null): it restarted or said
   * `list_changed`. A running server's lists are fetched again at once, to be remembered (refresh).
   */
  invalidate(server: Upstream, kinds: readonly ListKind[] | null): void {
    const cached = this.perServer.get(server);
    if (kinds === null) cached?.clear();
    else for (const kind of kinds) cached?.delete(kind);
    this.refresh(server);
  }

  /** A server left (reload, ended session): nothing of it is cached (what is remembered stays). */
  forget(server: Upstream): void {
    this.perServer.delete(server);
    this.shown.delete(server);
  }

  /**
   * The server runs (it became ready, or said `list_changed` and its caches were dropped): its
   * lists are fetched in the background and remembered, and when they differ from what was
   * listed from memory, `onchanged` says which kinds did. Never rejects; a failed fetch keeps
   * what was remembered. Nothing for a server that is not running.
   */
  private refresh(server: Upstream): void {
    if (server.state !== 'ready') return;
    const key = this.keyOf(server);
    if (!key) return;
    const running = this.refreshing.get(server);
    if (running) {
      // A flood of list_changed costs one more fetch after the one under way, not one each.
      running.again = true;
      return;
    }
    const state = { again: false };
    this.refreshing.set(server, state);
    const shown = this.shown.get(server);
    this.shown.delete(server);
    const startedMs = Date.now();
    void this.fetchRecord(server).then((record) => {
      if (!state.again) this.refreshing.delete(server);
      else {
        // A flood of list_changed: the next fetch at most once a second, whatever the server says.
        const wait = Math.max(0, MIN_REFRESH_MS - (Date.now() - startedMs));
        setTimeout(() => {
          this.refreshing.delete(server);
          this.refresh(server);
        }, wait).unref();
      }
      if (!record) return;
      try {
        // An entry edited meanwhile is another key: this process's lists are not its.
        if (this.entries.get(key.name)?.text === key.entry) this.remembered.remember(key, record);
        if (shown) this.compare(server, shown, record);
      } catch (error) {
        // A server's lists are its own data: nothing in them may reach the daemon as an exception.
        this.options.log?.('server lists not remembered', { server: server.name, error: (error as Error).message });
      }
    });
  }

  /** Tells `onchanged` of each kind whose filtered items differ. */
  private compare(server: Upstream, shown: RememberedServer, now: RememberedServer): void {
    const same = (kind: ListKind) => JSON.stringify(this.itemsOf(server, kind, shown)) === JSON.stringify(this.itemsOf(server, kind, now));
    this.tellChanged(
      server,
      KINDS.filter((kind) => !same(kind)),
    );
  }

  /** Tells `onchanged` of these kinds, once per change notification (resources and templates share one). */
  private tellChanged(server: Upstream, kinds: readonly ListKind[]): void {
    const told = new Set<string>();
    for (const kind of kinds) {
      if (told.has(LISTS[kind].changed)) continue;
      told.add(LISTS[kind].changed);
      this.options.onchanged?.(server, kind);
    }
  }

  /** A running server's capabilities and every list it offers, or undefined when it stopped or a list failed. */
  private async fetchRecord(server: Upstream): Promise<RememberedServer | undefined> {
    const capabilities = server.initializeResult?.capabilities;
    if (server.state !== 'ready' || typeof capabilities !== 'object' || capabilities === null) return undefined;
    const kinds = KINDS.filter((kind) => (capabilities as Record<string, unknown>)[LISTS[kind].capability] !== undefined);
    const offered = offeredNames(server, server.declaredCapabilities ?? {});
    try {
      const got = await Promise.all(kinds.map((kind) => this.serverList(server, kind)));
      // Kept as the catalog lists them: an item that is not an object, or that no client could be sent, never is.
      const listable = got.map((items) => items.filter((item) => isObject(item) && trySerialize(item).ok));
      const lists = Object.fromEntries(kinds.map((kind, i) => [kind, listable[i]]));
      return { capabilities: capabilities as Record<string, unknown>, lists, offered };
    } catch (error) {
      this.options.log?.('server lists not remembered: a list failed', { server: server.name, error: (error as Error).message });
      return undefined;
    }
  }

  /**
   * The remembered (filtered) items of a server that is not running, or undefined when it runs,
   * its last start failed, or nothing complete is remembered for it.
   */
  private fromMemory(server: Upstream, kind: ListKind): Item[] | undefined {
    const idle = server.state === 'stopped' || (server.state === 'starting' && server.lastError === undefined);
    const key = idle ? this.keyOf(server) : undefined;
    const memory = key ? this.remembered.recall(key) : undefined;
    if (!memory || !this.offersNow(server, memory.offered)) return undefined;
    const offered = memory.capabilities[LISTS[kind].capability] !== undefined;
    if (offered && memory.lists[kind] === undefined) return undefined;
    this.shown.set(server, memory);
    return this.itemsOf(server, kind, memory);
  }

  /** A remembered server's items of one kind, filtered: none when it does not offer the kind. */
  private itemsOf(server: Upstream, kind: ListKind, memory: RememberedServer): Item[] {
    if (memory.capabilities[LISTS[kind].capability] === undefined) return [];
    return this.filtered(server, kind, memory.lists[kind] ?? []);
  }

  /** True when a start now would offer the server the client capabilities its remembered lists were listed with. */
  private offersNow(server: Upstream, offered: readonly string[]): boolean {
    return offeredNames(server, this.options.declared?.() ?? {}).join() === [...offered].sort().join();
  }

  private keyOf(server: Upstream): ListsKey | undefined {
    const entry = this.entries.get(server.name);
    if (!entry) return undefined;
    // A session instance's lists are its entry's; a workspace one's may depend on its folder.
    return { name: server.name, entry: entry.text, folder: server.scope === 'workspace' ? (server.scopeKey ?? '') : '' };
  }

  private filterOf(server: string, kind: ListKind): NameTest | undefined {
    const entry = this.entries.get(server);
    return kind === 'tools' ? entry?.tools : kind === 'prompts' ? entry?.prompts : undefined;
  }

  private filtered(server: Upstream, kind: ListKind, items: readonly Item[]): Item[] {
    const test = this.filterOf(server.name, kind);
    if (test === undefined) return items as Item[];
    let kept = this.filteredOf.get(items);
    if (!kept) {
      // An item without a name is left for the catalog to drop, as it drops it unfiltered.
      kept = items.filter((item) => !isObject(item) || typeof item.name !== 'string' || test(item.name));
      this.filteredOf.set(items, kept);
    }
    return kept;
  }

  private serverList(server: Upstream, kind: ListKind): Promise<Item[]> {
    let kinds = this.perServer.get(server);
    if (!kinds) {
      kinds = new Map();
      this.perServer.set(server, kinds);
    }
    let cached = kinds.get(kind);
    if (!cached) {
      cached = this.fetchAll(server, LISTS[kind]);
      cached.catch(() => kinds.delete(kind));
      kinds.set(kind, cached);
    }
    return cached;
  }

  private async fetchAll(server: Upstream, spec: ListSpec): Promise<Item[]> {
    const items: Item[] = [];
    let cursor: unknown;
    for (let page = 0; page < 100; page++) {
      const outcome = await server.call(spec.method, cursor === undefined ? {} : { cursor }, { timeoutMs: this.options.listTimeoutMs });
      if (outcome === null) break;
      if ('error' in outcome) throw new ListError(outcome.error);
      const got = outcome.result[spec.key];
      // One by one: spreading a server's list of a few hundred thousand items into push() overflows the stack.
      if (Array.isArray(got)) for (const item of got as Item[]) items.push(item);
      cursor = outcome.result.nextCursor;
      if (typeof cursor !== 'string' || cursor.length === 0) break;
    }
    return items;
  }
}

/** The client capabilities a server is offered that may change what it lists, by name, sorted. */
function offeredNames(server: Upstream, capabilities: Readonly<Record<string, unknown>>): string[] {
  // A workspace instance is offered roots whatever the windows declare (the daemon answers them with its folder).
  const always = server.scope === 'workspace' ? 'roots' : undefined;
  return FORWARDED_CAPABILITIES.filter((name) => name !== always && capabilities[name] !== undefined).sort();
}
