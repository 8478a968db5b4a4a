/**
 * Latency samples for one metrics interval. Past `capacity` samples, reservoir sampling keeps
 * an even spread, so memory stays bounded however busy the interval was.
 */

/** Samples kept per interval. */
export const LATENCY_RESERVOIR = 10_000;

export interface LatencySummary {
  count: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
}

export class LatencyReservoir {
  private samples: number[] = [];
  private seen = 0;
  private readonly capacity: number;

  constructor(capacity = LATENCY_RESERVOIR) {
    this.capacity = capacity;
  }

  add(ms: number): void {
    this.seen++;
    if (this.samples.length < this.capacity) {
      this.samples.push(ms);
      return;
    }
    const slot = Math.floor(Math.random() * this.seen);
    if (slot < this.capacity) this.samples[slot] = ms;
  }

  /** Summarises the interval in milliseconds (3 decimals) and starts a new one. */
  takeSummary(): LatencySummary {
    const sorted = this.samples.sort((a, b) => a - b);
    const summary = {
      count: this.seen,
      p50: percentile(sorted, 0.5),
      p90: percentile(sorted, 0.9),
      p99: percentile(sorted, 0.99),
      max: sorted.length > 0 ? round(sorted[sorted.length - 1] ?? 0) : null,
    };
    this.samples = [];
    this.seen = 0;
    return summary;
  }
}

function percentile(sorted: number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const index = Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1);
  return round(sorted[Math.max(0, index)] ?? 0);
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
