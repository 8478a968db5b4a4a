/**
 * What sessions see of the servers' tools, prompts and resources: the lists of each server
 * (server-lists.ts: cached per kind until the server says `list_changed` or restarts, filtered
 * by its entry, remembered while it is not running), and the merged list of each view, rebuilt
 * from them. In the default view the tools and prompts of
 * hosted servers carry a `<server>__` prefix (unless their entry says `prefix: false`), the
 * built-in server's keep bare names, and resources keep their URIs; every visible name or URI
 * resolves to the server that listed it. A single-server view shows its server as it is.
 *
 * A slow or silent server holds up no one: a merged list waits at most `listWaitMs` for the
 * servers still starting (or slow to list) and answers with what is known; each late one is
 * announced with `onarrived` (the hub sends `list_changed`) once its list is there. A call by a
 * prefixed name waits only for the servers that could hold the name, not for the whole list.
 */
import { isObject, trySerialize, type RpcErrorObject } from '../protocol/jsonrpc.js';
import { LISTS, UnavailableError, asRpcError, templatePattern, type ListKind } from './lists.js';
import type { Upstream } from '../hosting/upstream.js';
import { DOWN, ServerLists, type Item, type Share } from './server-lists.js';
import type { RememberedLists } from './remembered-lists.js';
import { PREFIX_SEPARATOR } from '../hosting/upstream-config.js';

/**
 * How long a merged list waits for servers still starting: a server started by its first list
 * is usually ready in well under a second; one that takes longer (an npx download, a server that
 * never answers) is listed once it is there, without holding up the list.
 */
export const DEFAULT_LIST_WAIT_MS = 2_000;

/** A server's share of a merged list that was not there within the list wait. */
const LATE = Symbol('late');

/** Which server a visible name or URI belongs to, and its name there. */
export interface Target {
  server: Upstream;
  /** The name or URI as the server knows it. */
  name: string;
}

/** What a merged list call resolves to. */
export type ListOutcome = { items: Item[]; index?: ReadonlyMap<string, Target> } | { error: RpcErrorObject };

interface Merged {
  items: Item[];
  /** Session-visible name or URI -> the server and its own name. */
  index: Map<string, Target>;
  /** Resource templates, for URIs that are not listed. */
  templates: { pattern: RegExp; server: Upstream }[];
  /** Servers left out because they could not start: names under their prefix still route to them. */
  down: Upstream[];
}

/** A view as the catalog needs it: its servers, and a key shared by views that see the same ones. */
export interface CatalogView {
  /** True for a single-server view: no prefixes, and that server's failures are the view's. */
  single: boolean;
  key: string;
  servers: () => Upstream[];
  /** False for a name (as the view shows it) that the view's profile hides; undefined: all shown. */
  shows?: ((kind: ListKind, visible: string) => boolean) | undefined;
}

export interface CatalogOptions {
  /** Deadline for list calls to servers, in milliseconds. */
  listTimeoutMs: number;
  /**
   * How long a merged list waits for servers still starting or slow to list before it answers
   * without them, in milliseconds; 0 = as long as they take (DEFAULT_LIST_WAIT_MS when unset).
   */
  listWaitMs?: number | undefined;
  log?: ((event: string, details: Record<string, unknown>) => void) | undefined;
  /** A server left out of a merged list for being late has its list now: its sessions should list again. */
  onarrived?: ((server: Upstream, kind: ListKind) => void) | undefined;
  /** Where servers' lists are remembered across starts (see ServerLists); in memory when not given. */
  remembered?: RememberedLists | undefined;
  /** The client capabilities a server started now would be offered (see ServerLists). */
  declared?: (() => Readonly<Record<string, unknown>>) | undefined;
}

export class Catalog {
  /** Each server's own lists: cached, filtered by its entry, remembered (server-lists.ts). */
  readonly lists: ServerLists;
  private readonly merged = new Map<string, Map<ListKind, Promise<Merged>>>();
  /** Merged lists that are built (not still waiting for their servers), by their promise. */
  private readonly built = new WeakMap<Promise<Merged>, Merged>();
  /** A server's list -> the names (or URIs) it routes, for calls resolved by prefix (byPrefix). */
  private readonly routed = new WeakMap<Item[], Set<string>>();
  /** Every name or URI in a merged list built since the caches were last dropped, per kind. */
  private readonly listed = new Map<ListKind, Set<string>>();
  /** Names byPrefix found listed since the caches were last dropped (view key, kind): found again without a list wait. */
  private readonly prefixHits = new Map<string, Map<ListKind, Map<string, Target>>>();
  /** How many times the caches were dropped: a lookup that waited across a drop is not kept. */
  private drops = 0;
  private readonly options: CatalogOptions;

  constructor(options: CatalogOptions) {
    this.options = options;
    // A running server's lists differ from those listed from memory: as a late one, listed again.
    const onchanged = (server: Upstream, kind: ListKind) => this.arrived(server, kind);
    const { listTimeoutMs, log, remembered, declared } = options;
    this.lists = new ServerLists({ listTimeoutMs, log, remembered, declared, onchanged });
  }

