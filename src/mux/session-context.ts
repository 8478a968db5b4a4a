/**
 * The core's side of one client session, and the router's only way to the session's state:
 * who the client is and what it declared, which servers it sees (its view: the working
 * directory it opened with, moved by its roots), which it has used, the log level it asked for,
 * its calls, subscriptions and questions to the client. All of it is private; the router changes
 * it through methods, and one {@link close} releases everything it holds in the core (servers
 * kept up, subscriptions, its log level, its session-scoped servers).
 *
 * Why here and not in the daemon's `Session`: the multiplexer (ServerRequests, Interests, the
 * hub) needs a session's state to route a server's question or to set a server's log level, and
 * mux/ must not import daemon/. So the state lives in this object, and the daemon's `Session`
 * owns it privately (made by {@link Hub.openSession}, closed by `Session.close()`) together with
 * what only the daemon has: the outbox, requests in flight, the questions it asked the client.
 */
import type { Answer, RequestId } from '../protocol/jsonrpc.js';
import type { LogLevel } from '../protocol/log-levels.js';
import type { ModernMeta } from '../protocol/eras.js';
import type { CallOptions, CallOutcome } from '../hosting/server-link.js';
import type { Upstream } from '../hosting/upstream.js';
import type { Era } from '../hosting/modern.js';
import type { View } from './view.js';

/** The client end of a session, as the core needs it (the daemon's Session). */
export interface ClientPeer {
  /**
   * Asks the client something; never rejects (errors, a timeout, a closed session come as
   * `{ error }`). `related`: the client's request that caused it, when known (HTTP sends the
   * question on that request's response stream).
   */
  request(method: string, params: Record<string, unknown> | undefined, timeoutMs: number, related?: RequestId): Promise<Answer>;
  /**
   * Sends one message to the client (held while it is detached). False when it cannot be
   * serialised and was dropped. `related`: the client request the message belongs to.
   */
  send(message: object, related?: RequestId): boolean;
  /**
   * A server's question during the call of request `related` was refused because the client did
   * not declare `capability` (a 2026-07-28 client is then answered -32021 for that call).
   */
  lacks?(capability: string, related: RequestId | undefined): void;
  /** The client was sent its tools list (see SessionContext.listedTools): the daemon checks its client's cap. */
  listedTools?(size: ToolListSize): void;
}

/** What the hub does for each session's context (see Hub.openSession); no session sees another's. */
export interface SessionCore {
  /** True when the view includes this server (by name; an instance also by its scope key). */
  sees(view: View, server: string | Upstream): boolean;
  /** A session's call to a server (ServerRequests.call). */
  call(
    context: SessionContext,
    server: Upstream,
    method: string,
    params: Record<string, unknown>,
    options: CallOptions,
  ): Promise<CallOutcome>;
  subscribe(sessionId: string, server: Upstream, uri: string, options: CallOptions): Promise<CallOutcome>;
  unsubscribe(sessionId: string, server: Upstream, uri: string, options: CallOptions): Promise<CallOutcome>;
  /** Some session's log level changed: servers are set again (Interests reads each context's). */
  levelsChanged(): void;
  /** The session declared its capabilities: servers started without them may be renewed. */
  offer(context: SessionContext): void;
  /** The session closed: the hub forgets it and stops its session-scoped servers. */
  closed(context: SessionContext): void;
}

/** The last tools list a window was sent: how many tools, and its size in bytes (JSON, UTF-8). */
export interface ToolListSize {
  readonly count: number;
  readonly bytes: number;
}

/** How a session opened (from its hello). */
export interface SessionOpening {
  /** The one server it sees (`exai-ws shim --server NAME`); all of them when undefined. */
  server?: string | undefined;
  /** The profile it asked for (`exai-ws shim --profile NAME`). */
  profile?: string | undefined;
  /** The client's working directory: its workspace until its roots say better. */
  cwd?: string | undefined;
}

/** Which MCP era a session's client speaks: `legacy` opened with initialize, `modern` sends per-request `_meta`. */
export type { Era };

export interface ClientInfo {
  readonly name?: string | undefined;
  readonly version?: string | undefined;
}

export class SessionContext {
  readonly id: string;
  /** The client's working directory, as its hello gave it (stored here only). */
  readonly cwd: string | undefined;

  private currentView: Readonly<View>;
  private info: ClientInfo | undefined;
  private declared: Readonly<Record<string, unknown>> | undefined;
  private level: LogLevel | undefined;
  private spoken: Era | undefined;
  private toolList: ToolListSize | undefined;
  private ended = false;
  private readonly used = new Set<Upstream>();
  private readonly peer: ClientPeer;
  private readonly core: SessionCore;

  /** Made by the hub (Hub.openSession), which is told when it closes. */
  constructor(id: string, opening: SessionOpening, peer: ClientPeer, core: SessionCore) {
    this.id = id;
    this.cwd = opening.cwd;
    this.currentView = Object.freeze({ server: opening.server, profile: opening.profile, workspace: opening.cwd, session: id });
    this.peer = peer;
    this.core = core;
  }

  /** Which servers the session sees: its server (if one), its workspace, its id. */
  get view(): Readonly<View> {
    return this.currentView;
  }

  /** The client's initialize params, once it sent them. */
  get clientInfo(): ClientInfo | undefined {
    return this.info;
  }

