/**
 * The `/metrics` exporter over a real Metrics and a made-up health report: what it renders
 * parses as Prometheus text (a strict reader of the format, an independent npm parser, and
 * Prometheus' own `promtool` where installed), its values follow what was recorded and what
 * the report says at each scrape, and names clients make up never become label values.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { register as globalRegistry } from 'prom-client';
import { KNOWN_METHODS, Metrics, OTHER, REJECT_REASONS, CLOSE_REASONS } from '../../src/daemon/files/metrics.js';
import { PrometheusExporter } from '../../src/daemon/web/prometheus.js';

import { findPromtool, parseChecked, parseExposition, promtoolCheck, samplesOf, valueOf } from '../fixtures/exposition.js';
import type { HealthReport } from '../../src/local/health.js';

const KNOWN_TOOLS = new Set(['version', 'chat', 'fs__read_file']);

function newMetrics(): Metrics {
  return new Metrics({ isKnownTool: (name) => KNOWN_TOOLS.has(name) });
}

/** A full report in the shape daemon.ts gives, with the provider fields the contract adds. */
/** Reports as a daemon of this or another version may send them: checked loosely on purpose. */
function report(overrides: Record<string, unknown> = {}): HealthReport {
  return {
    status: 'ok',
    name: 'exai-ws',
    version: '0.0.0',
    pid: 1,
    host: '127.0.0.1',
    port: 1,
    started_at: '2026-01-01T00:00:00.000Z',
    uptime_s: 5,
    sessions: { total: 3, attached: 2, detached: 1, by_transport: { ws: 2, http: 1, stdio: 0 }, list: [] },
    connections: 2,
    inflight: 4,
    servers: [
      // A configured name may hold any character; the exposition must escape it.
      { name: 'fs "quoted" \\ back\nslash', scope: 'shared', scope_key: null, state: 'ready', pid: 10, restarts: 2 },
      { name: 'per-ws', scope: 'workspace', scope_key: '/a', state: 'ready', pid: 11, restarts: 1 },
      { name: 'per-ws', scope: 'workspace', scope_key: '/b', state: 'restarting', pid: null, restarts: 3 },
    ],
    providers: [
      {
        id: 'openai',
        label: 'OpenAI-compatible',
        configured: true,
        max_inflight: 8,
        inflight: 3,
        waiting: 5,
        calls: 42,
        rate_limited: 7,
        errors: 2,
        state: 'rate_limited',
      },
    ],
    log: { dropped_lines: 6 } as HealthReport['log'],
    metrics_file: { dropped_lines: 9 } as HealthReport['metrics_file'],
    ...overrides,
  } as unknown as HealthReport;
}

const promtool = findPromtool();

test('the scrape parses as Prometheus text: HELP and TYPE for every family, escaped label values, cumulative histograms', async () => {
  const metrics = newMetrics();
  metrics.request('tools/call', 'version', 0.3, false);
  metrics.request('tools/list', undefined, 2, false);
  metrics.request('ping', undefined, 40_000, true);
  metrics.reject('queue_full');
  metrics.sessionClosed('daemon shutting down');
  const exporter = new PrometheusExporter({ metrics, health: () => report() });
  assert.equal(exporter.contentType, 'text/plain; version=0.0.4; charset=utf-8');
  const text = await exporter.render();
  const families = parseChecked(text);
  const ours = [...families.values()].filter((f) => f.name.startsWith('exai_ws_'));
  assert.ok(ours.length >= 20, `families: ${ours.map((f) => f.name).join(', ')}`);
  for (const f of families.values()) {
    assert.ok(f.help !== undefined && f.help !== '', `${f.name} has help`);
    assert.notEqual(f.type, 'untyped', `${f.name} has a type`);
    if (f.name.startsWith('exai_ws_')) assert.equal(f.type === 'counter', f.name.endsWith('_total'), `${f.name}: _total iff counter`);
  }
  // The configured name comes back whole through the escaping.
  assert.equal(valueOf(families, 'exai_ws_server_state', { server: 'fs "quoted" \\ back\nslash', state: 'ready' }), 1);
  // prom-client's process metrics are on the same registry.
  assert.ok(valueOf(families, 'process_cpu_user_seconds_total') !== undefined);
  assert.ok(valueOf(families, 'nodejs_eventloop_lag_p99_seconds') !== undefined);
});

