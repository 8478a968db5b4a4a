/**
 * What sessions want from shared servers beyond calls: resource subscriptions, reference-counted
 * per server and URI (the server is subscribed while one session is), and log levels (each
 * server is set to the most verbose level any session that sees it asked for). Both are restored
 * when a server restarts.
 */
import type { CallOptions, CallOutcome } from './server-link.js';
import { capabilityOf, type Upstream } from './upstream.js';
import type { View } from './hub.js';

/** MCP log levels, most verbose first. */
export const LOG_LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface InterestsDeps {
  /** Deadline of the calls this makes on its own (restoring, unsubscribing a closed session). */
  timeoutMs: number;
  servers: () => Iterable<Upstream>;
  sees: (view: View, server: Upstream) => boolean;
}

export class Interests {
  private readonly deps: InterestsDeps;
  /** Per server: URI -> the sessions subscribed to it. */
  private readonly subscriptions = new Map<Upstream, Map<string, Set<string>>>();
  /** First subscribes to a URI on their way to the server: sessions subscribing meanwhile share the answer. */
  private readonly subscribing = new Map<Upstream, Map<string, Promise<CallOutcome>>>();
  /** Log levels sessions asked for, with their views. */
  private readonly logLevels = new Map<string, { level: LogLevel; view: View }>();
  private readonly appliedLevel = new Map<Upstream, LogLevel>();

  constructor(deps: InterestsDeps) {
    this.deps = deps;
  }

  /** A server left the hub (reload, closed session): nothing of it is kept. */
  forget(server: Upstream): void {
    this.subscriptions.delete(server);
    this.subscribing.delete(server);
    this.appliedLevel.delete(server);
  }

  /** A session ended: its subscriptions (the last ones are unsubscribed at the server) and level go. */
  sessionClosed(sessionId: string): void {
    for (const [server, byUri] of this.subscriptions) {
      for (const [uri, sessions] of byUri) {
        if (!sessions.delete(sessionId) || sessions.size > 0) continue;
        byUri.delete(uri);
        void server.call('resources/unsubscribe', { uri }, { timeoutMs: this.deps.timeoutMs });
      }
    }
    if (this.logLevels.delete(sessionId)) this.applyLogLevels();
  }

  /** A (re)started server lost its subscriptions and log level: give them back. */
  restored(server: Upstream): void {
    this.appliedLevel.delete(server);
    this.applyLogLevels();
    for (const uri of this.subscribedUris(server)) {
      void server.call('resources/subscribe', { uri }, { timeoutMs: this.deps.timeoutMs });
    }
  }

  /**
   * Subscribes a session to a resource. The server hears only the first subscription to a URI
   * (and the last unsubscription); the others are answered here.
   */
  async subscribe(sessionId: string, server: Upstream, uri: string, options: CallOptions): Promise<CallOutcome> {
    let byUri = this.subscriptions.get(server);
    if (!byUri) {
      byUri = new Map();
      this.subscriptions.set(server, byUri);
    }
    const sessions = byUri.get(uri);
    if (sessions && sessions.size > 0) {
      sessions.add(sessionId);
      return { result: {} };
    }
    let pendingByUri = this.subscribing.get(server);
    if (!pendingByUri) {
      pendingByUri = new Map();
      this.subscribing.set(server, pendingByUri);
    }
    let pending = pendingByUri.get(uri);
    if (!pending) {
      // Not bound to this caller's cancellation: other sessions may be waiting for the same answer.
      pending = server.call('resources/subscribe', { uri }, { timeoutMs: options.timeoutMs, origin: options.origin });
      const shared = pending;
      const waiting = pendingByUri;
      void shared.then(() => {
        if (waiting.get(uri) === shared) waiting.delete(uri);
      });
      pendingByUri.set(uri, shared);
    }
    const outcome = await pending;
    if (outcome && 'result' in outcome) {
      const now = byUri.get(uri) ?? new Set<string>();
      now.add(sessionId);
      byUri.set(uri, now);
    }
    return outcome;
  }

  async unsubscribe(sessionId: string, server: Upstream, uri: string, options: CallOptions): Promise<CallOutcome> {
    const byUri = this.subscriptions.get(server);
    const sessions = byUri?.get(uri);
    if (!sessions?.delete(sessionId)) return { result: {} };
    if (sessions.size > 0) return { result: {} };
    byUri?.delete(uri);
    return server.call('resources/unsubscribe', { uri }, options);
  }

  /** The sessions subscribed to a URI of a server. */
  subscribers(server: Upstream, uri: string): ReadonlySet<string> {
    return this.subscriptions.get(server)?.get(uri) ?? new Set();
  }

  /** URIs of a server some session is subscribed to (for tests and status). */
  subscribedUris(server: Upstream): string[] {
    return [...(this.subscriptions.get(server)?.keys() ?? [])];
  }

  /**
   * Records a session's log level. Each server in its view is set to the most verbose level
   * any session that sees it asked for; sessions filter out what is below their own.
   */
  setLogLevel(sessionId: string, level: LogLevel, view: View): void {
    this.logLevels.set(sessionId, { level, view });
    this.applyLogLevels();
  }

  private applyLogLevels(): void {
    for (const server of this.deps.servers()) {
      if (server.state !== 'ready' || capabilityOf(server, 'logging') === undefined) continue;
      let wanted: LogLevel | undefined;
      for (const { level, view } of this.logLevels.values()) {
        if (!this.deps.sees(view, server)) continue;
        if (wanted === undefined || LOG_LEVELS.indexOf(level) < LOG_LEVELS.indexOf(wanted)) wanted = level;
      }
      if (wanted === undefined || this.appliedLevel.get(server) === wanted) continue;
      this.appliedLevel.set(server, wanted);
      void server.call('logging/setLevel', { level: wanted }, { timeoutMs: this.deps.timeoutMs });
    }
  }
}
