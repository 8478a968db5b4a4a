/**
 * Daemon counters and latency percentiles, written as one JSON line per interval to
 * `logs/metrics.jsonl` (and once more at shutdown). Counters are totals since start;
 * latency percentiles cover the interval just ended.
 */
import { appendFileSync } from 'node:fs';
import { LatencyReservoir } from '../core/latency.js';

export interface MetricsGauges {
  sessionsActive: number;
  sessionsDetached: number;
  inflight: number;
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

  /** Records one answered request; `latencyMs` from receipt to response. */
  request(method: string, tool: string | undefined, latencyMs: number, isError: boolean): void {
    this.requests++;
    bump(this.byMethod, method);
    if (tool !== undefined) bump(this.byTool, tool);
    if (isError) this.errors++;
    this.latency.add(latencyMs);
  }

  reject(reason: string): void {
    bump(this.rejections, reason);
  }

  sessionClosed(reason: string): void {
    this.sessionsClosed++;
    bump(this.closeReasons, reason);
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
}

/** Appends one line to the metrics file; a failed write is reported, never thrown. */
export function writeMetricsLine(path: string, line: Record<string, unknown>): Error | undefined {
  try {
    appendFileSync(path, `${JSON.stringify(line)}\n`);
    return undefined;
  } catch (error) {
    return error as Error;
  }
}

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}