test(
  'promtool (Prometheus itself) accepts the scrape and finds nothing to lint in the exai_ws_ series',
  { skip: promtool === null ? 'promtool is not installed (Debian package prometheus)' : false },
  async () => {
    const metrics = newMetrics();
    metrics.request('tools/call', 'version', 0.3, false);
    metrics.request('tools/call', 'made-up', 3, true);
    const text = await new PrometheusExporter({ metrics, health: () => report() }).render();
    const findings = promtoolCheck(promtool ?? 'promtool', text);
    assert.deepEqual(
      findings.filter((line) => line.includes('exai_ws_')),
      [],
    );
  },
);

test('requests count by method, tool and outcome; the histogram puts each latency in its bucket, in seconds', async () => {
  const metrics = newMetrics();
  const exporter = new PrometheusExporter({ metrics, health: () => report() });
  const empty = parseChecked(await exporter.render());
  assert.deepEqual(samplesOf(empty, 'exai_ws_requests_total'), [], 'no request yet, no request series');

  metrics.request('tools/call', 'version', 0.3, false);
  metrics.request('tools/call', 'version', 0.05, false);
  metrics.request('tools/call', 'chat', 1_500, true);
  metrics.request('tools/call', 'made-up', 7, false);
  metrics.request('tools/call', undefined, 1, true);
  metrics.request('tools/list', undefined, 12, false);
  metrics.request('no/such/method', undefined, 60_000, true);
  const families = parseChecked(await exporter.render());
  const requests = (method: string, tool: string, outcome: string): number | undefined =>
    valueOf(families, 'exai_ws_requests_total', { method, tool, outcome });
  assert.equal(requests('tools/call', 'version', 'ok'), 2);
  assert.equal(requests('tools/call', 'version', 'error'), 0);
  assert.equal(requests('tools/call', 'chat', 'error'), 1);
  assert.equal(requests('tools/call', OTHER, 'ok'), 1);
  assert.equal(requests('tools/call', '', 'error'), 1, 'a tools/call with no tool name');
  assert.equal(requests('tools/list', '', 'ok'), 1);
  assert.equal(requests(OTHER, '', 'error'), 1);
  assert.equal(requests('ping', '', 'ok'), undefined);

  const bucket = (method: string, le: string): number | undefined =>
    valueOf(families, 'exai_ws_request_duration_seconds_bucket', { method, le });
  assert.equal(bucket('tools/call', '0.0001'), 1); // 0.05 ms
  assert.equal(bucket('tools/call', '0.00025'), 1);
  assert.equal(bucket('tools/call', '0.0005'), 2); // 0.3 ms
  assert.equal(bucket('tools/call', '0.001'), 3); // 1 ms: a bound is inclusive
  assert.equal(bucket('tools/call', '0.01'), 4); // 7 ms
  assert.equal(bucket('tools/call', '2.5'), 5); // 1.5 s
  assert.equal(bucket('tools/call', '+Inf'), 5);
  assert.equal(bucket(OTHER, '30'), 0, '60 s is past the last bound');
  assert.equal(bucket(OTHER, '+Inf'), 1);
  const sum = valueOf(families, 'exai_ws_request_duration_seconds_sum', { method: 'tools/call' });
  assert.ok(sum !== undefined && Math.abs(sum - 1.50835) < 1e-9, `sum ${sum}`);
  assert.equal(valueOf(families, 'exai_ws_request_duration_seconds_count', { method: 'tools/list' }), 1);

  // The JSONL line keeps its shape and agrees.
  const line = metrics.snapshot({ sessionsActive: 0, sessionsDetached: 0, inflight: 0 });
  assert.deepEqual(line.by_method, { 'tools/call': 5, 'tools/list': 1, [OTHER]: 1 });
  assert.deepEqual(line.by_tool, { version: 2, chat: 1, [OTHER]: 1 });
  assert.equal(line.requests, 7);
  assert.equal(line.errors, 3);
});

