/**
 * The set of servers behind the router, and the views sessions see. The default view merges
 * every server: tools and prompts of hosted servers carry a `<server>__` prefix (unless their
 * entry says `prefix: false`), the built-in server's keep bare names, resources keep their URIs
 * and are routed to the server that listed them. A single-server view (`exai-ws shim --server
 * NAME`) shows one server as it is, unprefixed.
 *
 * Lists are cached per server and kind, dropped when that server says `list_changed` or
 * restarts; merged views are rebuilt from those caches.
 */
import { RpcCode } from '../protocol/codes.js';
import type { RpcErrorObject, RpcNotification } from '../protocol/jsonrpc.js';
import type { ServerRequestHandler } from './server-link.js';
import type { UpstreamSpec } from './upstream-config.js';
import { Interests } from './interests.js';
import {
  LISTS,
  LIST_CHANGED_METHODS,
  ListError,
  UnavailableError,
  asRpcError,
  templatePattern,
  type ListKind,
  type ListSpec,
} from './lists.js';
import { capabilityOf, type Upstream } from './upstream.js';

export type { ListKind } from './lists.js';

export const PREFIX_SEPARATOR = '__';

/** Which servers a session sees: all of them (merged, prefixed) or one, as it is. */
export interface View {
  server?: string | undefined;
  /** The client's working directory: picks `workspace`-scoped instances. */
  workspace?: string | undefined;
  /** The session id: picks `session`-scoped instances. */
  session?: string | undefined;
}

interface Family {
  spec: UpstreamSpec;
  /** The spec as JSON, to see whether a reload changed it. */
  text: string;
  /** Scope key ('' for shared) -> instance. */
  instances: Map<string, Upstream>;
}

/** How long a call waits for a shared server to fetch its session's roots. */
const ROOTS_SWITCH_WAIT_MS = 1_000;

/** Client capabilities the daemon passes on to hosted servers (it routes their requests). */
export const FORWARDED_CAPABILITIES = ['sampling', 'elicitation', 'roots'] as const;

type Item = Record<string, unknown>;

export interface Target {
  server: Upstream;
  /** The name or URI as the server knows it. */
  name: string;
}

interface Merged {
  items: Item[];
  /** Session-visible name or URI -> the server and its own name. */
  index: Map<string, Target>;
  /** Resource templates, for URIs that are not listed. */
  templates: { pattern: RegExp; server: Upstream }[];
}

/** What a merged list call resolves to. */
export type ListOutcome = { items: Item[] } | { error: RpcErrorObject };

export interface HubOptions {
  /** Deadline for list calls to servers, in milliseconds. */
  listTimeoutMs: number;
  log?: (event: string, details: Record<string, unknown>) => void;
  /** Runs after every server has stopped (the core's watchdog ends there). */
  afterClose?: () => void;
  /** Makes an instance of a hosted server: `key` is the workspace or session of a scoped one. */
  create?: (spec: UpstreamSpec, key: string | undefined) => Upstream;
}

/** What a live reload changed, by server name. */
export interface ReloadReport {
  added: string[];
  removed: string[];
  restarted: string[];
  unchanged: string[];
}

export class Hub {
  /** A server's list changed: tell the sessions whose view includes it. */
  onlistchanged: ((notification: RpcNotification, server: string | Upstream) => void) | undefined;
  /** Other server notifications (log messages, resources/updated), for the daemon to fan out. */
  onservernotification: ((server: Upstream, notification: RpcNotification) => void) | undefined;
  /** Answers a server's sampling, elicitation and roots requests through the right session. */
  onserverrequest: ((server: Upstream, ...args: Parameters<ServerRequestHandler>) => ReturnType<ServerRequestHandler>) | undefined;

  private readonly builtin: Upstream;
  /** Hosted servers by name, in config order; each has one instance, or one per scope key. */
  private families = new Map<string, Family>();
  private readonly perServer = new Map<Upstream, Map<ListKind, Promise<Item[]>>>();
  private readonly merged = new Map<string, Map<ListKind, Promise<Merged>>>();
  private readonly options: HubOptions;
  /** Resource subscriptions and log levels of the sessions, per server. */
  readonly interests: Interests;
  /** Instances that have been ready before: the next ready is a restart. */
  private readonly seenReady = new WeakSet<Upstream>();

