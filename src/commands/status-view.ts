import type { HealthReport, Liveness } from '../local/health.js';
import { MODERN_VERSION } from '../protocol/eras.js';
import { loginOf, type StatusLogin } from './status-login.js';
/**
 * What `exai-ws status` shows, as data and as text: pure functions over the daemon's health
 * report, so they are tested without a daemon and can be reused (the status page).
 *
 * `--json` prints {@link StatusJson}, not the raw `/health` report: scripts get a documented
 * shape that changes only with {@link STATUS_SCHEMA}, while `/health` may grow freely. Every
 * field the daemon did not report (an older daemon, a slice not there yet) is null, never
 * missing, so a script can tell "not reported" from a typo.
 */

/** Version of the `--json` shape; bumped only when a field changes meaning or goes away (new fields may be added). */
export const STATUS_SCHEMA = 1;

/** `exai-ws status --json` when a daemon answers. */
export interface StatusJson {
  schema: typeof STATUS_SCHEMA;
  /** The daemon's own state: `ok` while it serves, `starting` or `closing` around that. */
  status: string;
  /**
   * Null for the full report. Otherwise why the daemon gave only its liveness fields (it did
   * not take this user's token: `EXAI_WS_TOKEN` or the home's token file): `sessions`,
   * `servers` and `providers` are then empty and `config` and `files` hold nulls, for want of
   * the report, not because there is nothing.
   */
  limited: string | null;
  daemon: {
    name: string;
    version: string;
    pid: number;
    host: string;
    port: number;
    /** Where a WebSocket (shim) client connects. */
    ws_url: string;
    /** Where a Streamable HTTP client connects. */
    mcp_url: string;
    started_at: string | null;
    uptime_s: number;
    /** Started by a shim or `exai-ws restart`, rather than by hand or a service. */
    auto_started: boolean | null;
    /** How long it stays with no session before it exits; null: never. */
    idle_exit_ms: number | null;
    /** Requests running in all sessions. */
    inflight: number;
    /**
     * Idle HTTP sessions ended since start, by why: `idle` (unused for the idle time) and
     * `session_limit` (ended to make room for a new session); null from a daemon that does not say.
     */
    idle_ended: { idle: number; session_limit: number } | null;
  };
  /** Open sessions, grouped by client name (then oldest first). */
  sessions: StatusSession[];
  /** Stateless 2026-07-28 HTTP clients (a session per request), by name, most recently seen first. */
  stateless_clients: StatusStatelessClient[];
  servers: StatusServer[];
  providers: StatusProvider[];
  config: StatusConfig;
  files: { log: StatusFile | null; metrics: StatusFile | null };
  /** The settings file and where each setting came from; null from a daemon that does not report it. */
  settings: StatusSettings | null;
  /** What the user should act on, in words (empty when nothing). */
  warnings: string[];
}

export interface StatusSettings {
  path: string;
  exists: boolean;
  /** Lines of the file that were not taken, by number. */
  problems: { line: number; message: string }[];
  /** Each setting in force that is not a default: `file` (daemon.env) or `env` (a daemon started by hand); keys masked. */
  values: { name: string; source: string; value: string }[];
  /** Settings variables the launching client passed that the daemon did not take. */
  ignored_env: string[];
}

export interface StatusSession {
  id: string;
  client: string;
  client_version: string | null;
  transport: string;
  state: string;
  cwd: string | null;
  age_s: number;
  inflight: number;
  /** Requests answered so far; null from a daemon that does not count them. */
  requests: number | null;
  /** 99th percentile latency of the session's last 1000 answered requests, in ms; null before any. */
  p99_ms: number | null;
  /** The era its client speaks (`2026-07-28`, `2025-11-25`); null before its first request or from an older daemon. */
  era: string | null;
  /** The profile in force; null: none (every server), or an older daemon. */
  profile: string | null;
  /** True when `profile` is one the window asked for that the config no longer has; null from an older daemon. */
  profile_missing: boolean | null;
  /** Tools in the last list the window was sent; null before its first, or from an older daemon. */
  tools: number | null;
  /** That list's size in bytes. */
  tools_bytes: number | null;
  /** The most tools its client takes; null: no known cap (or an older daemon). */
  tool_cap: number | null;
  /** True when its last list was longer than its client's cap; null from an older daemon. */
  over_cap: boolean | null;
}

