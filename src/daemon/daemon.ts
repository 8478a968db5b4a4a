/**
 * The daemon: composes the token, pid lock, logger, core (hub with the built-in server),
 * session manager and transport, and owns their lifecycle.
 *
 * Start order (start(), written there once, top to bottom): home and logs dir (checked), log
 * and metrics file, pid lock (exclusive), token (only the lock holder writes it), core (hub and
 * servers), session manager, HTTP endpoint and server, listen (the configured port, or one of
 * the home's own when someone else holds it: bind-port.ts), address card, metrics timer, config
 * watch (config-reload.ts), idle exit.
 * Shutdown order (close()):
 *   1. stop accepting connections and upgrades;
 *   2. sessions drain: queued and new requests are answered -32000;
 *   3. in-flight requests get up to `drainMs` to finish;
 *   4. whatever still runs is answered -32000 (and cancelled at its server);
 *   5. every socket is closed with 1001, stragglers terminated;
 *   6. the core closes its servers;
 *   7. a final metrics line is written and both files flushed: one write attempt each, so a
 *      full disk costs those lines, never the shutdown;
 *   8. the pid file is removed.
 */
import type { McpServer } from '@modelcontextprotocol/server';
import { CloseCode, RpcCode } from '../protocol/codes.js';
import { trySerialize } from '../protocol/jsonrpc.js';
import { urlHost, type AddressCard } from '../local/files.js';
import { startCore } from '../mux/core.js';
import { hostingTimers } from '../hosting/upstream-options.js';
import type { Hub } from '../mux/hub.js';
import { Providers } from '../builtin/providers/providers.js';
import { VERSION } from '../protocol/version.js';
import type { DaemonConfig } from './files/config.js';

import type { LineFile } from './files/line-file.js';
import { coreLog, type DaemonLogger, type Logger } from './files/logger.js';
import { Metrics } from './files/metrics.js';
import { prepareHome } from '../local/home.js';
import { IdleExit } from './idle-exit.js';
import { acquirePidLock, type PidLock } from '../local/pidfile.js';
import { ConfigReloads } from './config-reload.js';
import { wireFanout } from './sessions/fanout.js';
import { FileLearnedTools } from './files/learned-tools.js';
import { FileRememberedLists } from './files/remembered-lists.js';
import { openVault } from './files/oauth-vault.js';
import { CALLBACK_PATH } from './web/login-routes.js';
import { DaemonServer, type DaemonServerDeps } from './web/server.js';
import { McpHttpEndpoint } from '../transport/http.js';
import { PrometheusExporter } from './web/prometheus.js';
import { StatusPage } from './web/status-page.js';
import { PROTOCOL_VERSION } from '../protocol/hello.js';
import { HELD_STATES, SessionManager } from './sessions/sessions.js';
import type { ReloadReport, HealthReport } from '../local/health.js';
import { bindPort } from './bind-port.js';
import { logStartFailure, openDaemonFiles, takeToken } from './start-parts.js';
import { clientOf, healthReport, StatelessClients } from './health-report.js';

export interface DaemonOptions {
  config: DaemonConfig;
  /** Adds tools to the built-in server before it starts (tests add fixture tools here). */
  configureBuiltin?: (server: McpServer) => void;
}

export type DaemonState = 'new' | 'starting' | 'running' | 'closing' | 'closed';

/** How long closing sockets get to finish their close handshake. */
const SOCKET_CLOSE_WAIT_MS = 1_000;

export class Daemon {
  state: DaemonState = 'new';
  /** Fired once, after close() finished. */
  onclose: (() => void) | undefined;
  /**
   * What `POST /control/stop` starts (control.ts), `by` naming who asked: the process's own
   * graceful stop, the one its SIGTERM starts (commands/daemon.ts sets it). Unset, the daemon
   * closes itself with `by` as the reason.
   */
  onstop: ((by: string) => void) | undefined;

