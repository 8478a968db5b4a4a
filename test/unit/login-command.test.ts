/**
 * `exai-ws login` and `logout` (src/commands/login.ts) against every answer the daemon's control
 * routes can give (the contract of issue 26), with the proven request replaced by a fake: what
 * the user sees on stdout and stderr, the exit code, whether a browser is started, and what is
 * asked of the daemon in what order. No daemon, no port.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ExitCode } from '../../src/commands/exit-codes.js';
import { LOGIN_WAIT_TIMEOUT_MS, runLoginCommand, runLogoutCommand, type LoginAskFn, type LoginPath } from '../../src/commands/login.js';
import type { ProvenReply } from '../../src/local/health-client.js';

const dir = mkdtempSync(join(tmpdir(), 'exai-ws-login-'));
after(() => rmSync(dir, { recursive: true, force: true }));
// The daemon's address as the CLI finds it with no address card: the settings file's port.
const SETTINGS = join(dir, 'daemon.env');
writeFileSync(SETTINGS, 'EXAI_WS_PORT=41999\n', { mode: 0o600 });

const TOKEN = 'daemon-token-for-the-proof';
const AUTH_URL = 'https://auth.example.com/authorize?client_id=abc&state=s1&code_challenge=xyz';

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    EXAI_WS_HOME: join(dir, 'home'),
    EXAI_WS_SETTINGS: SETTINGS,
    EXAI_WS_TOKEN: TOKEN,
    ...extra,
  };
}

interface Asked {
  path: LoginPath;
  body: unknown;
  timeoutMs: number;
  token: string | null;
}

/** A fake daemon: answers each path from `answers` in turn, recording what was asked. */
function fakeDaemon(answers: Partial<Record<LoginPath, ProvenReply>>) {
  const asked: Asked[] = [];
  const ask: LoginAskFn = (target, path, body, timeoutMs) => {
    asked.push({ path, body, timeoutMs, token: target.token });
    const answer = answers[path];
    if (answer === undefined) throw new Error(`the fake daemon was not meant to be asked ${path}`);
    return Promise.resolve(answer);
  };
  return { ask, asked };
}

function reply(status: number, body: unknown): ProvenReply {
  return { ok: true, status, body };
}

async function login(server: string, print: boolean, answers: Partial<Record<LoginPath, ProvenReply>>, extraEnv = {}) {
  let out = '';
  let err = '';
  const opened: string[] = [];
  const daemon = fakeDaemon(answers);
  const code = await runLoginCommand(
    { server, print },
    { stdout: { write: (t: string) => (out += t) }, stderr: { write: (t: string) => (err += t) }, env: env(extraEnv) },
    {
      ask: daemon.ask,
      openUrl: (url) => {
        opened.push(url);
        return true;
      },
    },
  );
  return { code, out, err, opened, asked: daemon.asked };
}

async function logout(server: string, answers: Partial<Record<LoginPath, ProvenReply>>) {
  let out = '';
  let err = '';
  const daemon = fakeDaemon(answers);
  const code = await runLogoutCommand(
    { server },
    { stdout: { write: (t: string) => (out += t) }, stderr: { write: (t: string) => (err += t) }, env: env() },
    { ask: daemon.ask },
  );
  return { code, out, err, asked: daemon.asked };
}

const STARTED = reply(200, { server: 'linear', url: AUTH_URL, state: 's1' });

