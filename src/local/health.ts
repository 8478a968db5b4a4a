/**
 * What the daemon's `GET /health` answers, as every reader takes it (the shim, the CLI's
 * `status`, the pid lock): the liveness fields anyone may read and the full report for the
 * token's holder. Types only, with the shapes of what the report holds (servers, providers,
 * settings), so the readers need none of the parts that make it.
 */
import type { SettingsProblem } from './settings.js';
import type { ERA_VERSION } from '../protocol/eras.js';

export interface HealthReport {
  status: string;
  name: string;
  version: string;
  pid: number;
  host: string;
  port: number;
  started_at: string;
  uptime_s: number;
  sessions: {
    total: number;
    attached: number;
    detached: number;
    /** Open sessions by how their client is connected. */
    by_transport?: Record<'ws' | 'http' | 'stdio', number>;
    /** Idle HTTP sessions ended since start: unused for the idle time, or to make room at the session limit. */
    idle_ended?: { idle: number; session_limit: number };
    list?: SessionEntry[];
  };
  /**
   * 2026-07-28 clients over HTTP with no session of their own (each request is a session that
   * ends once answered), grouped by the client's own name (clipped), most recently seen first;
   * at most {@link STATELESS_CLIENTS_MAX} names. Absent from older daemons.
   */
  stateless_clients?: StatelessClientEntry[];
  inflight: number;
  /** The log file and the stderr copy; null before the daemon opened its log. */
  log?: LogHealth | null;
  /** The metrics file (`logs/metrics.jsonl`). */
  metrics_file?: FileHealth | null;
  memory?: MemoryReport;
  /** Started by a shim or `exai-ws restart` (`EXAI_WS_AUTOSTARTED=1`). */
  auto_started?: boolean;
  /** How long it stays with no session before it exits; null: never (started by hand, or 0). */
  idle_exit_ms?: number | null;
  // Optional from here: readers (status, the page, the exporter) must also take the report of
  // a daemon of another version (a CLI upgraded while the old daemon still runs).
  /** Open WebSocket connections (sessions and connections still saying hello). */
  connections?: number;
  /**
   * Every accepted TCP connection (HTTP, WebSocket, not yet saying anything), those that have
   * not authenticated yet, and how many the descriptor limit leaves room for (null: unknown).
   */
  sockets?: { open: number; unauthenticated: number; descriptor_cap: number | null };
  /** Hosted server instances; `asks_client`: its tools known to ask the client back (run one session at a time). */
  servers?: (ServerReport & { asks_client: string[]; era?: EraVersion | null })[];
  config?: ConfigHealth;
  providers?: ProviderHealth[];
  limits?: { max_sessions: number; max_inflight: number; max_bytes: number };
  /** The settings file (`daemon.env`) and where each setting in force came from. */
  settings?: SettingsHealth;
  /** What the user should act on (ignored client variables, a settings file others can read, ...), in words. */
  warnings?: string[];
}

/** The hosted servers' config file, as `/health` reports it. */
export interface ConfigHealth {
  path: string;
  /** False while there is no file (no hosted servers). */
  exists: boolean;
  /** The path the watcher watches (the file, or the folder it is awaited in); null: not watched. */
  watching: string | null;
  /** Entries the daemon refused. */
  problems: readonly ConfigProblem[];
  /**
   * Why the file as it is now is not in force (unreadable, not valid JSON, with line and
   * column), found at start (no hosted servers then) or by a reload (the running ones stay);
   * null when it is in force. Absent from older daemons.
   */
  error?: string | null;
  last_reload: LastReload | null;
}

/** The outcome of the last live reload, for `/health` and `exai-ws status`. */
export type LastReload = { at: string } & ({ error: string } | (ReloadReport & { file: boolean; refused: number }));

/** One open session, as `/health` lists it. */
export interface SessionEntry {
  id: string;
  transport: 'ws' | 'http' | 'stdio';
  state: string;
  client: string;
  client_version: string;
  cwd: string | null;
  age_s: number;
  inflight: number;
  /** Requests answered in this session so far. */
  requests: number;
  /** 99th percentile latency of its last 1000 answered requests, in ms; null before any. */
  p99_ms: number | null;
  /** The era its client speaks; null until its first request said. Absent from older daemons. */
  era?: EraVersion | null;
  // What the window is shown and what that costs it (issue 25). Absent from older daemons.
  /** The profile in force (asked for, or its client's default); null: none, the window sees every server. */
  profile?: string | null;
  /** True when `profile` is the name the window asked for and the config no longer has (it sees nothing); else false. */
  profile_missing?: boolean;
  /** Tools in the last list the window was sent; null before its first. */
  tools?: number | null;
  /** That list's size in bytes (JSON, UTF-8): what it costs the client's context; null before the first. */
  tools_bytes?: number | null;
  /** The most tools its client takes (`client_tool_caps`, by its clientInfo name); null: no known cap. */
  tool_cap?: number | null;
  /** True when the last list was longer than `tool_cap` (the log warned once). */
  over_cap?: boolean;
}

/**
 * An MCP era by the revision that names it: `2026-07-28` (per-request `_meta`, no initialize)
 * or `2025-11-25` (initialize, whichever 2025 revision it then agreed).
 */
export type EraVersion = (typeof ERA_VERSION)[keyof typeof ERA_VERSION];

/** The most client names `stateless_clients` keeps; the least recently seen goes first. */
export const STATELESS_CLIENTS_MAX = 64;

/** One name of the stateless (2026-07-28 HTTP) clients, as `/health` lists them. */
export interface StatelessClientEntry {
  /** The client's own name (its `clientInfo`, else its HTTP hello's), clipped; `unknown` when it gave none. */
  client: string;
  era: EraVersion;
  /** Requests answered to clients of that name since the daemon started (or since the name was last dropped). */
  requests: number;
  /** Seconds since the last of them was answered. */
  last_seen_s: number;
}

