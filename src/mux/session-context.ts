/**
 * What the core knows of one client session: who the client is and what it declared, which
 * servers it sees and has used, the log level it asked for, and how to ask it something on a
 * server's behalf. The session owns it and releases everything it holds in the core (servers
 * kept up, subscriptions, log level, its session-scoped servers) with one {@link close}.
 */
import type { Answer, RequestId } from '../protocol/jsonrpc.js';
import type { LogLevel } from '../protocol/log-levels.js';
import type { Upstream } from '../hosting/upstream.js';
import type { View } from './view.js';

/** The client end of a session, as the core needs it. */
export interface ClientPeer {
  /**
   * Asks the client something; never rejects (errors, a timeout, a closed session come as
   * `{ error }`). `related`: the client's request that caused it, when known (HTTP sends the
   * question on that request's response stream).
   */
  request(method: string, params: Record<string, unknown> | undefined, timeoutMs: number, related?: RequestId): Promise<Answer>;
}

export interface ClientInfo {
  name?: string | undefined;
  version?: string | undefined;
}

export class SessionContext {
  readonly id: string;
  readonly view: View;
  readonly peer: ClientPeer;
  /** The client's initialize params, once it sent them. */
  clientInfo: ClientInfo | undefined;
  /** The capabilities the client declared (only well-formed entries of bounded size). */
  capabilities: Record<string, unknown> | undefined;
  /** The level this session asked for with logging/setLevel. */
  logLevel: LogLevel | undefined;
  closed = false;

  private readonly used = new Set<Upstream>();
  private readonly release: (context: SessionContext) => void;

  /** Made by the hub (Hub.openSession), which is told when it closes. */
  constructor(id: string, view: View, peer: ClientPeer, release: (context: SessionContext) => void) {
    this.id = id;
    this.view = view;
    this.peer = peer;
    this.release = release;
  }

  /** The client's name for logs and messages. */
  get clientName(): string {
    return this.clientInfo?.name ?? 'unnamed client';
  }

  /** True when the client declared this capability (`sampling`, `elicitation`, `roots`, ...). */
  declares(capability: string): boolean {
    return this.capabilities?.[capability] !== undefined;
  }

  /** The session uses this server: it stays up (no idle stop) while the session lives. */
  use(server: Upstream): void {
    if (this.closed || this.used.has(server)) return;
    this.used.add(server);
    server.addUser(this.id);
  }

  /** True when this session has used the server. */
  uses(server: Upstream): boolean {
    return this.used.has(server);
  }

  /** Releases everything the session holds in the core. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const server of this.used) server.removeUser(this.id);
    this.used.clear();
    this.release(this);
  }
}
