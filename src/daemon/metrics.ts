/**
 * Daemon counters and latency percentiles, written as one JSON line per interval to
 * `logs/metrics.jsonl` (and once more at shutdown). Counters are totals since start;
 * latency percentiles cover the interval just ended.
 *
 * Every series is named from a fixed set, never from what a client sends: per-method series
 * exist only for MCP client request methods (taken from the SDK's schemas), per-tool series
 * only for tools the daemon serves (a predicate asks the catalog), rejection and close reasons
 * come from the lists below; anything else is counted under {@link OTHER}. So a client that
 * invents 20k method names adds one counter, not 20k.
 */
import { ClientRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { helloErrorClose } from '../protocol/codes.js';
import { LatencyReservoir } from '../core/latency.js';

/** The series every name outside the known sets is counted under. */
export const OTHER = 'other';

/** MCP request methods a client may send, from the SDK's own request schemas. */
export const KNOWN_METHODS: ReadonlySet<string> = new Set<string>(ClientRequestSchema.options.map((schema) => schema.shape.method.value));

/** Why a connection, hello or request was refused. */
export const REJECT_REASONS: ReadonlySet<string> = new Set([
  ...Object.keys(helloErrorClose),
  'hello_timeout',
  'binary_frame',
  'unknown_server',
  'invalid_message',
  'duplicate_id',
  'queue_full',
  'unserializable',
  'output_overflow',
  'origin_unknown',
  'body_too_large',
  'http_400',
  'http_403',
  'http_405',
  'http_406',
  'http_409',
  'http_415',
  'http_503',
]);

/** Why a session ended. */
export const CLOSE_REASONS: ReadonlySet<string> = new Set([
  'client_closed',
  'client_gone',
  'resume_grace_expired',
  'hold_overflow',
  'client_died',
  'resume_gap',
  'http_idle',
  'daemon shutting down',
]);

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
  readonly byMethod = new Map<string, number>();
  readonly byTool = new Map<string, number>();
  readonly rejections = new Map<string, number>();
  readonly closeReasons = new Map<string, number>();

  private readonly latency = new LatencyReservoir();
  private intervalStartMs = Date.now();
  private readonly isKnownTool: (name: string) => boolean;

  constructor(options: MetricsOptions = {}) {
    this.isKnownTool = options.isKnownTool ?? (() => false);
  }

  /** Records one answered request; `latencyMs` from receipt to response. */
  request(method: string, tool: string | undefined, latencyMs: number, isError: boolean): void {
    this.requests++;
    bump(this.byMethod, KNOWN_METHODS.has(method) ? method : OTHER);
    if (tool !== undefined) bump(this.byTool, this.knownTool(tool) ? tool : OTHER);
    if (isError) this.errors++;
    this.latency.add(latencyMs);
  }

  reject(reason: string): void {
    bump(this.rejections, REJECT_REASONS.has(reason) ? reason : OTHER);
  }

  sessionClosed(reason: string): void {
    this.sessionsClosed++;
    bump(this.closeReasons, CLOSE_REASONS.has(reason) ? reason : OTHER);
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
      },
      inflight: gauges.inflight,
      requests: this.requests,
      errors: this.errors,
      by_method: Object.fromEntries(this.byMethod),
      by_tool: Object.fromEntries(this.byTool),
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

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}