  /** The merged list for one kind in a view. A server that cannot start is left out (its error is in its report). */
  async list(kind: ListKind, view: CatalogView): Promise<ListOutcome> {
    try {
      const merged = await this.mergedView(kind, view);
      return { items: merged.items, index: merged.index };
    } catch (error) {
      return { error: asRpcError(error) };
    }
  }

  /**
   * Resolves a session-visible tool or prompt name, or resource URI, to its server. A name under
   * the prefix of a server that could not start (and, in a single-server view, any name) resolves
   * to that server, so that a call gets its -32011 and last start error instead of "unknown".
   */
  async resolve(kind: ListKind, key: string, view: CatalogView): Promise<Target | undefined> {
    if (view.shows?.(kind, key) === false) return undefined;
    const cached = this.merged.get(view.key)?.get(kind);
    if (LISTS[kind].prefixed !== null && !view.single && (cached === undefined || !this.built.has(cached))) {
      const byPrefix = await this.byPrefix(kind, key, view);
      if (byPrefix) return byPrefix;
    }
    let merged: Merged | undefined;
    try {
      merged = await this.mergedView(kind, view);
    } catch (error) {
      if (error instanceof UnavailableError) return { server: error.server, name: key };
    }
    const hit = merged?.index.get(key);
    if (hit) return hit;
    const prefixed = LISTS[kind].prefixed !== null && !view.single;
    const down = prefixed ? merged?.down.find((s) => s.prefix !== null && key.startsWith(`${s.prefix}${PREFIX_SEPARATOR}`)) : undefined;
    if (down?.prefix) return { server: down, name: key.slice(down.prefix.length + PREFIX_SEPARATOR.length) };
    if (kind !== 'resources') return undefined;
    // A URI made from a resource template is not in resources/list: match the templates.
    const templates = await this.mergedView('resourceTemplates', view).catch(() => undefined);
    const byTemplate = templates?.templates.find((t) => t.pattern.test(key));
    if (byTemplate) return { server: byTemplate.server, name: key };
    const offering = view.servers().filter((s) => this.lists.offers(s, 'resources'));
    return offering.length === 1 && offering[0] ? { server: offering[0], name: key } : undefined;
  }

  /**
   * What {@link resolve} would resolve to when the view's merged list is built and lists `key`,
   * found without waiting a turn; undefined otherwise (resolve decides then). For the hot path.
   */
  resolveBuilt(kind: ListKind, key: string, view: CatalogView): Target | undefined {
    const cached = this.merged.get(view.key)?.get(kind);
    const built = cached === undefined ? undefined : this.built.get(cached);
    if (built !== undefined) return built.index.get(key);
    return this.prefixHits.get(view.key)?.get(kind)?.get(key);
  }

  /**
   * True when a merged list built since the caches were last dropped holds this name or URI,
   * in any view. Synchronous and cheap: for metrics, which count only names that exist.
   */
  knows(kind: ListKind, key: string): boolean {
    return this.listed.get(kind)?.has(key) ?? false;
  }

  /**
   * True once when a merged list left this server out because it could not start (and clears
   * that): now that it runs, the sessions that listed without it should list again.
   */
  missed(server: Upstream): boolean {
    return this.lists.missed(server);
  }

  /** Drops what was merged or resolved from the servers' lists (they changed, or the servers did). */
  private dropMerged(): void {
    this.merged.clear();
    this.listed.clear();
    this.prefixHits.clear();
    this.drops++;
  }

  /** Drops every merged view: the set of servers changed (a reload). */
  dropViews(): void {
    this.dropMerged();
  }

  /** Drops cached lists of one server (some kinds, or all when null) and every merged view. */
  invalidate(server: Upstream, kinds: readonly ListKind[] | null): void {
    this.lists.invalidate(server, kinds);
    this.dropMerged();
  }

  /** A server left (reload, ended session): nothing of it is kept. */
  forget(server: Upstream): void {
    this.lists.forget(server);
    this.dropMerged();
  }

  private mergedView(kind: ListKind, view: CatalogView): Promise<Merged> {
    let kinds = this.merged.get(view.key);
    if (!kinds) {
      kinds = new Map();
      this.merged.set(view.key, kinds);
    }
    let cached = kinds.get(kind);
    if (!cached) {
      const building = this.build(kind, view);
      cached = building;
      kinds.set(kind, building);
      const owner = kinds;
      building.then(
        (merged) => {
          this.built.set(building, merged);
          let names = this.listed.get(kind);
          if (!names) this.listed.set(kind, (names = new Set()));
          for (const key of merged.index.keys()) names.add(key);
        },
        // A failed build is not kept: the next list or call tries again.
        () => {
          if (owner.get(kind) === building) owner.delete(kind);
        },
      );
    }
    return cached;
  }