test('login: the URL alone on stdout, the browser opened, then the wait; exit 0 with the issuer on stderr', async () => {
  const expires = new Date(Date.now() + 52 * 60_000 + 10_000).toISOString();
  const run = await login('linear', false, {
    '/control/login': STARTED,
    '/control/login-wait': reply(200, { ok: true, server: 'linear', issuer: 'https://auth.example.com', expires_at: expires }),
  });
  assert.equal(run.code, ExitCode.OK);
  assert.equal(run.out, `${AUTH_URL}\n`, 'stdout is the URL, one line, nothing else');
  assert.deepEqual(run.opened, [AUTH_URL]);
  assert.match(run.err, /opened the URL above in your browser to log in to linear; waiting up to 10 min/);
  assert.match(run.err, /^logged in to linear \(issuer https:\/\/auth\.example\.com, token expires in 52 min\)$/m);
  assert.deepEqual(
    run.asked.map((a) => [a.path, a.body]),
    [
      ['/control/login', { server: 'linear' }],
      ['/control/login-wait', { state: 's1' }],
    ],
  );
  assert.ok(
    run.asked.every((a) => a.token === TOKEN),
    'each request proves with the token in use',
  );
  const wait = run.asked[1]!;
  assert.ok(wait.timeoutMs > 10 * 60_000, 'the wait outlasts the daemon’s own 10 minutes');
  assert.equal(wait.timeoutMs, LOGIN_WAIT_TIMEOUT_MS);
});

test('login --print starts no browser and says to open the URL', async () => {
  const run = await login('linear', true, {
    '/control/login': STARTED,
    '/control/login-wait': reply(200, { ok: true, server: 'linear', issuer: null, expires_at: null }),
  });
  assert.equal(run.code, ExitCode.OK);
  assert.deepEqual(run.opened, []);
  assert.equal(run.out, `${AUTH_URL}\n`);
  assert.match(run.err, /open the URL above in a browser to log in to linear/);
  assert.match(run.err, /^logged in to linear$/m, 'no issuer or expiry named when the daemon gave none');
});

test('login to a server that needs none: exit 0, nothing on stdout, no wait', async () => {
  const run = await login('memoryless', false, { '/control/login': reply(200, { server: 'memoryless', ok: true, already: true }) });
  assert.equal(run.code, ExitCode.OK);
  assert.equal(run.out, '');
  assert.deepEqual(run.opened, []);
  assert.equal(run.err, 'exai-ws login: memoryless needs no login: it answers without one\n');
  assert.equal(run.asked.length, 1);
});

test('login refused at the start: the daemon’s reason, exit 1, no URL, no wait', async () => {
  const cases: [ProvenReply, string][] = [
    [reply(404, { error: "no url server named 'nope' in the config" }), "exai-ws login: nope: no url server named 'nope' in the config\n"],
    [
      reply(409, { error: 'the authorization server refused the registration (invalid_client_metadata)' }),
      'exai-ws login: nope: the authorization server refused the registration (invalid_client_metadata)\n',
    ],
    [
      reply(503, { error: 'starting' }),
      'exai-ws login: nope: the daemon is not running servers now (starting or shutting down): starting\n',
    ],
    [reply(500, null), 'exai-ws login: nope: the login could not start (HTTP 500)\n'],
    [
      // A daemon older than logins: its generic 404, with the hint that lists its routes.
      reply(404, { error: 'not found', hint: 'WebSocket on / or /ws, ...' }),
      'exai-ws login: nope: the daemon is older than this exai-ws and cannot log in to servers: run `exai-ws restart`\n',
    ],
    [reply(200, { server: 'nope' }), 'exai-ws login: nope: the daemon gave no authorization URL\n'],
  ];
  for (const [answer, expected] of cases) {
    const run = await login('nope', false, { '/control/login': answer });
    assert.equal(run.code, ExitCode.FAILURE, expected);
    assert.equal(run.err, expected);
    assert.equal(run.out, '');
    assert.deepEqual(run.opened, []);
    assert.equal(run.asked.length, 1);
  }
});

