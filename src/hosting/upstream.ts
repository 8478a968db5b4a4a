/**
 * One server behind the hub and its lifecycle: started on first use (or eagerly), restarted
 * with capped backoff after a crash, stopped when idle with no session using it, stopped for
 * good by close(). Calls made while it is down fail at once with -32011 (`data.server`), or
 * wait for a restart that is due soon.
 *
 * States: stopped -> starting -> ready -> (crash) -> restarting -> starting -> ...
 *         starting -> (failure) -> failed -> (backoff) -> starting -> ... when it retries in the
 *         background (`retryFailedStart`), else the next use tries again once the backoff passed;
 *         any -> closed.
 *
 * A start has a deadline (`initTimeoutMs`): a server that has not answered `initialize` by then
 * is a failed start with that reason, and its process is stopped. Whoever waits for a start
 * (a call to this server) waits at most that long; lists do not wait for it (catalog.ts).
 */
import { RpcCode } from '../protocol/codes.js';
import type { RpcNotification } from '../protocol/jsonrpc.js';
import type { CallOptions, CallOutcome, ServerLink, ServerRequestHandler } from './server-link.js';
import { notSupported } from './server-link.js';
import type { ServerReport, UpstreamScope, UpstreamState } from '../local/health.js';
import type { Era } from './modern.js';
import { STABLE_UPTIME_MS, WAIT_FOR_RESTART_MS, backoff, type Started, type UpstreamOptions } from './upstream-options.js';

export type { Started, UpstreamOptions } from './upstream-options.js';
export { RESTART_BACKOFF_MS, WAIT_FOR_RESTART_MS } from './upstream-options.js';

export class Upstream {
  readonly name: string;
  readonly prefix: string | null;
  readonly scope: UpstreamScope;
  /** The workspace directory or session id of a scoped instance. */
  readonly scopeKey: string | undefined;
  state: UpstreamState = 'stopped';
  restarts = 0;
  /** Starts tried again after a failed start (in the background, or by a call that came when one was due). */
  retries = 0;
  pid: number | undefined;
  startedAtMs: number | undefined;
  lastError: string | undefined;
  /** Tools declared to ask the client back (see ServerRequests). */
  readonly asksClient: readonly string[];
  /** Server notifications other than progress (list_changed, logging, ...). */
  onnotification: ((n: RpcNotification) => void) | undefined;
  /** Fired each time a (re)started server is ready: its lists may differ now. */
  onready: (() => void) | undefined;
  /** Answers the server's sampling, elicitation and roots requests (ServerRequests.answer). */
  onrequest: ServerRequestHandler | undefined;
  /** The server answered under an id no call was waiting for; the answer was dropped. */
  onstray: (() => void) | undefined;
  /** A start failed: lists shown of it while it was not running no longer hold. */
  onfailed: (() => void) | undefined;
  /** The era of its last start (`modern`: 2026-07-28; `legacy`: initialize); a legacy one's restart is not probed. */
  era: Era | undefined;

  private readonly options: UpstreamOptions;
  private link: ServerLink | undefined;
  private starting: Promise<ServerLink> | undefined;
  /** The link of the start under way, before it is ready: close() ends it rather than wait. */
  private opening: ServerLink | undefined;
  /** True once a stray answer of the running process was logged: once per process, not per answer. */
  private strayLogged = false;
  private failures = 0;
  /** True from a failed start until the server is ready again: the same error is logged once. */
  private failing = false;
  private retryAtMs = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Why the server is to be renewed once its calls in flight are done (renewWhenIdle). */
  private renewPending: string | undefined;
  private lastUsedMs = Date.now();
  /** Sessions that used this server and are still open (SessionContext.use and close). */
  private readonly users = new Set<string>();

