/**
 * How `exai-ws status` and the status page show a `url` server's OAuth login (issue 26): each
 * state in words with what to do, `servers[].login` in `--json`, and never a token (there is
 * none in the report; a token-like value put there by mistake would still only show where the
 * report's own fields are shown, so the test checks the words, not the absence of a secret).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runInNewContext } from 'node:vm';
import { statusJson } from '../../src/commands/status-view.js';
import { renderStatusTable } from '../../src/commands/status-table.js';
import { loginText, type StatusLogin } from '../../src/commands/status-login.js';
import { statusDocument } from '../../src/daemon/web/status-page-document.js';
import type { HealthReport, LoginReport } from '../../src/local/health.js';
import { healthReport } from '../fixtures/health-report.js';

const NOW = Date.parse('2026-12-07T10:00:00Z');
const IN_52_MIN = new Date(NOW + 52 * 60_000).toISOString();

function server(name: string, login?: LoginReport) {
  return {
    name,
    scope: 'shared' as const,
    scope_key: null,
    state: 'ready' as const,
    pid: null,
    restarts: 0,
    retries: 0,
    uptime_s: 10,
    sessions: 1,
    inflight: 0,
    last_error: null,
    asks_client: [],
    ...(login ? { login } : {}),
  };
}

function login(state: LoginReport['state'], extra: Partial<LoginReport> = {}): LoginReport {
  return { state, issuer: null, expires_at: null, scope: null, error: null, ...extra };
}

function report(servers: ReturnType<typeof server>[]): HealthReport {
  return healthReport({ uptime_s: 3600, servers });
}

const SERVERS = [
  server('memory'),
  server('linear', login('logged_in', { issuer: 'https://mcp.linear.app', expires_at: IN_52_MIN, scope: 'read write' })),
  server('notion', login('needs_login')),
  server('github', login('refresh_failing', { issuer: 'https://github.com', error: 'the token endpoint answered invalid_grant' })),
  server('jira', login('refused', { error: 'the server refused the scopes granted after 3 logins (insufficient_scope)' })),
  server('quiet', login('none')),
];

test('status --json carries each url server’s login, null for the others and for a malformed one', () => {
  const json = statusJson(report([...SERVERS, server('odd', { state: 'sleeping' } as unknown as LoginReport)]));
  const byName = new Map(json.servers.map((s) => [s.name, s.login]));
  assert.equal(byName.get('memory'), null, 'a stdio server has no login');
  assert.deepEqual(byName.get('linear'), {
    state: 'logged_in',
    issuer: 'https://mcp.linear.app',
    expires_at: IN_52_MIN,
    scope: 'read write',
    error: null,
  });
  assert.equal(byName.get('notion')?.state, 'needs_login');
  assert.equal(byName.get('github')?.error, 'the token endpoint answered invalid_grant');
  assert.equal(byName.get('odd'), null, 'a state this CLI does not know is not guessed at');
});

test('status shows a logins section: each state in words, with the command to run', () => {
  const text = renderStatusTable(statusJson(report(SERVERS)), { color: false, width: 200, nowMs: NOW });
  const section = text.split('\n\n').find((part) => part.startsWith('logins'));
  assert.ok(section, `a logins section in:\n${text}`);
  const lines = section.split('\n');
  assert.equal(lines[0], 'logins');
  const line = (name: string) => lines.find((l) => l.trimStart().startsWith(`${name} `)) ?? '';
  assert.match(line('linear'), /logged in \(issuer https:\/\/mcp\.linear\.app, expires in 52m 0s\)$/);
  assert.match(line('notion'), /needs login: run `exai-ws login notion`$/);
  assert.match(line('github'), /refresh failing: the token endpoint answered invalid_grant; run `exai-ws login github` if it goes on$/);
  assert.match(line('jira'), /refused: the server refused the scopes granted after 3 logins \(insufficient_scope\)$/);
  assert.match(line('quiet'), /no login asked for$/);
  assert.equal(line('memory'), '', 'a stdio server has no line');
});

test('no logins section when no server reports one (an older daemon, or no url server)', () => {
  const text = renderStatusTable(statusJson(report([server('memory')])), { color: false, width: 100, nowMs: NOW });
  assert.doesNotMatch(text, /^logins$/m);
  assert.doesNotMatch(text, /needs login|logged in/);
});

test('a long reason is wrapped under its server, never cut', () => {
  const error = 'the authorization server at https://auth.example.com answered 500 to the refresh: ' + 'x'.repeat(80) + ' end';
  const text = renderStatusTable(statusJson(report([server('remote', login('refresh_failing', { error }))])), {
    color: false,
    width: 60,
    nowMs: NOW,
  });
  const section = text.split('\n\n').find((part) => part.startsWith('logins')) ?? '';
  assert.ok(
    section.split('\n').every((l) => l.length <= 60),
    section,
  );
  assert.match(section.replace(/\n\s+/g, ' '), / end; run `exai-ws login remote` if it goes on/);
});

test('a login that expired is said to have, and one with no issuer or expiry is just logged in', () => {
  const past = new Date(NOW - 3 * 60_000).toISOString();
  assert.equal(loginText('x', login('logged_in', { expires_at: past }), NOW), 'logged in (expired 3m 0s ago)');
  assert.equal(loginText('x', login('logged_in'), NOW), 'logged in');
  assert.equal(
    loginText('x', login('needs_login', { error: 'more scopes needed: admin' }), NOW),
    'needs login: run `exai-ws login x` (more scopes needed: admin)',
  );
});

/** The page's own loginCell (browser code held as text), run here with its `duration`. */
function pageLoginCell(): (s: { name: string; login?: unknown }) => { text: string; cls: string; title?: string } | null {
  const doc = statusDocument('nonce');
  const slice = (start: string, end: string) => {
    const from = doc.indexOf(start);
    assert.ok(from >= 0, `the page has ${start}`);
    return doc.slice(from, doc.indexOf(end, from));
  };
  const source = slice('function duration(', '\nfunction time(') + slice('function loginCell(', '\nfunction renderServers(');
  // Evaluated in a context of its own, as the browser would: it sees nothing of this process.
  return runInNewContext(`${source}\nloginCell;`) as ReturnType<typeof pageLoginCell>;
}