  /** The capabilities the client declared (only well-formed entries of bounded size). */
  get capabilities(): Readonly<Record<string, unknown>> | undefined {
    return this.declared;
  }

  /** The era the client speaks, once its first request said (initialize, or a modern `_meta`). */
  get era(): Era | undefined {
    return this.spoken;
  }

  /** The level the session asked for with logging/setLevel; undefined: everything. */
  get logLevel(): LogLevel | undefined {
    return this.level;
  }

  get closed(): boolean {
    return this.ended;
  }

  /** The last tools list the window was sent; undefined before its first. */
  get tools(): ToolListSize | undefined {
    return this.toolList;
  }

  /** The window was sent its tools list (its size: what it costs the client's context). */
  listedTools(size: ToolListSize): void {
    if (this.ended) return;
    this.toolList = size;
    this.peer.listedTools?.(size);
  }

  /** The client's name for logs and messages. */
  get clientName(): string {
    return this.info?.name ?? 'unnamed client';
  }

  /** True when the client declared this capability (`sampling`, `elicitation`, `roots`, ...). */
  declares(capability: string): boolean {
    return this.declared?.[capability] !== undefined;
  }

  /** The client's initialize: who it is and what it declared; servers may be renewed to be offered it. */
  initialized(info: ClientInfo | undefined, capabilities: Record<string, unknown> | undefined): void {
    this.spoken = 'legacy';
    this.info = info;
    this.named(info?.name);
    this.declared = capabilities;
    if (!this.ended) this.core.offer(this);
  }

  /**
   * A modern request: the client is who its `_meta` says and declared what it lists there. A
   * modern client may change either from one request to the next; servers are offered the
   * capabilities again only when they changed.
   */
  declaredModern(meta: ModernMeta, capabilities: Record<string, unknown> | undefined): void {
    this.spoken = 'modern';
    if (meta.clientInfo !== undefined) {
      this.info = meta.clientInfo;
      this.named(meta.clientInfo.name);
    }
    if (sameJson(this.declared, capabilities)) return;
    this.declared = capabilities;
    if (!this.ended) this.core.offer(this);
  }

  /** The client's name is in the view: it picks the default profile (see Hub.profileOf). */
  private named(name: string | undefined): void {
    if (name !== this.currentView.client) this.currentView = Object.freeze({ ...this.currentView, client: name });
  }

  /** logging/setLevel: each server this session sees is set to the most verbose level any session asked for. */
  setLogLevel(level: LogLevel): void {
    if (this.ended) return;
    this.level = level;
    this.core.levelsChanged();
  }

  /** The client's roots name another workspace: true when that moved it (its lists may differ now). */
  moveWorkspace(path: string): boolean {
    if (this.ended || path === this.currentView.workspace) return false;
    this.currentView = Object.freeze({ ...this.currentView, workspace: path });
    return true;
  }

  /** True when the session's view includes this server (by name; an instance also by its scope key). */
  sees(server: string | Upstream): boolean {
    return this.core.sees(this.currentView, server);
  }

  /** The session uses this server: it stays up (no idle stop) while the session lives. */
  use(server: Upstream): void {
    if (this.ended || this.used.has(server)) return;
    this.used.add(server);
    server.addUser(this.id);
  }

  /** True when this session has used the server. */
  uses(server: Upstream): boolean {
    return this.used.has(server);
  }

  /** Sends a notification to every server this session used and still sees. */
  notifyUsed(method: string): void {
    for (const server of this.used) if (this.sees(server)) server.notify(method);
  }

  /** One call of this session to a server (gated and tracked; see ServerRequests.call). Never rejects. */
  call(server: Upstream, method: string, params: Record<string, unknown>, options: CallOptions): Promise<CallOutcome> {
    return this.core.call(this, server, method, params, options);
  }

  /** Subscribes the session to a resource of a server (shared with other sessions; see Interests). */
  subscribe(server: Upstream, uri: string, options: CallOptions): Promise<CallOutcome> {
    return this.core.subscribe(this.id, server, uri, { ...options, origin: this.id });
  }

  unsubscribe(server: Upstream, uri: string, options: CallOptions): Promise<CallOutcome> {
    return this.core.unsubscribe(this.id, server, uri, { ...options, origin: this.id });
  }

  /** Asks the client something (see ClientPeer.request). Never rejects. */
  ask(method: string, params: Record<string, unknown> | undefined, timeoutMs: number, related?: RequestId): Promise<Answer> {
    return this.peer.request(method, params, timeoutMs, related);
  }

  /** A server's question was refused for a capability the client did not declare (see ClientPeer.lacks). */
  lacks(capability: string, related: RequestId | undefined): void {
    this.peer.lacks?.(capability, related);
  }

  /** Sends one message to the client (see ClientPeer.send). */
  tell(message: object, related?: RequestId): boolean {
    return this.peer.send(message, related);
  }

  /** Releases everything the session holds in the core: servers kept up, subscriptions, log level, its own servers. Idempotent. */
  close(): void {
    if (this.ended) return;
    this.ended = true;
    for (const server of this.used) server.removeUser(this.id);
    this.used.clear();
    this.core.closed(this);
  }
}

function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  return a !== undefined && b !== undefined && JSON.stringify(a) === JSON.stringify(b);
}
