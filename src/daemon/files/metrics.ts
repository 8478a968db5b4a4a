/**
 * Daemon counters and latency percentiles, written as one JSON line per interval to
 * `logs/metrics.jsonl` (and once more at shutdown), and read by `GET /metrics` (prometheus.ts)
 * at scrape time. Counters are totals since start; the JSONL latency percentiles cover the
 * interval just ended, the per-method histograms everything since start.
 *
 * Every series is named from a fixed set, never from what a client sends: per-method series
 * exist only for MCP client request methods (taken from the SDK's schemas), per-tool series
 * only for tools the daemon serves (a predicate asks the catalog), rejection and close reasons
 * come from the lists below (literal tuples: the compiler checks every name a caller passes);
 * anything else is counted under {@link OTHER}. So a client that invents 20k method names adds
 * one counter, not 20k.
 */
import { ClientRequestSchema } from '@modelcontextprotocol/core';
import type { Era } from '../../protocol/eras.js';
import { helloErrorClose, type HelloErrorCode } from '../../protocol/codes.js';
import { LatencyReservoir } from '../../builtin/providers/latency.js';

/** The series every name outside the known sets is counted under. */
export const OTHER = 'other';

/** MCP request methods a client may send, from the SDK's own request schemas. */
export const KNOWN_METHODS: ReadonlySet<string> = new Set<string>(ClientRequestSchema.options.map((schema) => schema.shape.method.value));

/**
 * Why a connection, hello or request was refused, besides the hello's own refusal codes
 * ({@link HelloErrorCode}). Every name a caller passes is checked against these by the compiler
 * ({@link RejectReason}); the counts are keyed by them, so a name is a metric label.
 */
export const REJECT_REASON_NAMES = [
  'hello_timeout',
  'binary_frame',
  'unknown_server',
  'unknown_profile',
  'invalid_message',
  'duplicate_id',
  'queue_full',
  'unserializable',
  'output_overflow',
  'origin_unknown',
  'stray_answer',
  'body_too_large',
  'http_400',
  'http_403',
  'http_405',
  'http_406',
  'http_409',
  'http_415',
  'http_503',
  // Issue 21: a POST refused because the bodies being received together reached their limit.
  'bodies_full',
  // Connections (connections.ts, server.ts): dropped or refused to keep descriptors for the
  // daemon's own work, or closed past the headers or body deadline.
  'unauthenticated_limit',
  'fd_reserve_dropped',
  'fd_reserve_refused',
  'headers_timeout',
  'body_timeout',
  'accept_failed',
] as const;

/**
 * A refusal as callers name it: a hello refusal code, a name of {@link REJECT_REASON_NAMES}, or
 * `http_<status>` for a refused `/mcp` request (statuses outside the list count as {@link OTHER}).
 */
export type RejectReason = HelloErrorCode | (typeof REJECT_REASON_NAMES)[number] | `http_${number}`;

/** Every refusal counted under its own name; anything else counts as {@link OTHER}. */
export const REJECT_REASONS: ReadonlySet<string> = new Set<string>([...Object.keys(helloErrorClose), ...REJECT_REASON_NAMES]);

/** Why a session ended. */
export const CLOSE_REASON_NAMES = [
  'client_closed',
  'client_gone',
  'resume_grace_expired',
  'hold_overflow',
  'client_died',
  'resume_gap',
  'http_idle',
  // Issue 21: an idle HTTP session ended to make room for a new one at the session limit.
  'http_session_limit',
  // Issue 24: a modern (stateless) HTTP request's own session, ended once it was answered.
  'request_answered',
  'daemon shutting down',
] as const;

/** Why a session ended, as callers name it (checked by the compiler). */
export type CloseReason = (typeof CLOSE_REASON_NAMES)[number];

/** Every close reason counted under its own name; anything else counts as {@link OTHER}. */
export const CLOSE_REASONS: ReadonlySet<string> = new Set<string>(CLOSE_REASON_NAMES);

/** Idle HTTP sessions ended, by why: nobody used them for `EXAI_WS_HTTP_IDLE_MS`, or a new session needed room. */
export interface IdleEnded {
  idle: number;
  session_limit: number;
}

/**
 * Upper bounds of the latency histograms in milliseconds: 0.1 ms (a ping answered in-process)
 * to 30 s (a model call), about 2.5x apart. Prometheus gets them in seconds.
 */
export const LATENCY_BUCKETS_MS: readonly number[] = [
  0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000,
];

/** Answered requests, split by outcome: `error` is a JSON-RPC error answer (or one that could not be sent). */
export interface Outcomes {
  ok: number;
  error: number;
}

/**
 * One request method's counts and latency histogram since start. Plain numbers, updated in
 * place: recording a request allocates nothing and hashes no labels. prom-client's own
 * `inc()` and `observe()` do both: about 1.5 µs a request, where all of {@link Metrics.request}
 * takes well under 0.1 µs.
 */
export class MethodSeries implements Outcomes {
  ok = 0;
  error = 0;
  /** Requests per bucket of {@link LATENCY_BUCKETS_MS}, not cumulative; the last slot: slower than the last bound. */
  readonly buckets = new Float64Array(LATENCY_BUCKETS_MS.length + 1);
  /** Sum of the latencies, in milliseconds. */
  sumMs = 0;

  constructor(readonly method: string) {}

  get count(): number {
    return this.ok + this.error;
  }

  record(latencyMs: number, isError: boolean): void {
    if (isError) this.error++;
    else this.ok++;
    this.sumMs += latencyMs;
    // Most answers fall in the first few buckets: a scan from the bottom beats a binary search.
    let slot = 0;
    while (slot < LATENCY_BUCKETS_MS.length && latencyMs > LATENCY_BUCKETS_MS[slot]!) slot++;
    this.buckets[slot]!++;
  }
}