  constructor(options: UpstreamOptions) {
    this.options = options;
    this.name = options.name;
    this.prefix = options.prefix;
    this.scope = options.scope ?? 'shared';
    this.scopeKey = options.scopeKey;
    this.asksClient = options.asksClient ?? [];
    if (options.idleTimeoutMs > 0) {
      this.idleTimer = setInterval(() => this.checkIdle(), Math.max(50, Math.floor(options.idleTimeoutMs / 4)));
      this.idleTimer.unref();
    }
  }

  /** The server's initialize result, while it is ready. */
  get initializeResult(): Record<string, unknown> | undefined {
    return this.link?.initializeResult;
  }

  /** A session uses this server: it is not stopped for idleness while one does. */
  addUser(sessionId: string): void {
    this.users.add(sessionId);
  }

  removeUser(sessionId: string): void {
    this.users.delete(sessionId);
  }

  /** The open sessions that used this server. */
  get userIds(): ReadonlySet<string> {
    return this.users;
  }

  get inflight(): number {
    return this.link?.inflight ?? 0;
  }

  /** The client capabilities declared to the running server, if it runs. */
  get declaredCapabilities(): Readonly<Record<string, unknown>> | undefined {
    return this.state === 'ready' ? this.link?.declaredCapabilities : undefined;
  }

  /**
   * Renews the server (see renew) as soon as no call is in flight: calls already running finish
   * on the old process. A server that is never idle keeps its process.
   */
  renewWhenIdle(reason: string): void {
    if (this.inflight === 0) void this.renew(reason);
    else this.renewPending = reason;
  }

  /**
   * Restarts a running server on purpose (to declare new client capabilities): the old process
   * stops, a new one starts at once. Not a crash: no backoff, not counted as a restart.
   */
  async renew(reason: string): Promise<void> {
    if (this.state !== 'ready' || !this.link) return;
    const link = this.letGo();
    this.options.log?.('server restarting', { server: this.name, reason });
    await link.close();
    await this.connect().catch(() => undefined);
  }

  /** Ready link, starting the server when needed. Rejects with a message when it cannot. */
  connect(): Promise<ServerLink> {
    this.lastUsedMs = Date.now();
    if (this.state === 'closed') return Promise.reject(new Error('the daemon is shutting down'));
    if (this.state === 'ready' && this.link) return Promise.resolve(this.link);
    if (this.starting) return this.starting;
    const waitMs = this.retryAtMs - Date.now();
    if (waitMs > WAIT_FOR_RESTART_MS) {
      const next = `${Math.ceil(waitMs / 1000)} s`;
      const last = this.lastError ?? 'unknown error';
      return Promise.reject(
        new Error(
          this.state === 'failed' ? `could not start: ${last} (next try in ${next})` : `restarting in ${next}; last error: ${last}`,
        ),
      );
    }
    if (this.state === 'restarting' || this.state === 'failed') {
      // Due soon: start now instead of making the caller wait out the rest of the backoff,
      // counted like the timer's attempt would have been (a failed start's retry always is).
      const due = this.restartTimer !== undefined;
      clearTimeout(this.restartTimer);
      this.restartTimer = undefined;
      if (due || this.state === 'failed') this.countAttempt();
    }
    return this.start();
  }

  /** Starts a failed server now, its backoff forgotten (a login made it startable); a running one as it is. */
  retryNow(): Promise<ServerLink> {
    if (this.state === 'failed' || this.state === 'restarting') {
      clearTimeout(this.restartTimer);
      this.restartTimer = undefined;
      this.retryAtMs = 0;
    }
    return this.connect();
  }

  /** Calls one method on the server; a server that cannot be reached gives -32011. Never rejects. */
  call(method: string, params: Record<string, unknown> | undefined, options: CallOptions): Promise<CallOutcome> {
    const link = this.link;
    // Running: straight to the link, without waiting a turn for connect()'s promise.
    if (this.state === 'ready' && link) return this.callOn(link, method, params, options);
    return this.connect().then(
      (ready) => this.callOn(ready, method, params, options),
      (error: unknown) => this.unavailable((error as Error).message),
    );
  }

