/**
 * What sessions see of the servers' tools, prompts and resources: the lists of each server,
 * cached per kind and dropped when the server says `list_changed` or restarts, and the merged
 * list of each view, rebuilt from those caches. In the default view the tools and prompts of
 * hosted servers carry a `<server>__` prefix (unless their entry says `prefix: false`), the
 * built-in server's keep bare names, and resources keep their URIs; every visible name or URI
 * resolves to the server that listed it. A single-server view shows its server as it is.
 */
import { isObject, trySerialize, type RpcErrorObject } from '../protocol/jsonrpc.js';
import { LISTS, ListError, UnavailableError, asRpcError, templatePattern, type ListKind, type ListSpec } from './lists.js';
import { capabilityOf, type Upstream } from './upstream.js';

export const PREFIX_SEPARATOR = '__';

type Item = Record<string, unknown>;

/** Which server a visible name or URI belongs to, and its name there. */
export interface Target {
  server: Upstream;
  /** The name or URI as the server knows it. */
  name: string;
}

/** What a merged list call resolves to. */
export type ListOutcome = { items: Item[] } | { error: RpcErrorObject };

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
}

export interface CatalogOptions {
  /** Deadline for list calls to servers, in milliseconds. */
  listTimeoutMs: number;
  log?: ((event: string, details: Record<string, unknown>) => void) | undefined;
}

export class Catalog {
  private readonly perServer = new Map<Upstream, Map<ListKind, Promise<Item[]>>>();
  private readonly merged = new Map<string, Map<ListKind, Promise<Merged>>>();
  /** Every name or URI in a merged list built since the caches were last dropped, per kind. */
  private readonly listed = new Map<ListKind, Set<string>>();
  /** Servers some merged list left out because they could not start: their sessions must hear when they do. */
  private readonly leftOut = new WeakSet<Upstream>();
  private readonly options: CatalogOptions;

  constructor(options: CatalogOptions) {
    this.options = options;
  }

  /** The merged list for one kind in a view. A server that cannot start is left out (its error is in its report). */
  async list(kind: ListKind, view: CatalogView): Promise<ListOutcome> {
    try {
      return { items: (await this.mergedView(kind, view)).items };
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
    const offering = view.servers().filter((s) => capabilityOf(s, 'resources') !== undefined);
    return offering.length === 1 && offering[0] ? { server: offering[0], name: key } : undefined;
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
    return this.leftOut.delete(server);
  }

  /** Drops every merged view: the set of servers changed (a reload). */
  dropViews(): void {
    this.merged.clear();
    this.listed.clear();
  }

  /** Drops cached lists of one server (some kinds, or all when null) and every merged view. */
  invalidate(server: Upstream, kinds: readonly ListKind[] | null): void {
    const cached = this.perServer.get(server);
    if (cached) {
      if (kinds === null) cached.clear();
      else for (const kind of kinds) cached.delete(kind);
    }
    this.merged.clear();
    this.listed.clear();
  }

  /** A server left (reload, ended session): nothing of it is kept. */
  forget(server: Upstream): void {
    this.perServer.delete(server);
    this.merged.clear();
    this.listed.clear();
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
    const lists = await Promise.all(
      inView.map(async (server) => {
        try {
          await server.connect();
        } catch (error) {
          this.leftOut.add(server);
          if (single) throw new UnavailableError(server, (error as Error).message);
          down.push(server);
          return []; // left out of the merged view; its report says why, and calls under its prefix get it
        }
        if (capabilityOf(server, spec.capability) === undefined) return [];
        return this.serverList(server, kind).catch((error: unknown) => {
          if (single) throw error;
          this.options.log?.('list failed', { server: server.name, method: spec.method, error: (error as Error).message });
          return [];
        });
      }),
    );
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
        if (index.has(visible)) continue; // first server wins a clash; the other stays reachable by prefix
        index.set(visible, { server, name: own });
        items.push(shown);
        if (kind === 'resourceTemplates') templates.push({ pattern: templatePattern(own), server });
      }
      if (dropped > 0) this.options.log?.('list items dropped', { server: server.name, method: spec.method, dropped });
    });
    return { items, index, templates, down };
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