export interface MetricsGauges {
  sessionsActive: number;
  sessionsDetached: number;
  inflight: number;
  /** Open sessions by transport (`ws`, `http`, `stdio`). */
  byTransport?: Readonly<Record<string, number>>;
}

export interface MetricsOptions {
  /** True when `name` is a tool the daemon serves (built-in or hosted). Must be cheap and not throw. */
  isKnownTool?: (name: string) => boolean;
}

export class Metrics {
  sessionsOpened = 0;
  sessionsClosed = 0;
  requests = 0;
  errors = 0;
  authFailures = 0;
  bytesIn = 0;
  bytesOut = 0;
  readonly rejections = new Map<string, number>();
  readonly closeReasons = new Map<string, number>();
  /** Answered requests by the era their session's client speaks (a request whose era was not known is in neither). */
  readonly byEra: Record<Era, number> = { modern: 0, legacy: 0 };

  /** One series per known method and one for {@link OTHER}, made up front: the request path only looks up. */
  private readonly methods = new Map<string, MethodSeries>();
  private readonly otherMethod = new MethodSeries(OTHER);
  /** `tools/call` answers by tool: tools the daemon served at some point, and {@link OTHER}. */
  private readonly tools = new Map<string, Outcomes>();
  private readonly latency = new LatencyReservoir();
  private intervalStartMs = Date.now();
  private readonly isKnownTool: (name: string) => boolean;

  constructor(options: MetricsOptions = {}) {
    this.isKnownTool = options.isKnownTool ?? (() => false);
    for (const method of KNOWN_METHODS) this.methods.set(method, new MethodSeries(method));
    this.methods.set(OTHER, this.otherMethod);
  }

  /**
   * Records one answered request; `latencyMs` from receipt to response; `tool` is a
   * `tools/call`'s tool name; `era` the one its session's client speaks, when known. Runs for
   * every request: keep it free of allocation.
   */
  request(method: string, tool: string | undefined, latencyMs: number, isError: boolean, era?: Era): void {
    this.requests++;
    if (era !== undefined) this.byEra[era]++;
    if (isError) this.errors++;
    (this.methods.get(method) ?? this.otherMethod).record(latencyMs, isError);
    if (tool !== undefined) {
      const key = this.knownTool(tool) ? tool : OTHER;
      let outcomes = this.tools.get(key);
      if (outcomes === undefined) {
        outcomes = { ok: 0, error: 0 };
        this.tools.set(key, outcomes);
      }
      if (isError) outcomes.error++;
      else outcomes.ok++;
    }
    this.latency.add(latencyMs);
  }

  /** Every method series (known methods and {@link OTHER}), including those with no request yet. */
  methodSeries(): IterableIterator<MethodSeries> {
    return this.methods.values();
  }

  /** `tools/call` answers by tool name ({@link OTHER} for names the daemon did not serve). */
  toolSeries(): ReadonlyMap<string, Readonly<Outcomes>> {
    return this.tools;
  }

  /**
   * Counts one refusal. The type catches a misspelt name at compile time; a name outside the
   * lists all the same (an `http_` status not listed, a cast) counts as {@link OTHER}.
   */
  reject(reason: RejectReason): void {
    bump(this.rejections, REJECT_REASONS.has(reason) ? reason : OTHER);
  }

  /** Counts one ended session by why; a reason outside {@link CLOSE_REASON_NAMES} counts as {@link OTHER}. */
  sessionClosed(reason: CloseReason): void {
    this.sessionsClosed++;
    bump(this.closeReasons, CLOSE_REASONS.has(reason) ? reason : OTHER);
  }

  /** Idle HTTP sessions ended since start, by why (from the close reasons `http_idle` and `http_session_limit`). */
  idleEnded(): IdleEnded {
    return { idle: this.closeReasons.get('http_idle') ?? 0, session_limit: this.closeReasons.get('http_session_limit') ?? 0 };
  }

  /** Builds one metrics line and starts a new latency interval. */
  snapshot(gauges: MetricsGauges): Record<string, unknown> {
    const now = Date.now();
    const line = {
      ts: new Date(now).toISOString(),
      interval_ms: now - this.intervalStartMs,
      sessions: {
        opened: this.sessionsOpened,
        active: gauges.sessionsActive,
        detached: gauges.sessionsDetached,
        by_transport: gauges.byTransport ?? {},
        closed: this.sessionsClosed,
        close_reasons: Object.fromEntries(this.closeReasons),
        idle_ended: this.idleEnded(),
      },
      inflight: gauges.inflight,
      requests: this.requests,
      requests_by_era: { ...this.byEra },
      errors: this.errors,
      by_method: byMethod(this.methods.values()),
      by_tool: byTool(this.tools),
      latency_ms: this.latency.takeSummary(),
      rejections: Object.fromEntries(this.rejections),
      auth_failures: this.authFailures,
      bytes: { in: this.bytesIn, out: this.bytesOut },
    };
    this.intervalStartMs = now;
    return line;
  }

  private knownTool(name: string): boolean {
    try {
      return this.isKnownTool(name);
    } catch {
      return false;
    }
  }
}

function byMethod(series: Iterable<MethodSeries>): Record<string, number> {
  return Object.fromEntries([...series].filter((s) => s.count > 0).map((s) => [s.method, s.count]));
}

function byTool(tools: ReadonlyMap<string, Outcomes>): Record<string, number> {
  // fromEntries, not assignment: a hosted server may name a tool `__proto__`.
  return Object.fromEntries([...tools].map(([name, o]) => [name, o.ok + o.error]));
}

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}