  private callOn(
    link: ServerLink,
    method: string,
    params: Record<string, unknown> | undefined,
    options: CallOptions,
  ): Promise<CallOutcome> {
    // No idle stop while the call is in flight (checkIdle): its end is its last use.
    return link.call(method, params, options).then((outcome) => {
      this.lastUsedMs = Date.now();
      const reason = this.renewPending;
      if (reason !== undefined && this.link === link && link.inflight === 0) {
        this.renewPending = undefined;
        void this.renew(reason);
      }
      return outcome;
    });
  }

  /** Sends a notification to the server if it is running. */
  notify(method: string, params?: Record<string, unknown>): void {
    if (this.state === 'ready') this.link?.notify(method, params);
  }

  /** For `/health` and `exai-ws status`. */
  report(): ServerReport {
    return {
      name: this.name,
      scope: this.scope,
      scope_key: this.scopeKey ?? null,
      state: this.state,
      pid: this.pid ?? null,
      restarts: this.restarts,
      retries: this.retries,
      uptime_s: this.state === 'ready' && this.startedAtMs !== undefined ? Math.round((Date.now() - this.startedAtMs) / 1000) : null,
      sessions: this.users.size,
      inflight: this.inflight,
      last_error: this.lastError ?? null,
    };
  }

  /** Stops the server for good. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.restartTimer) clearTimeout(this.restartTimer);
    if (this.idleTimer) clearInterval(this.idleTimer);
    // A start under way may wait for its deadline for minutes: it ends now.
    await this.opening?.close();
    const link = this.link ?? (await this.starting?.catch(() => undefined));
    this.link = undefined;
    await link?.close();
  }

  private start(): Promise<ServerLink> {
    this.state = 'starting';
    const starting = this.launch();
    this.starting = starting;
    const done = () => (this.starting = undefined);
    starting.then(done, done);
    return starting;
  }

  private async launch(): Promise<ServerLink> {
    let started: Started;
    let deadline: NodeJS.Timeout | undefined;
    let expired: (reason: Error) => void = () => undefined;
    const late = new Promise<never>((_, reject) => (expired = reject));
    const launching = this.options.launch((link) => {
      // Wired before the handshake: a server may ask for roots or say list_changed right after it.
      link.onnotification = (n) => this.onnotification?.(n);
      link.onrequest = (request, context) => this.onrequest?.(request, context) ?? Promise.resolve(notSupported(request.method));
      link.onstray = (id) => this.stray(link, id);
      link.eraHint = this.era;
      this.opening = link;
      const limitMs = this.options.initTimeoutMs;
      if (limitMs === undefined) return;
      deadline = setTimeout(() => {
        // Failed now, with this reason: stopping the process takes a while, and its exit is ours.
        expired(new Error(`did not answer initialize within ${limitMs / 1000} s`));
        void link.close();
      }, limitMs);
    });
    try {
      started = await Promise.race([launching, late]);
    } catch (error) {
      launching.catch(() => undefined);
      const message = error instanceof Error ? error.message : String(error);
      if (this.state === 'closed') throw new Error('the daemon is shutting down');
      this.fail(message);
      throw new Error(message);
    } finally {
      clearTimeout(deadline);
      this.opening = undefined;
    }
    const { link } = started;
    if (this.state === 'closed') {
      await link.close();
      throw new Error('the daemon is shutting down');
    }
    this.link = link;
    this.pid = started.pid;
    this.era = link.era;
    this.startedAtMs = Date.now();
    this.state = 'ready';
    this.failing = false;
    this.strayLogged = false;
    this.renewPending = undefined; // a new process was offered every capability there is now
    link.onclose = () => this.crashed(link, started.exitReason?.() ?? 'the server connection closed');
    this.options.log?.('server ready', { server: this.name, pid: this.pid, restarts: this.restarts, retries: this.retries, era: this.era });
    this.onready?.();
    return link;
  }

  /**
   * An answer under an id no call was waiting for, dropped by the link: counted each time,
   * logged once per process (a server with an off-by-one bug would write a line per call).
   */
  private stray(link: ServerLink, id: unknown): void {
    this.onstray?.();
    if (this.strayLogged || (this.link !== undefined && this.link !== link)) return;
    this.strayLogged = true;
    this.options.log?.(
      'server answer dropped: its id matches no call in flight',
      {
        server: this.name,
        id: typeof id === 'string' ? id.slice(0, 64) : typeof id === 'number' ? id : typeof id,
        note: 'logged once per server process',
      },
      'warn',
    );
  }

