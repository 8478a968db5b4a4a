/**
 * The daemon's `/health` report, made from the parts the daemon holds (moved out of daemon.ts),
 * and what it says about eras (issue 24): the era each open session's client speaks, the era
 * each hosted server was spoken to in, and the stateless 2026-07-28 HTTP clients, whose requests
 * are each a session of their own that ends once answered, grouped by client name
 * ({@link StatelessClients}).
 */
import { ERA_VERSION, MODERN_VERSION, type Era } from '../protocol/eras.js';
import { NAME, VERSION } from '../protocol/version.js';
import {
  STATELESS_CLIENTS_MAX,
  type EraVersion,
  type HealthReport,
  type SessionEntry,
  type StatelessClientEntry,
} from '../local/health.js';
import type { Hub } from '../mux/hub.js';
import type { Providers } from '../builtin/providers/providers.js';
import type { LineFile } from './files/line-file.js';
import type { DaemonLogger } from './files/logger.js';
import type { Metrics } from './files/metrics.js';
import type { ConfigReloads } from './config-reload.js';
import type { DaemonConfig } from './files/config.js';
import type { DaemonServer } from './web/server.js';
import type { SessionManager } from './sessions/sessions.js';
import type { Session } from './sessions/session.js';
import { memoryReport, socketsReport } from './start-parts.js';

/** The eras by the names the code gives them (SessionContext.era, Upstream.era) as `/health` writes them: the revision that names the era; null: not known yet. */
export function eraVersion(era: Era | undefined): EraVersion | null {
  return era === undefined ? null : ERA_VERSION[era];
}

/** The longest client name kept, in characters: the name is the client's own string. */
export const CLIENT_NAME_MAX = 100;

/**
 * The stateless clients by name, at most `max` names: a new name beyond that drops the least
 * recently seen one. A Map kept in the order last seen (a name seen again moves to the end),
 * so dropping is O(1).
 */
export class StatelessClients {
  private readonly byName = new Map<string, { requests: number; lastMs: number }>();

  constructor(
    private readonly max = STATELESS_CLIENTS_MAX,
    private readonly now: () => number = Date.now,
  ) {}

  /** One stateless request's session ended: `requests` answered in it, for the client named `name`. */
  seen(name: string | undefined, requests: number): void {
    const key = clientName(name);
    const entry = this.byName.get(key) ?? { requests: 0, lastMs: 0 };
    entry.requests += Math.max(0, requests);
    entry.lastMs = this.now();
    // Moved to the end: the Map's order is the order last seen.
    this.byName.delete(key);
    this.byName.set(key, entry);
    // One name added at most, so one dropped at most: the least recently seen.
    const oldest = this.byName.size > this.max ? this.byName.keys().next().value : undefined;
    if (oldest !== undefined) this.byName.delete(oldest);
  }

  get size(): number {
    return this.byName.size;
  }

  /** Most recently seen first. */
  report(): StatelessClientEntry[] {
    const now = this.now();
    return [...this.byName].reverse().map(([client, e]) => ({
      client,
      era: MODERN_VERSION,
      requests: e.requests,
      last_seen_s: Math.max(0, Math.round((now - e.lastMs) / 1000)),
    }));
  }
}

/** The client's own name, cut to {@link CLIENT_NAME_MAX} characters (marked with `…` when cut); `unknown` when none. */
export function clientName(name: string | undefined): string {
  if (name === undefined || name.length === 0) return 'unknown';
  return name.length <= CLIENT_NAME_MAX ? name : `${name.slice(0, CLIENT_NAME_MAX - 1)}…`;
}

/** A session's client: the MCP client's own name (VS Code, Claude Code) once it sent initialize; else the hello's. */
export function clientOf(s: Pick<Session, 'clientInfo' | 'client'>): string {
  return s.clientInfo?.name ?? s.client.name;
}

/** What the report is made from: the daemon's parts, any of them absent before start. */
export interface HealthParts {
  state: string;
  /** What of the daemon's config the report shows. */
  config: Pick<DaemonConfig, 'host' | 'maxSessions' | 'maxInflight' | 'maxBytes' | 'autoStarted' | 'settings'>;
  port: number;
  startedAtMs: number;
  manager: SessionManager | undefined;
  hub: Hub | undefined;
  server: DaemonServer | undefined;
  metrics: Metrics;
  configs: ConfigReloads;
  providers: Providers;
  log: DaemonLogger | undefined;
  metricsFile: LineFile | undefined;
  idleExitMs: number | null;
  warnings: readonly string[];
  stateless: StatelessClients;
}

/** The `/health` report. */
export function healthReport(p: HealthParts): HealthReport {
  const { manager, hub, config } = p;
  const total = manager?.size ?? 0;
  const attached = manager?.attachedCount ?? 0;
  return {
    status: p.state === 'running' ? 'ok' : p.state,
    name: NAME,
    version: VERSION,
    pid: process.pid,
    host: config.host,
    port: p.port,
    started_at: new Date(p.startedAtMs).toISOString(),
    uptime_s: Math.round((Date.now() - p.startedAtMs) / 1000),
    sessions: {
      total,
      attached,
      detached: total - attached,
      by_transport: manager?.byTransport ?? { ws: 0, http: 0, stdio: 0 },
      idle_ended: p.metrics.idleEnded(),
      list: (manager?.list() ?? []).map(sessionEntry),
    },
    stateless_clients: p.stateless.report(),
    connections: p.server?.connectionCount ?? 0,
    sockets: socketsReport(p.server?.connections),
    inflight: manager?.inflightCount ?? 0,
    servers: (hub?.servers ?? []).slice(1).map((s) => {
      const login = hub?.logins?.report(s.name);
      return { ...s.report(), era: eraVersion(s.era), asks_client: hub?.requests.asksClient(s) ?? [], ...(login ? { login } : {}) };
    }),
    config: p.configs.report(),
    providers: p.providers.health(),
    limits: { max_sessions: config.maxSessions, max_inflight: config.maxInflight, max_bytes: config.maxBytes },
    log: p.log?.stats() ?? null,
    metrics_file: p.metricsFile?.stats() ?? null,
    memory: memoryReport(),
    auto_started: config.autoStarted,
    idle_exit_ms: p.idleExitMs,
    settings: config.settings,
    warnings: [...p.warnings],
  };
}

function sessionEntry(s: Session): SessionEntry {
  return {
    id: s.id,
    transport: s.kind,
    state: s.state,
    client: clientOf(s),
    client_version: s.clientInfo?.version ?? s.client.version,
    cwd: s.cwd ?? null,
    age_s: Math.round((Date.now() - s.createdAtMs) / 1000),
    inflight: s.inflightCount,
    requests: s.latency.total,
    p99_ms: s.latency.p99(),
    era: eraVersion(s.era),
    ...s.windowTools,
  };
}
