/**
 * The daemon: composes the token, pid lock, logger, core (hub with the built-in server),
 * session manager and transport, and owns their lifecycle.
 *
 * Start order: home and logs dir (checked), log, pid lock (exclusive), token (only the lock
 * holder writes it), core, listen (the configured port, or one of the home's own when someone
 * else holds it: own-port.ts), address card.
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
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { CloseCode, RpcCode } from '../protocol/codes.js';
import { trySerialize } from '../protocol/jsonrpc.js';
import type { AddressCard } from '../local/files.js';
import { startCore } from '../mux/core.js';
import type { Hub } from '../mux/hub.js';
import { loadUpstreamConfig, type UpstreamConfig } from '../hosting/upstream-config.js';
import { Providers } from '../builtin/providers/providers.js';
import { NAME, VERSION } from '../protocol/version.js';
import type { DaemonConfig } from './files/config.js';
import { getHeapStatistics } from 'node:v8';

import { LineFile } from './files/line-file.js';
import { coreLog, createLogger, type DaemonLogger } from './files/logger.js';
import { Metrics } from './files/metrics.js';
import { HomeError, homeError, prepareHome, secureHome } from '../local/home.js';
import { IdleExit } from './idle-exit.js';
import { AlreadyRunningError, acquirePidLock, type PidLock } from '../local/pidfile.js';
import { ConfigWatcher } from './files/config-watcher.js';
import { wireFanout } from './sessions/fanout.js';
import { FileLearnedTools } from './files/learned-tools.js';
import { DaemonServer } from './web/server.js';
import { McpHttpEndpoint } from '../transport/http.js';
import { PrometheusExporter } from './web/prometheus.js';
import { StatusPage } from './web/status-page.js';
import { PROTOCOL_VERSION } from '../protocol/hello.js';
import { SessionManager } from './sessions/sessions.js';
import { ensureToken } from '../local/token.js';
import { isSecretName } from '../local/settings.js';
import { bindFirst, portCandidates } from './files/own-port.js';
import { updateState } from '../local/user-state.js';
import type { ReloadReport, HealthReport, LastReload, MemoryReport } from '../local/health.js';

export interface DaemonOptions {
  config: DaemonConfig;
  /** Adds tools to the built-in server before it starts (tests add fixture tools here). */
  configureBuiltin?: (server: McpServer) => void;
}

export type DaemonState = 'new' | 'starting' | 'running' | 'closing' | 'closed';

