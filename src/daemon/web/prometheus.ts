/**
 * `GET /metrics`: the daemon in the Prometheus text exposition format, through prom-client on
 * a registry of its own (never prom-client's global one, which a library in the same process
 * could also fill).
 *
 * Nothing here runs per request. Counters and histograms are the plain numbers that
 * {@link Metrics} keeps; gauges come from one `health()` report. Both are read at scrape time,
 * in the `collect()` hooks prom-client calls while it renders. Label values come only from
 * bounded sets: the method, tool, rejection and close-reason series of {@link Metrics} (which
 * fold every other name into `other`), the three transports, the configured server names, the
 * hosted-server and provider states listed below, the provider ids, the two eras (`modern`, `legacy`).
 *
 * prom-client is loaded by the first scrape, not at daemon start, which most daemons never see;
 * what its default metrics measure over time still starts with the daemon ({@link StartSamples}).
 */
import perfHooks, { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Counter, Gauge, Metric, Registry } from 'prom-client';
import { VERSION } from '../../protocol/version.js';
import { ERAS, ERA_VERSION } from '../../protocol/eras.js';
import type { Metrics } from '../files/metrics.js';
import { LatencyHistogram, emitRequests, type Emit } from './prometheus-requests.js';
import type { UpstreamState, HealthReport } from '../../local/health.js';

export interface PrometheusSources {
  metrics: Metrics;
  /** The full `/health` report; called once per scrape. */
  health: () => HealthReport;
}

/** Every series name starts with this; prom-client's process and Node.js series keep their standard names. */
export const METRIC_PREFIX = 'exai_ws_';

/**
 * How often the event-loop delay is sampled, in ms. prom-client's default (10) would wake an
 * idle daemon 100 times a second for as long as it runs; 10 wakeups a second still give
 * p50/p90/p99 of the loop's delay.
 */
export const EVENT_LOOP_RESOLUTION_MS = 100;

const TRANSPORTS = ['ws', 'http', 'stdio'] as const;

/** Every state of a hosted server: a Record, so that a state added in src/hosting/upstream.ts fails to compile here. */
const SERVER_STATES = Object.keys({
  stopped: true,
  starting: true,
  ready: true,
  restarting: true,
  failed: true,
  closed: true,
} satisfies Record<UpstreamState, true>);

/** What a provider's last contact said (the health report's `providers[].state`). */
const PROVIDER_STATES: readonly string[] = [
  'not_configured',
  'unknown',
  'ok',
  'unreachable',
  'unauthorized',
  'rate_limited',
  'error',
] as const;

type PromClient = typeof import('prom-client');

/** prom-client's `Registry.PROMETHEUS_CONTENT_TYPE` (exposition format 0.0.4), known before it is loaded. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const CPU_COUNTERS = ['process_cpu_user_seconds_total', 'process_cpu_system_seconds_total', 'process_cpu_seconds_total'] as const;

/**
 * What prom-client's default metrics measure over time, sampled from the daemon's start and
 * handed to them on the first scrape: the event-loop delay histogram (the first scrape's
 * `nodejs_eventloop_lag_*` cover the time since start, each later one the time since the scrape
 * before) and the CPU used since start (added to the process CPU counters). The GC duration
 * histogram counts from the first scrape on: a rate no scrape could give before the first one.
 */
class StartSamples {
  /** One timer for the daemon's life, as before: prom-client takes this histogram over. */
  private readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
  private readonly cpu = process.cpuUsage();

  constructor() {
    this.loopDelay.enable();
  }

  /** prom-client's default metrics on `registry`, continuing from the daemon's start. */
  collectDefaultMetrics(client: PromClient, registry: Registry): void {
    const cpu = process.cpuUsage(this.cpu);
    // prom-client's event-loop series make their histogram with perf_hooks.monitorEventLoopDelay
    // (a unit test holds it to that): for this one call, that is the histogram running since start.
    const own = perfHooks.monitorEventLoopDelay;
    perfHooks.monitorEventLoopDelay = () => this.loopDelay;
    try {
      client.collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_RESOLUTION_MS });
    } finally {
      perfHooks.monitorEventLoopDelay = own;
    }
    // The process CPU counters count from the moment they are made: add the CPU since start.
    const since = [cpu.user, cpu.system, cpu.user + cpu.system];
    CPU_COUNTERS.forEach((name, i) => (registry.getSingleMetric(name) as Counter | undefined)?.inc((since[i] ?? 0) / 1e6));
  }
}

/** The exporter: cheap to make at daemon start; the first {@link render} loads prom-client and builds the series. */
export class PrometheusExporter {
  /** The `Content-Type` of {@link render}'s text (exposition format 0.0.4). */
  readonly contentType: string = PROMETHEUS_CONTENT_TYPE;
  private readonly start = new StartSamples();
  private series: Promise<Series> | undefined;

  constructor(private readonly sources: PrometheusSources) {}

