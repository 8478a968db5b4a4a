/**
 * A login against authorization servers that misbehave (src/hosting/oauth/*): an absurd token
 * lifetime, a refresh answered 503, a logout while a refresh is under way, refreshed tokens of
 * one login refused again, error texts that would quote a secret, and the SDK's own warnings.
 * Each is something that crashed the daemon, undid a logout, or showed a user a false state or
 * a secret before it was fixed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FetchLike, OAuthDiscoveryState } from '@modelcontextprotocol/client';
import { OAuthSession } from '../../src/hosting/oauth/session.js';
import { MemoryVault, type KeptTokens } from '../../src/hosting/oauth/vault.js';
import { errorText } from '../../src/hosting/oauth/kept.js';
import { sdkWarning } from '../../src/daemon/files/oauth-vault.js';
import { SCOPE_REFUSAL, answerThrough } from '../fixtures/oauth-answers.js';

const SERVER = 'https://mcp.example.test/mcp';
const ISSUER = 'https://as.example.test';
const REDIRECT = 'http://127.0.0.1:4242/oauth/callback';

const discovery: OAuthDiscoveryState = {
  authorizationServerUrl: ISSUER,
  resourceMetadata: { resource: SERVER, authorization_servers: [ISSUER] },
  authorizationServerMetadata: {
    issuer: ISSUER,
    authorization_endpoint: `${ISSUER}/authorize`,
    token_endpoint: `${ISSUER}/token`,
    response_types_supported: ['code'],
    code_challenge_methods_supported: ['S256'],
  },
};

/** A token endpoint answering with `answer` after `delayMs`; counts requests. */
function tokenEndpoint(answer: () => Response, delayMs = 0) {
  const seen = { requests: 0 };
  const fetchFn: FetchLike = async (input) => {
    if (String(input) !== `${ISSUER}/token`) return new Response('not found', { status: 404 });
    seen.requests++;
    await new Promise((r) => setTimeout(r, delayMs));
    return answer();
  };
  return { seen, fetchFn };
}

/** A vault holding tokens of one login that expire in `inMs` (obtained an hour ago), with a refresh token. */
function vaultWith(inMs: number, extra: Partial<KeptTokens> = {}): MemoryVault {
  const vault = new MemoryVault();
  const now = Date.now();
  vault.saveTokens(SERVER, {
    access_token: 'access-0',
    token_type: 'Bearer',
    refresh_token: 'refresh-0',
    issuer: ISSUER,
    obtained_at: now - 3600_000,
    expires_at: now + inMs,
    login: 'L1',
    client: { client_id: 'c1' },
    ...extra,
  });
  vault.saveDiscovery(SERVER, discovery);
  return vault;
}

const session = (vault: MemoryVault, fetchFn: FetchLike) =>
  new OAuthSession({ name: 'remote', url: SERVER, vault, redirectUrl: () => REDIRECT, fetch: fetchFn });

test('a lifetime of centuries is taken as none: the report (and /health) never throws', async () => {
  const as = tokenEndpoint(() => Response.json({ access_token: 'access-1', token_type: 'Bearer', expires_in: 1e13, refresh_token: 'r1' }));
  const vault = vaultWith(-1000);
  const login = session(vault, as.fetchFn);
  assert.equal(await login.transportAuth.token(), 'access-1');
  const report = login.report();
  assert.equal(report.state, 'logged_in');
  assert.equal(report.expires_at, null);
  assert.equal(vault.tokens(SERVER)?.expires_at, undefined);
  // Even a vault file holding one (written by hand, or by an older daemon) prints.
  vault.saveTokens(SERVER, { ...(vault.tokens(SERVER) as KeptTokens), expires_at: Date.now() + 1e16 });
  assert.equal(session(vault, as.fetchFn).report().expires_at, null);
});

test('a logout while a refresh is under way stands: the refreshed tokens are not kept', async () => {
  const as = tokenEndpoint(
    () => Response.json({ access_token: 'access-1', token_type: 'Bearer', expires_in: 3600, refresh_token: 'r1' }),
    100,
  );
  const vault = vaultWith(-1000);
  const login = session(vault, as.fetchFn);
  const sending = login.transportAuth.token();
  await new Promise((r) => setTimeout(r, 30));
  login.logout();
  assert.equal(await sending, undefined);
  assert.equal(as.seen.requests, 1);
  assert.equal(vault.tokens(SERVER), undefined);
  assert.equal(login.report().state, 'needs_login');
});

test('a refresh answered 503 is "refresh failing" (the token held still sent), tried again only after a pause', async () => {
  const as = tokenEndpoint(
    () => new Response('<html>down for maintenance</html>', { status: 503, headers: { 'content-type': 'text/html' } }),
  );
  // Expiring within the margin, not expired.
  const vault = vaultWith(30_000);
  const login = session(vault, as.fetchFn);
  for (let i = 0; i < 5; i++) assert.equal(await login.transportAuth.token(), 'access-0');
  assert.equal(as.seen.requests, 1, 'each request waited on a refresh of its own');
  const report = login.report();
  assert.equal(report.state, 'refresh_failing');
  assert.equal(login.need, undefined, 'a window would be told to log in while the token works');
  assert.doesNotMatch(JSON.stringify(report), /maintenance|access-0|refresh-0/);
});

test("tokens of one login, refreshed, count as one refusal; another login's count again", async () => {
  const vault = vaultWith(3600_000);
  const login = session(vault, tokenEndpoint(() => new Response('', { status: 500 })).fetchFn);
  const refuse = (bearer: string) => answerThrough(login, SERVER, 403, SCOPE_REFUSAL, bearer);
  await refuse('access-0');
  for (let i = 1; i <= 4; i++) {
    // A refresh: a new access token, the same login.
    vault.saveTokens(SERVER, { ...(vault.tokens(SERVER) as KeptTokens), access_token: `access-${i}` });
    await refuse(`access-${i}`);
  }
  assert.equal(login.need?.kind, 'needed', login.need?.message);
  for (const next of ['L2', 'L3']) {
    vault.saveTokens(SERVER, { ...(vault.tokens(SERVER) as KeptTokens), access_token: `from-${next}`, login: next });
    await refuse(`from-${next}`);
  }
  assert.equal(login.need?.kind, 'refused');
});

test('error texts carry no raw answer, no JSON excerpt, no long quoted string; SDK warnings lose what they quote', () => {
  assert.equal(errorText(new SyntaxError('Unexpected token \'}\', ..."CRET","x":}" is not valid JSON')), 'an answer was not valid JSON');
  const raw = errorText(
    new Error('HTTP 400: Invalid OAuth error response: bad. Raw body: {"access_token":"secret-token-value-1234567890"}'),
  );
  assert.equal(raw, 'HTTP 400: Invalid OAuth error response: bad.');
  assert.doesNotMatch(errorText(new Error('refused "secret-token-value-1234567890abcdef"')), /secret-token/);
  const warning = sdkWarning([
    '[mcp-sdk] Could not refresh OAuth tokens; falling back to a new authorization request. Cause: "HTTP 503: Raw body: secret"',
  ]);
  assert.equal(warning, '[mcp-sdk] Could not refresh OAuth tokens; falling back to a new authorization request.');
});