/** Quiet time after a config file change before it is read. */
const CONFIG_SETTLE_MS = 250;
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
  /** The hosted-servers config in force (replaced by each successful reload). */
  private upstreams: UpstreamConfig;
  /**
   * Why the config file as it is on disk is not in force (unreadable, not valid JSON: line and
   * column), found at start or by a reload; cleared by the next reload that applies it.
   */
  private configError: string | undefined;
  private watcher: ConfigWatcher | undefined;
  private lastReload: LastReload | undefined;
  private idleExit: IdleExit | undefined;
  /** What the user should act on, as `/health` and `exai-ws status` show it (see {@link warn}). */
  private readonly warnings: string[] = [];

  constructor(options: DaemonOptions) {
    this.options = options;
    this.config = options.config;
    this.providers = new Providers(options.config.providers);
    this.upstreams = options.config.upstreams;
    this.configError = options.config.upstreams.error;
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
    try {
      // An auto-started daemon's stderr is its log file (see shim/autostart.ts): copying warnings
      // there would write each one twice.
      const stderrFd = config.autoStarted ? null : 2;
      this.log = createLogger({ path: paths.log, maxBytes: config.logMaxBytes, files: config.logFiles }, config.logLevel, stderrFd);
    } catch (error) {
      throw homeError(error, paths.log, 'the log file');
    }
    const logger = this.log.logger;
    this.metricsFile = new LineFile({
      path: paths.metrics,
      maxBytes: config.metricsMaxBytes,
      files: config.metricsFiles,
      // Told once per failure spell, not once per interval: /health keeps the count.
      onfail: (error) =>
        logger.warn(
          { err: error.message, file: paths.metrics },
          'metrics write failed; dropping metrics lines until it can be written again',
        ),
      onresume: (dropped) => logger.info({ dropped_lines: dropped, file: paths.metrics }, 'metrics file writable again'),
    });
    const card: AddressCard = {
      pid: process.pid,
      host: config.host,
      port: config.port,
      version: VERSION,
      started_at: new Date(this.startedAtMs).toISOString(),
    };
    try {
      this.lock = await acquirePidLock(paths.pid, { ...card, port: 0 });
      // Only the lock holder writes the token file, so daemons started at once agree on one.
      const { token, written } = ensureToken(paths.token, config.token);
      if (written === 'created') logger.info({ path: paths.token }, 'token file created');
      else if (written) logger.warn({ path: paths.token, reason: written }, 'token file held no usable token: replaced with a new one');
      for (const text of settingsWarnings(config)) this.warn(text, { settings: config.settings.path });
      // Windows: who may read the token and the settings (acl.ts), checked without waiting for it.
      void secureHome(paths, config.settings.path, home.created).then((lines) => {
        if (this.state === 'starting' || this.state === 'running') for (const text of lines) this.warn(text, { home: paths.home });
      });
      const hub = await startCore({
        startedAtMs: this.startedAtMs,
        listTimeoutMs: config.callTimeoutMs,
        providers: this.providers,
        upstreams: config.upstreams.servers,
        npxDirect: config.npxDirect,
        listWaitMs: config.listWaitMs,
        initTimeoutMs: config.initTimeoutMs,
        configureBuiltin: this.options.configureBuiltin,
        log: coreLog(logger),
        learned: new FileLearnedTools(paths.asksClient, (message, details) => logger.warn(details, message)),
        requestTimeoutMs: config.callTimeoutMs,
        count: (reason) => this.metrics.reject(reason),
      });
      for (const problem of config.upstreams.problems) {
        logger.warn({ ...problem, config: config.upstreams.path }, 'config entry refused');
      }
      if (this.configError !== undefined) {
        logger.warn(
          { err: this.configError, config: config.upstreamsPath },
          'config file not applied: no hosted servers until it is fixed (it is applied as soon as it is saved)',
        );
      }
      this.hub = hub;
      const manager = new SessionManager({ hub, config, metrics: this.metrics, logger });
      this.manager = manager;
      wireFanout(hub, manager);
      this.mcp = new McpHttpEndpoint({
        maxBodyBytes: config.maxBytes,
        idleMs: config.httpIdleMs,
        eventStoreBytes: config.httpEventsMaxBytes,
        eventStoreTotalBytes: config.httpEventsTotalMaxBytes,
        bodiesMaxBytes: config.bodiesMaxBytes,
        sse: { retryMs: config.httpRetryMs, pollMs: config.httpPollMs },
        open: (server, client) => {
          const opened = manager.open({ type: 'hello', protocol: PROTOCOL_VERSION, client, server });
          if (opened.ok) return { ok: true, session: opened.session };
          const status = opened.code === 'session_limit' ? 503 : 404;
          return { ok: false, status, code: status === 503 ? RpcCode.OVER_CAPACITY : RpcCode.INVALID_REQUEST, message: opened.message };
        },
        end: (host, reason) => {
          const session = manager.get(host.id);
          if (session) manager.expire(session, reason);
        },
        reject: (reason) => this.metrics.reject(reason),
      });
      const mcp = this.mcp;
      // At the session limit, an idle HTTP session gives way to a new one (WebSocket or HTTP).
      manager.makeRoom = () => mcp.evictIdle();
      this.server = new DaemonServer({
        config,
        token,
        manager,
        metrics: this.metrics,
        logger,
        health: () => this.health(),
        mcp: this.mcp,
        prometheus: new PrometheusExporter({ metrics: this.metrics, health: () => this.health() }),
        statusPage: (this.statusPage = new StatusPage({ health: () => this.health() })),
        control: {
          logger,
          state: () => this.state,
          stop: (by) => (this.onstop ? this.onstop(by) : void this.close(by)),
          reload: (reason) => this.reload(reason),
        },
      });
      const port = await this.bindPort(this.server);
      this.lock.update({ ...card, port });
      this.metricsTimer = setInterval(() => this.writeMetrics(), config.metricsIntervalMs);
      this.metricsTimer.unref();
      this.state = 'running';
      this.watchConfig();
      this.startIdleExit();
      logger.info(
        { host: config.host, port, home: paths.home, version: VERSION, auto_started: config.autoStarted, idle_exit_ms: this.idleExitMs },
        'daemon started',
      );
    } catch (error) {
      // Another daemon holding the home, or a home the user must fix, is an expected refusal,
      // not a fault: the caller prints it as one plain line, so keep it out of stderr (warn
      // and worse are copied there).
      if (error instanceof AlreadyRunningError) logger.info({ running_pid: error.card.pid }, 'daemon start refused: already running');
      else if (error instanceof HomeError)
        logger.info({ path: error.path, err: error.message }, 'daemon start refused: the home cannot be used');
      else if ((error as NodeJS.ErrnoException).syscall === 'listen')
        logger.info({ err: (error as Error).message, port: config.port }, 'daemon start refused: cannot listen');
      else logger.error({ err: (error as Error).message }, 'daemon failed to start');
      await this.close('start_failed');
      throw error;
    }
  }

  /**
   * Binds the configured port or, when someone else holds it and it is not the daemon's shell's
   * `EXAI_WS_PORT`, a port of the home's own (own-port.ts), kept in state.json so that the next
   * start tries it first. Warns when the URL entries `exai-ws config` printed name another port.
   */
  private async bindPort(server: DaemonServer): Promise<number> {
    const { config } = this;
    const { paths, state } = config;
    const logger = this.log?.logger;
    const candidates = portCandidates({
      port: config.port,
      source: config.portSource,
      statePort: state.port,
      uid: process.getuid?.() ?? -1,
      home: resolve(paths.home),
    });
    const { port, held } = await bindFirst(candidates, (candidate) => server.listen(candidate));
    if (held.length > 0) {
      logger?.info(
        { port, held, port_source: config.portSource, state: paths.state },
        `port ${held.join(', ')} ${held.length === 1 ? 'is' : 'are'} held by another program; this daemon listens on ${port}, kept in state.json`,
      );
    }
    // A port the daemon's shell named by hand is that shell's business, not the home's; port 0
    // asks for any port each time, not for one to keep.
    if (config.portSource !== 'env' && config.port !== 0 && state.port !== port) {
      try {
        updateState(paths, { port });
      } catch (error) {
        this.warn(
          `cannot keep this daemon's port ${port} in ${paths.state} (${(error as Error).message}): its next start may listen on another`,
          {
            port,
          },
        );
      }
    }
    const printed = state.url_port;
    if (printed !== undefined && printed !== port) {
      const there = held.includes(printed) ? 'which another program holds now' : 'where this daemon does not listen';
      this.warn(
        `the URL entries printed by exai-ws config name port ${printed}, ${there}: this daemon listens on ${port}; print them again (exai-ws config CLIENT) and paste them into your clients (shim entries follow the daemon by themselves)`,
        { url_port: printed, port },
      );
    }
    return port;
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

  /** The `/health` report. */
  /** The connection guard's counts for `/health` (connections.ts). */
  private sockets(): HealthReport['sockets'] {
    const counts = this.server?.connections;
    if (!counts) return { open: 0, unauthenticated: 0, descriptor_cap: null };
    return { open: counts.open, unauthenticated: counts.unauthenticated, descriptor_cap: counts.descriptorCap ?? null };
  }

  health(): HealthReport {
    const manager = this.manager;
    const total = manager?.size ?? 0;
    const attached = manager?.attachedCount ?? 0;
    return {
      status: this.state === 'running' ? 'ok' : this.state,
      name: NAME,
      version: VERSION,
      pid: process.pid,
      host: this.config.host,
      port: this.port,
      started_at: new Date(this.startedAtMs).toISOString(),
      uptime_s: Math.round((Date.now() - this.startedAtMs) / 1000),
      sessions: {
        total,
        attached,
        detached: total - attached,
        by_transport: manager?.byTransport ?? { ws: 0, http: 0, stdio: 0 },
        idle_ended: this.metrics.idleEnded(),
        list: (manager?.list() ?? []).map((s) => ({
          id: s.id,
          transport: s.kind,
          state: s.state,
          // The MCP client's own name (VS Code, Claude Code) once it sent initialize; else the hello's.
          client: s.clientInfo?.name ?? s.client.name,
          client_version: s.clientInfo?.version ?? s.client.version,
          cwd: s.cwd ?? null,
          age_s: Math.round((Date.now() - s.createdAtMs) / 1000),
          inflight: s.inflightCount,
          requests: s.latency.total,
          p99_ms: s.latency.p99(),
        })),
      },
      connections: this.server?.connectionCount ?? 0,
      sockets: this.sockets(),
      inflight: manager?.inflightCount ?? 0,
      servers: (this.hub?.servers ?? []).slice(1).map((s) => ({ ...s.report(), asks_client: this.hub?.requests.asksClient(s) ?? [] })),
      config: {
        path: this.config.upstreamsPath,
        exists: this.upstreams.path !== null,
        watching: this.watcher?.watching ?? null,
        problems: this.upstreams.problems,
        error: this.configError ?? null,
        last_reload: this.lastReload ?? null,
      },
      providers: this.providers.health(),
      limits: { max_sessions: this.config.maxSessions, max_inflight: this.config.maxInflight, max_bytes: this.config.maxBytes },
      log: this.log?.stats() ?? null,
      metrics_file: this.metricsFile?.stats() ?? null,
      memory: memoryReport(),
      auto_started: this.config.autoStarted,
      idle_exit_ms: this.idleExitMs,
      settings: this.config.settings,
      warnings: [...this.warnings],
    };
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

  /**
   * Re-reads the hosted-servers config and applies it: added servers start, removed ones stop,
   * changed ones restart, the rest keep running; sessions get `list_changed`. A file that is not
   * valid JSON changes nothing (the error, with line and column, is logged and reported by
   * `/health`). A file that is gone means no hosted servers, as at a start without one.
   */
  async reload(reason: string): Promise<ReloadReport | Error> {
    const logger = this.log?.logger;
    if (this.state !== 'running' || !this.hub) return new Error('the daemon is not running');
    let next: UpstreamConfig;
    try {
      next = loadUpstreamConfig(this.config.upstreamsPath, this.config.upstreamIdleMs);
    } catch (error) {
      this.configError = (error as Error).message;
      this.lastReload = { at: new Date().toISOString(), error: (error as Error).message };
      logger?.error({ reason, err: (error as Error).message }, 'config reload failed; the running servers stay as they are');
      return error as Error;
    }
    for (const problem of next.problems) logger?.warn({ ...problem, config: next.path }, 'config entry refused');
    const removed = next.path === null && this.upstreams.path !== null;
    this.upstreams = next;
    this.configError = undefined;
    const report = await this.hub.reload(next.servers);
    this.lastReload = { at: new Date().toISOString(), ...report, file: next.path !== null, refused: next.problems.length };
    if (removed) logger?.info({ reason, config: this.config.upstreamsPath, ...report }, 'config file removed: no hosted servers');
    else logger?.info({ reason, ...report }, 'config reloaded');
    return report;
  }

  /**
   * Reloads shortly after the config file changes, appears or goes away, even when its folder
   * does not exist yet (see ConfigWatcher).
   */
  private watchConfig(): void {
    const logger = this.log?.logger;
    const path = this.config.upstreamsPath;
    this.watcher = new ConfigWatcher({
      path,
      settleMs: CONFIG_SETTLE_MS,
      onchange: () => void this.reload('config file changed'),
      onproblem: (problem) =>
        'error' in problem
          ? logger?.warn({ err: problem.error, config: path }, 'config file not watched; retrying (exai-ws reload works meanwhile)')
          : logger?.info({ watching: problem.watching, config: path }, 'config file watched again'),
    });
    this.watcher.start();
    // Written (or fixed) between the read at start and the watch: not missed.
    if ((this.upstreams.path !== null) !== existsSync(path) || (this.configError !== undefined && usable(path))) {
      void this.reload('config file changed');
    }
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
    this.watcher?.close();
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

/** What the settings file and the launching client's environment give the user to act on. */
function settingsWarnings(config: DaemonConfig): string[] {
  const { settings } = config;
  const out: string[] = [];
  if (settings.error) out.push(`${settings.error}; the defaults apply`);
  for (const problem of settings.problems) out.push(`${settings.path} line ${problem.line}: ${problem.message}`);
  if (settings.readable_by_others && settings.values.some((v) => v.source === 'file' && isSecretName(v.name))) {
    out.push(`${settings.path} holds keys and others can read it: chmod 600 ${settings.path}`);
  }
  if (settings.legacy_service_env !== null) {
    out.push(
      `${settings.legacy_service_env} is from an earlier exai-ws: new service units do not read it, and its settings belong in ${settings.path}; exai-ws service install moves them there`,
    );
  }
  if (settings.ignored_env.length > 0) {
    const names = settings.ignored_env.join(', ');
    const keep = settings.ignored_env.map((name) => `exai-ws settings set ${name}=...`).join('; ');
    out.push(
      `the client that started this daemon passed ${names}, which the daemon no longer takes from a client (its settings come from ${settings.path}); to keep ${settings.ignored_env.length === 1 ? 'it' : 'them'}: ${keep}, then exai-ws restart`,
    );
  }
  return out;
}

/** True when the config file can be read and parsed now. */
function usable(path: string): boolean {
  try {
    loadUpstreamConfig(path);
    return true;
  } catch {
    return false;
  }
}

/** The daemon's own memory, for `/health`: a leak shows as heap that keeps growing. */
function memoryReport(): MemoryReport {
  const heap = getHeapStatistics();
  let rss: number | null = null;
  try {
    rss = process.memoryUsage.rss();
  } catch {
    // Reading the resident size can fail (out of file descriptors); the heap figures cannot.
  }
  return { heap_used_bytes: heap.used_heap_size, heap_total_bytes: heap.total_heap_size, rss_bytes: rss };
}