test('login that fails after the browser: the reason from the wait, exit 1', async () => {
  const cases: [ProvenReply, RegExp][] = [
    [
      reply(200, { ok: false, server: 'linear', error: 'the authorization server answered access_denied' }),
      /linear: the authorization server answered access_denied$/m,
    ],
    [reply(404, { error: 'unknown or expired login' }), /linear: unknown or expired login$/m],
    [{ ok: false, failure: 'unreachable', detail: 'timeout' }, /linear: the login was not completed in time$/m],
    [
      { ok: false, failure: 'unreachable', detail: 'ECONNRESET' },
      /linear: no daemon answers on 127\.0\.0\.1:41999 \(start one with `exai-ws daemon`\)$/m,
    ],
  ];
  for (const [answer, expected] of cases) {
    const run = await login('linear', true, { '/control/login': STARTED, '/control/login-wait': answer });
    assert.equal(run.code, ExitCode.FAILURE);
    assert.equal(run.out, `${AUTH_URL}\n`, 'the URL was printed before the wait');
    assert.match(run.err, /^exai-ws login: /m);
    assert.match(run.err, expected);
    assert.doesNotMatch(run.err, /logged in to/);
  }
});

test('login with no daemon, or one that does not prove itself: one line, exit 1, nothing asked past the proof', async () => {
  const down = await login('linear', false, { '/control/login': { ok: false, failure: 'unreachable', detail: 'ECONNREFUSED' } });
  assert.equal(down.code, ExitCode.FAILURE);
  assert.equal(down.err, 'exai-ws login: linear: no daemon answers on 127.0.0.1:41999 (start one with `exai-ws daemon`)\n');
  const stranger = await login('linear', false, {
    '/control/login': { ok: false, failure: 'unproven', detail: 'its proof does not match the token' },
  });
  assert.equal(stranger.code, ExitCode.FAILURE);
  assert.match(stranger.err, /^exai-ws login: linear: something else holds 127\.0\.0\.1:41999: it did not prove/);
  const refused = await login('linear', false, { '/control/login': { ok: false, failure: 'refused', detail: 'HTTP 401' } });
  assert.match(refused.err, /refused the proof \(is EXAI_WS_HOME the daemon's\?\)/);
  for (const run of [down, stranger, refused]) {
    assert.equal(run.out, '');
    assert.deepEqual(run.opened, []);
  }
});

test('login with no token at all asks nothing and says where the token was looked for', async () => {
  const run = await login('linear', false, {}, { EXAI_WS_TOKEN: '' });
  assert.equal(run.code, ExitCode.FAILURE);
  assert.equal(run.asked.length, 0);
  assert.match(
    run.err,
    /^exai-ws login: linear: no token \(no valid token file at .*token, EXAI_WS_TOKEN unset\): is the daemon running\?\n$/,
  );
});

test('a name or reason with control characters is printed as one safe line', async () => {
  const run = await login('bad\u001b[2Jname', false, { '/control/login': reply(409, { error: 'line one\nline two \u001b[31m' }) });
  assert.equal(run.err, 'exai-ws login: bad?[2Jname: line one line two ?[31m\n');
});

test('logout: `logged out of NAME` on stdout, exit 0; a server with no login held says so', async () => {
  const forgot = await logout('linear', { '/control/logout': reply(200, { server: 'linear', forgot: true }) });
  assert.equal(forgot.code, ExitCode.OK);
  assert.equal(forgot.out, 'logged out of linear\n');
  assert.equal(forgot.err, '');
  assert.deepEqual(forgot.asked[0]?.body, { server: 'linear' });
  const none = await logout('linear', { '/control/logout': reply(200, { server: 'linear', forgot: false }) });
  assert.equal(none.code, ExitCode.OK);
  assert.equal(none.out, 'logged out of linear (no login was held)\n');
});

test('logout refused: the reason, exit 1', async () => {
  const unknown = await logout('nope', { '/control/logout': reply(404, { error: "no url server named 'nope'" }) });
  assert.equal(unknown.code, ExitCode.FAILURE);
  assert.equal(unknown.out, '');
  assert.equal(unknown.err, "exai-ws logout: nope: no url server named 'nope'\n");
  const down = await logout('linear', { '/control/logout': { ok: false, failure: 'unreachable', detail: 'ECONNREFUSED' } });
  assert.equal(down.code, ExitCode.FAILURE);
  assert.match(down.err, /^exai-ws logout: linear: no daemon answers on/);
});
