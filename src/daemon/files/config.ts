/**
 * Daemon configuration: read once from the user's settings file (`daemon.env`, see
 * local/settings.ts) and the environment over it, validated with zod, frozen. Every limit
 * is an `EXAI_WS_*` variable whose name carries its unit.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { DEFAULT_HOST, defaultPort, resolveHome, type HomePaths } from '../../local/files.js';
import { existsSync } from 'node:fs';
import { configPath, legacyServiceEnvPath, settingsPath } from '../../local/config-path.js';
import { IGNORED_ENV_VAR, isSettingName, maskValue, readSettings, type SettingsFile, type SettingsProblem } from '../../local/settings.js';
import { readState, type UserState } from '../../local/state.js';
import { ProviderEnvSchema, providersFromEnv, type ProvidersConfig } from '../../builtin/providers/settings.js';
import { DEFAULT_LOG_FILES, DEFAULT_LOG_MAX_BYTES } from './logger.js';
import {
  DEFAULT_INIT_TIMEOUT_MS,
  DEFAULT_UPSTREAM_IDLE_MS,
  loadUpstreamConfigAtStart,
  type UpstreamConfig,
} from '../../hosting/upstream-config.js';
import { MIN_TIMER_SCALE } from '../../local/timer-scale.js';
import { DEFAULT_LIST_WAIT_MS } from '../../mux/catalog.js';
import { DEFAULT_BODIES_MAX_BYTES, DEFAULT_EVENTS_TOTAL_MAX_BYTES } from '../../transport/http.js';
import type { SettingSource, SettingsHealth } from '../../local/health.js';
import type { LocalErrorCode } from '../../local/errors.js';

/** Connections not yet authenticated the HTTP server keeps (the oldest is dropped past it). */
export const DEFAULT_MAX_UNAUTHENTICATED = 64;
export const DEFAULT_FD_RESERVE = 64;
/** A connection must send its request headers (or its upgrade) within this long. */
export const DEFAULT_HEADERS_TIMEOUT_MS = 5_000;
/** A request, body included, must be received within this long. */
export const DEFAULT_BODY_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_INFLIGHT = 32;
export const DEFAULT_QUEUE_LIMIT = 256;
export const DEFAULT_MAX_BYTES = 32 * 1024 * 1024;
export const DEFAULT_HELLO_TIMEOUT_MS = 5_000;
export const DEFAULT_RESUME_GRACE_MS = 30_000;
export const DEFAULT_MAX_SESSIONS = 2_000;
export const DEFAULT_HEARTBEAT_MS = 30_000;
export const DEFAULT_CALL_TIMEOUT_MS = 300_000;
export const DEFAULT_DRAIN_MS = 5_000;
export const DEFAULT_METRICS_INTERVAL_MS = 60_000;
export const DEFAULT_HOLD_MAX_BYTES = 8 * 1024 * 1024;
/** An HTTP session with nothing in flight and no stream open ends after this long. */
export const DEFAULT_HTTP_IDLE_MS = 30 * 60 * 1000;
/** SSE events kept per HTTP session for `Last-Event-ID` resumption, in bytes. */
export const DEFAULT_HTTP_EVENTS_MAX_BYTES = 4 * 1024 * 1024;
// Memory bounded in total, not only per session (issue 21): one party cannot take it all.
/** SSE events kept for resumption by all HTTP sessions together, in bytes. */
export const DEFAULT_HTTP_EVENTS_TOTAL_MAX_BYTES = DEFAULT_EVENTS_TOTAL_MAX_BYTES;
/** Messages held for all detached sessions together, in bytes. */
export const DEFAULT_HOLD_TOTAL_MAX_BYTES = 64 * 1024 * 1024;
/**
 * The `retry` of the priming event that opens a 2025-11-25 session's POST streams: how long a
 * client whose stream was closed waits before it resumes. One second, the SDK client's own
 * first reconnection delay: a client behaves as it would without the field, and a result that
 * came while it was away is at most that late.
 */