  readonly config: DaemonConfig;
  /** Per-tool series only for tools some session can see: names clients make up share one. */
  readonly metrics = new Metrics({ isKnownTool: (name) => this.hub?.knowsTool(name) ?? false });
  /** Model providers shared by every session (limits, model caches, stats). */
  readonly providers: Providers;
  private readonly options: DaemonOptions;
  private readonly startedAtMs = Date.now();
  private log: DaemonLogger | undefined;
  private metricsFile: LineFile | undefined;
  private lock: PidLock | undefined;
  private hub: Hub | undefined;
  private manager: SessionManager | undefined;
  private server: DaemonServer | undefined;
  private mcp: McpHttpEndpoint | undefined;
  private statusPage: StatusPage | undefined;
  private metricsTimer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  /** The hosted-servers config in force, its reloads and its watch. */
  private readonly configs: ConfigReloads;
  private idleExit: IdleExit | undefined;
  /** What the user should act on, as `/health` and `exai-ws status` show it (see {@link warn}). */
  private readonly warnings: string[] = [];
  /** Stateless 2026-07-28 HTTP clients by name, for `/health`. */
  private readonly stateless = new StatelessClients();

  constructor(options: DaemonOptions) {
    this.options = options;
    this.config = options.config;
    this.providers = new Providers(options.config.providers);
    this.configs = new ConfigReloads({
      path: options.config.upstreamsPath,
      upstreamIdleMs: options.config.upstreamIdleMs,
      initial: options.config.upstreams,
    });
  }

  /** The bound port, once running. */
  get port(): number {
    return this.server?.port ?? 0;
  }

