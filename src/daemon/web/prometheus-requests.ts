/**
 * The request series of `GET /metrics` (prometheus.ts), from the plain numbers {@link Metrics}
 * keeps: `requests_total` by method, tool and outcome, and the per-method latency histogram.
 */
import type { LabelValues } from 'prom-client';
import { LATENCY_BUCKETS_MS, type Metrics, type MethodSeries } from '../files/metrics.js';

const LATENCY_BUCKETS_S = LATENCY_BUCKETS_MS.map((ms) => ms / 1000);

/** Sets one series of a metric: its value and labels. */
export type Emit<L extends string> = (value: number, labels?: LabelValues<L>) => void;

/** `requests_total`: `tools/call` by tool, every other method with `tool=""`. */
export function emitRequests(metrics: Metrics, emit: Emit<'method' | 'tool' | 'outcome'>): void {
  for (const series of metrics.methodSeries()) {
    if (series.count === 0) continue;
    const { method } = series;
    let ok = series.ok;
    let error = series.error;
    if (method === 'tools/call') {
      for (const [tool, outcomes] of metrics.toolSeries()) {
        emit(outcomes.ok, { method, tool, outcome: 'ok' });
        emit(outcomes.error, { method, tool, outcome: 'error' });
        ok -= outcomes.ok;
        error -= outcomes.error;
      }
      // A tools/call with no tool name.
      if (ok === 0 && error === 0) continue;
    }
    emit(ok, { method, tool: '', outcome: 'ok' });
    emit(error, { method, tool: '', outcome: 'error' });
  }
}

/**
 * The per-method latency histogram, from the buckets {@link Metrics} keeps. prom-client's
 * Histogram can only be fed one `observe()` at a time; this object gives the registry the
 * same shape its own metrics give (name, help, type, `get()`), so prom-client still writes
 * the text, escaping included.
 */
export class LatencyHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly series: () => Iterable<MethodSeries>,
  ) {}

  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: HistogramValue[] }> {
    const values: HistogramValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.series()) {
      const count = s.count;
      if (count === 0) continue;
      const labels = { method: s.method };
      let cumulative = 0;
      for (let i = 0; i < LATENCY_BUCKETS_S.length; i++) {
        cumulative += s.buckets[i] ?? 0;
        values.push({ metricName: bucket, labels: { ...labels, le: LATENCY_BUCKETS_S[i] ?? 0 }, value: cumulative });
      }
      values.push({ metricName: bucket, labels: { ...labels, le: '+Inf' }, value: count });
      values.push({ metricName: `${this.name}_sum`, labels, value: s.sumMs / 1000 });
      values.push({ metricName: `${this.name}_count`, labels, value: count });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  /** The counts belong to Metrics: a registry reset leaves them. */
  reset(): void {}
}

interface HistogramValue {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}