test('sessions, rejections and auth failures follow Metrics; gauges follow the report of each scrape', async () => {
  const metrics = newMetrics();
  let current = report();
  const exporter = new PrometheusExporter({ metrics, health: () => current });
  metrics.sessionsOpened = 5;
  metrics.sessionClosed('client_closed');
  metrics.sessionClosed('client_closed');
  // @ts-expect-error: the compiler refuses a made-up reason; one that gets through counts as `other`.
  metrics.sessionClosed('made up reason');
  metrics.reject('unauthorized');
  // @ts-expect-error: as above.
  metrics.reject('not a reason');
  metrics.authFailures = 3;
  let families = parseChecked(await exporter.render());
  assert.equal(valueOf(families, 'exai_ws_sessions_opened_total'), 5);
  assert.equal(valueOf(families, 'exai_ws_sessions_closed_total', { reason: 'client_closed' }), 2);
  assert.equal(valueOf(families, 'exai_ws_sessions_closed_total', { reason: OTHER }), 1);
  assert.equal(valueOf(families, 'exai_ws_rejections_total', { reason: 'unauthorized' }), 1);
  assert.equal(valueOf(families, 'exai_ws_rejections_total', { reason: OTHER }), 1);
  assert.equal(valueOf(families, 'exai_ws_auth_failures_total'), 3);
  assert.equal(valueOf(families, 'exai_ws_sessions_open', { transport: 'ws' }), 2);
  assert.equal(valueOf(families, 'exai_ws_sessions_open', { transport: 'http' }), 1);
  assert.equal(valueOf(families, 'exai_ws_sessions_open', { transport: 'stdio' }), 0);
  assert.equal(valueOf(families, 'exai_ws_sessions_detached'), 1);
  assert.equal(valueOf(families, 'exai_ws_requests_inflight'), 4);
  // A scoped server: one series per configured name, counting its instances by state.
  assert.equal(valueOf(families, 'exai_ws_server_state', { server: 'per-ws', state: 'ready' }), 1);
  assert.equal(valueOf(families, 'exai_ws_server_state', { server: 'per-ws', state: 'restarting' }), 1);
  assert.equal(valueOf(families, 'exai_ws_server_state', { server: 'per-ws', state: 'failed' }), 0);
  assert.equal(valueOf(families, 'exai_ws_server_restarts', { server: 'per-ws' }), 4);
  assert.equal(valueOf(families, 'exai_ws_provider_inflight', { provider: 'openai' }), 3);
  assert.equal(valueOf(families, 'exai_ws_provider_max_inflight', { provider: 'openai' }), 8);
  assert.equal(valueOf(families, 'exai_ws_provider_waiting', { provider: 'openai' }), 5);
  assert.equal(valueOf(families, 'exai_ws_provider_calls_total', { provider: 'openai' }), 42);
  assert.equal(valueOf(families, 'exai_ws_provider_rate_limited_total', { provider: 'openai' }), 7);
  assert.equal(valueOf(families, 'exai_ws_provider_errors_total', { provider: 'openai' }), 2);
  assert.equal(valueOf(families, 'exai_ws_provider_state', { provider: 'openai', state: 'rate_limited' }), 1);
  assert.equal(valueOf(families, 'exai_ws_provider_state', { provider: 'openai', state: 'ok' }), 0);
  assert.equal(valueOf(families, 'exai_ws_log_dropped_lines_total'), 6);
  assert.equal(valueOf(families, 'exai_ws_metrics_file_dropped_lines_total'), 9);

  // The next scrape reads the report again: sessions closed, a server removed from the config,
  // and a provider reported without the fields another version may lack.
  current = report({
    sessions: { total: 0, attached: 0, detached: 0, by_transport: { ws: 0, http: 0, stdio: 0 } },
    servers: [{ name: 'per-ws', state: 'ready', restarts: 0 }],
    providers: [{ id: 'openai', inflight: 0, waiting: 0 }],
  });
  families = parseChecked(await exporter.render());
  assert.equal(valueOf(families, 'exai_ws_sessions_open', { transport: 'ws' }), 0);
  assert.equal(valueOf(families, 'exai_ws_sessions_open', { transport: 'http' }), 0);
  assert.deepEqual(
    [...new Set(samplesOf(families, 'exai_ws_server_state').map((s) => s.labels.server))],
    ['per-ws'],
    'the removed server has no series left',
  );
  assert.equal(valueOf(families, 'exai_ws_provider_inflight', { provider: 'openai' }), 0);
  assert.deepEqual(samplesOf(families, 'exai_ws_provider_calls_total'), []);
  assert.deepEqual(samplesOf(families, 'exai_ws_provider_state'), []);
});

test('a report without the optional parts still renders', async () => {
  const bare = {
    status: 'ok',
    name: 'exai-ws',
    version: '0',
    pid: 1,
    host: '127.0.0.1',
    port: 1,
    started_at: '2026-01-01T00:00:00.000Z',
    uptime_s: 0,
    sessions: { total: 0, attached: 0, detached: 0 },
    inflight: 0,
    servers: 'not an array',
    providers: [null, 3, { id: 7 }],
  } as unknown as HealthReport;
  const families = parseChecked(await new PrometheusExporter({ metrics: newMetrics(), health: () => bare }).render());
  assert.equal(valueOf(families, 'exai_ws_sessions_open', { transport: 'ws' }), 0);
  assert.deepEqual(samplesOf(families, 'exai_ws_server_state'), []);
  assert.deepEqual(samplesOf(families, 'exai_ws_provider_inflight'), []);
});