test('the status page says the same per server, in its login column', () => {
  const doc = statusDocument('nonce');
  assert.match(doc, /fillTable\('servers', \['server', 'state', 'login',/);
  const cell = pageLoginCell();
  const json = statusJson(report(SERVERS));
  const expires = new Date(Date.now() + 52 * 60_000 + 20_000).toISOString();
  const cases: [string, StatusLogin | null, RegExp, string][] = [
    [
      'linear',
      { ...login('logged_in'), issuer: 'https://mcp.linear.app', expires_at: expires, scope: 'read' },
      /^logged in \(issuer https:\/\/mcp\.linear\.app, expires in 52m \d+s\)$/,
      'ok',
    ],
    ['notion', json.servers[2]!.login, /^needs login: run exai-ws login notion$/, 'warn'],
    [
      'github',
      json.servers[3]!.login,
      /^refresh failing: the token endpoint answered invalid_grant; run exai-ws login github if it goes on$/,
      'err bad',
    ],
    ['jira', json.servers[4]!.login, /^refused: the server refused the scopes granted after 3 logins/, 'err bad'],
    ['quiet', json.servers[5]!.login, /^no login asked for$/, 'muted'],
  ];
  for (const [name, state, text, cls] of cases) {
    const shown = cell({ name, login: state });
    assert.ok(shown, name);
    assert.match(shown.text, text);
    assert.equal(shown.cls, cls);
  }
  assert.equal(cell({ name: 'linear', login: cases[0]![1] })?.title, 'scopes: read');
  assert.equal(cell({ name: 'memory' }), null, 'a stdio server: an empty cell');
});