export const DEFAULT_HTTP_RETRY_MS = 1_000;
/**
 * A POST stream's connection still open after this long is closed, the client resuming it with
 * `Last-Event-ID` (SSE polling, SEP-1699); 0 = never. Never by default: on loopback an open
 * connection costs little, while every close delays the result by up to the retry time and
 * loses it for a client that does not resume; a proxy or client that drops long connections is
 * the case for setting it.
 */
export const DEFAULT_HTTP_POLL_MS = 0;
export const DEFAULT_METRICS_MAX_BYTES = 10 * 1024 * 1024;
export const DEFAULT_METRICS_FILES = 5;
/**
 * How long an auto-started daemon stays with no session before it exits: a working day (8 h),
 * so that caches and hosted servers stay warm across lunch and meetings, while a daemon nobody
 * uses any more does not stay forever.
 */
export const DEFAULT_IDLE_EXIT_MS = 8 * 60 * 60 * 1000;
/** Smallest file size accepted for the log and metrics files: one long line must still fit. */
export const MIN_FILE_MAX_BYTES = 4096;
/** Most rotated generations kept per file. */
export const MAX_FILES = 100;

/** Where the port to bind came from; `state` and `default` may be moved when someone else holds them. */
export type PortSource = SettingSource | 'state' | 'default';

