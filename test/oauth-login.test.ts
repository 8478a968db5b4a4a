/**
 * OAuth login to a `url` server, end to end (issue 26), against a local authorization server
 * and the MCP server it protects (test/fixtures/oauth-server.ts), with the real daemon, real
 * shims under the v1 SDK client and the v2 SDK client over the daemon's `/mcp`:
 *
 * 1. `exai-ws login NAME --print` prints the authorization URL; following it headlessly (the
 *    server approves at once and redirects to the daemon's `/oauth/callback`) logs in, and the
 *    command exits 0;
 * 2. two windows and an HTTP client use the server with that one login; when the access token
 *    expires, calls from both windows at once cause one refresh at the authorization server;
 * 3. after `exai-ws logout NAME` a window that declared URL-mode elicitation gets -32042 with the
 *    login URL (following it logs in again, and the window is told the elicitation completed),
 *    and a window that did not gets a tool error naming `exai-ws login NAME`; neither waits;
 * 4. a restarted daemon (on another port) keeps the login: its expired token is refreshed;
 * 5. no token the authorization server issued shows in the log, `/health`, `/metrics`,
 *    `status --json`, the status page or its feed, or the daemon's argv; `$home/oauth` is the
 *    user's alone.
 *
 * The steps run in order on one daemon (each stands on the one before).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client as ModernClient, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { ElicitationCompleteNotificationSchema, McpError } from '@modelcontextprotocol/sdk/types.js';

import {
  CLI,
  Cleanup,
  connectShim,
  runCli,
  spawnLines,
  startDaemon,
  textOf,
  waitFor,
  within,
  type DaemonHandle,
  type RawShim,
  type ShimClient,
} from './helpers.js';
import { provenRequest } from '../src/local/health-client.js';
import { cmdline, serverReport, startHostingDaemon } from './fixtures/hosted-servers.js';
import { TOOLS_SCOPE, WHOAMI_TEXT, startOAuthServer, type OAuthFixture } from './fixtures/oauth-server.js';

const NAME = 'vault';
const WHOAMI = `${NAME}__whoami`;
const SLOW = `${NAME}__slow`;
/** Lists never wait for a server that is starting (or waiting for a login). */
const ENV = { EXAI_WS_LIST_WAIT_MS: '0' };
/** Access tokens live this long: short, so that one expires during the test. */
const ACCESS_TTL_S = 4;
/** "At once": how long a call that needs a login may take to say so (a bound for a loaded machine, not a wait). */
const TELLS_AT_ONCE_MS = 10_000;

/**
 * Follows an authorization URL as a browser would, headlessly: the authorization server approves
 * at once and redirects to the daemon's callback, which is fetched. Returns that page.
 */
async function approve(url: string, daemon: Pick<DaemonHandle, 'port'>): Promise<{ status: number; body: string }> {
  const approved = await fetch(url, { redirect: 'manual' });
  const location = approved.headers.get('location') ?? '';
  assert.equal(approved.status, 302, `the authorization server approves at once: ${approved.status} ${await approved.text()}`);
  const callback = `http://127.0.0.1:${daemon.port}/oauth/callback?`;
  assert.ok(location.startsWith(callback), `redirected to the daemon's callback ${callback}, got ${location}`);
  assert.equal(new URL(location).searchParams.get('error'), null, `the authorization server refused: ${location}`);
  const page = await fetch(location, { redirect: 'manual' });
  return { status: page.status, body: await page.text() };
}

/** The v2 SDK client over the daemon's Streamable HTTP endpoint, with its token. */
async function connectModernHttp(cleanup: Cleanup, daemon: Pick<DaemonHandle, 'port' | 'token'>): Promise<ModernClient> {
  const transport = new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${daemon.port}/mcp`), {
    requestInit: { headers: { authorization: `Bearer ${daemon.token}` } },
  });
  const client = new ModernClient({ name: 'oauth-http', version: '1.0.0' }, { capabilities: {} });
  cleanup.add(() => client.close());
  await client.connect(transport);
  return client;
}

/** Every file under `dir` (recursively), by path. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(path) : [path];
  });
}

/** The first event of the status page's feed (`/events`), with the daemon's token. */
async function firstFeedEvent(daemon: DaemonHandle): Promise<string> {
  const controller = new AbortController();
  try {
    const feed = await fetch(`http://127.0.0.1:${daemon.port}/events`, {
      headers: { authorization: `Bearer ${daemon.token}` },
      signal: controller.signal,
    });
    assert.equal(feed.status, 200);
    const reader = (feed.body as ReadableStream<Uint8Array>).getReader();
    let text = '';
    while (!/^data: .*\n/m.test(text)) {
      const chunk = await within(reader.read(), 5_000, 'the first event of /events');
      if (chunk.done) break;
      text += Buffer.from(chunk.value).toString('utf8');
    }
    const data = /^data: (.*)$/m.exec(text)?.[1];
    assert.ok(data, `no event in ${text}`);
    return data;
  } finally {
    controller.abort();
  }
}

