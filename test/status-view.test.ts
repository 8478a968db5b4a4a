/**
 * `exai-ws status` rendering without a daemon: the stable `--json` shape built from a health
 * report, and the table fitted to a terminal, with and without colour. Also the per-session
 * latency ring behind `p99_ms`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { STATUS_SCHEMA, statusJson } from '../src/commands/status-view.js';
import { formatDuration, formatMs, renderStatusTable } from '../src/commands/status-table.js';
import { colorWanted, columnsOf, printable, truncate, visibleLength, wrap } from '../src/commands/terminal.js';
import { LatencyRing, SESSION_LATENCY_SAMPLES } from '../src/daemon/sessions/latency-ring.js';
import type { HealthReport } from '../src/local/health.js';

const NOW = Date.parse('2026-11-30T12:00:00.000Z');
const LONG_CWD = '/home/someone/projects/a-rather-long-organisation-name/an-even-longer-repository-name/packages/the-package-i-work-on';
const RELOAD_ERROR =
  "config file /home/someone/.config/exai-ws/config.json is not valid JSON: Expected property name or '}' in JSON at position 17 (line 1 column 18); fix the file and save it again, or run exai-ws reload";

/** A report as a daemon with two windows, a failed server, a failed reload and three providers gives it. */
function fixture(): HealthReport {
  return {
    status: 'ok',
    name: 'exai-ws',
    version: '0.1.0',
    pid: 4242,
    host: '127.0.0.1',
    port: 8765,
    started_at: '2026-11-30T10:00:00.000Z',
    uptime_s: 7325,
    auto_started: true,
    idle_exit_ms: 28_800_000,
    sessions: {
      total: 2,
      attached: 1,
      detached: 1,
      by_transport: { ws: 1, http: 1, stdio: 0 },
      idle_ended: { idle: 3, session_limit: 5 },
      list: [
        {
          id: '9f8e7d6c-0000-4000-8000-000000000002',
          transport: 'http',
          state: 'detached',
          client: 'Visual Studio Code',
          client_version: '1.96.0',
          cwd: null,
          age_s: 65,
          inflight: 0,
          requests: 0,
          p99_ms: null,
        },
        {
          id: '1a2b3c4d-0000-4000-8000-000000000001',
          transport: 'ws',
          state: 'attached',
          client: 'claude-code',
          client_version: '2.0.14',
          cwd: LONG_CWD,
          age_s: 3723,
          inflight: 2,
          requests: 118,
          p99_ms: 12.3456,
        },
      ],
    },
    inflight: 2,
    connections: 1,
    servers: [
      {
        name: 'memory',
        scope: 'shared',
        scope_key: null,
        state: 'ready',
        pid: 5151,
        restarts: 0,
        retries: 0,
        uptime_s: 7000,
        sessions: 2,
        inflight: 0,
        last_error: null,
        asks_client: [],
      },
      {
        name: 'nocmd',
        scope: 'shared',
        scope_key: null,
        state: 'failed',
        pid: null,
        restarts: 3,
        retries: 5,
        uptime_s: null,
        sessions: 0,
        inflight: 0,
        last_error:
          'spawn no-such-command-xyz ENOENT: the command was not found on PATH (/usr/local/bin:/usr/bin:/bin), check the entry in the config file',
        asks_client: [],
      },
    ],
    config: {
      path: '/home/someone/.config/exai-ws/config.json',
      exists: true,
      watching: '/home/someone/.config/exai-ws',
      problems: [{ server: 'broken', key: 'command', reason: 'must not be empty' }],
      last_reload: { at: '2026-11-30T11:59:30.000Z', error: RELOAD_ERROR },
    },
    providers: [
      {
        id: 'kimi',
        label: 'Kimi',
        configured: true,
        base_url: 'https://api.moonshot.ai/v1',
        default_model: 'kimi-k2',
        max_inflight: 6,
        inflight: 1,
        waiting: 0,
        calls: 12,
        rate_limited: 2,
        errors: 0,
        state: 'ok',
        last_error: null,
        last_error_at: null,
      },
      {
        id: 'glm',
        label: 'GLM',
        configured: true,
        base_url: 'http://127.0.0.1:9',
        default_model: 'glm-4.6',
        max_inflight: 4,
        inflight: 0,
        waiting: 3,
        calls: 1,
        rate_limited: 0,
        errors: 1,
        state: 'unreachable',
        last_error: 'connect ECONNREFUSED 127.0.0.1:9',
        last_error_at: '2026-11-30T11:58:00.000Z',
      },
      // What the daemon reports before the provider states exist: no state, no counters.
      { id: 'openai', configured: false, base_url: null, default_model: null, max_inflight: 4, inflight: 0, waiting: 0 },
    ],
    log: {
      written_lines: 100,
      dropped_lines: 7,
      rotations: 0,
      last_error: { code: 'ENOSPC', message: 'no space left on device', at: '2026-11-30T11:00:00.000Z' },
      failing: true,
      max_bytes: 10485760,
      files: 5,
      unserializable_calls: 0,
      stderr_dropped_lines: 0,
    },
    metrics_file: {
      path: '/x/logs/metrics.jsonl',
      written_lines: 10,
      dropped_lines: 0,
      rotations: 0,
      last_error: null,
      failing: false,
      max_bytes: 10485760,
      files: 5,
    },
    memory: { heap_used_bytes: 1, heap_total_bytes: 2, rss_bytes: 3 },
    limits: { max_sessions: 64 },
    settings: {
      path: '/home/u/.config/exai-ws/daemon.env',
      exists: true,
      error: null,
      readable_by_others: false,
      problems: [{ line: 4, message: 'EXAI_WS_BACKPRESSURE=lots: Invalid input; the default applies' }],
      values: [
        { name: 'EXAI_WS_MAX_SESSIONS', source: 'file', value: '64' },
        { name: 'KIMI_API_KEY', source: 'file', value: '****abcd' },
        { name: 'LOG_LEVEL', source: 'env', value: 'debug' },
      ],
      ignored_env: ['KIMI_API_KEY'],
      legacy_service_env: null,
    },
    warnings: [
      'the client that started this daemon passed KIMI_API_KEY, which the daemon no longer takes from a client (its settings come from /home/u/.config/exai-ws/daemon.env); to keep it: exai-ws settings set KIMI_API_KEY=..., then exai-ws restart',
    ],
  } as unknown as HealthReport; // partly as an earlier daemon gives it: one provider lacks this version's fields
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;

function plainLines(text: string): string[] {
  return text.replace(ANSI, '').split('\n');
}

function rowOf(text: string, start: RegExp): string {
  const row = plainLines(text).find((line) => start.test(line));
  assert.ok(row !== undefined, `a row matching ${String(start)} in:\n${text}`);
  return row;
}

test('--json: a versioned shape with every section, built from the report, not the report itself', () => {
  const report = fixture();
  (report as unknown as Record<string, unknown>).some_future_field = { anything: true };
  const json = statusJson(report);
  assert.equal(json.schema, STATUS_SCHEMA);
  assert.deepEqual(Object.keys(json), [
    'schema',
    'status',
    'limited',
    'daemon',
    'sessions',
    'stateless_clients',
    'servers',
    'providers',
    'config',
    'files',
    'settings',
    'warnings',
  ]);
  assert.deepEqual(json.settings, {
    path: '/home/u/.config/exai-ws/daemon.env',
    exists: true,
    problems: [{ line: 4, message: 'EXAI_WS_BACKPRESSURE=lots: Invalid input; the default applies' }],
    values: [
      { name: 'EXAI_WS_MAX_SESSIONS', source: 'file', value: '64' },
      { name: 'KIMI_API_KEY', source: 'file', value: '****abcd' },
      { name: 'LOG_LEVEL', source: 'env', value: 'debug' },
    ],
    ignored_env: ['KIMI_API_KEY'],
  });
  assert.equal(json.warnings.length, 1);
  assert.deepEqual(
    statusJson({ ...report, settings: undefined, warnings: undefined }).settings,
    null,
    'an older daemon: null, not missing',
  );
  assert.equal(JSON.stringify(json).includes('some_future_field'), false, 'fields /health adds do not leak into the stable shape');
  assert.deepEqual(json.daemon, {
    name: 'exai-ws',
    version: '0.1.0',
    pid: 4242,
    host: '127.0.0.1',
    port: 8765,
    ws_url: 'ws://127.0.0.1:8765',
    mcp_url: 'http://127.0.0.1:8765/mcp',
    started_at: '2026-11-30T10:00:00.000Z',
    uptime_s: 7325,
    auto_started: true,
    idle_exit_ms: 28_800_000,
    inflight: 2,
    idle_ended: { idle: 3, session_limit: 5 },
  });
  // Grouped by client name.
  assert.deepEqual(
    json.sessions.map((s) => s.client),
    ['claude-code', 'Visual Studio Code'],
  );
  assert.deepEqual(
    json.sessions.find((s) => s.client === 'claude-code'),
    {
      id: '1a2b3c4d-0000-4000-8000-000000000001',
      client: 'claude-code',
      client_version: '2.0.14',
      transport: 'ws',
      state: 'attached',
      cwd: LONG_CWD,
      age_s: 3723,
      inflight: 2,
      requests: 118,
      p99_ms: 12.3456,
      era: null,
      // A daemon that does not report windows' tools: nulls, not a window under its cap.
      profile: null,
      profile_missing: null,
      tools: null,
      tools_bytes: null,
      tool_cap: null,
      over_cap: null,
    },
  );
  assert.deepEqual(json.servers[1], {
    name: 'nocmd',
    state: 'failed',
    pid: null,
    scope: 'shared',
    scope_key: null,
    restarts: 3,
    sessions: 0,
    inflight: 0,
    last_error: (fixture().servers as { last_error: string }[])[1]?.last_error,
    era: null,
    // A stdio server has no OAuth login (a url server's is `servers[].login`, test/unit/login-status).
    login: null,
  });
  assert.deepEqual(json.providers[1], {
    id: 'glm',
    label: 'GLM',
    configured: true,
    state: 'unreachable',
    inflight: 0,
    max_inflight: 4,
    queued: 3,
    rate_limited: 0,
    errors: 1,
    last_error: 'connect ECONNREFUSED 127.0.0.1:9',
    last_error_at: '2026-11-30T11:58:00.000Z',
  });
  // A field the daemon did not report is null, never missing.
  assert.deepEqual(json.providers[2], {
    id: 'openai',
    label: null,
    configured: false,
    state: null,
    inflight: 0,
    max_inflight: 4,
    queued: 0,
    rate_limited: null,
    errors: null,
    last_error: null,
    last_error_at: null,
  });
  assert.deepEqual(json.config, {
    path: '/home/someone/.config/exai-ws/config.json',
    exists: true,
    watching: '/home/someone/.config/exai-ws',
    problems: [{ server: 'broken', key: 'command', reason: 'must not be empty' }],
    error: null,
    last_reload: { at: '2026-11-30T11:59:30.000Z', ok: false, error: RELOAD_ERROR },
  });
  assert.deepEqual(json.files, {
    log: { path: null, dropped_lines: 7, failing: true, last_error: { code: 'ENOSPC', at: '2026-11-30T11:00:00.000Z' } },
    metrics: { path: '/x/logs/metrics.jsonl', dropped_lines: 0, failing: false, last_error: null },
  });
  // A successful reload lists what it changed.
  const ok = fixture();
  (ok.config as unknown as Record<string, unknown>).last_reload = {
    at: 'x',
    added: ['a'],
    removed: [],
    restarted: ['b'],
    unchanged: ['c'],
    file: true,
    refused: 0,
  };
  assert.deepEqual(statusJson(ok).config.last_reload, {
    at: 'x',
    ok: true,
    added: ['a'],
    removed: [],
    restarted: ['b'],
    unchanged: ['c'],
    file_removed: false,
  });
});

test('--json of a liveness-only answer (no valid token) says so instead of claiming there is nothing', () => {
  const live = {
    status: 'ok',
    name: 'exai-ws',
    version: '0.1.0',
    pid: 1,
    host: '127.0.0.1',
    port: 2,
    uptime_s: 3,
  } as unknown as HealthReport;
  const json = statusJson(live, "the daemon (pid 1) did not take this user's token (no token file at /x/token)");
  assert.equal(json.limited, "the daemon (pid 1) did not take this user's token (no token file at /x/token)");
  assert.deepEqual(json.sessions, []);
  assert.equal(json.config.last_reload, null);
  const text = renderStatusTable(json, { color: false, width: 100, nowMs: NOW });
  assert.match(text, /did not take this user's token \(no token file at \/x\/token\): sessions, servers and\nproviders are not shown/);
  assert.equal(statusJson(live).limited, 'the daemon gave only its liveness fields');
  assert.doesNotMatch(text, /^sessions/m);
  assert.equal(statusJson(fixture()).limited, null);
});

test('the table: daemon, sessions by client with p99, failing server, refused entry, providers, failed reload, dropped log lines', () => {
  const text = renderStatusTable(statusJson(fixture()), { color: false, width: 100, nowMs: NOW });
  assert.equal(text.includes('\u001b'), false, 'no ANSI codes without colour');
  assert.match(text, /^exai-ws 0\.1\.0: ok$/m);
  assert.match(text, /^ {2}pid +4242$/m);
  assert.match(text, /^ {2}address +ws:\/\/127\.0\.0\.1:8765 .*http:\/\/127\.0\.0\.1:8765\/mcp/m);
  assert.match(text, /^ {2}uptime +2h 2m 5s$/m);
  assert.match(text, /^ {2}started +auto-started; exits after 8h 0m 0s with no session$/m);
  assert.match(text, /^ {2}sessions +2 \(1 attached, 1 detached; 1 ws, 1 http\)$/m);

  const claude = rowOf(text, /^ {2}claude-code 2\.0\.14 /);
  assert.match(claude, /claude-code 2\.0\.14 +1a2b3c4d +ws +attached +1h 2m 3s +2 +12 ms +…/);
  const cwdEnd = claude.slice(claude.lastIndexOf('…') + 1);
  assert.ok(cwdEnd.length >= 10 && LONG_CWD.endsWith(cwdEnd), `the cwd is cut at its start, keeping its end: ${claude}`);
  assert.ok(visibleLength(claude) <= 100, `fits 100 columns: ${visibleLength(claude)}`);
  const vscode = rowOf(text, /^ {2}Visual Studio Code 1\.96\.0 /);
  assert.match(vscode, /9f8e7d6c +http +detached +1m 5s +0 +- +-$/);

  // A server's error is why it does not run: too long for the row, it gets its own lines, whole.
  const nocmd = rowOf(text, /^ {2}nocmd /);
  assert.match(nocmd, /^ {2}nocmd +failed +- +shared +3 +0$/);
  const error = (fixture().servers as { last_error: string }[])[1]?.last_error ?? '';
  const below = plainLines(text).slice(plainLines(text).indexOf(nocmd) + 1);
  const errorLines = below.slice(
    0,
    below.findIndex((line) => !line.startsWith('    ')),
  );
  assert.equal(errorLines.map((line) => line.trim()).join(' '), error, 'the whole error, wrapped under its row');
  for (const line of errorLines) assert.ok(visibleLength(line) <= 100, line);
  assert.match(rowOf(text, /^ {2}memory /), /^ {2}memory +ready +5151 +shared +0 +2$/);
  assert.match(text, /^config problems \(\/home\/someone\/\.config\/exai-ws\/config\.json\)\n {4}broken: command: must not be empty$/m);

  assert.match(rowOf(text, /^ {2}kimi /), /^ {2}kimi +yes +ok +1\/6 +0 +2 +-$/);
  assert.match(rowOf(text, /^ {2}glm /), /^ {2}glm +yes +unreachable +0\/4 +3 +0 +connect ECONNREFUSED 127\.0\.0\.1:9$/);
  assert.match(rowOf(text, /^ {2}openai /), /^ {2}openai +no +- +0\/4 +0 +- +-$/);

  // The reload error is shown whole, wrapped: it is what the user needs to fix the file.
  assert.match(text, /^ {2}last reload 2026-11-30T11:59:30\.000Z \(30s ago\) failed: the running servers stay as they were$/m);
  const reload = text.slice(text.indexOf('last reload')).split('\n\n')[0] ?? '';
  const wrapped = reload
    .split('\n')
    .slice(1)
    .filter((l) => l.startsWith('    '))
    .map((l) => l.trim());
  assert.equal(wrapped.join(' ').slice(0, RELOAD_ERROR.length), RELOAD_ERROR);
  for (const line of reload.split('\n')) assert.ok(visibleLength(line) <= 100, line);

  assert.match(text, /^ {2}log +not writable, retried every second: 7 lines dropped \(last error ENOSPC at 2026-11-30T11:00:00\.000Z\)$/m);
  assert.match(text, /^ {2}metrics +ok: 0 lines dropped$/m);
});

test('the table with colour: red failures, green ok, dim secondary; widths are those of the plain text', () => {
  const plain = renderStatusTable(statusJson(fixture()), { color: false, width: 100, nowMs: NOW });
  const coloured = renderStatusTable(statusJson(fixture()), { color: true, width: 100, nowMs: NOW });
  assert.equal(coloured.replace(ANSI, ''), plain, 'colour adds codes only, never shifts a column');
  assert.ok(coloured.includes('\u001b[31mfailed\u001b[39m'), 'failed in its colour');
  assert.ok(coloured.includes('\u001b[31munreachable\u001b[39m'), 'unreachable in its colour');
  assert.ok(coloured.includes('\u001b[32mready\u001b[39m'), 'ready in its colour');
  assert.ok(coloured.includes('\u001b[33mdetached\u001b[39m'), 'detached in its colour');
  assert.ok(coloured.includes('\u001b[2m1a2b3c4d\u001b[22m'), '1a2b3c4d in its colour');
});

test('a narrow terminal cuts paths and errors, a wide one shows them whole', () => {
  const wide = renderStatusTable(statusJson(fixture()), { color: false, width: 400, nowMs: NOW });
  assert.ok(rowOf(wide, /^ {2}claude-code /).endsWith(LONG_CWD));
  // Wide enough for the whole error: it stays in its column.
  assert.ok(rowOf(wide, /^ {2}nocmd /).endsWith('check the entry in the config file'));
  assert.match(rowOf(wide, /^ {2}memory /), /^ {2}memory +ready +5151 +shared +0 +2 +-$/);
  const narrow = renderStatusTable(statusJson(fixture()), { color: false, width: 80, nowMs: NOW });
  for (const row of [rowOf(narrow, /^ {2}claude-code/), rowOf(narrow, /^ {2}nocmd /), rowOf(narrow, /^ {2}glm /)]) {
    assert.ok(visibleLength(row) <= 80, `${visibleLength(row)}: ${row}`);
  }
});

test('a remote server whose host does not resolve: the cause, ENOTFOUND and the host, is shown whole at any width', () => {
  const report = fixture();
  const cause =
    'could not start: server remote failed to initialize: remote: server connection closed: fetch failed: getaddrinfo ENOTFOUND mcp.example-company.internal (next try in 30 s)';
  (report.servers ?? []).push({
    name: 'remote',
    scope: 'shared',
    scope_key: null,
    state: 'failed',
    pid: null,
    restarts: 0,
    retries: 4,
    uptime_s: null,
    sessions: 0,
    inflight: 0,
    last_error: cause,
    asks_client: [],
  });
  for (const width of [60, 80, 120]) {
    const lines = plainLines(renderStatusTable(statusJson(report), { color: false, width, nowMs: NOW }));
    const row = lines.findIndex((line) => /^ {2}remote +failed/.test(line));
    assert.ok(row >= 0, `the remote row at width ${width}`);
    const under = lines.slice(row + 1);
    const continued = under.slice(
      0,
      Math.max(
        0,
        under.findIndex((line) => !line.startsWith('    ')),
      ),
    );
    const shown = [lines[row] ?? '', ...continued];
    assert.ok(shown.join(' ').replace(/\s+/g, ' ').includes(cause), `width ${width}: the whole cause in ${JSON.stringify(shown)}`);
    for (const line of shown) assert.ok(visibleLength(line) <= width, `fits ${width} columns: ${line}`);
  }
});

test('a config file not applied at start: its error with line and column, whole, and what happens next', () => {
  const report = fixture();
  const error =
    "the config file /home/someone/.config/exai-ws/config.json is not valid JSON: line 4, column 4: a trailing comma: JSON allows no comma before '}'";
  Object.assign(report.config ?? {}, { error, last_reload: null });
  const json = statusJson(report);
  assert.equal(json.config.error, error);
  const text = renderStatusTable(json, { color: false, width: 80, nowMs: NOW });
  const section = text.slice(text.search(/\nconfig {2,}\S/) + 1).split('\n\n')[0] ?? '';
  assert.match(section, /^ {2}not applied: no hosted servers run from it until it is fixed; it is applied as\n {2}soon as it is saved$/m);
  assert.ok(section.replace(/\s+/g, ' ').includes(error), section);
  for (const line of section.split('\n')) assert.ok(visibleLength(line) <= 80, line);
  // Not watched: the next step is exai-ws reload.
  Object.assign(report.config ?? {}, { watching: null });
  assert.match(renderStatusTable(statusJson(report), { color: false, width: 200, nowMs: NOW }), /not applied: .*; then run exai-ws reload/);
  // A failed live reload says it in its own lines (the running servers stay): not twice.
  Object.assign(report.config ?? {}, { last_reload: { at: '2026-11-30T11:59:30.000Z', error } });
  const reloaded = renderStatusTable(statusJson(report), { color: false, width: 200, nowMs: NOW });
  assert.doesNotMatch(reloaded, /not applied/);
  assert.match(reloaded, /failed: the running servers stay as they were/);
  // A daemon that does not report the field: null, nothing shown.
  delete (report.config as unknown as Record<string, unknown>).error;
  assert.equal(statusJson(report).config.error, null);
});

test('text from clients cannot drive the terminal: escapes and line breaks are neutralised', () => {
  const report = fixture();
  const sessions = report.sessions.list ?? [];
  const first = sessions[0];
  assert.ok(first);
  first.client = 'evil\u001b[2J\u001b]0;title\u0007\nname';
  first.cwd = '/tmp/\u202eexe.txt';
  for (const color of [false, true]) {
    const text = renderStatusTable(statusJson(report), { color, width: 100, nowMs: NOW });
    const row = rowOf(text, /evil/);
    assert.equal(row.replace(ANSI, '').includes('\u001b'), false, row);
    assert.match(row.replace(ANSI, ''), /evil\?\[2J\?\]0;title\? name/);
    assert.match(row, /\?exe\.txt$/);
    assert.equal(row.includes('\u202e'), false);
  }
});

test('colour only on a terminal with NO_COLOR unset; FORCE_COLOR forces either way', () => {
  assert.equal(colorWanted({ isTTY: false }, {}), false);
  assert.equal(colorWanted({ isTTY: true }, {}), true);
  assert.equal(colorWanted({ isTTY: true }, { NO_COLOR: '1' }), false);
  assert.equal(colorWanted({ isTTY: true }, { NO_COLOR: '' }), true, 'an empty NO_COLOR does not count');
  assert.equal(colorWanted({ isTTY: true }, { TERM: 'dumb' }), false);
  assert.equal(colorWanted({ isTTY: false }, { FORCE_COLOR: '1' }), true);
  assert.equal(colorWanted({ isTTY: false }, { FORCE_COLOR: '1', NO_COLOR: '1' }), true);
  assert.equal(colorWanted({ isTTY: true }, { FORCE_COLOR: '0' }), false);
  assert.equal(columnsOf({ isTTY: false, columns: 300 }), 100);
  assert.equal(columnsOf({ isTTY: true, columns: 132 }), 132);
});

test('text helpers: truncation from either end, wrapping, durations and latencies', () => {
  assert.equal(truncate('abcdef', 4), 'abc…');
  assert.equal(truncate('abcdef', 4, 'start'), '…def');
  assert.equal(truncate('abc', 3), 'abc');
  assert.equal(truncate('ééééé', 3), 'éé…');
  assert.deepEqual(wrap('one two three', 7), ['one two', 'three']);
  assert.deepEqual(wrap('abcdefghij', 4), ['abcd', 'efgh', 'ij']);
  assert.equal(printable('a\r\nb\tc'), 'a b?c');
  assert.equal(formatDuration(45), '45s');
  assert.equal(formatDuration(185), '3m 5s');
  assert.equal(formatDuration(7207), '2h 0m 7s');
  assert.equal(formatDuration(3 * 86400 + 4 * 3600 + 600), '3d 4h 10m');
  assert.equal(formatMs(null), '-');
  assert.equal(formatMs(4.21), '4.2 ms');
  assert.equal(formatMs(37.4), '37 ms');
  assert.equal(formatMs(1250), '1.25 s');
});

test('a session latency ring: p99 of the last 1000 answers, null before any', () => {
  const ring = new LatencyRing();
  assert.equal(ring.p99(), null);
  assert.equal(ring.total, 0);
  // The store grows as samples come (16, 32, ...): none is lost on the way.
  const growing = new LatencyRing();
  for (let i = 100; i >= 1; i--) growing.add(i);
  assert.equal(growing.p99(), 99);
  growing.add(1000);
  assert.equal(growing.p99(), 100);
  for (let i = 1; i <= 1000; i++) ring.add(i);
  assert.equal(ring.p99(), 990);
  // 500 slow answers replace the 500 oldest (1..500): the kept samples are 501..1000 and 500 x 5000.
  for (let i = 0; i < 500; i++) ring.add(5000);
  assert.equal(ring.total, 1500);
  assert.equal(ring.p99(), 5000);
  // A full window of fast answers pushes the slow ones out.
  for (let i = 0; i < SESSION_LATENCY_SAMPLES; i++) ring.add(0.5);
  assert.equal(ring.p99(), 0.5);
  const small = new LatencyRing(4);
  for (const ms of [1.23456, 2, 3, 400.0004]) small.add(ms);
  assert.equal(small.p99(), 400);
  assert.throws(() => new LatencyRing(0), TypeError);
});

test('the table: warnings whole at any width, and the settings with where each came from', () => {
  for (const width of [60, 200]) {
    const text = renderStatusTable(statusJson(fixture()), { color: false, width, nowMs: NOW }).replace(ANSI, '');
    const flat = text.replace(/\n {4}/g, ' ');
    assert.match(flat, /warnings\n {2}! the client that started this daemon passed KIMI_API_KEY/);
    assert.ok(flat.includes('exai-ws settings set KIMI_API_KEY=..., then exai-ws restart'), `the warning is whole at width ${width}`);
    assert.match(text, /settings {4}\/home\/u\/\.config\/exai-ws\/daemon\.env/);
    assert.match(text, /EXAI_WS_MAX_SESSIONS=64 {2}\(daemon\.env\)/);
    assert.match(text, /LOG_LEVEL=debug {2}\(the daemon's environment\)/);
    assert.match(text, /line 4 not taken: EXAI_WS_BACKPRESSURE=lots/);
    assert.ok(!text.includes('sk-'), 'no key');
  }
});