  /** The exposition text: reads `health()` once, then every series. */
  async render(): Promise<string> {
    // .default: module.exports of this CommonJS package, in Node and in the bundle's chunk alike.
    this.series ??= import('prom-client').then((client) => new Series(client.default, this.sources, this.start));
    return (await this.series).render();
  }
}

/** Every series, on a registry of its own. */
class Series {
  private readonly registry: Registry;
  /** The report the current scrape reads its gauges from. */
  private report: HealthReport | undefined;

  constructor(
    private readonly client: PromClient,
    private readonly sources: PrometheusSources,
    start: StartSamples,
  ) {
    this.registry = new client.Registry();
    const report = (): HealthReport | undefined => this.report;
    this.sessionSeries(sources.metrics, report);
    this.serverSeries(report);
    this.providerSeries(report);
    this.fileSeries(report);
    start.collectDefaultMetrics(client, this.registry);
  }

  /** The daemon's version, its sessions and requests, from Metrics and the report. */
  private sessionSeries(metrics: Metrics, report: () => HealthReport | undefined): void {
    this.gauge('info', 'The daemon, as a constant 1 labelled with its version.', ['version'], (emit) => emit(1, { version: VERSION }));

    // Sessions and requests, from Metrics.
    this.gauge('sessions_open', 'Open sessions by how their client is connected.', ['transport'], (emit) => {
      const byTransport = report()?.sessions.by_transport;
      for (const transport of TRANSPORTS) emit(num(byTransport?.[transport]) ?? 0, { transport });
    });
    this.gauge('sessions_detached', 'Sessions whose client is gone and that wait for it to resume.', [], (emit) =>
      emit(num(report()?.sessions.detached) ?? 0),
    );
    this.gauge('connections_open', 'Open WebSocket connections, with or without a session.', [], (emit) =>
      emit(num(report()?.connections) ?? 0),
    );
    this.gauge('requests_inflight', 'Requests received and not yet answered, over all sessions.', [], (emit) =>
      emit(num(report()?.inflight) ?? 0),
    );
    this.counter('sessions_opened_total', 'Sessions opened since start.', [], (emit) => emit(metrics.sessionsOpened));
    this.counter('sessions_closed_total', 'Sessions ended since start, by why.', ['reason'], (emit) => {
      for (const [reason, n] of metrics.closeReasons) emit(n, { reason });
    });
    this.counter(
      'idle_sessions_ended_total',
      'Idle HTTP sessions ended since start, by why: idle (unused for EXAI_WS_HTTP_IDLE_MS) or session_limit (room made for a new session).',
      ['reason'],
      (emit) => {
        const ended = metrics.idleEnded();
        emit(ended.idle, { reason: 'idle' });
        emit(ended.session_limit, { reason: 'session_limit' });
      },
    );
    this.counter(
      'requests_total',
      'Requests answered since start, by method, tool (tools/call only) and outcome (error: a JSON-RPC error answer).',
      ['method', 'tool', 'outcome'],
      (emit) => emitRequests(metrics, emit),
    );
    this.counter(
      'requests_by_era_total',
      'Requests answered since start, by the era their client speaks: modern (2026-07-28) or legacy (2025).',
      ['era'],
      (emit) => {
        for (const era of ERAS) emit(metrics.byEra[era], { era });
      },
    );
    this.registry.registerMetric(
      new LatencyHistogram(`${METRIC_PREFIX}request_duration_seconds`, 'Time from receiving a request to answering it, by method.', () =>
        metrics.methodSeries(),
      ) as unknown as Metric,
    );
    this.counter('rejections_total', 'Connections, hellos, messages and requests refused since start, by reason.', ['reason'], (emit) => {
      for (const [reason, n] of metrics.rejections) emit(n, { reason });
    });
    this.counter('auth_failures_total', 'Requests and connections refused for a missing or wrong token.', [], (emit) =>
      emit(metrics.authFailures),
    );
    this.counter('received_bytes_total', 'Bytes of WebSocket frames received from clients.', [], (emit) => emit(metrics.bytesIn));
    this.counter('sent_bytes_total', 'Bytes sent to clients.', [], (emit) => emit(metrics.bytesOut));
  }