export interface DaemonConfig {
  readonly host: string;
  readonly port: number;
  readonly portSource: PortSource;
  /** The home's state.json as read at start: the port its daemon last had, the port URL entries name. */
  readonly state: Readonly<UserState>;
  /** The settings file and where each setting came from. */
  readonly settings: SettingsHealth;
  /** Set when the token comes from `EXAI_WS_TOKEN` rather than the token file. */
  readonly token: string | undefined;
  readonly paths: HomePaths;
  /** Per-session requests in flight at once (`EXAI_WS_BACKPRESSURE`). */
  readonly maxInflight: number;
  /** Per-session requests waiting behind the in-flight ones before -32010. */
  readonly queueLimit: number;
  /** Largest frame accepted, in bytes; larger ones close the socket with 1009. */
  readonly maxBytes: number;
  readonly helloTimeoutMs: number;
  /** How long a detached session waits for its client to come back. */
  readonly resumeGraceMs: number;
  readonly maxSessions: number;
  /** Ping interval; a socket that misses one pong is terminated. 0 turns it off. */
  readonly heartbeatMs: number;
  /** Deadline for one request to a server; past it the client gets -32001. */
  readonly callTimeoutMs: number;
  /** How long shutdown waits for in-flight requests before answering them -32000. */
  readonly drainMs: number;
  readonly metricsIntervalMs: number;
  /** Messages held for a detached session, in bytes; past it the session is closed. */
  readonly holdMaxBytes: number;
  /** An idle HTTP session (nothing in flight, no stream open) ends after this long (`EXAI_WS_HTTP_IDLE_MS`, 0 = never). */
  readonly httpIdleMs: number;
  /** SSE events kept per HTTP session for resumption, in bytes (`EXAI_WS_HTTP_EVENTS_MAX_BYTES`). */
  readonly httpEventsMaxBytes: number;
  /**
   * SSE events kept by all HTTP sessions together, in bytes (`EXAI_WS_HTTP_EVENTS_TOTAL_MAX_BYTES`);
   * past it the store keeping the most drops its oldest events.
   */
  readonly httpEventsTotalMaxBytes: number;
  /**
   * Messages held for all detached sessions together, in bytes (`EXAI_WS_HOLD_TOTAL_MAX_BYTES`);
   * past it the detached session holding the most ends (`hold_overflow`).
   */
  readonly holdTotalMaxBytes: number;
  /**
   * Bytes of HTTP request bodies being received, all together (`EXAI_WS_BODIES_MAX_BYTES`); past
   * it a new body is refused with 503 and `Retry-After`.
   */
  readonly bodiesMaxBytes: number;
  /** `retry` of the priming events of 2025-11-25 sessions' POST streams, in ms (`EXAI_WS_HTTP_RETRY_MS`). */
  readonly httpRetryMs: number;
  /** A POST stream's connection open this long without the response is closed for the client to poll, in ms (`EXAI_WS_HTTP_POLL_MS`, 0 = never). */
  readonly httpPollMs: number;
  readonly logLevel: string;
  /** Size of `ws_daemon.log` before it is rotated, in bytes (`EXAI_WS_LOG_MAX_BYTES`). */
  readonly logMaxBytes: number;
  /** Rotated log generations kept, `ws_daemon.log.1` ... (`EXAI_WS_LOG_FILES`). */
  readonly logFiles: number;
  /** Size of `metrics.jsonl` before it is rotated, in bytes (`EXAI_WS_METRICS_MAX_BYTES`). */
  readonly metricsMaxBytes: number;
  /** Rotated metrics generations kept (`EXAI_WS_METRICS_FILES`). */
  readonly metricsFiles: number;
  /** Model providers for the built-in `chat` and `listmodels` tools. */
  readonly providers: ProvidersConfig;
  /** Hosted MCP servers from the config file, and the entries that were refused. */
  readonly upstreams: UpstreamConfig;
  /** Where that config file is (or would be): watched for live reload. */
  readonly upstreamsPath: string;
  /** Default idle time of hosted servers, for reloads. */
  readonly upstreamIdleMs: number;
  /** Start `npx` entries as the file npx would run, without npx in front (`EXAI_WS_NPX_DIRECT`, 0 = off). */
  readonly npxDirect: boolean;
  /**
   * How long a list waits for hosted servers still starting before it answers with what is known
   * (`EXAI_WS_LIST_WAIT_MS`; 0 = as long as they take); the late ones come with `list_changed`.
   */
  readonly listWaitMs: number;
  /**
   * How long a hosted server's start may take to answer `initialize` before it is failed and
   * retried (`EXAI_WS_INIT_TIMEOUT_MS`); an entry's `init_timeout_ms` overrides it.
   */
  readonly initTimeoutMs: number;
  /** Started by a shim or `exai-ws restart` (`EXAI_WS_AUTOSTARTED=1`), not from a terminal. */
  readonly autoStarted: boolean;
  /**
   * An auto-started daemon exits after this long with no session (`EXAI_WS_IDLE_EXIT_MS`);
   * 0 = never. A daemon started by hand ignores it.
   */
  readonly idleExitMs: number;
  // Connections (connections.ts): what a party without the token can hold, and for how long.
  /** A connection must send complete request headers, or its upgrade, within this long (`EXAI_WS_HEADERS_TIMEOUT_MS`). */
  readonly headersTimeoutMs: number;
  /**
   * A request must be received whole, body included, within this long of its start
   * (`EXAI_WS_BODY_TIMEOUT_MS`); then its connection is closed. Responses (SSE streams, long
   * calls) are not bounded by it. Never less than the headers timeout.
   */
  readonly bodyTimeoutMs: number;
  /** Connections not authenticated yet, at most; past it the oldest is dropped (`EXAI_WS_MAX_UNAUTHENTICATED`). */
  readonly maxUnauthenticated: number;
  /** Descriptors kept free for the daemon's own work: no connection is taken into them (`EXAI_WS_FD_RESERVE`). */
  readonly fdReserve: number;
  /**
   * Multiplies fixed waits that are no setting of their own (`EXAI_WS_TIMER_SCALE`, 0.01-1, for tests): the restart
   * backoff and process group waits (hostingTimers), the client-pid check and Node's connections check.
   */
  readonly timerScale: number;
}

const int = (min: number) => z.coerce.number().int().min(min);

