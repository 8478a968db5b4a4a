/**
 * The servers behind the router: the built-in one and the hosted ones (one instance each, or
 * one per workspace or session), live reload, and what the sessions share through them: the
 * catalog of their lists (catalog.ts), resource subscriptions and log levels (interests.ts),
 * the capabilities offered to them and the roots they see. A session's view picks which
 * servers it sees: all of them merged, or one (`exai-ws shim --server NAME`) as it is.
 */
import type { RpcNotification } from '../protocol/jsonrpc.js';
import { Catalog, type CatalogView, type ListOutcome, type Target } from './catalog.js';
import type { OAuthLogins } from '../hosting/oauth/logins.js';
import type { CoreCountReason, CoreLog } from '../hosting/core-log.js';
import type { UpstreamSpec } from '../hosting/upstream-config.js';
import { Interests } from './interests.js';
import { LISTS, LIST_CHANGED_METHODS, type ListKind } from './lists.js';
import { MemoryLearnedTools, ServerRequests, type LearnedTools } from './server-requests.js';
import type { RememberedLists } from './remembered-lists.js';
import { SessionContext, type ClientPeer, type SessionCore, type SessionOpening } from './session-context.js';
import type { View } from './view.js';
import { planReload, type Family } from './reload-plan.js';
import { Profiles, type ProfileOf, type ProfileSpec } from './profiles.js';
import type { Upstream } from '../hosting/upstream.js';
import type { ReloadReport } from '../local/health.js';

export type { ListKind } from './lists.js';

/**
 * What the router asks of the hub: lookups by view, nothing about any session (that is the
 * session's own SessionContext). `Hub` implements it.
 */
export interface RouterHub {
  /** True when some hosted server runs one instance per workspace (roots may move a session). */
  readonly hasWorkspaceServers: boolean;
  list(kind: ListKind, view: View): Promise<ListOutcome>;
  resolve(kind: ListKind, key: string, view: View): Promise<Target | undefined>;
  /** The view's profile (see Profiles.of). */
  profileOf(view: View): ProfileOf;
  /** The target {@link resolve} would give when it is known now (a built merged list), else undefined. */
  resolveKnown?(kind: ListKind, key: string, view: View): Target | undefined;
  instanceFor(name: string, view: View): Upstream | undefined;
  /** OAuth logins to `url` servers (a window told to log in gets the URL from here). */
  readonly logins?: OAuthLogins | undefined;
}

export interface HubOptions {
  /** Deadline for list calls to servers, in milliseconds. */
  listTimeoutMs: number;
  /** How long a merged list waits for servers still starting before it answers without them (see Catalog). */
  listWaitMs?: number;
  log?: CoreLog;
  /** Runs after every server has stopped (the core's watchdog ends there). */
  afterClose?: () => void;
  /** Makes an instance of a hosted server: `key` is the workspace or session of a scoped one. */
  create?: (spec: UpstreamSpec, key: string | undefined) => Upstream;
  /** Tools known to ask the client back; in memory when not given. */
  learned?: LearnedTools;
  /** Servers' lists remembered once seen, so lists need not start them; in memory when not given. */
  remembered?: RememberedLists;
  /** Bounds a client's answer to a server's request, in milliseconds (default: listTimeoutMs). */
  requestTimeoutMs?: number;
  /** Counts an event for the metrics (`origin_unknown`, `stray_answer`). */
  count?: (reason: CoreCountReason) => void;
}

export class Hub implements RouterHub {
  /** A server's list changed: tell the sessions whose view includes it (null: every session, the profiles changed). */
  onlistchanged: ((notification: RpcNotification, server: string | Upstream | null) => void) | undefined;
  /** Other server notifications (log messages, resources/updated), for the daemon to fan out. */
  onservernotification: ((server: Upstream, notification: RpcNotification) => void) | undefined;
  /** Servers' requests to clients, and sessions' calls to servers (see server-requests.ts). */
  readonly requests: ServerRequests;
  /** The config's profiles: what each window sees of the servers. */
  readonly profiles = new Profiles();
  /** OAuth logins to `url` servers, when the core keeps them (core.ts). */
  logins: OAuthLogins | undefined;

  private readonly builtin: Upstream;
  /** Hosted servers by name, in config order; each has one instance, or one per scope key. */
  private families = new Map<string, Family>();
  private readonly options: HubOptions;
  /** The servers' lists, merged per view. */
  private readonly catalog: Catalog;
  /** Resource subscriptions of the sessions and the log levels applied, per server. */
  private readonly interests: Interests;
  /** Instances that have been ready before: the next ready is a restart. */
  private readonly seenReady = new WeakSet<Upstream>();
  /** The open sessions. */
  private readonly contexts = new Map<string, SessionContext>();