  private async build(kind: ListKind, view: CatalogView): Promise<Merged> {
    const spec = LISTS[kind];
    const single = view.single;
    const inView = view.servers();
    const down: Upstream[] = [];
    const shares = inView.map((server) => this.lists.share(server, kind, single));
    const got = await this.withinWait(shares, single);
    const lists = got.map((share, i) => {
      const server = inView[i] as Upstream;
      if (share === LATE) {
        // Left out for now, like a server that could not start: names under its prefix still
        // route to it (a call waits for its start), and the sessions hear when it is there.
        down.push(server);
        void (shares[i] as Promise<Share>).then((late) => {
          if (Array.isArray(late)) this.arrived(server, kind);
        });
        return [];
      }
      if (share === DOWN) down.push(server); // left out; its report says why, and calls under its prefix get it
      return Array.isArray(share) ? share : [];
    });
    const items: Item[] = [];
    const index = new Map<string, Target>();
    const templates: Merged['templates'] = [];
    inView.forEach((server, i) => {
      let dropped = 0;
      for (const item of lists[i] ?? []) {
        const own = isObject(item) ? item[spec.routeBy] : undefined;
        // A server's list is its own data: an item without a name, or one no client could be sent
        // (nested too deeply), is left out rather than failing the whole merged list.
        if (typeof own !== 'string' || !trySerialize(item).ok) {
          dropped++;
          continue;
        }
        let visible = own;
        let shown = item;
        if (spec.prefixed && server.prefix !== null && !single) {
          visible = `${server.prefix}${PREFIX_SEPARATOR}${own}`;
          shown = { ...item, [spec.prefixed]: visible };
        }
        // The first server wins a clash (the other stays reachable by prefix); a name the view's profile hides is not listed.
        if (index.has(visible) || view.shows?.(kind, visible) === false) continue;
        index.set(visible, { server, name: own });
        items.push(shown);
        if (kind === 'resourceTemplates') templates.push({ pattern: templatePattern(own), server });
      }
      if (dropped > 0) this.options.log?.('list items dropped', { server: server.name, method: spec.method, dropped });
    });
    return { items, index, templates, down };
  }

  /**
   * The shares as they are once the list wait has passed: LATE for each one not there yet (it
   * goes on in the background). A single-server view waits as long as its server takes: it is
   * that server, as transparent as its initialize, and holds up no other.
   */
  private async withinWait(shares: Promise<Share>[], single: boolean): Promise<(Share | typeof LATE)[]> {
    const waitMs = this.options.listWaitMs ?? DEFAULT_LIST_WAIT_MS;
    if (single || waitMs === 0) return Promise.all(shares);
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<typeof LATE>((resolve) => (timer = setTimeout(() => resolve(LATE), waitMs)));
    try {
      return await Promise.all(shares.map((share) => Promise.race([share, waited])));
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * A prefixed name names its server: the call waits for the lists of the servers that could
   * hold it (those whose prefix begins it, and before them those whose names are not prefixed,
   * which win a clash), not for every server in the view. Undefined when none of them lists it
   * within the list wait: the merged list decides then.
   */
  private async byPrefix(kind: ListKind, key: string, view: CatalogView): Promise<Target | undefined> {
    const spec = LISTS[kind];
    const all = view.servers();
    const underPrefix = (server: Upstream) => server.prefix !== null && key.startsWith(`${server.prefix}${PREFIX_SEPARATOR}`);
    const last = all.findLastIndex(underPrefix);
    if (last < 0) return undefined;
    const could = all.slice(0, last + 1).filter((server) => server.prefix === null || underPrefix(server));
    const drops = this.drops;
    const got = await this.withinWait(
      could.map((server) => this.lists.share(server, kind, false)),
      false,
    );
    for (const [i, server] of could.entries()) {
      const items = got[i];
      if (!Array.isArray(items)) continue;
      let names = this.routed.get(items);
      if (!names) {
        // As build() takes them: an item without a name, or one no client could be sent, is not listed.
        names = new Set(
          items.flatMap((item) =>
            isObject(item) && typeof item[spec.routeBy] === 'string' && trySerialize(item).ok ? [item[spec.routeBy] as string] : [],
          ),
        );
        this.routed.set(items, names);
      }
      const own = server.prefix === null ? key : key.slice(server.prefix.length + PREFIX_SEPARATOR.length);
      if (names.has(own)) {
        let listed = this.listed.get(kind);
        if (!listed) this.listed.set(kind, (listed = new Set()));
        listed.add(key); // a name that exists, for the metrics (knows)
        const target = { server, name: own };
        if (drops === this.drops) this.rememberHit(view.key, kind, key, target);
        return target;
      }
    }
    return undefined;
  }

  private rememberHit(viewKey: string, kind: ListKind, key: string, target: Target): void {
    const kinds = this.prefixHits.get(viewKey) ?? new Map<ListKind, Map<string, Target>>();
    this.prefixHits.set(viewKey, kinds);
    kinds.set(kind, (kinds.get(kind) ?? new Map<string, Target>()).set(key, target));
  }

  /** A late server's list is there: merged lists are built again with it, and its sessions told. */
  private arrived(server: Upstream, kind: ListKind): void {
    this.dropMerged();
    this.options.onarrived?.(server, kind);
  }
}