describe('the OAuth fixture itself (a client by hand)', () => {
  test('401 with the challenge; registration, PKCE authorization, code and refresh grants; rotated refresh tokens; tools with the token', async () => {
    const cleanup = new Cleanup();
    try {
      const as = await startOAuthServer(cleanup);
      const unauthorized = await fetch(as.mcpUrl, { method: 'POST', body: '{}' });
      assert.equal(unauthorized.status, 401);
      const challenge = unauthorized.headers.get('www-authenticate') ?? '';
      const metadataUrl = /resource_metadata="([^"]+)"/.exec(challenge)?.[1] ?? '';
      assert.match(challenge, new RegExp(`^Bearer .*scope="${TOOLS_SCOPE}"`));
      const prm = (await fetch(metadataUrl).then((r) => r.json())) as { resource: string; authorization_servers: string[] };
      assert.deepEqual({ resource: prm.resource, servers: prm.authorization_servers }, { resource: as.mcpUrl, servers: [as.issuer] });
      const meta = (await fetch(`${as.issuer}/.well-known/oauth-authorization-server`).then((r) => r.json())) as Record<string, string>;
      assert.equal(meta.issuer, as.issuer);

      const redirectUri = 'http://127.0.0.1:1/cb';
      const registered = await fetch(meta.registration_endpoint ?? '', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ redirect_uris: [redirectUri], token_endpoint_auth_method: 'client_secret_basic' }),
      });
      assert.equal(registered.status, 201);
      const client = (await registered.json()) as { client_id: string; client_secret: string };
      const basic = `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`;
      const verifier = 'v'.repeat(50);
      const authorize = new URL(meta.authorization_endpoint ?? '');
      const params = {
        response_type: 'code',
        client_id: client.client_id,
        redirect_uri: redirectUri,
        state: 'st',
        code_challenge: createHash('sha256').update(verifier).digest('base64url'),
        code_challenge_method: 'S256',
        resource: as.mcpUrl,
      };
      for (const [k, v] of Object.entries(params)) authorize.searchParams.set(k, v);
      const approved = await fetch(authorize, { redirect: 'manual' });
      assert.equal(approved.status, 302);
      const back = new URL(approved.headers.get('location') ?? '');
      assert.deepEqual([back.searchParams.get('state'), back.searchParams.get('iss')], ['st', as.issuer]);
      const grant = (body: Record<string, string>, auth = basic) =>
        fetch(meta.token_endpoint ?? '', {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: auth },
          body: new URLSearchParams(body).toString(),
        });
      const code = back.searchParams.get('code') ?? '';
      assert.equal(
        (await grant({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: 'wrong' })).status,
        400,
      );
      const tokens = (await grant({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier }).then(
        (r) => r.json(),
      )) as { access_token?: string; refresh_token: string };
      assert.equal(tokens.access_token, undefined, 'a code works once, even after a failed verification');
      assert.equal(as.counts.codeGrants, 0);

      // A fresh authorization, this time with the right verifier.
      const again = new URL((await fetch(authorize, { redirect: 'manual' })).headers.get('location') ?? '');
      const good = (await grant({
        grant_type: 'authorization_code',
        code: again.searchParams.get('code') ?? '',
        redirect_uri: redirectUri,
        code_verifier: verifier,
      }).then((r) => r.json())) as { access_token: string; refresh_token: string; expires_in: number };
      assert.equal(good.expires_in, 3600);
      const refreshed = (await grant({ grant_type: 'refresh_token', refresh_token: good.refresh_token }).then((r) => r.json())) as {
        access_token: string;
      };
      assert.ok(refreshed.access_token);
      assert.equal((await grant({ grant_type: 'refresh_token', refresh_token: good.refresh_token })).status, 400, 'rotated');
      assert.equal((await grant({ grant_type: 'refresh_token', refresh_token: good.refresh_token }, 'Basic eDp5')).status, 401);
      assert.deepEqual([as.counts.refreshes, as.counts.refreshFailures], [3, 2]);

      const transport = new StreamableHTTPClientTransport(new URL(as.mcpUrl), {
        requestInit: { headers: { authorization: `Bearer ${refreshed.access_token}` } },
      });
      const mcp = new ModernClient({ name: 'fixture-check', version: '1.0.0' }, { capabilities: {} });
      cleanup.add(() => mcp.close());
      await mcp.connect(transport);
      assert.equal(textOf(await mcp.callTool({ name: 'whoami', arguments: {} })), WHOAMI_TEXT);
      assert.equal(textOf(await mcp.callTool({ name: 'slow', arguments: { ms: 5 } })), 'slept 5');
      assert.equal(as.secrets().length, 5, 'two access, two refresh tokens and a client secret');
    } finally {
      await cleanup.run();
    }
  });
});