  /**
   * Starts the daemon. Rejects with `AlreadyRunningError` when another daemon holds the
   * home, with `HomeError` when the home cannot be used (a path of the wrong type, no
   * permission, a full disk), or with the bind error; what was started is closed again.
   */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('daemon already started');
    this.state = 'starting';
    const { config } = this;
    const { paths } = config;
    const home = prepareHome(paths);
    const { log, metricsFile } = openDaemonFiles(config);
    this.log = log;
    this.metricsFile = metricsFile;
    const logger = log.logger;
    const card: AddressCard = {
      pid: process.pid,
      host: config.host,
      port: config.port,
      version: VERSION,
      started_at: new Date(this.startedAtMs).toISOString(),
    };
    try {
      this.lock = await acquirePidLock(paths.pid, { ...card, port: 0 });
      const warn = (text: string, details: Record<string, unknown>) => this.warn(text, details);
      const token = takeToken(config, logger, warn, {
        homeCreated: home.created,
        live: () => this.state === 'starting' || this.state === 'running',
      });
      const hub = await this.startHub(logger);
      this.hub = hub;
      const configs = this.configs;
      // The caps in force: a reload's reach the sessions already open.
      const toolCap = (client: string | undefined) => configs.toolCap(client);
      const manager = new SessionManager({ hub, config, metrics: this.metrics, logger, toolCap });
      this.manager = manager;
      wireFanout(hub, manager);
      this.mcp = this.httpEndpoint(manager);
      const mcp = this.mcp;
      // At the session limit, an idle HTTP session gives way to a new one (WebSocket or HTTP).
      manager.makeRoom = () => mcp.evictIdle();
      this.server = this.webServer({ token, logger, manager, mcp });
      const port = await bindPort(this.server, config, logger, warn);
      this.lock.update({ ...card, port });
      this.metricsTimer = setInterval(() => this.writeMetrics(), config.metricsIntervalMs);
      this.metricsTimer.unref();
      this.state = 'running';
      this.configs.watch(() => void this.reload('config file changed'), logger);
      this.startIdleExit();
      logger.info(
        { host: config.host, port, home: paths.home, version: VERSION, auto_started: config.autoStarted, idle_exit_ms: this.idleExitMs },
        'daemon started',
      );
    } catch (error) {
      logStartFailure(logger, error, config.port);
      await this.close('start_failed');
      throw error;
    }
  }

  /** The hub with the built-in server and the configured hosted servers; the config's problems logged. */
  private async startHub(logger: Logger): Promise<Hub> {
    const { config } = this;
    const { paths } = config;
    const hub = await startCore({
      startedAtMs: this.startedAtMs,
      listTimeoutMs: config.callTimeoutMs,
      providers: this.providers,
      upstreams: config.upstreams.servers,
      profiles: config.upstreams.profiles,
      npxDirect: config.npxDirect,
      listWaitMs: config.listWaitMs,
      initTimeoutMs: config.initTimeoutMs,
      timers: hostingTimers(config.timerScale),
      configureBuiltin: this.options.configureBuiltin,
      log: coreLog(logger),
      learned: new FileLearnedTools(paths.asksClient, (message, details) => logger.warn(details, message)),
      remembered: new FileRememberedLists(paths.lists, (message, details) => logger.warn(details, message)),
      oauth: {
        vault: openVault(paths.oauth, logger),
        redirectUrl: () => (this.port ? `http://${urlHost(config.host)}:${this.port}${CALLBACK_PATH}` : undefined),
      },
      requestTimeoutMs: config.callTimeoutMs,
      count: (reason) => this.metrics.reject(reason),
    });
    this.configs.logAtStart(logger);
    return hub;
  }

  /** Streamable HTTP on `/mcp`: its sessions are the manager's. */
  private httpEndpoint(manager: SessionManager): McpHttpEndpoint {
    const { config } = this;
    return new McpHttpEndpoint({
      maxBodyBytes: config.maxBytes,
      idleMs: config.httpIdleMs,
      eventStoreBytes: config.httpEventsMaxBytes,
      eventStoreTotalBytes: config.httpEventsTotalMaxBytes,
      bodiesMaxBytes: config.bodiesMaxBytes,
      sse: { retryMs: config.httpRetryMs, pollMs: config.httpPollMs },
      held: HELD_STATES, // a held call's questions are declined past the call deadline; its session goes soon after
      parkMs: config.callTimeoutMs + 5_000,
      open: (selection, client) => {
        const opened = manager.open({ type: 'hello', protocol: PROTOCOL_VERSION, client, ...selection });
        if (opened.ok) return { ok: true, session: opened.session };
        const status = opened.code === 'session_limit' ? 503 : 404;
        return { ok: false, status, code: status === 503 ? RpcCode.OVER_CAPACITY : RpcCode.INVALID_REQUEST, message: opened.message };
      },
      end: (host, reason) => {
        const session = manager.get(host.id);
        // A stateless 2026-07-28 request's own session: its client is counted by name for /health.
        if (session && reason === 'request_answered') this.stateless.seen(clientOf(session), session.latency.total);
        if (session) manager.expire(session, reason);
      },
      reject: (reason) => this.metrics.reject(reason),
    });
  }

  /** The HTTP server: WebSocket, `/mcp`, `/health`, `/metrics`, the status page, the token and control routes. */
  private webServer(parts: Pick<DaemonServerDeps, 'token' | 'logger' | 'manager' | 'mcp'>): DaemonServer {
    const { token, logger, manager, mcp } = parts;
    const { config } = this;
    return new DaemonServer({
      config,
      token,
      manager,
      metrics: this.metrics,
      logger,
      health: () => this.health(),
      mcp,
      prometheus: new PrometheusExporter({ metrics: this.metrics, health: () => this.health() }),
      statusPage: (this.statusPage = new StatusPage({ health: () => this.health() })),
      control: {
        logger,
        state: () => this.state,
        stop: (by) => (this.onstop ? this.onstop(by) : void this.close(by)),
        reload: (reason) => this.reload(reason),
      },
      logins: () => this.hub?.logins,
      toolCount: async () => {
        const listed = await this.hub?.list('tools', {});
        return listed !== undefined && 'items' in listed ? listed.items.length : undefined;
      },
    });
  }

  /**
   * For a fatal error (a bug the process will not survive): logs it, flushes the log and
   * removes the pid file, synchronously and best effort, so that the caller can exit at once
   * and the next start finds no card. Hosted servers are left to the watchdog, which stops them
   * when this process is gone.
   */
  abandon(error: unknown): void {
    try {
      this.log?.logger.fatal({ err: error }, 'daemon crashed');
      this.log?.flush();
    } catch {
      // The log may be what failed; the pid file must still go.
    }
    this.lock?.release();
  }

  /**
   * Something the user should act on: logged at warn once, and kept for `/health`,
   * `exai-ws status` and the status page for as long as this daemon runs.
   */
  warn(text: string, details: Record<string, unknown> = {}): void {
    if (!this.warnings.includes(text)) this.warnings.push(text);
    this.log?.logger.warn(details, text);
  }

  /** The `/health` report (health-report.ts). */
  health(): HealthReport {
    return healthReport({
      state: this.state,
      config: this.config,
      port: this.port,
      startedAtMs: this.startedAtMs,
      manager: this.manager,
      hub: this.hub,
      server: this.server,
      metrics: this.metrics,
      configs: this.configs,
      providers: this.providers,
      log: this.log,
      metricsFile: this.metricsFile,
      idleExitMs: this.idleExitMs,
      warnings: this.warnings,
      stateless: this.stateless,
    });
  }

  /** How long this daemon stays with no session before it exits; null: it never does (started by hand, or 0). */
  get idleExitMs(): number | null {
    return this.config.autoStarted && this.config.idleExitMs > 0 ? this.config.idleExitMs : null;
  }

  /** An auto-started daemon closes itself (reason `idle`) after `idleExitMs` with no session. */
  private startIdleExit(): void {
    const idleMs = this.idleExitMs;
    if (idleMs === null) return;
    this.idleExit = new IdleExit({
      idleMs,
      busy: () => (this.manager?.size ?? 0) > 0 || (this.server?.connectionCount ?? 0) > 0,
      opened: () => this.metrics.sessionsOpened,
      onidle: () => {
        this.log?.logger.info({ idle_exit_ms: idleMs }, 'no session for the idle time: the auto-started daemon exits');
        void this.close('idle');
      },
    });
    this.idleExit.start();
  }

  /** Re-reads the hosted-servers config and applies it (config-reload.ts); an Error when it cannot. */
  reload(reason: string): Promise<ReloadReport | Error> {
    if (this.state !== 'running' || !this.hub) return Promise.resolve(new Error('the daemon is not running'));
    return this.configs.reload(this.hub, reason, this.log?.logger);
  }

  /** Graceful shutdown in the order written at the top of this file. Idempotent. */
  close(reason = 'shutdown'): Promise<void> {
    this.closing ??= this.doClose(reason);
    return this.closing;
  }

  private async doClose(reason: string): Promise<void> {
    this.state = 'closing';
    const logger = this.log?.logger;
    logger?.info({ reason }, 'daemon stopping');
    this.idleExit?.close();
    this.configs.close();
    this.server?.stopAccepting();
    const manager = this.manager;
    if (manager) {
      manager.drain('daemon is shutting down');
      const deadline = Date.now() + this.config.drainMs;
      while (manager.inflightCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      manager.abortInflight('daemon is shutting down');
      manager.closeAll(CloseCode.GOING_AWAY, 'daemon shutting down');
    }
    this.mcp?.close();
    this.statusPage?.close();
    await this.server?.waitForSockets(SOCKET_CLOSE_WAIT_MS);
    await this.hub?.close();
    if (this.metricsTimer) clearInterval(this.metricsTimer);
    if (this.manager) this.writeMetrics();
    this.metricsFile?.close();
    logger?.info({ reason }, 'daemon stopped');
    // One write attempt each, never a wait: a full disk must not hold the shutdown.
    this.log?.close();
    this.lock?.release();
    this.state = 'closed';
    this.onclose?.();
  }

  private writeMetrics(): void {
    const manager = this.manager;
    const total = manager?.size ?? 0;
    const attached = manager?.attachedCount ?? 0;
    const line = this.metrics.snapshot({
      sessionsActive: attached,
      sessionsDetached: total - attached,
      inflight: manager?.inflightCount ?? 0,
      byTransport: manager?.byTransport,
    });
    const out = trySerialize({ ...line, providers: this.providers.snapshot() });
    if (!out.ok) {
      this.log?.logger.warn({ err: out.reason }, 'metrics line could not be built');
      return;
    }
    this.metricsFile?.write(out.text);
  }
}