const EnvSchema = z.object({
  ...ProviderEnvSchema.shape,
  EXAI_WS_HOST: z.string().default(DEFAULT_HOST),
  EXAI_WS_PORT: int(0).max(65535).optional(),
  EXAI_WS_TOKEN: z.string().min(16, 'EXAI_WS_TOKEN must be at least 16 characters').optional(),
  EXAI_WS_BACKPRESSURE: int(1).default(DEFAULT_MAX_INFLIGHT),
  EXAI_WS_QUEUE_LIMIT: int(0).default(DEFAULT_QUEUE_LIMIT),
  EXAI_WS_MAX_BYTES: int(1024).default(DEFAULT_MAX_BYTES),
  EXAI_WS_HELLO_TIMEOUT_MS: int(1).default(DEFAULT_HELLO_TIMEOUT_MS),
  EXAI_WS_RESUME_GRACE_MS: int(0).default(DEFAULT_RESUME_GRACE_MS),
  EXAI_WS_MAX_SESSIONS: int(1).default(DEFAULT_MAX_SESSIONS),
  EXAI_WS_HEARTBEAT_MS: int(0).default(DEFAULT_HEARTBEAT_MS),
  EXAI_WS_CALL_TIMEOUT_MS: int(1).default(DEFAULT_CALL_TIMEOUT_MS),
  EXAI_WS_DRAIN_MS: int(0).default(DEFAULT_DRAIN_MS),
  EXAI_WS_METRICS_INTERVAL_MS: int(100).default(DEFAULT_METRICS_INTERVAL_MS),
  EXAI_WS_HOLD_MAX_BYTES: int(0).default(DEFAULT_HOLD_MAX_BYTES),
  EXAI_WS_HTTP_IDLE_MS: int(0).default(DEFAULT_HTTP_IDLE_MS),
  EXAI_WS_HTTP_EVENTS_MAX_BYTES: int(0).default(DEFAULT_HTTP_EVENTS_MAX_BYTES),
  EXAI_WS_HTTP_EVENTS_TOTAL_MAX_BYTES: int(0).default(DEFAULT_HTTP_EVENTS_TOTAL_MAX_BYTES),
  EXAI_WS_HOLD_TOTAL_MAX_BYTES: int(0).default(DEFAULT_HOLD_TOTAL_MAX_BYTES),
  EXAI_WS_BODIES_MAX_BYTES: int(1024).default(DEFAULT_BODIES_MAX_BYTES),
  EXAI_WS_HTTP_RETRY_MS: int(0).default(DEFAULT_HTTP_RETRY_MS),
  EXAI_WS_HTTP_POLL_MS: int(0).default(DEFAULT_HTTP_POLL_MS),
  EXAI_WS_UPSTREAM_IDLE_MS: int(0).default(DEFAULT_UPSTREAM_IDLE_MS),
  EXAI_WS_NPX_DIRECT: z.enum(['0', '1']).default('1'),
  EXAI_WS_LIST_WAIT_MS: int(0).default(DEFAULT_LIST_WAIT_MS),
  EXAI_WS_INIT_TIMEOUT_MS: int(1).default(DEFAULT_INIT_TIMEOUT_MS),
  EXAI_WS_AUTOSTARTED: z.enum(['0', '1']).default('0'),
  EXAI_WS_IDLE_EXIT_MS: int(0).default(DEFAULT_IDLE_EXIT_MS),
  EXAI_WS_HEADERS_TIMEOUT_MS: int(1).default(DEFAULT_HEADERS_TIMEOUT_MS),
  EXAI_WS_BODY_TIMEOUT_MS: int(1).default(DEFAULT_BODY_TIMEOUT_MS),
  EXAI_WS_MAX_UNAUTHENTICATED: int(1).default(DEFAULT_MAX_UNAUTHENTICATED),
  EXAI_WS_FD_RESERVE: int(0).default(DEFAULT_FD_RESERVE),
  EXAI_WS_TIMER_SCALE: z.coerce.number().min(MIN_TIMER_SCALE).max(1).default(1),
  EXAI_WS_LOG_MAX_BYTES: int(MIN_FILE_MAX_BYTES).default(DEFAULT_LOG_MAX_BYTES),
  EXAI_WS_LOG_FILES: int(0).max(MAX_FILES).default(DEFAULT_LOG_FILES),
  EXAI_WS_METRICS_MAX_BYTES: int(MIN_FILE_MAX_BYTES).default(DEFAULT_METRICS_MAX_BYTES),
  EXAI_WS_METRICS_FILES: int(0).max(MAX_FILES).default(DEFAULT_METRICS_FILES),
  LOG_LEVEL: z
    .string()
    .transform((s) => s.toLowerCase())
    .pipe(z.enum(['trace', 'debug', 'info', 'warn', 'warning', 'error', 'fatal', 'silent']))
    .transform((s) => (s === 'warning' ? 'warn' : s))
    .default('info'),
});

