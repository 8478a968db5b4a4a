/** Placeholder until the /metrics slice lands (issue 13): the interface the server and daemon wire. */
import type { HealthReport } from './health-client.js';
import type { Metrics } from './metrics.js';

export interface PrometheusSources {
  metrics: Metrics;
  health: () => HealthReport;
}

export class PrometheusExporter {
  readonly contentType = 'text/plain; version=0.0.4; charset=utf-8';
  private readonly sources: PrometheusSources;

  constructor(sources: PrometheusSources) {
    this.sources = sources;
  }

  render(): Promise<string> {
    const h = this.sources.health();
    return Promise.resolve(`# TYPE exai_ws_sessions gauge\nexai_ws_sessions ${h.sessions.total}\n`);
  }
}