export interface StatusStatelessClient {
  client: string;
  era: string;
  requests: number;
  last_seen_s: number;
}

export interface StatusServer {
  name: string;
  state: string;
  pid: number | null;
  scope: string | null;
  scope_key: string | null;
  restarts: number | null;
  sessions: number | null;
  inflight: number | null;
  last_error: string | null;
  /** The era it was spoken to in at its last start; null before it started or from an older daemon. */
  era: string | null;
  /** A `url` server's OAuth login (never a token); null for other servers and from an older daemon. */
  login: StatusLogin | null;
}

export interface StatusProvider {
  id: string;
  label: string | null;
  configured: boolean | null;
  /** What the last contact said (`unknown` before any); null when the daemon does not report it. */
  state: string | null;
  inflight: number | null;
  max_inflight: number | null;
  queued: number | null;
  rate_limited: number | null;
  errors: number | null;
  last_error: string | null;
  last_error_at: string | null;
}

export interface StatusConfig {
  path: string | null;
  exists: boolean | null;
  /** The directory watched for the file, null when it is not watched. */
  watching: string | null;
  /** Entries the daemon refused. */
  problems: { server: string; key: string | null; reason: string }[];
  /**
   * Why the file as it is now is not in force (unreadable, not valid JSON: names line and
   * column); null when it is, or when the daemon does not say.
   */
  error: string | null;
  last_reload: StatusReload | null;
}

export type StatusReload =
  | { at: string; ok: false; error: string }
  | { at: string; ok: true; added: string[]; removed: string[]; restarted: string[]; unchanged: string[]; file_removed: boolean };

export interface StatusFile {
  path: string | null;
  dropped_lines: number;
  failing: boolean;
  last_error: { code: string; at: string } | null;
}

/** `exai-ws status --json` when no daemon answers (exit 1). */
export interface StatusDown {
  schema: typeof STATUS_SCHEMA;
  status: 'down';
  error: string;
  stale_pid_file?: { path: string; pid: number };
}

/**
 * Builds the stable `--json` shape from a health report (read defensively: any field may be
 * missing). A liveness-only answer gives `limited`: `refused` says why, if the caller knows.
 */
function idleEndedOf(value: unknown): StatusJson['daemon']['idle_ended'] {
  const r = record(value);
  const idle = num(r.idle);
  const limit = num(r.session_limit);
  return idle === null || limit === null ? null : { idle, session_limit: limit };
}

export function statusJson(h: HealthReport | Liveness, refused?: string): StatusJson {
  const r: Partial<HealthReport> = h;
  const config = record(r.config);
  return {
    schema: STATUS_SCHEMA,
    status: str(h.status) ?? 'unknown',
    limited: 'sessions' in h ? null : (refused ?? 'the daemon gave only its liveness fields'),
    daemon: {
      name: str(h.name) ?? 'exai-ws',
      version: str(h.version) ?? '',
      pid: h.pid,
      host: h.host,
      port: h.port,
      ws_url: `ws://${h.host}:${h.port}`,
      mcp_url: `http://${h.host}:${h.port}/mcp`,
      started_at: str(h.started_at),
      uptime_s: num(h.uptime_s) ?? 0,
      auto_started: bool(h.auto_started),
      idle_exit_ms: num(h.idle_exit_ms),
      inflight: num(r.inflight) ?? 0,
      idle_ended: idleEndedOf(record(r.sessions).idle_ended),
    },
    sessions: list(record(r.sessions).list)
      .map((s): StatusSession => ({
        id: str(s.id) ?? '',
        client: str(s.client) ?? 'unknown',
        client_version: str(s.client_version),
        transport: str(s.transport) ?? 'ws',
        state: str(s.state) ?? 'unknown',
        cwd: str(s.cwd),
        age_s: num(s.age_s) ?? 0,
        inflight: num(s.inflight) ?? 0,
        requests: num(s.requests),
        p99_ms: num(s.p99_ms),
        era: str(s.era),
        ...windowOf(s),
      }))
      .sort((a, b) => compareText(a.client, b.client) || b.age_s - a.age_s),
    stateless_clients: statelessOf(r.stateless_clients),
    servers: list(r.servers).map((s) => ({
      name: str(s.name) ?? '?',
      state: str(s.state) ?? 'unknown',
      pid: num(s.pid),
      scope: str(s.scope),
      scope_key: str(s.scope_key),
      restarts: num(s.restarts),
      sessions: num(s.sessions),
      inflight: num(s.inflight),
      last_error: str(s.last_error),
      era: str(s.era),
      login: loginOf(s.login),
    })),
    providers: list(r.providers).map((p) => ({
      id: str(p.id) ?? '?',
      label: str(p.label),
      configured: bool(p.configured),
      state: str(p.state),
      inflight: num(p.inflight),
      max_inflight: num(p.max_inflight),
      queued: num(p.waiting),
      rate_limited: num(p.rate_limited),
      errors: num(p.errors),
      last_error: str(p.last_error),
      last_error_at: str(p.last_error_at),
    })),
    config: {
      path: str(config.path),
      exists: bool(config.exists),
      watching: str(config.watching),
      problems: list(config.problems).map((p) => ({ server: str(p.server) ?? '?', key: str(p.key) || null, reason: str(p.reason) ?? '' })),
      error: str(config.error),
      last_reload: reloadOf(config.last_reload),
    },
    files: { log: fileOf(r.log), metrics: fileOf(r.metrics_file) },
    settings: settingsOf(r.settings),
    warnings: Array.isArray(r.warnings) ? r.warnings.filter((w): w is string => typeof w === 'string') : [],
  };
}