  /** The link closed while we did not ask it to: fail its calls (ServerLink did) and restart. */
  private crashed(link: ServerLink, reason: string): void {
    if (this.link !== link || this.state === 'closed') return;
    this.link = undefined;
    const upMs = Date.now() - (this.startedAtMs ?? Date.now());
    if (upMs > STABLE_UPTIME_MS) this.failures = 0;
    this.pid = undefined;
    if (this.state === 'stopped') return; // stopped for idleness
    this.lastError = reason;
    this.failures++;
    const delay = backoff(this.failures, this.options.restartBackoffMs);
    this.retryAtMs = Date.now() + delay;
    this.state = 'restarting';
    // Not asked for: the user may need to act (a crash, a remote server gone).
    this.options.log?.('server exited', { server: this.name, error: this.lastError, restart_in_ms: delay }, 'warn');
    this.startAfter(delay);
  }

  private fail(message: string): void {
    this.failures++;
    const delay = backoff(this.failures, this.options.restartBackoffMs);
    // A server retried every 30 s for hours must not write a line each time: only news.
    if (!this.failing || message !== this.lastError) {
      const retry = this.options.retryFailedStart ? { retry_in_ms: delay } : {};
      // Warn: a server that cannot start (`uvx: command not found`) is the user's to fix.
      this.options.log?.('server failed to start', { server: this.name, error: message, retries: this.retries, ...retry }, 'warn');
    }
    this.failing = true;
    this.era = undefined; // probed again at the next start
    this.lastError = message;
    this.retryAtMs = Date.now() + delay;
    this.state = 'failed';
    this.onfailed?.();
    if (this.options.retryFailedStart) this.startAfter(delay);
  }

  /**
   * Starts the server again after `delay` (the backoff of a crash, or of a failed start), unless
   * something else moved it out of its current state first (a call started it, close()).
   */
  private startAfter(delay: number): void {
    const from = this.state;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.state !== from) return;
      this.countAttempt();
      this.start().catch(() => undefined);
    }, delay);
    this.restartTimer.unref();
  }

  /** One more start after a crash (`restarts`) or after a failed start (`retries`). */
  private countAttempt(): void {
    if (this.state === 'restarting') this.restarts++;
    else this.retries++;
  }

  private checkIdle(): void {
    if (this.state !== 'ready' || !this.link) return;
    if (this.users.size > 0 || this.link.inflight > 0) return;
    if (Date.now() - this.lastUsedMs < this.options.idleTimeoutMs) return;
    const link = this.letGo();
    this.options.log?.('server stopped: idle', { server: this.name });
    link.close().catch(() => undefined);
  }

  /** Stops using the running link (on purpose: its close is not taken for a crash) and returns it to be closed. */
  private letGo(): ServerLink {
    const link = this.link as ServerLink;
    this.link = undefined;
    this.pid = undefined;
    this.state = 'stopped';
    return link;
  }

  private unavailable(message: string): CallOutcome {
    return { error: { code: RpcCode.UPSTREAM_UNAVAILABLE, message: `${this.name}: ${message}`, data: { server: this.name } } };
  }
}

/** The capability a ready server declared in its initialize result, or undefined. */
export function capabilityOf(server: Upstream, name: string): unknown {
  return (server.initializeResult?.capabilities as Record<string, unknown> | undefined)?.[name];
}
