/**
 * What sessions want from shared servers beyond calls: resource subscriptions, reference-counted
 * per server and URI (the server is subscribed while one session is), and log levels (each
 * server is set to the most verbose level any session that sees it asked for). Both are restored
 * when a server restarts. A session's own level is stored once, on its SessionContext: this
 * reads them all ({@link InterestsDeps.levels}) and keeps only what it applied to each server.
 */
import type { CallOptions, CallOutcome } from '../hosting/server-link.js';
import { capabilityOf, type Upstream } from '../hosting/upstream.js';
import type { View } from './view.js';
import { LOG_LEVELS, type LogLevel } from '../protocol/log-levels.js';

export interface InterestsDeps {
  /** Deadline of the calls this makes on its own (restoring, unsubscribing a closed session). */
  timeoutMs: number;
  servers: () => Iterable<Upstream>;
  sees: (view: View, server: Upstream) => boolean;
  /** The open sessions' log levels (undefined: not asked) with their views. */
  levels: () => Iterable<{ readonly logLevel: LogLevel | undefined; readonly view: View }>;
}

export class Interests {
  private readonly deps: InterestsDeps;
  /** Per server: URI -> the sessions subscribed to it. */
  private readonly subscriptions = new Map<Upstream, Map<string, Set<string>>>();
  /** First subscribes to a URI on their way to the server: sessions subscribing meanwhile share the answer. */
  private readonly subscribing = new Map<Upstream, Map<string, Promise<CallOutcome>>>();
  /** Sessions waiting on such an answer; one that unsubscribes or ends meanwhile leaves this set. */
  private readonly joining = new Map<Upstream, Map<string, Set<string>>>();
  private readonly appliedLevel = new Map<Upstream, LogLevel>();

  constructor(deps: InterestsDeps) {
    this.deps = deps;
  }

  /** A server left the hub (reload, closed session): nothing of it is kept. */
  forget(server: Upstream): void {
    this.subscriptions.delete(server);
    this.subscribing.delete(server);
    this.joining.delete(server);
    this.appliedLevel.delete(server);
  }

  /** A session ended: its subscriptions go (the last ones are unsubscribed at the server). */
  sessionClosed(sessionId: string): void {
    for (const byUri of this.joining.values()) for (const sessions of byUri.values()) sessions.delete(sessionId);
    for (const [server, byUri] of this.subscriptions) {
      for (const [uri, sessions] of byUri) {
        if (!sessions.delete(sessionId) || sessions.size > 0) continue;
        byUri.delete(uri);
        void server.call('resources/unsubscribe', { uri }, { timeoutMs: this.deps.timeoutMs });
      }
    }
  }

  /** A (re)started server lost its subscriptions and log level: give them back. */
  restored(server: Upstream): void {
    this.appliedLevel.delete(server);
    this.levelsChanged();
    for (const uri of this.subscribedUris(server)) {
      void server.call('resources/subscribe', { uri }, { timeoutMs: this.deps.timeoutMs });
    }
  }

  /**
   * Subscribes a session to a resource. The server hears only the first subscription to a URI
   * (and the last unsubscription); the others are answered here.
   */
  async subscribe(sessionId: string, server: Upstream, uri: string, options: CallOptions): Promise<CallOutcome> {
    const subscribed = this.subscriptions.get(server)?.get(uri);
    if (subscribed && subscribed.size > 0) {
      subscribed.add(sessionId);
      return { result: {} };
    }
    const pendingByUri = inner(this.subscribing, server);
    let pending = pendingByUri.get(uri);
    if (!pending) {
      // Not bound to this caller's cancellation: other sessions may be waiting for the same answer.
      const answer = server.call('resources/subscribe', { uri }, { timeoutMs: options.timeoutMs, origin: options.origin });
      const settled: Promise<CallOutcome> = answer.then((outcome) => {
        if (pendingByUri.get(uri) === settled) pendingByUri.delete(uri);
        this.settleJoining(server, uri, outcome !== null && 'result' in outcome);
        return outcome;
      });
      pendingByUri.set(uri, settled);
      pending = settled;
    }
    setOf(inner(this.joining, server), uri).add(sessionId);
    return pending;
  }

  /**
   * The server answered a first subscribe: the sessions still waiting become subscribers. If
   * all of them unsubscribed or ended meanwhile, the server is unsubscribed again.
   */
  private settleJoining(server: Upstream, uri: string, ok: boolean): void {
    const joiningByUri = this.joining.get(server);
    if (!joiningByUri) return; // the server left the hub meanwhile
    const joined = joiningByUri.get(uri) ?? new Set<string>();
    joiningByUri.delete(uri);
    if (!ok) return;
    const subscribed = setOf(inner(this.subscriptions, server), uri);
    for (const sessionId of joined) subscribed.add(sessionId);
    if (subscribed.size > 0) return;
    this.subscriptions.get(server)?.delete(uri);
    void server.call('resources/unsubscribe', { uri }, { timeoutMs: this.deps.timeoutMs });
  }

  async unsubscribe(sessionId: string, server: Upstream, uri: string, options: CallOptions): Promise<CallOutcome> {
    // Still waiting on the first subscribe: it will not count (settleJoining).
    if (this.joining.get(server)?.get(uri)?.delete(sessionId)) return { result: {} };
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
   * A session's log level changed (or a session with one ended): each server is set to the most
   * verbose level any session that sees it asked for; sessions filter out what is below their own.
   */
  levelsChanged(): void {
    for (const server of this.deps.servers()) {
      if (server.state !== 'ready' || capabilityOf(server, 'logging') === undefined) continue;
      let wanted: LogLevel | undefined;
      for (const { logLevel: level, view } of this.deps.levels()) {
        if (level === undefined || !this.deps.sees(view, server)) continue;
        if (wanted === undefined || LOG_LEVELS.indexOf(level) < LOG_LEVELS.indexOf(wanted)) wanted = level;
      }
      if (wanted === undefined || this.appliedLevel.get(server) === wanted) continue;
      this.appliedLevel.set(server, wanted);
      void server.call('logging/setLevel', { level: wanted }, { timeoutMs: this.deps.timeoutMs });
    }
  }
}

/** The map under `key`, made on first use. */
function inner<K, K2, V>(outer: Map<K, Map<K2, V>>, key: K): Map<K2, V> {
  let found = outer.get(key);
  if (!found) {
    found = new Map();
    outer.set(key, found);
  }
  return found;
}

/** The set under `key`, made on first use. */
function setOf<K, V>(map: Map<K, Set<V>>, key: K): Set<V> {
  let found = map.get(key);
  if (!found) {
    found = new Set();
    map.set(key, found);
  }
  return found;
}