test('20k made-up method, tool, rejection and close-reason names add no label value', async () => {
  const metrics = newMetrics();
  const exporter = new PrometheusExporter({ metrics, health: () => report() });
  metrics.request('tools/call', 'version', 1, false);
  metrics.request('initialize', undefined, 1, false);
  const before = await exporter.render();
  const N = 20_000;
  for (let i = 0; i < N; i++) {
    const junk = `made-up-${i}-${'x'.repeat(100)}`;
    metrics.request(junk, undefined, 1, i % 2 === 0);
    metrics.request('tools/call', junk, 1, false);
    // @ts-expect-error: a client-given name is not a reason; it counts as `other`.
    metrics.reject(junk);
    // @ts-expect-error: as above.
    metrics.sessionClosed(junk);
  }
  const text = await exporter.render();
  const families = parseChecked(text);
  const labelValues = (name: string, label: string): Set<string> =>
    new Set(samplesOf(families, name).map((s) => s.labels[label] ?? '(none)'));
  for (const method of labelValues('exai_ws_requests_total', 'method')) assert.ok(KNOWN_METHODS.has(method) || method === OTHER, method);
  for (const method of labelValues('exai_ws_request_duration_seconds_count', 'method')) {
    assert.ok(KNOWN_METHODS.has(method) || method === OTHER, method);
  }
  for (const tool of labelValues('exai_ws_requests_total', 'tool')) assert.ok(tool === '' || KNOWN_TOOLS.has(tool) || tool === OTHER, tool);
  for (const reason of labelValues('exai_ws_rejections_total', 'reason')) assert.ok(REJECT_REASONS.has(reason) || reason === OTHER, reason);
  for (const reason of labelValues('exai_ws_sessions_closed_total', 'reason'))
    assert.ok(CLOSE_REASONS.has(reason) || reason === OTHER, reason);
  assert.equal(valueOf(families, 'exai_ws_requests_total', { method: OTHER, tool: '', outcome: 'error' }), N / 2);
  assert.equal(valueOf(families, 'exai_ws_requests_total', { method: 'tools/call', tool: OTHER, outcome: 'ok' }), N);
  assert.equal(valueOf(families, 'exai_ws_rejections_total', { reason: OTHER }), N);
  assert.equal(valueOf(families, 'exai_ws_sessions_closed_total', { reason: OTHER }), N);
  // 20k names of 100+ bytes cost a few `other` series, not 2 MB of text.
  assert.ok(text.length - before.length < 4_000, `the scrape grew by ${text.length - before.length} bytes`);
  assert.ok(!text.includes('made-up-'));
});

test('the exporter keeps to its own registry: nothing in the global registry of prom-client, and two exporters live side by side', async () => {
  const a = new PrometheusExporter({ metrics: newMetrics(), health: () => report() });
  const b = new PrometheusExporter({ metrics: newMetrics(), health: () => report() });
  assert.ok((await a.render()).includes('exai_ws_sessions_open'));
  assert.ok((await b.render()).includes('exai_ws_sessions_open'));
  assert.doesNotMatch(await globalRegistry.metrics(), /exai_ws_|process_cpu/);
});

test('the strict reader the tests rely on rejects what a scraper would', () => {
  const ok = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="q\\"\\\\\\n"} 1\n';
  assert.equal(valueOf(parseExposition(ok), 'a_total', { x: 'q"\\\n' }), 1);
  const bad: [string, string][] = [
    ['no final newline', '# TYPE a gauge\na 1'],
    ['bad metric name', '# TYPE 1a gauge\n1a 1\n'],
    ['bad label name', 'a{x-y="1"} 1\n'],
    ['unknown escape', 'a{x="\\q"} 1\n'],
    ['unquoted label value', 'a{x=1} 1\n'],
    ['bad value', 'a 1,5\n'],
    ['TYPE after samples', 'a 1\n# TYPE a gauge\n'],
    ['second TYPE', '# TYPE a gauge\n# TYPE a gauge\na 1\n'],
    ['the same sample twice', 'a{x="1"} 1\na{x="1"} 2\n'],
    ['family not contiguous', 'a 1\nb 1\na{x="2"} 1\n'],
    ['histogram not cumulative', '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'],
    ['histogram without +Inf', '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'],
    ['histogram count off', '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 2\n'],
  ];
  for (const [why, text] of bad) assert.throws(() => parseExposition(text), Error, why);
});