  constructor(builtin: Upstream, specs: readonly UpstreamSpec[], options: HubOptions) {
    this.builtin = builtin;
    this.options = options;
    this.interests = new Interests({
      timeoutMs: options.listTimeoutMs,
      servers: () => this.servers,
      sees: (view, server) => this.sees(view, server),
    });
    this.adopt(builtin);
    for (const spec of specs) this.families.set(spec.name, this.family(spec));
  }

  /** Every running or known instance: the built-in server first, then hosted ones in config order. */
  get servers(): Upstream[] {
    const all = [this.builtin];
    for (const family of this.families.values()) all.push(...family.instances.values());
    return all;
  }

  /** True when some hosted server runs one instance per workspace. */
  get hasWorkspaceServers(): boolean {
    return [...this.families.values()].some((f) => f.spec.scope === 'workspace');
  }

  /** Names of the hosted servers in the config. */
  get hostedNames(): string[] {
    return [...this.families.keys()];
  }

  private family(spec: UpstreamSpec): Family {
    const family: Family = { spec, text: JSON.stringify(spec), instances: new Map() };
    if (spec.scope === 'shared') family.instances.set('', this.make(spec, undefined));
    return family;
  }

  private make(spec: UpstreamSpec, key: string | undefined): Upstream {
    const create = this.options.create;
    if (!create) throw new Error('this hub cannot create hosted servers');
    const server = create(spec, key);
    this.adopt(server);
    return server;
  }

  private adopt(server: Upstream): void {
    server.onnotification = (n) => this.fromServer(server, n);
    server.onready = () => this.restored(server);
    server.onrequest = (request, context) =>
      this.onserverrequest?.(server, request, context) ??
      Promise.resolve({ error: { code: RpcCode.METHOD_NOT_FOUND, message: `${request.method} is not supported by this client` } });
  }

  /**
   * The instance of a server a view uses: the shared one, or the one for the view's workspace
   * or session (made on first use). Undefined when no server has that name.
   */
  instanceFor(name: string, view: View): Upstream | undefined {
    if (name === this.builtin.name) return this.builtin;
    const family = this.families.get(name);
    if (!family) return undefined;
    const key = family.spec.scope === 'workspace' ? (view.workspace ?? '') : family.spec.scope === 'session' ? (view.session ?? '') : '';
    let server = family.instances.get(key);
    if (!server) {
      server = this.make(family.spec, key);
      family.instances.set(key, server);
    }
    return server;
  }

  /**
   * Applies a new config (live reload): starts added servers, stops removed ones, restarts the
   * ones whose entry changed, leaves the rest (and their processes) alone. Sessions are told
   * that every list may have changed.
   */
  async reload(next: readonly UpstreamSpec[]): Promise<ReloadReport> {
    const report: ReloadReport = { added: [], removed: [], restarted: [], unchanged: [] };
    const stopping: Upstream[] = [];
    const families = new Map<string, Family>();
    const wanted = new Set(next.map((spec) => spec.name));
    for (const [name, family] of this.families) {
      if (wanted.has(name)) continue;
      report.removed.push(name);
      stopping.push(...family.instances.values());
    }
    for (const spec of next) {
      const current = this.families.get(spec.name);
      if (current && current.text === JSON.stringify(spec)) {
        report.unchanged.push(spec.name);
        families.set(spec.name, current);
        continue;
      }
      if (current) {
        report.restarted.push(spec.name);
        stopping.push(...current.instances.values());
      } else {
        report.added.push(spec.name);
      }
      families.set(spec.name, this.family(spec));
    }
    for (const server of stopping) {
      this.perServer.delete(server);
      this.interests.forget(server);
    }
    this.families = families;
    this.merged.clear();
    const changed = [...report.added, ...report.removed, ...report.restarted];
    if (changed.length > 0) {
      for (const method of LIST_CHANGED_METHODS) {
        for (const name of changed) this.onlistchanged?.({ jsonrpc: '2.0', method }, name);
      }
    }
    await Promise.all(stopping.map((s) => s.close()));
    for (const spec of next) {
      if (spec.start === 'eager' && !report.unchanged.includes(spec.name)) {
        void families
          .get(spec.name)
          ?.instances.get('')
          ?.connect()
          .catch(() => undefined);
      }
    }
    return report;
  }