describe('OAuth login to a url server, end to end', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());
  let as: OAuthFixture;
  let daemon: DaemonHandle;
  /** Everything the daemon and the CLI printed, besides the files: for the secrecy grep. */
  const printed: string[] = [];
  let elicits: ShimClient;
  let plain: ShimClient;
  let http: ModernClient;

  before(async () => {
    as = await startOAuthServer(cleanup, { accessTokenTtlS: ACCESS_TTL_S });
    daemon = await startHostingDaemon(cleanup, () => ({ [NAME]: { url: as.mcpUrl } }), ENV);
  });

  test('`exai-ws login NAME --print` prints the URL; following it logs in, and the command exits 0', async () => {
    let login: RawShim | undefined;
    try {
      login = spawnLines(cleanup, [CLI, 'login', NAME, '--print'], daemon.clientEnv);
      const url = await login.nextLine(15_000);
      assert.ok(url.startsWith(`${as.issuer}/authorize?`), `one line, the authorization URL: ${url}`);
      const query = new URL(url).searchParams;
      assert.equal(query.get('resource'), as.mcpUrl, 'the resource indicator names the server');
      assert.equal(query.get('code_challenge_method'), 'S256');
      assert.equal(query.get('redirect_uri'), `http://127.0.0.1:${daemon.port}/oauth/callback`);

      const page = await approve(url, daemon);
      assert.equal(page.status, 200, page.body);
      assert.match(page.body, new RegExp(`Logged in to ${NAME}`));
      assert.equal(await within(login.exited, 15_000, 'exai-ws login to exit'), 0, login.stderr());
      assert.match(login.stderr(), new RegExp(`logged in to ${NAME} \\(issuer `));
    } finally {
      printed.push(login?.stderr() ?? '');
    }
    assert.deepEqual(
      { registrations: as.counts.registrations, authorizations: as.counts.authorizations, codeGrants: as.counts.codeGrants },
      { registrations: 1, authorizations: 1, codeGrants: 1 },
      `refusals: ${as.refusals.join('; ')}`,
    );
    assert.deepEqual(as.registrations[0]?.redirectUris, [`http://127.0.0.1:${daemon.port}/oauth/callback`]);
    assert.ok(as.authorizations[0]?.scope?.split(' ').includes(TOOLS_SCOPE), `the challenge's scope asked: ${as.authorizations[0]?.scope}`);
    const report = await serverReport(daemon, NAME);
    assert.equal(report.login?.state, 'logged_in', JSON.stringify(report));
    assert.equal(report.login?.issuer, as.issuer);
    assert.ok(report.login?.expires_at, 'the expiry is reported');
  });

  test('two windows and an HTTP client share the login; at expiry both windows calling cause one refresh', async () => {
    [elicits, plain, http] = await Promise.all([
      connectShim(cleanup, daemon, { name: 'oauth-elicits', capabilities: { elicitation: { url: {} } } }),
      connectShim(cleanup, daemon, { name: 'oauth-plain' }),
      connectModernHttp(cleanup, daemon),
    ]);
    const calls = [elicits.client, plain.client, http].map((c) => c.callTool({ name: WHOAMI, arguments: {} }));
    for (const result of await Promise.all(calls)) assert.equal(textOf(result), WHOAMI_TEXT);
    assert.equal(as.counts.authorizations, 1, 'one login serves every window and client');

    // The token in use now expires in a moment: calls that began before are in flight at that
    // moment, and both windows call again just after it.
    const refreshesBefore = as.counts.refreshes;
    const current = as.latestAccess();
    const expiresAtMs = current?.expiresAtMs;
    assert.ok(expiresAtMs, 'a token was issued');
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAtMs - 700 - Date.now())));
    const inFlight = [elicits.client, plain.client].map((c) => c.callTool({ name: SLOW, arguments: { ms: 1_000 } }));
    // Until it has expired, or the daemon refreshed it ahead of time.
    await waitFor(() => Date.now() > expiresAtMs || as.latestAccess() !== current, 'the access token to expire', 10_000, 10);
    const atExpiry = [
      ...[elicits.client, plain.client].flatMap((c) => [
        c.callTool({ name: WHOAMI, arguments: {} }),
        c.callTool({ name: SLOW, arguments: { ms: 200 } }),
      ]),
      http.callTool({ name: WHOAMI, arguments: {} }),
    ];
    const texts = (await Promise.all([...inFlight, ...atExpiry])).map((r) => textOf(r));
    assert.deepEqual(texts, ['slept 1000', 'slept 1000', WHOAMI_TEXT, 'slept 200', WHOAMI_TEXT, 'slept 200', WHOAMI_TEXT]);
    assert.equal(as.counts.refreshes - refreshesBefore, 1, `one refresh for every window; refusals: ${as.refusals.join('; ')}`);
    assert.equal(as.counts.refreshFailures, 0);
    assert.equal(as.counts.authorizations, 1, 'a refresh, not a new login');
    assert.notEqual(as.latestAccess(), current, 'a new token was issued');
  });

  test('after `exai-ws logout NAME` a call says "needs login" at once: -32042 with the URL where elicitation was declared, else a tool error', async () => {
    const logout = await runCli(['logout', NAME], daemon.clientEnv);
    printed.push(logout.stdout, logout.stderr);
    assert.equal(logout.code, 0, logout.stderr);
    assert.match(logout.stdout + logout.stderr, new RegExp(`logged out of ${NAME}`));

    const plainStartMs = Date.now();
    const refused = await within(plain.client.callTool({ name: WHOAMI, arguments: {} }), TELLS_AT_ONCE_MS, 'the call without elicitation');
    assert.equal(refused.isError, true, JSON.stringify(refused));
    assert.match(textOf(refused), new RegExp(`exai-ws login ${NAME}`));
    assert.ok(Date.now() - plainStartMs < TELLS_AT_ONCE_MS);

    let completed: (elicitationId: string) => void = () => undefined;
    const completion = new Promise<string>((resolve) => (completed = resolve));
    elicits.client.setNotificationHandler(ElicitationCompleteNotificationSchema, (n) => completed(n.params.elicitationId));
    const error = await within(
      elicits.client.callTool({ name: WHOAMI, arguments: {} }).then(
        (result) => assert.fail(`expected -32042, got a result: ${JSON.stringify(result)}`),
        (e: unknown) => e,
      ),
      TELLS_AT_ONCE_MS,
      'the call with URL-mode elicitation',
    );
    assert.ok(error instanceof McpError, String(error));
    assert.equal(error.code, -32042, error.message);
    const elicitation = (error.data as { elicitations?: { mode?: string; url?: string; elicitationId?: string }[] }).elicitations?.[0];
    assert.equal(elicitation?.mode, 'url', JSON.stringify(error.data));
    const url = elicitation.url ?? '';
    assert.ok(url.startsWith(`${as.issuer}/authorize?`), `the login URL: ${url}`);
    assert.ok(elicitation.elicitationId, 'an elicitation id');
    const report = await serverReport(daemon, NAME);
    assert.equal(report.login?.state, 'needs_login', JSON.stringify(report));

    const page = await approve(url, daemon);
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, new RegExp(`Logged in to ${NAME}`));
    assert.equal(await within(completion, TELLS_AT_ONCE_MS, 'notifications/elicitation/complete'), elicitation.elicitationId);
    assert.equal(as.counts.authorizations, 2);
    for (const client of [elicits.client, plain.client]) {
      assert.equal(textOf(await client.callTool({ name: WHOAMI, arguments: {} })), WHOAMI_TEXT);
    }
  });

  test('a restarted daemon keeps the login: a call after the token expired refreshes it, with no new login', async () => {
    const authorizations = as.counts.authorizations;
    const stop = await runCli(['stop'], daemon.clientEnv, 30_000);
    assert.equal(stop.code, 0, stop.stderr);
    await within(daemon.exited, 20_000, 'the daemon to stop');
    printed.push(daemon.stderr());
    daemon = await startDaemon(cleanup, { home: daemon.home, env: ENV });
    const window = await connectShim(cleanup, daemon, { name: 'oauth-after-restart' });
    // A daemon restarted after a while (a reboot, an update) holds an expired access token: the
    // refresh token it kept, with the client it was issued to, must renew it (the new daemon
    // listens on another port, so its redirect URI is not the one the client was registered with).
    const expiresAtMs = as.latestAccess()?.expiresAtMs ?? 0;
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAtMs + 50 - Date.now())));
    const refreshes = as.counts.refreshes;
    const result = await window.client.callTool({ name: WHOAMI, arguments: {} });
    const seen = () =>
      JSON.stringify({ counts: as.counts, registrations: as.registrations.map((r) => r.redirectUris), refusals: as.refusals });
    assert.equal(textOf(result), WHOAMI_TEXT, seen());
    assert.equal(as.counts.refreshes - refreshes, 1, `the kept refresh token was used: ${seen()}`);
    assert.equal(as.counts.authorizations, authorizations, 'no new authorization at the authorization server');
    const report = await serverReport(daemon, NAME);
    assert.equal(report.login?.state, 'logged_in', JSON.stringify(report));
  });

  test('a login whose callback came before `/control/login-wait` asked is still reported as done (`exai-ws login` may ask late)', async () => {
    const target = { host: '127.0.0.1', port: daemon.port, token: daemon.token };
    const started = await provenRequest(target, { method: 'POST', path: '/control/login', body: { server: NAME }, timeoutMs: 10_000 });
    assert.ok(started.ok && started.status === 200, JSON.stringify(started));
    const { url, state } = started.body as { url: string; state: string };
    const page = await approve(url, daemon);
    assert.equal(page.status, 200, page.body);
    const waited = await provenRequest(target, { method: 'POST', path: '/control/login-wait', body: { state }, timeoutMs: 10_000 });
    assert.ok(waited.ok, JSON.stringify(waited));
    assert.equal(waited.status, 200, JSON.stringify(waited.body));
    assert.deepEqual((waited.body as { ok?: unknown; server?: unknown }).ok, true, JSON.stringify(waited.body));
  });

  test('a login request with a body too large is refused, and its connection ends with the answer (the rest is never read)', async () => {
    const body = JSON.stringify({ server: NAME, pad: 'x'.repeat(16 * 1024) });
    const reply = await fetch(`http://127.0.0.1:${daemon.port}/control/login`, {
      method: 'POST',
      headers: { authorization: `Bearer ${daemon.token}`, 'content-type': 'application/json' },
      body,
    });
    assert.equal(reply.status, 400, await reply.text());
    assert.equal(reply.headers.get('connection'), 'close');
  });

  test('no token shows in the log, /health, /metrics, status --json, the page, its feed or argv; $home/oauth is the user\u2019s alone', async () => {
    const secrets = as.secrets();
    assert.ok(as.issued.length >= 6, `tokens were issued: ${as.issued.length}`);
    const bearer = { authorization: `Bearer ${daemon.token}` };
    const health = await fetch(`http://127.0.0.1:${daemon.port}/health`, { headers: bearer }).then((r) => r.text());
    const fullHealth = JSON.stringify(await serverReport(daemon, NAME));
    const metrics = await fetch(`http://127.0.0.1:${daemon.port}/metrics`, { headers: bearer }).then((r) => r.text());
    const status = await runCli(['status', '--json'], daemon.clientEnv);
    assert.equal(status.code, 0, status.stderr);
    // Whatever the state (the steps before may have failed), it is shown.
    assert.match(status.stdout, /"login": \{\s*"state": "[a-z_]+"/, 'status --json shows the login state');
    const page = await fetch(`http://127.0.0.1:${daemon.port}/`, { headers: bearer }).then((r) => r.text());
    const feed = await firstFeedEvent(daemon);
    assert.match(feed, /"login":\{"state":"[a-z_]+"/, 'the feed shows the login state');
    const outputs: Record<string, string> = {
      '/health': health,
      '/health (full, servers)': fullHealth,
      '/metrics': metrics,
      'status --json': status.stdout + status.stderr,
      'the status page': page,
      '/events': feed,
      argv: cmdline(daemon.pid),
      printed: [...printed, daemon.stderr()].join('\n'),
    };
    for (const file of filesUnder(join(daemon.home, 'logs'))) outputs[file] = readFileSync(file, 'utf8');
    for (const [where, text] of Object.entries(outputs)) {
      const leaked = secrets.filter((s) => text.includes(s));
      assert.deepEqual(leaked, [], `${leaked.length} secret(s) in ${where}`);
    }

    const dir = join(daemon.home, 'oauth');
    assert.equal(statSync(dir).mode & 0o777, 0o700, `${dir} is the user's alone`);
    const files = filesUnder(dir);
    assert.ok(files.length > 0, `the login is kept in ${dir}`);
    for (const file of files) assert.equal(statSync(file).mode & 0o777, 0o600, `${file} is the user's alone`);
  });
});
