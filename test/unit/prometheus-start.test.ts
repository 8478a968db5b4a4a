/**
 * The `/metrics` exporter loads prom-client on the first scrape, not when the daemon makes it:
 * what prom-client's default metrics measure over time still starts when the exporter is made.
 * The first scrape's event-loop delay covers the time before it, the process CPU counters hold
 * the CPU used since the exporter was made, and the content type is prom-client's own.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import perfHooks from 'node:perf_hooks';
import { test } from 'node:test';
import { Metrics } from '../../src/daemon/files/metrics.js';
import { PROMETHEUS_CONTENT_TYPE, PrometheusExporter } from '../../src/daemon/web/prometheus.js';
import type { HealthReport } from '../../src/local/health.js';
import { parseChecked, valueOf } from '../fixtures/exposition.js';

const require = createRequire(import.meta.url);

const PROM_CLIENT_ENTRY = /[\\/]prom-client[\\/]index\.js$/;

/** True once prom-client's entry module has been loaded in this process. */
function promClientLoaded(): boolean {
  return Object.keys(require.cache).some((path) => PROM_CLIENT_ENTRY.test(path));
}

/**
 * Whether a fresh Node process that imports the exporter's module and makes an exporter has
 * loaded prom-client: this process runs other unit files, which may have loaded it already.
 */
function loadsPromClientWhenMade(): boolean {
  const code = [
    "import { createRequire } from 'node:module';",
    `const { PrometheusExporter } = await import(${JSON.stringify(new URL('../../src/daemon/web/prometheus.js', import.meta.url).href)});`,
    'new PrometheusExporter({ metrics: {}, health: () => undefined });',
    `const cache = createRequire(import.meta.url).cache;`,
    `process.stdout.write(String(Object.keys(cache).some((p) => ${PROM_CLIENT_ENTRY.toString()}.test(p))));`,
  ].join('\n');
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
  assert.match(out, /^(true|false)$/, `the probe printed ${out}`);
  return out === 'true';
}

/** Keeps this thread busy until it has used `ms` of CPU: the event loop is blocked at least that long. */
function busy(ms: number): void {
  const from = process.cpuUsage();
  while (process.cpuUsage(from).user + process.cpuUsage(from).system < ms * 1000) {
    // spin
  }
}

const bare = { status: 'ok', sessions: { by_transport: {} }, servers: [], providers: [] } as unknown as HealthReport;

test('the first scrape loads prom-client and reports the event-loop delay and the CPU since the exporter was made', async () => {
  const exporter = new PrometheusExporter({ metrics: new Metrics({ isKnownTool: () => false }), health: () => bare });
  assert.equal(loadsPromClientWhenMade(), false, 'making the exporter does not load prom-client');
  assert.equal(exporter.contentType, PROMETHEUS_CONTENT_TYPE);
  // Let the delay histogram take a sample, then hold the loop (and the CPU) for 300 ms.
  await new Promise((resolve) => setTimeout(resolve, 150));
  const monitor = perfHooks.monitorEventLoopDelay;
  busy(300);
  await new Promise((resolve) => setTimeout(resolve, 150));

  const families = parseChecked(await exporter.render());
  assert.equal(promClientLoaded(), true);
  assert.equal(perfHooks.monitorEventLoopDelay, monitor, 'perf_hooks is as it was');
  // A histogram made at the first scrape would have no sample at all (max 0).
  const maxLag = valueOf(families, 'nodejs_eventloop_lag_max_seconds') ?? 0;
  assert.ok(maxLag >= 0.25, `the first scrape's event-loop delay covers the blocked loop before it: max ${maxLag} s`);
  // Counters made at the first scrape would start near 0, without the 300 ms spent before it.
  const user = valueOf(families, 'process_cpu_user_seconds_total') ?? 0;
  const system = valueOf(families, 'process_cpu_system_seconds_total') ?? 0;
  const total = valueOf(families, 'process_cpu_seconds_total') ?? 0;
  assert.ok(total >= 0.25, `the CPU counters hold the CPU used since the exporter was made: ${total} s`);
  assert.ok(Math.abs(total - (user + system)) < 1e-3, `total ${total} = user ${user} + system ${system}`);

  // prom-client's own constant matches the one given before it is loaded.
  const client = require('prom-client') as typeof import('prom-client');
  assert.equal(PROMETHEUS_CONTENT_TYPE, client.Registry.PROMETHEUS_CONTENT_TYPE);

  // Later scrapes go on from there: the delay window restarts, the counters only grow.
  const next = parseChecked(await exporter.render());
  assert.ok((valueOf(next, 'process_cpu_seconds_total') ?? 0) >= total);
  assert.ok((valueOf(next, 'nodejs_eventloop_lag_max_seconds') ?? 1) < 0.25, 'each scrape covers the time since the one before');
});

test('scrapes that overlap the first one build the series once and each get every series', async () => {
  const exporter = new PrometheusExporter({ metrics: new Metrics({ isKnownTool: () => false }), health: () => bare });
  const texts = await Promise.all([exporter.render(), exporter.render(), exporter.render()]);
  for (const text of texts) {
    const families = parseChecked(text);
    assert.equal(valueOf(families, 'exai_ws_sessions_opened_total'), 0);
    assert.ok(valueOf(families, 'nodejs_eventloop_lag_p99_seconds') !== undefined);
    assert.ok(valueOf(families, 'process_cpu_seconds_total') !== undefined);
  }
});