const SHAPE = EnvSchema.shape as Record<string, z.ZodType>;

/**
 * Why `value` cannot be taken for the setting `name` from the settings file, in words (the
 * name, the value with a secret masked, what is wrong and that the default applies); null when
 * it can. Settings of the file that this version does not know are refused too.
 */
export function checkSetting(name: string, value: string): string | null {
  const field = SHAPE[name];
  if (!field) return `${name} is not a setting this exai-ws version knows`;
  const checked = field.safeParse(value);
  if (!checked.success) return `${name}=${maskValue(name, value)}: ${checked.error.issues[0]?.message ?? 'invalid'}; the default applies`;
  if (name === 'EXAI_WS_HOST' && !isLoopback(value)) {
    return `EXAI_WS_HOST=${value} is not a loopback address (exai-ws binds loopback only); ${DEFAULT_HOST} applies`;
  }
  return null;
}

/** True for 127.0.0.0/8, ::1 and `localhost`. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly code = 'ECONFIG' satisfies LocalErrorCode;
}

/**
 * Reads the daemon's configuration: the settings file (`EXAI_WS_SETTINGS`, else `daemon.env` in
 * the user's config folder), then the environment over it (a daemon started by hand takes its
 * shell's variables; a launcher drops the caller's, see settings.ts `launchEnv`). A line of the
 * file that cannot be parsed, or whose value is invalid, is a problem reported in
 * `settings.problems` with its line number, and the default applies. Throws
 * {@link ConfigError} with one readable line per problem of the environment; a non-loopback
 * host is refused.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): DaemonConfig {
  const file = readSettings(settingsPath(env));
  const { merged, sources, problems } = mergeSettings(file, env);
  const parsed = EnvSchema.safeParse(merged);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${lines.join('; ')}`);
  }
  const e = parsed.data;
  if (!isLoopback(e.EXAI_WS_HOST)) {
    throw new ConfigError(`EXAI_WS_HOST=${e.EXAI_WS_HOST} is not a loopback address; exai-ws binds loopback only`);
  }
  const paths = resolveHome(env);
  const state = Object.freeze(readState(paths));
  const portSource: PortSource = sources.EXAI_WS_PORT ?? (state.port !== undefined ? 'state' : 'default');
  const port = e.EXAI_WS_PORT ?? state.port ?? defaultPort(env);
  const settings = settingsHealth(file, { merged, sources, problems }, env);
  const upstreamsPath = configPath(env);
  // A servers file that cannot be used never stops a start: the daemon serves its built-in tools
  // and reports the error (with line and column) until the file is fixed.
  const upstreams = loadUpstreamConfigAtStart(upstreamsPath, e.EXAI_WS_UPSTREAM_IDLE_MS);
  return Object.freeze({
    host: e.EXAI_WS_HOST,
    port,
    portSource,
    state,
    settings,
    token: e.EXAI_WS_TOKEN,
    paths,
    maxInflight: e.EXAI_WS_BACKPRESSURE,
    queueLimit: e.EXAI_WS_QUEUE_LIMIT,
    maxBytes: e.EXAI_WS_MAX_BYTES,
    helloTimeoutMs: e.EXAI_WS_HELLO_TIMEOUT_MS,
    resumeGraceMs: e.EXAI_WS_RESUME_GRACE_MS,
    maxSessions: e.EXAI_WS_MAX_SESSIONS,
    heartbeatMs: e.EXAI_WS_HEARTBEAT_MS,
    callTimeoutMs: e.EXAI_WS_CALL_TIMEOUT_MS,
    drainMs: e.EXAI_WS_DRAIN_MS,
    metricsIntervalMs: e.EXAI_WS_METRICS_INTERVAL_MS,
    holdMaxBytes: e.EXAI_WS_HOLD_MAX_BYTES,
    httpIdleMs: e.EXAI_WS_HTTP_IDLE_MS,
    httpEventsMaxBytes: e.EXAI_WS_HTTP_EVENTS_MAX_BYTES,
    httpEventsTotalMaxBytes: e.EXAI_WS_HTTP_EVENTS_TOTAL_MAX_BYTES,
    holdTotalMaxBytes: e.EXAI_WS_HOLD_TOTAL_MAX_BYTES,
    bodiesMaxBytes: e.EXAI_WS_BODIES_MAX_BYTES,
    httpRetryMs: e.EXAI_WS_HTTP_RETRY_MS,
    httpPollMs: e.EXAI_WS_HTTP_POLL_MS,
    logLevel: e.LOG_LEVEL,
    logMaxBytes: e.EXAI_WS_LOG_MAX_BYTES,
    logFiles: e.EXAI_WS_LOG_FILES,
    metricsMaxBytes: e.EXAI_WS_METRICS_MAX_BYTES,
    metricsFiles: e.EXAI_WS_METRICS_FILES,
    providers: providersFromEnv(e),
    upstreams,
    upstreamsPath,
    upstreamIdleMs: e.EXAI_WS_UPSTREAM_IDLE_MS,
    npxDirect: e.EXAI_WS_NPX_DIRECT === '1',
    listWaitMs: e.EXAI_WS_LIST_WAIT_MS,
    initTimeoutMs: e.EXAI_WS_INIT_TIMEOUT_MS,
    autoStarted: e.EXAI_WS_AUTOSTARTED === '1',
    idleExitMs: e.EXAI_WS_IDLE_EXIT_MS,
    headersTimeoutMs: e.EXAI_WS_HEADERS_TIMEOUT_MS,
    // Node refuses a request timeout shorter than the headers timeout.
    bodyTimeoutMs: Math.max(e.EXAI_WS_BODY_TIMEOUT_MS, e.EXAI_WS_HEADERS_TIMEOUT_MS),
    maxUnauthenticated: e.EXAI_WS_MAX_UNAUTHENTICATED,
    fdReserve: e.EXAI_WS_FD_RESERVE,
    timerScale: e.EXAI_WS_TIMER_SCALE,
  });
}

/** The settings in force: the file's valid values, then the environment over them, and where each came from. */
interface MergedSettings {
  merged: Record<string, string>;
  sources: Record<string, SettingSource>;
  /** The file's problems, then one per refused value (with its line). */
  problems: SettingsProblem[];
}

