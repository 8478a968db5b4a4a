/**
 * Eras in the daemon's reports (issue 24), from made-up inputs: the stateless 2026-07-28 clients
 * grouped by name and bounded, the eras as `/health` writes them, the era counters and gauges of
 * `/metrics` (fixed label values whatever a report holds), and `exai-ws status` showing them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CLIENT_NAME_MAX, StatelessClients, clientName, eraVersion } from '../../src/daemon/health-report.js';
import { Metrics } from '../../src/daemon/files/metrics.js';
import { PrometheusExporter } from '../../src/daemon/web/prometheus.js';
import { statusJson } from '../../src/commands/status-view.js';
import { renderStatusTable } from '../../src/commands/status-table.js';
import { STATELESS_CLIENTS_MAX, type HealthReport } from '../../src/local/health.js';
import { parseChecked, samplesOf, valueOf } from '../fixtures/exposition.js';
import { healthReport } from '../fixtures/health-report.js';

/** A clock the test moves. */
function clock(startMs = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = startMs;
  return { now: () => t, advance: (ms) => (t += ms) };
}

test('stateless clients: grouped by name, requests added up, most recently seen first, seconds since', () => {
  const c = clock();
  const clients = new StatelessClients(STATELESS_CLIENTS_MAX, c.now);
  clients.seen('agent-a', 1);
  c.advance(2_000);
  clients.seen('agent-b', 1);
  c.advance(3_000);
  clients.seen('agent-a', 2);
  c.advance(4_000);
  assert.deepEqual(clients.report(), [
    { client: 'agent-a', era: '2026-07-28', requests: 3, last_seen_s: 4 },
    { client: 'agent-b', era: '2026-07-28', requests: 1, last_seen_s: 7 },
  ]);
});

test(`stateless clients: at most ${STATELESS_CLIENTS_MAX} names; the least recently seen is dropped, a name seen again is kept`, () => {
  const c = clock();
  const clients = new StatelessClients(STATELESS_CLIENTS_MAX, c.now);
  for (let i = 0; i < STATELESS_CLIENTS_MAX; i++) {
    clients.seen(`client-${i}`, 1);
    c.advance(10);
  }
  clients.seen('client-0', 1); // seen again: now the most recent
  for (let i = 0; i < 1_000; i++) clients.seen(`flood-${i}`, 1);
  const names = clients.report().map((e) => e.client);
  assert.equal(names.length, STATELESS_CLIENTS_MAX);
  assert.equal(clients.size, STATELESS_CLIENTS_MAX);
  assert.equal(names[0], 'flood-999');
  assert.ok(!names.includes('client-0'), 'a thousand newer names push out even a refreshed one');

  const small = new StatelessClients(3, c.now);
  for (const name of ['a', 'b', 'c']) small.seen(name, 1);
  small.seen('a', 1);
  small.seen('d', 1);
  assert.deepEqual(
    small.report().map((e) => e.client),
    ['d', 'a', 'c'],
    'b, the least recently seen, went; a, seen again, stayed',
  );
});

test("stateless clients: the client's own name, clipped; none is `unknown`", () => {
  const clients = new StatelessClients();
  const long = 'x'.repeat(10_000);
  clients.seen(long, 1);
  clients.seen(`${long}-other-tail`, 1);
  clients.seen(undefined, 1);
  clients.seen('', 1);
  const report = clients.report();
  assert.deepEqual(
    report.map((e) => [e.client.length, e.requests]),
    [
      [7, 2],
      [CLIENT_NAME_MAX, 2],
    ],
    'two long names with the same start share one entry; no name and the empty name are `unknown`',
  );
  assert.equal(report[0]?.client, 'unknown');
  assert.ok(report[1]?.client.endsWith('…'));
  assert.equal(clientName('vscode'), 'vscode');
});

test('eras as /health writes them: the revision that names them, null while unknown', () => {
  assert.equal(eraVersion('modern'), '2026-07-28');
  assert.equal(eraVersion('legacy'), '2025-11-25');
  assert.equal(eraVersion(undefined), null);
});

function report(servers: unknown[]): HealthReport {
  return healthReport({ servers: servers as HealthReport['servers'] });
}