/** What a session's window is shown (nulls from an older daemon). */
function windowOf(
  s: Record<string, unknown>,
): Pick<StatusSession, 'profile' | 'profile_missing' | 'tools' | 'tools_bytes' | 'tool_cap' | 'over_cap'> {
  return {
    profile: str(s.profile),
    profile_missing: bool(s.profile_missing),
    tools: num(s.tools),
    tools_bytes: num(s.tools_bytes),
    tool_cap: num(s.tool_cap),
    over_cap: bool(s.over_cap),
  };
}

function statelessOf(value: unknown): StatusStatelessClient[] {
  return list(value).map((c) => ({
    client: str(c.client) ?? 'unknown',
    era: str(c.era) ?? MODERN_VERSION,
    requests: num(c.requests) ?? 0,
    last_seen_s: num(c.last_seen_s) ?? 0,
  }));
}

function settingsOf(value: unknown): StatusSettings | null {
  const r = record(value);
  const path = str(r.path);
  if (path === null) return null;
  return {
    path,
    exists: r.exists === true,
    problems: list(r.problems).map((p) => ({ line: num(p.line) ?? 0, message: str(p.message) ?? '' })),
    values: list(r.values).map((v) => ({ name: str(v.name) ?? '?', source: str(v.source) ?? '?', value: str(v.value) ?? '' })),
    ignored_env: Array.isArray(r.ignored_env) ? r.ignored_env.map(String) : [],
  };
}

function reloadOf(value: unknown): StatusReload | null {
  const r = record(value);
  const at = str(r.at);
  if (at === null) return null;
  const error = str(r.error);
  if (error !== null) return { at, ok: false, error };
  const names = (v: unknown) => (Array.isArray(v) ? v.map(String) : []);
  return {
    at,
    ok: true,
    added: names(r.added),
    removed: names(r.removed),
    restarted: names(r.restarted),
    unchanged: names(r.unchanged),
    file_removed: r.file === false,
  };
}

function fileOf(value: unknown): StatusFile | null {
  if (value === null || typeof value !== 'object') return null;
  const f = record(value);
  const error = record(f.last_error);
  const code = str(error.code);
  return {
    path: str(f.path),
    dropped_lines: num(f.dropped_lines) ?? 0,
    failing: f.failing === true,
    last_error: code === null ? null : { code, at: str(error.at) ?? '' },
  };
}

/** Case-insensitive, locale-independent: the same order on every machine. */
function compareText(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  return x < y ? -1 : x > y ? 1 : 0;
}

function record(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function list(value: unknown): Record<string, unknown>[] {
  return Array.isArray(value) ? value.map(record) : [];
}

function str(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

function num(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function bool(value: unknown): boolean | null {
  return typeof value === 'boolean' ? value : null;
}