/** One best-effort JSONL file: lines it took, lines it dropped, its rotation. */
export interface FileHealth {
  path: string;
  written_lines: number;
  /** Lines lost: write errors (full disk, permissions, I/O), oversized lines, a full buffer. */
  dropped_lines: number;
  rotations: number;
  last_error: { code: string; message: string; at: string } | null;
  /** True while writes fail; writing is retried about once a second. */
  failing: boolean;
  max_bytes: number;
  /** Rotated generations kept beside the current file. */
  files: number;
}

export interface LogHealth extends Omit<FileHealth, 'path'> {
  /** Log calls whose arguments could not be serialised (a short stand-in line was logged). */
  unserializable_calls: number;
  /** Warning lines that could not be copied to stderr. */
  stderr_dropped_lines: number;
}

export interface MemoryReport {
  heap_used_bytes: number;
  heap_total_bytes: number;
  /** Null when the resident size could not be read. */
  rss_bytes: number | null;
}

/** What `/health` tells anyone, token or not: enough to find and probe the daemon. */
export const LIVENESS_FIELDS = [
  'status',
  'name',
  'version',
  'pid',
  'host',
  'port',
  'started_at',
  'uptime_s',
  'auto_started',
  'idle_exit_ms',
] as const satisfies readonly (keyof HealthReport)[];

export type Liveness = Pick<HealthReport, (typeof LIVENESS_FIELDS)[number]>;

/** True when the daemon took the proof and answered the full report, not liveness only. */
export function isFullReport(report: Liveness): report is HealthReport {
  return typeof (report as Partial<HealthReport>).sessions === 'object';
}

/** What a live reload changed, by server name. */
export interface ReloadReport {
  added: string[];
  removed: string[];
  restarted: string[];
  unchanged: string[];
}

/**
 * What the last contact with a provider said (a chat or a models listing): `unknown` before
 * any, `not_configured` when it cannot be called at all.
 */
export type ProviderState = 'not_configured' | 'unknown' | 'ok' | 'unreachable' | 'unauthorized' | 'rate_limited' | 'error';

/** The outcome of the provider's last contact, for `/health` and `status`. */
export interface ContactReport {
  state: ProviderState;
  /** The text of the last failure, null before any; kept after a later success. */
  last_error: string | null;
  /** ISO time of that failure. */
  last_error_at: string | null;
}

/** One provider in `/health`: what is configured, how busy, what the last contact said; never keys. */
export interface ProviderHealth extends ContactReport {
  id: string;
  label: string;
  configured: boolean;
  base_url: string | null;
  default_model: string | null;
  max_inflight: number;
  inflight: number;
  waiting: number;
  /** Chat calls since start. */
  calls: number;
  /** 429 answers since start (each attempt counts). */
  rate_limited: number;
  /** Chat calls that failed (not counting cancelled ones) since start. */
  errors: number;
}

export type UpstreamScope = 'shared' | 'workspace' | 'session';

export type UpstreamState = 'stopped' | 'starting' | 'ready' | 'restarting' | 'failed' | 'closed';

/** One hosted server instance, as `/health` and `exai-ws status` show it. */
export interface ServerReport {
  name: string;
  scope: UpstreamScope;
  /** The working directory or session a `workspace` or `session` instance belongs to. */
  scope_key: string | null;
  state: UpstreamState;
  pid: number | null;
  restarts: number;
  /** Failed starts in a row (reset by a start that works). */
  retries: number;
  uptime_s: number | null;
  sessions: number;
  inflight: number;
  last_error: string | null;
  /** A `url` server's OAuth login (never a token); absent for servers that are not `url` ones. */
  login?: LoginReport;
}

/**
 * Where a `url` server's OAuth login stands:
 * - `none`: the server never asked for one (or nothing is known yet);
 * - `logged_in`: a token is held (`issuer`, `expires_at`, `scope` say which);
 * - `needs_login`: the server asks for a login (or more scopes) no token can give: `exai-ws login NAME`;
 * - `refresh_failing`: the token expired or is expiring and refreshing it failed (`error` says why);
 * - `refused`: the server kept refusing the scopes granted after repeated logins (`error` says why).
 */
export type LoginState = 'none' | 'logged_in' | 'needs_login' | 'refresh_failing' | 'refused';

export interface LoginReport {
  state: LoginState;
  /** The authorization server that issued the token (its metadata's `issuer`). */
  issuer: string | null;
  /** When the access token expires (ISO 8601), when the server said. */
  expires_at: string | null;
  /** The scopes granted (space-separated), when known. */
  scope: string | null;
  /** Why the last login, refresh or call failed, in words (never with a token in it). */
  error: string | null;
}

export interface ConfigProblem {
  server: string;
  key: string;
  reason: string;
}

/** Where a setting in force came from: the settings file, or the daemon's environment (by hand). */
export type SettingSource = 'file' | 'env';

/** The settings file as the daemon read it, for `/health` and `exai-ws status`. */
export interface SettingsHealth {
  path: string;
  exists: boolean;
  /** Why an existing file could not be read; null when it could. */
  error: string | null;
  /** Group or others may read it (it may hold keys). */
  readable_by_others: boolean;
  /** Lines not taken, by number: not NAME=value, no exai-ws setting, or an invalid value. */
  problems: SettingsProblem[];
  /** Every setting in force that is not a default, where it came from; secrets masked. */
  values: { name: string; source: SettingSource; value: string }[];
  /** Settings variables the launching client passed that the daemon did not take (names only). */
  ignored_env: string[];
  /** An earlier version's `service.env` that is still there (its settings belong in this file); else null. */
  legacy_service_env: string | null;
}
