/**
 * A `url` server's OAuth login as the daemon keeps it (src/hosting/oauth/*,
 * src/daemon/files/oauth-vault.ts, src/daemon/sessions/login-answers.ts), against an
 * authorization server answered in memory through the session's fetch. Checked: windows
 * calling together as the token expires cause one refresh, and a 401 to a token already
 * replaced none; a refused token makes discovery start over; 403 `insufficient_scope` asks the
 * scopes at the next login and, after three logins' tokens were refused, offers no more; the
 * vault's files (user-only, whole, corrupt or unwritable without a throw or a secret in the
 * log); login traffic bounded in time and size; what a window is told (-32042 with the URL,
 * or a tool error naming `exai-ws login`).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { FetchLike, OAuthDiscoveryState } from '@modelcontextprotocol/client';
import { OAuthSession, MAX_SCOPE_REFUSALS } from '../../src/hosting/oauth/session.js';
import { MemoryVault, type KeptTokens } from '../../src/hosting/oauth/vault.js';
import { boundedFetch } from '../../src/hosting/oauth/bounded-fetch.js';
import { OAuthLogins } from '../../src/hosting/oauth/logins.js';
import { FileOAuthVault } from '../../src/daemon/files/oauth-vault.js';
import { URL_ELICITATION_REQUIRED, loginAware } from '../../src/daemon/sessions/login-answers.js';
import { RpcCode } from '../../src/protocol/codes.js';
import type { HttpSpec } from '../../src/hosting/upstream-config.js';
import { SCOPE_REFUSAL, answerThrough } from '../fixtures/oauth-answers.js';

const temp = mkdtempSync(join(tmpdir(), 'exai-ws-oauth-'));
after(() => rmSync(temp, { recursive: true, force: true }));

const SERVER = 'https://mcp.example.test/mcp';
const ISSUER = 'https://as.example.test';
const REDIRECT = 'http://127.0.0.1:4242/oauth/callback';

const discovery: OAuthDiscoveryState = {
  authorizationServerUrl: ISSUER,
  resourceMetadataUrl: 'https://mcp.example.test/.well-known/oauth-protected-resource/mcp',
  resourceMetadata: { resource: SERVER, authorization_servers: [ISSUER] },
  authorizationServerMetadata: {
    issuer: ISSUER,
    authorization_endpoint: `${ISSUER}/authorize`,
    token_endpoint: `${ISSUER}/token`,
    registration_endpoint: `${ISSUER}/register`,
    response_types_supported: ['code'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['none'],
  },
};

/** An authorization server in memory: counts refreshes (answered after `delayMs`). */
function fakeAs(delayMs = 20) {
  const seen = { refreshes: 0, registrations: 0, metadata: 0 };
  let n = 0;
  const fetchFn: FetchLike = async (input, init) => {
    const url = String(input);
    if (url.includes('/.well-known/')) {
      seen.metadata++;
      const body = url.includes('oauth-protected-resource') ? discovery.resourceMetadata : discovery.authorizationServerMetadata;
      return Response.json(body);
    }
    if (url === `${ISSUER}/register`) {
      seen.registrations++;
      return Response.json({ client_id: 'registered-client', redirect_uris: [REDIRECT] }, { status: 201 });
    }
    if (url === `${ISSUER}/token`) {
      const form = new URLSearchParams(String(init?.body));
      assert.equal(form.get('grant_type'), 'refresh_token');
      seen.refreshes++;
      await new Promise((r) => setTimeout(r, delayMs));
      n++;
      return Response.json({ access_token: `access-${n}`, token_type: 'Bearer', expires_in: 3600, refresh_token: `refresh-${n}` });
    }
    return new Response('not found', { status: 404 });
  };
  return { seen, fetchFn };
}