  /** Hosted servers: label `server` is a configured name; a scoped server counts its instances. */
  private serverSeries(report: () => HealthReport | undefined): void {
    this.gauge(
      'server_state',
      'Instances of each hosted server in each state (0 or 1 for a shared server).',
      ['server', 'state'],
      (emit) => {
        const counts = new Map<string, Map<string, number>>();
        for (const s of records(report()?.servers)) {
          const name = str(s.name);
          if (name === undefined) continue;
          let byState = counts.get(name);
          if (!byState) counts.set(name, (byState = new Map(SERVER_STATES.map((state) => [state, 0]))));
          const state = str(s.state);
          if (state !== undefined && byState.has(state)) byState.set(state, (byState.get(state) ?? 0) + 1);
        }
        for (const [server, byState] of counts) for (const [state, n] of byState) emit(n, { server, state });
      },
    );
    this.gauge(
      'server_restarts',
      "Restarts of each hosted server's current instances (falls when a scoped instance is stopped).",
      ['server'],
      (emit) => {
        const restarts = new Map<string, number>();
        for (const s of records(report()?.servers)) {
          const name = str(s.name);
          if (name !== undefined) restarts.set(name, (restarts.get(name) ?? 0) + (num(s.restarts) ?? 0));
        }
        for (const [server, n] of restarts) emit(n, { server });
      },
    );
    this.gauge(
      'servers_by_era',
      'Hosted server instances by the era they were last spoken to in (not yet started: in neither).',
      ['era'],
      (emit) => {
        const servers = records(report()?.servers);
        for (const era of ERAS) emit(servers.filter((s) => s.era === ERA_VERSION[era]).length, { era });
      },
    );
  }

  /** Model providers, by provider id; fields a report lacks are left out. */
  private providerSeries(report: () => HealthReport | undefined): void {
    const providerGauge = (name: string, help: string, field: string): void =>
      this.gauge(name, help, ['provider'], (emit) => {
        for (const p of providers(report())) {
          const value = num(p.record[field]);
          if (value !== undefined) emit(value, { provider: p.id });
        }
      });
    const providerCounter = (name: string, help: string, field: string): void =>
      this.counter(name, help, ['provider'], (emit) => {
        for (const p of providers(report())) {
          const value = num(p.record[field]);
          if (value !== undefined) emit(value, { provider: p.id });
        }
      });
    providerGauge('provider_inflight', 'Model calls running now.', 'inflight');
    providerGauge('provider_max_inflight', 'Model calls allowed to run at once.', 'max_inflight');
    providerGauge('provider_waiting', 'Model calls queued for a free slot.', 'waiting');
    providerCounter('provider_calls_total', 'Model calls made since start.', 'calls');
    providerCounter('provider_rate_limited_total', 'Model calls answered 429 (rate limited) since start.', 'rate_limited');
    providerCounter('provider_errors_total', 'Model calls that failed since start.', 'errors');
    this.gauge(
      'provider_state',
      'What the last contact with each provider said, one 0/1 series per state.',
      ['provider', 'state'],
      (emit) => {
        for (const p of providers(report())) {
          const current = str(p.record.state);
          if (current === undefined) continue;
          for (const state of PROVIDER_STATES) emit(state === current ? 1 : 0, { provider: p.id, state });
        }
      },
    );
  }

  /** The daemon's own files. */
  private fileSeries(report: () => HealthReport | undefined): void {
    this.counter('log_dropped_lines_total', 'Log lines lost (write errors, a full disk, oversized lines).', [], (emit) =>
      emit(num(report()?.log?.dropped_lines) ?? 0),
    );
    this.counter('metrics_file_dropped_lines_total', 'metrics.jsonl lines lost (write errors, a full disk).', [], (emit) =>
      emit(num(report()?.metrics_file?.dropped_lines) ?? 0),
    );
  }

  /** The exposition text: reads `health()` once, then every series. */
  render(): Promise<string> {
    // Every collect() hook below runs inside this one registry.metrics() call; a scrape that
    // overlaps this one only replaces the report with a newer one.
    this.report = this.sources.health();
    return this.registry.metrics();
  }

  /** A counter whose values are set at scrape time from a total kept elsewhere. */
  private counter<L extends string>(name: string, help: string, labelNames: readonly L[], read: (emit: Emit<L>) => void): void {
    new this.client.Counter<L>({
      name: METRIC_PREFIX + name,
      help,
      labelNames,
      registers: [this.registry],
      collect(this: Counter<L>) {
        this.reset();
        read((value, labels) => (labels ? this.inc(labels, value) : this.inc(value)));
      },
    });
  }

  /** A gauge read at scrape time; series not emitted this time are gone (a removed server). */
  private gauge<L extends string>(name: string, help: string, labelNames: readonly L[], read: (emit: Emit<L>) => void): void {
    new this.client.Gauge<L>({
      name: METRIC_PREFIX + name,
      help,
      labelNames,
      registers: [this.registry],
      collect(this: Gauge<L>) {
        this.reset();
        read((value, labels) => (labels ? this.set(labels, value) : this.set(value)));
      },
    });
  }
}

function providers(report: HealthReport | undefined): { id: string; record: Record<string, unknown> }[] {
  const out: { id: string; record: Record<string, unknown> }[] = [];
  for (const record of records(report?.providers)) {
    const id = str(record.id);
    if (id !== undefined) out.push({ id, record });
  }
  return out;
}

/** The objects of an array the report may lack (fields other slices add are read defensively). */
function records(value: unknown): Record<string, unknown>[] {
  return Array.isArray(value) ? value.filter((v): v is Record<string, unknown> => typeof v === 'object' && v !== null) : [];
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