  /** What each session's context may do here: see SessionCore. */
  private readonly core: SessionCore = {
    sees: (view, server) => this.sees(view, server),
    call: (context, server, method, params, options) => this.requests.call(context, server, method, params, options),
    subscribe: (id, server, uri, options) => this.interests.subscribe(id, server, uri, options),
    unsubscribe: (id, server, uri, options) => this.interests.unsubscribe(id, server, uri, options),
    levelsChanged: () => this.interests.levelsChanged(),
    offer: (context) => this.offerCapabilities(context),
    closed: (context) => this.sessionClosed(context),
  };

  constructor(builtin: Upstream, specs: readonly UpstreamSpec[], options: HubOptions, profiles: readonly ProfileSpec[] = []) {
    this.builtin = builtin;
    this.profiles.set(profiles);
    this.options = options;
    this.catalog = new Catalog({
      listTimeoutMs: options.listTimeoutMs,
      listWaitMs: options.listWaitMs,
      log: options.log,
      remembered: options.remembered,
      declared: () => this.requests.declared(),
      // Listed without it while it started: the sessions that see it list again.
      onarrived: (server, kind) => this.onlistchanged?.({ jsonrpc: '2.0', method: LISTS[kind].changed }, server),
    });
    this.interests = new Interests({
      timeoutMs: options.listTimeoutMs,
      servers: () => this.servers,
      sees: (view, server) => this.sees(view, server),
      levels: () => this.contexts.values(),
    });
    this.requests = new ServerRequests({
      contexts: this.contexts,
      learned: options.learned ?? new MemoryLearnedTools(),
      requestTimeoutMs: options.requestTimeoutMs ?? options.listTimeoutMs,
      log: options.log,
      count: options.count,
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
    this.catalog.lists.configure(spec);
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
    server.onrequest = (request, context) => this.requests.answer(server, request, context);
    server.onstray = () => this.options.count?.('stray_answer');
    server.onfailed = () => this.catalog.lists.failed(server);
  }

  /** Opens a session's context; its close() releases what the session holds here. */
  openSession(id: string, opening: SessionOpening, peer: ClientPeer): SessionContext {
    const context = new SessionContext(id, opening, peer, this.core);
    this.contexts.set(id, context);
    return context;
  }

  /** The sessions subscribed to a URI of a server (by id). */
  subscribers(server: Upstream, uri: string): ReadonlySet<string> {
    return this.interests.subscribers(server, uri);
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

  /** A hosted server's entry and its shared instance (none for a scoped entry), for logins. */
  hosted(name: string): { spec: UpstreamSpec; shared: Upstream | undefined } | undefined {
    const family = this.families.get(name);
    return family && { spec: family.spec, shared: family.instances.get('') };
  }

  /**
   * Applies a new config (live reload): starts added servers, stops removed ones, restarts the
   * ones whose entry changed, leaves the rest (and their processes) alone. Sessions are told
   * that every list may have changed.
   */
  async reload(next: readonly UpstreamSpec[], profiles: readonly ProfileSpec[] = []): Promise<ReloadReport> {
    if (this.profiles.set(profiles)) {
      // Every window may see other servers or tools now, whatever its profile was.
      this.catalog.dropViews();
      for (const method of LIST_CHANGED_METHODS) this.onlistchanged?.({ jsonrpc: '2.0', method }, null);
    }
    const { report, stopping, families } = planReload(this.families, next, (spec) => this.family(spec));
    for (const server of stopping) {
      this.catalog.forget(server);
      this.interests.forget(server);
    }
    this.families = families;
    const changed = [...report.added, ...report.removed, ...report.restarted];
    if (changed.length > 0) {
      // Merged lists name the servers they were built from: with one added, none of them is
      // complete (stopping a server dropped them, adding one alone would not).
      this.catalog.dropViews();
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
    const of = this.profiles.of(view);
    if ('missing' in of || (of.profile && !of.profile.showsServer(name))) return false;
    if (typeof server === 'string' || server.scope === 'shared') return true;
    return server.scopeKey === (server.scope === 'workspace' ? (view.workspace ?? '') : (view.session ?? ''));
  }

  /**
   * A session declared client capabilities: running hosted servers it sees that were started
   * without one of them are renewed to be offered them (see ServerRequests.offer).
   */
  private offerCapabilities(context: SessionContext): void {
    this.requests.offer(
      context.capabilities,
      this.inView(context.view).filter((server) => server !== this.builtin),
    );
  }

  /** A session ended: it no longer keeps servers from going idle, subscribed, or verbose. */
  private sessionClosed(context: SessionContext): void {
    const sessionId = context.id;
    if (this.contexts.get(sessionId) === context) this.contexts.delete(sessionId);
    for (const family of this.families.values()) {
      const own = family.spec.scope === 'session' ? family.instances.get(sessionId) : undefined;
      if (!own) continue;
      // A session-scoped server lives exactly as long as its session.
      family.instances.delete(sessionId);
      this.catalog.forget(own);
      this.interests.forget(own);
      void own.close();
    }
    this.interests.sessionClosed(sessionId);
    if (context.logLevel !== undefined) this.interests.levelsChanged();
  }

  /** A (re)started server: fresh lists, and the subscriptions and log level it lost. */
  private restored(server: Upstream): void {
    const missed = this.catalog.missed(server);
    this.catalog.invalidate(server, null);
    if (this.seenReady.has(server) || missed) {
      // A new process may offer other tools, and one that could not start before was listed
      // without its own: the sessions that see it list again.
      for (const method of LIST_CHANGED_METHODS) this.onlistchanged?.({ jsonrpc: '2.0', method }, server);
    }
    this.seenReady.add(server);
    this.interests.restored(server);
  }

  /** The merged list for one kind in a view (see Catalog.list). */
  list(kind: ListKind, view: View): Promise<ListOutcome> {
    const of = this.profiles.of(view);
    if ('missing' in of) return Promise.resolve({ error: this.profiles.gone(of.missing) });
    return this.catalog.list(kind, this.catalogView(view));
  }

  /** The view's profile: the one it asked for, else its client's default (see Profiles.of). */
  profileOf(view: View): ProfileOf {
    return this.profiles.of(view);
  }

  /** True when some session sees a tool of this name (see Catalog.knows); synchronous, for metrics. */
  knowsTool(name: string): boolean {
    return this.catalog.knows('tools', name);
  }

  /** The server behind a session-visible tool or prompt name, or resource URI (see Catalog.resolve). */
  async resolve(kind: ListKind, key: string, view: View): Promise<Target | undefined> {
    // A name its entry filters out never reaches the server, running or not: it is unknown.
    const lists = this.catalog.lists;
    if (lists.refuses(kind, key, view.server)) return undefined;
    const target = await this.catalog.resolve(kind, key, this.catalogView(view));
    return target && lists.allows(target.server, kind, target.name) ? target : undefined;
  }

  /** The target a session-visible name resolves to when a built merged list holds it (see Catalog.resolveBuilt). */
  resolveKnown(kind: ListKind, key: string, view: View): Target | undefined {
    return this.catalog.resolveBuilt(kind, key, this.catalogView(view));
  }

  private catalogView(view: View): CatalogView {
    const of = this.profiles.of(view);
    // A window whose profile a reload removed sees nothing: its own key, no servers, no name shown.
    if ('missing' in of) return { single: false, key: `\u0001${of.missing}`, servers: () => [], shows: () => false };
    const profile = of.profile;
    return {
      single: view.server !== undefined,
      key: this.viewKey(view, profile?.spec.name),
      servers: () => this.inView(view),
      shows: profile && profile.spec.tools.length > 0 ? (kind, visible) => kind !== 'tools' || profile.showsTool(visible) : undefined,
    };
  }

  /** The instances a view sees: the built-in server (unless single-server) and each hosted one. */
  private inView(view: View): Upstream[] {
    if (view.server !== undefined) {
      const only = this.instanceFor(view.server, view);
      return only ? [only] : [];
    }
    const of = this.profiles.of(view);
    if ('missing' in of) return [];
    const shows = (name: string) => of.profile === undefined || of.profile.showsServer(name);
    const all = shows(this.builtin.name) ? [this.builtin] : [];
    for (const name of this.families.keys()) {
      const server = shows(name) ? this.instanceFor(name, view) : undefined;
      if (server) all.push(server);
    }
    return all;
  }

  /** Views that see the same instances share one merged cache. */
  private viewKey(view: View, profile: string | undefined): string {
    let workspace = '';
    let session = '';
    for (const family of this.families.values()) {
      if (view.server !== undefined && view.server !== family.spec.name) continue;
      if (family.spec.scope === 'workspace') workspace = view.workspace ?? '';
      if (family.spec.scope === 'session') session = view.session ?? '';
    }
    return `${view.server ?? '*'}\u0000${profile ?? ''}\u0000${workspace}\u0000${session}`;
  }

  private fromServer(server: Upstream, n: RpcNotification): void {
    const kinds = (Object.keys(LISTS) as ListKind[]).filter((kind) => LISTS[kind].changed === n.method);
    if (kinds.length > 0) {
      this.catalog.invalidate(server, kinds);
      this.onlistchanged?.({ jsonrpc: '2.0', method: n.method }, server);
      return;
    }
    this.onservernotification?.(server, n);
  }
}