function expiredTokens(): KeptTokens {
  const now = Date.now();
  return {
    access_token: 'access-0',
    token_type: 'Bearer',
    refresh_token: 'refresh-0',
    issuer: ISSUER,
    obtained_at: now - 7200_000,
    expires_at: now - 1000,
  };
}

function sessionWith(vault: MemoryVault, fetchFn: FetchLike): OAuthSession {
  return new OAuthSession({ name: 'remote', url: SERVER, vault, redirectUrl: () => REDIRECT, fetch: fetchFn });
}

const tokenOf = (session: OAuthSession) => session.transportAuth.token();

/** A vault after a login whose access token has expired: a refresh token, discovery and the registration kept. */
function expiredVault(): MemoryVault {
  const vault = new MemoryVault();
  vault.saveTokens(SERVER, expiredTokens());
  vault.saveDiscovery(SERVER, discovery);
  vault.saveClient(ISSUER, REDIRECT, { client_id: 'registered-client' });
  return vault;
}

test('windows calling together as the token expires cause one refresh, and all send the new token', async () => {
  const vault = expiredVault();
  const as = fakeAs();
  const session = sessionWith(vault, as.fetchFn);
  const sent = await Promise.all(Array.from({ length: 8 }, () => tokenOf(session)));
  assert.equal(as.seen.refreshes, 1);
  assert.deepEqual(new Set(sent), new Set(['access-1']));
  assert.equal(session.report().state, 'logged_in');
  // Still fresh: no refresh at all.
  await tokenOf(session);
  assert.equal(as.seen.refreshes, 1);
});

test('a 401 to a token already replaced causes no refresh; a 401 to the current one causes one, after discovery again', async () => {
  const vault = expiredVault();
  const as = fakeAs();
  const session = sessionWith(vault, as.fetchFn);
  const refusing: FetchLike = () => Promise.resolve(new Response('no', { status: 401, headers: { 'www-authenticate': 'Bearer' } }));
  const watched = session.watch(refusing);
  // A request sent with the old token comes back refused after the refresh happened.
  const stale = await watched(SERVER, { headers: { authorization: 'Bearer access-0' } });
  assert.equal(await tokenOf(session), 'access-1');
  await session.transportAuth.onUnauthorized?.({ response: stale, serverUrl: new URL(SERVER), fetchFn: refusing });
  assert.equal(as.seen.refreshes, 1, 'the stale 401 refreshed again');
  const metadataBefore = as.seen.metadata;
  const current = await watched(SERVER, { headers: { authorization: 'Bearer access-1' } });
  await session.transportAuth.onUnauthorized?.({ response: current, serverUrl: new URL(SERVER), fetchFn: refusing });
  assert.equal(as.seen.refreshes, 2);
  assert.ok(as.seen.metadata > metadataBefore, 'a refused token did not make discovery start over');
});

test('no token: a 401 says a login is needed (the command named), without asking the authorization server', async () => {
  const vault = new MemoryVault();
  const as = fakeAs();
  const session = sessionWith(vault, as.fetchFn);
  const refused = await answerThrough(session, SERVER, 401, 'Bearer scope="read"');
  await assert.rejects(
    Promise.resolve(session.transportAuth.onUnauthorized?.({ response: refused, serverUrl: new URL(SERVER), fetchFn: as.fetchFn })),
    /exai-ws login remote/,
  );
  assert.equal(session.report().state, 'needs_login');
  assert.equal(session.need?.kind, 'needed');
  assert.equal(as.seen.metadata + as.seen.refreshes, 0);
  assert.equal(session.scopeToAsk(), 'read');
});

