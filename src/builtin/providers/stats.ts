/** Per-provider counters for the metrics file: calls, errors, 429s, queue wait and latency. */
import { LatencyReservoir, type LatencySummary } from './latency.js';

export interface ProviderStatsLine {
  calls: number;
  errors: number;
  rate_limited: number;
  retries: number;
  cancelled: number;
  queue_wait_ms: LatencySummary;
  latency_ms: LatencySummary;
}

export class ProviderStats {
  calls = 0;
  errors = 0;
  /** 429 answers seen (each attempt counts). */
  rateLimited = 0;
  retries = 0;
  cancelled = 0;
  readonly queueWait = new LatencyReservoir();
  readonly latency = new LatencyReservoir();

  /** Counters are totals since start; percentiles cover the interval just ended. */
  snapshot(): ProviderStatsLine {
    return {
      calls: this.calls,
      errors: this.errors,
      rate_limited: this.rateLimited,
      retries: this.retries,
      cancelled: this.cancelled,
      queue_wait_ms: this.queueWait.takeSummary(),
      latency_ms: this.latency.takeSummary(),
    };
  }
}