  /** Starts the eager (shared) servers. Resolves when each has started or failed (failures are kept in its state). */
  async start(): Promise<void> {
    const eager = [...this.families.values()].filter((f) => f.spec.start === 'eager').flatMap((f) => [...f.instances.values()]);
    await Promise.all(eager.map((s) => s.connect().catch(() => undefined)));
  }

  /** Stops every server. Idempotent. */
  async close(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.close()));
    this.options.afterClose?.();
  }

  /** True when a server of this name exists (built-in or hosted). */
  has(name: string): boolean {
    return name === this.builtin.name || this.families.has(name);
  }

  /** True when the view includes this server (by name; an instance also by its scope key). */
  sees(view: View, server: string | Upstream): boolean {
    const name = typeof server === 'string' ? server : server.name;
    if (view.server !== undefined && view.server !== name) return false;
    if (typeof server === 'string' || server.scope === 'shared') return true;
    return server.scopeKey === (server.scope === 'workspace' ? (view.workspace ?? '') : (view.session ?? ''));
  }

  /**
   * A session declared client capabilities: a running hosted server that was started without
   * one of them (so it may have left out the tools that need it) is restarted to be offered
   * them, once it has no call in flight; its sessions then get `list_changed`.
   */
  offerCapabilities(capabilities: Readonly<Record<string, unknown>> | undefined, view: View): void {
    const offered = FORWARDED_CAPABILITIES.filter((name) => capabilities?.[name] !== undefined);
    if (offered.length === 0) return;
    for (const server of this.inView(view)) {
      if (server === this.builtin) continue;
      const declared = server.declaredCapabilities;
      if (!declared || offered.every((name) => declared[name] !== undefined)) continue;
      if (server.inflight > 0) continue; // never cut calls short; a later session will offer again
      void server.renew(`a client offers ${offered.filter((n) => declared[n] === undefined).join(', ')}`);
    }
  }

  /**
   * Before a session calls a shared server that keeps the roots of another session, tells the
   * server the roots changed and waits (briefly) until it has fetched this session's. A server
   * that never asked for roots is left alone.
   */
  rootsFor(server: Upstream, sessionId: string, clientHasRoots: boolean): Promise<void> | undefined {
    // Undefined (nothing to wait for) in the common case, so calls do not pay an extra await.
    if (server.scope !== 'shared' || !clientHasRoots || server.rootsOf === undefined || server.rootsOf === sessionId) return undefined;
    if (server.state !== 'ready') return undefined;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ROOTS_SWITCH_WAIT_MS);
      function done(): void {
        clearTimeout(timer);
        if (server.rootsWanted?.answered === done) server.rootsWanted = undefined;
        resolve();
      }
      server.rootsWanted = { session: sessionId, answered: done };
      server.notify('notifications/roots/list_changed');
    });
  }

  /** A session ended: it no longer keeps servers from going idle, subscribed, or verbose. */
  sessionClosed(sessionId: string): void {
    for (const family of this.families.values()) {
      const own = family.spec.scope === 'session' ? family.instances.get(sessionId) : undefined;
      if (!own) continue;
      // A session-scoped server lives exactly as long as its session.
      family.instances.delete(sessionId);
      this.perServer.delete(own);
      this.interests.forget(own);
      this.merged.clear();
      void own.close();
    }
    for (const server of this.servers) server.users.delete(sessionId);
    this.interests.sessionClosed(sessionId);
  }

  /** A (re)started server: fresh lists, and the subscriptions and log level it lost. */
  private restored(server: Upstream): void {
    this.invalidate(server, null);
    if (this.seenReady.has(server)) {
      // A new process may offer other tools: the sessions that see it list again.
      for (const method of LIST_CHANGED_METHODS) this.onlistchanged?.({ jsonrpc: '2.0', method }, server);
    }
    this.seenReady.add(server);
    this.interests.restored(server);
  }

  /** The merged list for one kind in a view. A server that cannot start is left out (its error is in its report). */
  async list(kind: ListKind, view: View): Promise<ListOutcome> {
    try {
      return { items: (await this.mergedView(kind, view)).items };
    } catch (error) {
      this.merged.get(this.viewKey(view))?.delete(kind);
      return { error: asRpcError(error) };
    }
  }

  /** Resolves a session-visible tool or prompt name, or resource URI, to its server. */
  async resolve(kind: ListKind, key: string, view: View): Promise<Target | undefined> {
    const merged = await this.mergedView(kind, view).catch(() => undefined);
    const hit = merged?.index.get(key);
    if (hit || kind !== 'resources') return hit;
    // A URI made from a resource template is not in resources/list: match the templates.
    const templates = await this.mergedView('resourceTemplates', view).catch(() => undefined);
    const byTemplate = templates?.templates.find((t) => t.pattern.test(key));
    if (byTemplate) return { server: byTemplate.server, name: key };
    const offering = this.inView(view).filter((s) => capabilityOf(s, 'resources') !== undefined);
    return offering.length === 1 && offering[0] ? { server: offering[0], name: key } : undefined;
  }

  /** The instances a view sees: the built-in server (unless single-server) and each hosted one. */
  private inView(view: View): Upstream[] {
    if (view.server !== undefined) {
      const only = this.instanceFor(view.server, view);
      return only ? [only] : [];
    }
    const all = [this.builtin];
    for (const name of this.families.keys()) {
      const server = this.instanceFor(name, view);
      if (server) all.push(server);
    }
    return all;
  }

  /** Views that see the same instances share one merged cache. */
  private viewKey(view: View): string {
    let workspace = '';
    let session = '';
    for (const family of this.families.values()) {
      if (view.server !== undefined && view.server !== family.spec.name) continue;
      if (family.spec.scope === 'workspace') workspace = view.workspace ?? '';
      if (family.spec.scope === 'session') session = view.session ?? '';
    }
    return `${view.server ?? '*'}\u0000${workspace}\u0000${session}`;
  }

  private mergedView(kind: ListKind, view: View): Promise<Merged> {
    const key = this.viewKey(view);
    let kinds = this.merged.get(key);
    if (!kinds) {
      kinds = new Map();
      this.merged.set(key, kinds);
    }
    let cached = kinds.get(kind);
    if (!cached) {
      cached = this.build(kind, view);
      kinds.set(kind, cached);
    }
    return cached;
  }

  private async build(kind: ListKind, view: View): Promise<Merged> {
    const spec = LISTS[kind];
    const single = view.server !== undefined;
    const inView = this.inView(view);
    const lists = await Promise.all(
      inView.map(async (server) => {
        try {
          await server.connect();
        } catch (error) {
          if (single) throw new UnavailableError(server, (error as Error).message);
          return []; // left out of the merged view; its report says why
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
      for (const item of lists[i] ?? []) {
        const own = String(item[spec.routeBy] ?? '');
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
    });
    return { items, index, templates };
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
      if (Array.isArray(got)) items.push(...(got as Item[]));
      cursor = outcome.result.nextCursor;
      if (typeof cursor !== 'string' || cursor.length === 0) break;
    }
    return items;
  }

  /** Drops cached lists of one server (one kind, or all when null) and every merged view. */
  private invalidate(server: Upstream, kinds: ListKind[] | null): void {
    const cached = this.perServer.get(server);
    if (cached) {
      if (kinds === null) cached.clear();
      else for (const kind of kinds) cached.delete(kind);
    }
    this.merged.clear();
  }

  private fromServer(server: Upstream, n: RpcNotification): void {
    const kinds = (Object.keys(LISTS) as ListKind[]).filter((kind) => LISTS[kind].changed === n.method);
    if (kinds.length > 0) {
      this.invalidate(server, kinds);
      this.onlistchanged?.({ jsonrpc: '2.0', method: n.method }, server);
      return;
    }
    this.onservernotification?.(server, n);
  }
}