test('403 insufficient_scope: the scopes join the next login; after three logins refused, no more are offered', async () => {
  const vault = new MemoryVault();
  const session = sessionWith(vault, fakeAs().fetchFn);
  const challenge = (bearer: string) => answerThrough(session, SERVER, 403, SCOPE_REFUSAL, bearer);
  await challenge('token-1');
  assert.equal(session.need?.kind, 'needed');
  assert.match(session.scopeToAsk() ?? '', /\badmin\b/);
  // The same token refused again is not another login.
  await challenge('token-1');
  assert.equal(session.need?.kind, 'needed');
  for (let i = 2; i <= MAX_SCOPE_REFUSALS; i++) await challenge(`token-${i}`);
  assert.equal(session.need?.kind, 'refused');
  assert.match(session.need?.message ?? '', /refused the scopes granted after 3 logins/);
  // A logout starts over.
  session.logout();
  assert.equal(session.need?.kind, 'needed');
});

test('the file vault: user-only files written whole, read back by a new daemon, corrupt or unwritable files never thrown nor logged', () => {
  const dir = join(temp, 'oauth');
  const lines: string[] = [];
  const vault = new FileOAuthVault(dir, (message, details) => lines.push(`${message} ${JSON.stringify(details)}`));
  vault.saveTokens(SERVER, { ...expiredTokens(), access_token: 'secret-access' });
  vault.saveDiscovery(SERVER, discovery);
  vault.saveClient(ISSUER, REDIRECT, { client_id: 'c1', client_secret: 'secret-client' });
  if (process.platform !== 'win32') {
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    for (const name of readdirSync(dir)) assert.equal(statSync(join(dir, name)).mode & 0o777, 0o600, name);
  }
  const again = new FileOAuthVault(dir, () => undefined);
  assert.equal(again.tokens(SERVER)?.access_token, 'secret-access');
  assert.equal(again.client(ISSUER, REDIRECT)?.client_secret, 'secret-client');
  assert.equal(again.client(ISSUER, 'http://127.0.0.1:9999/oauth/callback'), undefined, 'another port registers again');
  // Corrupt: nothing kept, one line, and not the file's content.
  for (const name of readdirSync(dir)) if (name.startsWith('server-')) writeFileSync(join(dir, name), '{"resource": "secret-access"');
  const third = new FileOAuthVault(dir, (message, details) => lines.push(`${message} ${JSON.stringify(details)}`));
  assert.equal(third.tokens(SERVER), undefined);
  assert.ok(lines.some((l) => l.includes('not what this daemon writes')));
  assert.ok(!lines.some((l) => l.includes('secret')), lines.join('\n'));
  // Unwritable (the directory is a file): the value stays in memory, one line.
  const blocked = join(temp, 'blocked');
  writeFileSync(blocked, 'x');
  const warned: string[] = [];
  const stuck = new FileOAuthVault(join(blocked, 'oauth'), (message) => warned.push(message));
  stuck.saveTokens(SERVER, expiredTokens());
  stuck.saveTokens(SERVER, expiredTokens());
  assert.equal(stuck.tokens(SERVER)?.access_token, 'access-0');
  assert.equal(warned.length, 1);
  assert.equal(readFileSync(blocked, 'utf8'), 'x');
});

test('login traffic is bounded: an authorization server that hangs or answers without end fails with a reason', async () => {
  const hanging: Server = createServer(() => undefined);
  const endless: Server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const chunk = Buffer.alloc(64 * 1024, 32);
    const pump = () => {
      while (res.write(chunk));
    };
    res.on('drain', pump);
    pump();
  });
  const listen = (s: Server) => new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as { port: number }).port)));
  const [hangPort, endlessPort] = await Promise.all([listen(hanging), listen(endless)]);
  try {
    const bounded = boundedFetch((i, init) => fetch(i, init), 300, 256 * 1024);
    await assert.rejects(bounded(`http://127.0.0.1:${hangPort}/`), /did not answer within 0.3 s/);
    await assert.rejects(bounded(`http://127.0.0.1:${endlessPort}/`), /answered more than 262144 bytes/);
  } finally {
    hanging.closeAllConnections();
    endless.closeAllConnections();
    await Promise.all([new Promise((r) => hanging.close(r)), new Promise((r) => endless.close(r))]);
  }
});