/** The settings file's values (a refused one is a problem, the default applies), then the environment over them. */
function mergeSettings(file: SettingsFile, env: NodeJS.ProcessEnv): MergedSettings {
  const problems: SettingsProblem[] = [...file.problems];
  const merged: Record<string, string> = {};
  const sources: Record<string, SettingSource> = {};
  for (const [name, value] of Object.entries(file.values)) {
    if (value === '') continue;
    const problem = checkSetting(name, value);
    if (problem !== null) {
      problems.push({ line: file.lines[name] ?? 0, message: problem });
      continue;
    }
    merged[name] = value;
    sources[name] = 'file';
  }
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || value === '') continue;
    merged[name] = value;
    if (isSettingName(name)) sources[name] = 'env';
  }
  return { merged, sources, problems };
}

/** The `settings` part of `/health`: the file, its problems by line, each value in force (secrets masked) and its source. */
function settingsHealth(file: SettingsFile, { merged, sources, problems }: MergedSettings, env: NodeJS.ProcessEnv): SettingsHealth {
  return {
    path: file.path,
    exists: file.exists,
    error: file.error,
    readable_by_others: file.readableByOthers,
    problems: problems.sort((a, b) => a.line - b.line),
    values: Object.entries(sources)
      .filter(([name]) => name in SHAPE)
      .map(([name, source]) => ({ name, source, value: maskValue(name, merged[name] ?? '') }))
      .sort((a, b) => a.name.localeCompare(b.name)),
    ignored_env: (env[IGNORED_ENV_VAR] ?? '').split(',').filter((name) => isSettingName(name)),
    legacy_service_env: existsSync(legacyServiceEnvPath(env)) ? legacyServiceEnvPath(env) : null,
  };
}