test('/metrics: requests by era and servers by era, with the label values modern and legacy only', async () => {
  const metrics = new Metrics();
  metrics.request('tools/call', 'version', 1, false, 'modern');
  metrics.request('tools/list', undefined, 1, false, 'modern');
  metrics.request('tools/list', undefined, 1, true, 'legacy');
  metrics.request('ping', undefined, 1, false); // era not known: in neither
  assert.deepEqual(metrics.byEra, { modern: 2, legacy: 1 });
  assert.deepEqual(metrics.snapshot({ sessionsActive: 0, sessionsDetached: 0, inflight: 0 }).requests_by_era, { modern: 2, legacy: 1 });
  const servers = [
    { name: 'a', state: 'ready', era: '2026-07-28' },
    { name: 'b', state: 'ready', era: '2025-11-25' },
    { name: 'c', state: 'ready', era: '2025-11-25' },
    { name: 'd', state: 'starting', era: null },
    { name: 'e', state: 'ready', era: 'made-up' },
    { name: 'f', state: 'ready' },
  ];
  const families = parseChecked(await new PrometheusExporter({ metrics, health: () => report(servers) }).render());
  assert.equal(valueOf(families, 'exai_ws_requests_by_era_total', { era: 'modern' }), 2);
  assert.equal(valueOf(families, 'exai_ws_requests_by_era_total', { era: 'legacy' }), 1);
  assert.equal(valueOf(families, 'exai_ws_servers_by_era', { era: 'modern' }), 1);
  assert.equal(valueOf(families, 'exai_ws_servers_by_era', { era: 'legacy' }), 2);
  for (const name of ['exai_ws_requests_by_era_total', 'exai_ws_servers_by_era']) {
    assert.deepEqual(
      samplesOf(families, name)
        .map((s) => s.labels.era)
        .sort(),
      ['legacy', 'modern'],
      `${name}: two series, always`,
    );
  }
});

test('exai-ws status: the era of each session and server, and the stateless clients by name', () => {
  const health = {
    ...report([
      { name: 'modern-srv', scope: 'shared', scope_key: null, state: 'ready', pid: null, restarts: 0, sessions: 1, era: '2026-07-28' },
      { name: 'legacy-srv', scope: 'shared', scope_key: null, state: 'ready', pid: 77, restarts: 0, sessions: 1, era: '2025-11-25' },
      { name: 'later', scope: 'shared', scope_key: null, state: 'stopped', pid: null, restarts: 0, sessions: 0, era: null },
    ]),
    sessions: {
      total: 1,
      attached: 1,
      detached: 0,
      list: [
        {
          id: 'abcdef0123',
          transport: 'stdio',
          state: 'attached',
          client: 'window',
          client_version: '1',
          cwd: null,
          age_s: 3,
          inflight: 0,
          requests: 2,
          p99_ms: 1,
          era: '2025-11-25',
        },
      ],
    },
    stateless_clients: [{ client: 'agent', era: '2026-07-28', requests: 5, last_seen_s: 2 }],
  } as unknown as HealthReport;
  const json = statusJson(health);
  assert.equal(json.sessions[0]?.era, '2025-11-25');
  assert.deepEqual(
    json.servers.map((s) => [s.name, s.era]),
    [
      ['modern-srv', '2026-07-28'],
      ['legacy-srv', '2025-11-25'],
      ['later', null],
    ],
  );
  assert.deepEqual(json.stateless_clients, [{ client: 'agent', era: '2026-07-28', requests: 5, last_seen_s: 2 }]);
  const text = renderStatusTable(json, { color: false, width: 160 });
  assert.match(text, /^ {2}window 1 +abcdef01 +stdio +attached +2025-11-25 +3s/m);
  assert.match(text, /^ {2}modern-srv +ready +2026-07-28 +- +shared/m);
  assert.match(text, /^ {2}legacy-srv +ready +2025-11-25 +77 +shared/m);
  assert.match(text, /^ {2}later +stopped +- +- +shared/m);
  assert.match(
    text,
    /^stateless clients \(a session per request\)\n {2}CLIENT +ERA +REQUESTS +LAST SEEN\n {2}agent +2026-07-28 +5 +2s ago$/m,
  );

  // A daemon that reports no eras: no ERA column, no stateless section.
  const old = renderStatusTable(
    statusJson({ ...health, stateless_clients: undefined, servers: [], sessions: { ...health.sessions, list: [] } }),
    {
      color: false,
      width: 160,
    },
  );
  assert.doesNotMatch(old, /ERA|stateless/);
});