test('a window is told at once: -32042 with the URL when it declared URL elicitation, else a tool error naming the command', async () => {
  const vault = new MemoryVault();
  vault.saveDiscovery(SERVER, discovery);
  const as = fakeAs();
  const spec = { name: 'remote', kind: 'http', url: SERVER, headers: {} } as unknown as HttpSpec;
  const logins = new OAuthLogins(vault, () => REDIRECT, undefined, as.fetchFn);
  logins.hooks = {
    specOf: (n) => (n === 'remote' ? spec : undefined),
    probe: () => Promise.resolve(),
    verify: () => Promise.resolve(undefined),
  };
  const session = await logins.sessionFor(spec);
  const refused = await answerThrough(session, SERVER, 401, 'Bearer');
  await Promise.resolve(
    session.transportAuth.onUnauthorized?.({ response: refused, serverUrl: new URL(SERVER), fetchFn: as.fetchFn }),
  ).catch(() => undefined);
  const failed = { error: { code: RpcCode.UPSTREAM_UNAVAILABLE, message: 'remote: send failed', data: { server: 'remote' } } };
  const told: object[] = [];
  const plain = await loginAware(
    failed,
    'remote',
    'tools/call',
    { capabilities: { elicitation: {} }, tell: (m) => told.push(m) > 0 },
    logins,
  );
  assert.ok(plain && 'result' in plain);
  assert.equal((plain.result as { isError?: boolean }).isError, true);
  assert.match(JSON.stringify(plain.result), /exai-ws login remote/);
  const asking = { capabilities: { elicitation: { url: {} } }, tell: (m: object) => told.push(m) > 0 };
  const first = await loginAware(failed, 'remote', 'tools/call', asking, logins);
  assert.ok(first && 'error' in first);
  assert.equal(first.error.code, URL_ELICITATION_REQUIRED);
  const elicitation = (first.error.data as { elicitations: { mode: string; url: string; elicitationId: string }[] }).elicitations[0];
  assert.equal(elicitation?.mode, 'url');
  assert.ok(elicitation?.url.startsWith(`${ISSUER}/authorize?`), elicitation?.url);
  const url = new URL(elicitation.url);
  assert.equal(url.searchParams.get('redirect_uri'), REDIRECT);
  assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(url.searchParams.get('resource'), SERVER);
  // A window calling again shares the login under way: same URL, no new registration.
  const registrations = as.seen.registrations;
  const second = await loginAware(failed, 'remote', 'tools/call', asking, logins);
  assert.ok(second && 'error' in second);
  assert.equal((second.error.data as { elicitations: { url: string }[] }).elicitations[0]?.url, elicitation.url);
  assert.equal(as.seen.registrations, registrations);
  // The callback: an unknown state is refused; the real one is good once.
  const unknown = await logins.complete(new URLSearchParams({ state: 'not-a-login', code: 'x' }));
  assert.equal(unknown.ok, false);
  assert.match(unknown.ok ? '' : unknown.error, /unknown, was used already or has expired/);
  const state = url.searchParams.get('state') ?? '';
  const waiting = logins.wait(state);
  assert.ok(waiting, 'the login is not under way');
  const denied = await logins.complete(new URLSearchParams({ state, error: 'access_denied', error_description: 'the user said no' }));
  assert.deepEqual(denied, { ok: false, server: 'remote', error: 'the authorization server refused: access_denied (the user said no)' });
  assert.deepEqual(await waiting, denied);
  assert.equal((await logins.complete(new URLSearchParams({ state, code: 'again' }))).ok, false);
  // Whoever asks how it ended after it ended still hears it.
  assert.deepEqual(await logins.wait(state), denied);
  // A failure that is not about a login passes unchanged.
  const other = { error: { code: RpcCode.INTERNAL_ERROR, message: 'boom' } };
  assert.equal(await loginAware(other, 'remote', 'tools/call', asking, logins), other);
});
