/**
 * The daemon's authorization server (daemon/authz/authorization-server.ts), without HTTP: what
 * an authorization request leads to (an error only the user sees, an error redirected to the
 * client, or the consent waiting for the user), the user's decision, the token endpoint, and
 * `exai-ws clients` (holders, revoke).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuthorizationServer, REQUEST_TTL_MS, type AuthzStore, type PendingRequest } from '../../src/daemon/authz/authorization-server.js';
import { MAX_REGISTRATIONS, isRefusal, type OAuthRefusal } from '../../src/daemon/authz/clients.js';
import { REFRESH_GRACE_MS, type TokenAnswer } from '../../src/daemon/authz/grants.js';
import { authorizeQuery, pkcePair, type Pkce } from '../fixtures/authz-flow.js';

const ORIGIN = 'http://127.0.0.1:8765';
const LOOPBACK = 'http://127.0.0.1:33418/callback';

interface Rig {
  authz: AuthorizationServer;
  clientId: string;
  clock: { now: number };
}

function rig(name = 'Test Client', store?: AuthzStore): Rig {
  const clock = { now: 1_700_000_000_000 };
  const authz = new AuthorizationServer({ now: () => clock.now, store, fetch: () => Promise.reject(new Error('no fetch in this test')) });
  return { authz, clientId: register(authz, name), clock };
}

function register(authz: AuthorizationServer, name: string): string {
  const answer = authz.register({ client_name: name, redirect_uris: ['https://vscode.dev/redirect', LOOPBACK] });
  if (isRefusal(answer)) assert.fail(answer.error_description);
  return answer.client_id as string;
}

async function consent(authz: AuthorizationServer, query: URLSearchParams): Promise<PendingRequest> {
  const outcome = await authz.authorize(query, ORIGIN);
  assert.equal(outcome.kind, 'consent', JSON.stringify(outcome));
  return (outcome as { request: PendingRequest }).request;
}

async function errorOf(authz: AuthorizationServer, query: URLSearchParams): Promise<string> {
  const outcome = await authz.authorize(query, ORIGIN);
  assert.equal(outcome.kind, 'error', `no redirect: ${JSON.stringify(outcome)}`);
  return (outcome as { message: string }).message;
}

async function redirectedError(authz: AuthorizationServer, query: URLSearchParams, error: string): Promise<URL> {
  const outcome = await authz.authorize(query, ORIGIN);
  assert.equal(outcome.kind, 'redirect', JSON.stringify(outcome));
  const location = new URL((outcome as { location: string }).location);
  assert.equal(location.origin + location.pathname, 'http://127.0.0.1:5555/callback');
  assert.equal(location.searchParams.get('error'), error);
  assert.equal(location.searchParams.get('state'), 'state-123');
  assert.equal(location.searchParams.get('iss'), ORIGIN);
  assert.equal(location.searchParams.get('code'), null);
  return location;
}

function tokens(answer: TokenAnswer | OAuthRefusal): TokenAnswer {
  if (isRefusal(answer)) assert.fail(`refused: ${answer.error}: ${answer.error_description}`);
  return answer;
}

/** Approves a request of `clientId` and trades its code: the tokens. */
async function approved(authz: AuthorizationServer, clientId: string): Promise<TokenAnswer> {
  const pkce = pkcePair();
  const request = await consent(authz, authorizeQuery(clientId, 'http://127.0.0.1:5555/callback', pkce));
  const code = new URL(authz.decide(request, true)).searchParams.get('code') ?? '';
  return tokens(authz.token(tradeForm(clientId, code, pkce)));
}

function tradeForm(clientId: string, code: string, pkce: Pkce): URLSearchParams {
  return new URLSearchParams({
    grant_type: 'authorization_code',
    code,
    client_id: clientId,
    code_verifier: pkce.verifier,
    redirect_uri: 'http://127.0.0.1:5555/callback',
    resource: `${ORIGIN}/mcp`,
  });
}

test('an unknown client or a redirect URI not its own (or not loopback) is shown to the user only', async () => {
  const { authz, clientId } = rig();
  const pkce = pkcePair();
  assert.match(await errorOf(authz, authorizeQuery('exai-made-up', LOOPBACK, pkce)), /unknown client_id/);
  assert.match(await errorOf(authz, new URLSearchParams({ response_type: 'code' })), /no client_id/);
  for (const uri of [
    'http://127.0.0.1:33418/elsewhere',
    'http://localhost:33418/callback',
    'https://vscode.dev/redirect',
    'https://evil.example/cb',
  ])
    assert.match(await errorOf(authz, authorizeQuery(clientId, uri, pkce)), /did not register, or not on this machine/, uri);
  // Even a bad request goes nowhere when the redirect URI is not to be trusted.
  assert.equal(
    (await authz.authorize(authorizeQuery(clientId, 'https://vscode.dev/redirect', pkce, { response_type: 'token' }), ORIGIN)).kind,
    'error',
  );
});

test('a malformed request from a known client is answered at its redirect URI, with state and iss', async () => {
  const { authz, clientId } = rig();
  const pkce = pkcePair();
  const at = 'http://127.0.0.1:5555/callback';
  const noPkce = authorizeQuery(clientId, at, pkce);
  noPkce.delete('code_challenge');
  assert.match((await redirectedError(authz, noPkce, 'invalid_request')).searchParams.get('error_description') ?? '', /PKCE/);
  await redirectedError(authz, authorizeQuery(clientId, at, pkce, { code_challenge_method: 'plain' }), 'invalid_request');
  await redirectedError(authz, authorizeQuery(clientId, at, pkce, { code_challenge: 'short' }), 'invalid_request');
  await redirectedError(authz, authorizeQuery(clientId, at, pkce, { response_type: 'token' }), 'unsupported_response_type');
  for (const resource of ['https://example.com/mcp', `${ORIGIN}/other`, 'http://127.0.0.1:9999/mcp', 'not a url'])
    await redirectedError(authz, authorizeQuery(clientId, at, pkce, { resource }), 'invalid_target');
});

test('the happy path: consent waits for the user; allow answers a code with state and iss that trades for tokens', async () => {
  const { authz, clientId, clock } = rig('Visual Studio Code');
  const pkce = pkcePair();
  const request = await consent(
    authz,
    authorizeQuery(clientId, 'http://127.0.0.1:5555/callback', pkce, { resource: `${ORIGIN}/mcp/github` }),
  );
  assert.equal(request.client.client_name, 'Visual Studio Code');
  assert.equal(request.redirect_uri, 'http://127.0.0.1:5555/callback');
  assert.equal(authz.waiting(request.id, request.csrf), request);
  assert.equal(authz.waiting(request.id, 'forged'), undefined, 'another csrf is not the request’s');
  assert.equal(authz.waiting('made-up'), undefined);

  const location = new URL(authz.decide(request, true));
  assert.equal(location.origin + location.pathname, 'http://127.0.0.1:5555/callback');
  assert.equal(location.searchParams.get('state'), 'state-123');
  assert.equal(location.searchParams.get('iss'), ORIGIN);
  const code = location.searchParams.get('code') ?? '';
  assert.match(code, /^exai_ac_/);
  assert.equal(authz.waiting(request.id), undefined, 'answered: gone');

  const form = tradeForm(clientId, code, pkce);
  form.set('resource', `${ORIGIN}/mcp/github`);
  const first = tokens(authz.token(form));
  const grant = authz.grants.verify(first.access_token);
  assert.ok(typeof grant === 'object' && grant.client_id === clientId);
  const refreshed = tokens(
    authz.token(new URLSearchParams({ grant_type: 'refresh_token', refresh_token: first.refresh_token, client_id: clientId })),
  );
  assert.notEqual(refreshed.refresh_token, first.refresh_token);
  clock.now += REFRESH_GRACE_MS;
  const again = authz.token(new URLSearchParams({ grant_type: 'refresh_token', refresh_token: first.refresh_token }));
  assert.ok(isRefusal(again) && again.error === 'invalid_grant', 'the rotated refresh token is refused past its grace');

  // A request not answered within its time is gone.
  const stale = await consent(authz, authorizeQuery(clientId, LOOPBACK, pkce));
  clock.now += REQUEST_TTL_MS;
  assert.equal(authz.waiting(stale.id, stale.csrf), undefined);
});

test('deny answers access_denied; the token endpoint refuses what it does not support', async () => {
  const { authz, clientId } = rig();
  const pkce = pkcePair();
  const noRedirect = new URLSearchParams(authorizeQuery(clientId, LOOPBACK, pkce));
  noRedirect.delete('redirect_uri');
  const request = await consent(authz, noRedirect);
  assert.equal(request.redirect_uri, LOOPBACK, 'the one loopback URI registered, when none is named');
  const location = new URL(authz.decide(request, false));
  assert.equal(location.searchParams.get('error'), 'access_denied');
  assert.equal(location.searchParams.get('state'), 'state-123');
  assert.equal(location.searchParams.get('iss'), ORIGIN);
  assert.equal(location.searchParams.get('code'), null);
  assert.equal(authz.grants.all.length, 0);

  const refusal = (form: Record<string, string>) => {
    const answer = authz.token(new URLSearchParams(form));
    assert.ok(isRefusal(answer));
    return answer.error;
  };
  assert.equal(refusal({ grant_type: 'client_credentials' }), 'unsupported_grant_type');
  assert.equal(refusal({ grant_type: 'password', username: 'u', password: 'p' }), 'unsupported_grant_type');
  assert.equal(refusal({}), 'unsupported_grant_type');
  assert.equal(refusal({ grant_type: 'authorization_code', code: 'x', client_id: clientId }), 'invalid_request');
  assert.equal(
    refusal({ grant_type: 'authorization_code', code: 'x', client_id: clientId, code_verifier: pkce.verifier }),
    'invalid_grant',
  );
  assert.equal(refusal({ grant_type: 'refresh_token' }), 'invalid_request');
});

test('holders lists the clients with tokens; revoke by name (any case) or by id', async () => {
  const { authz, clientId, clock } = rig('Claude Code');
  const other = register(authz, 'Cursor');
  const idle = register(authz, 'Never Approved');
  const claude = await approved(authz, clientId);
  await approved(authz, clientId);
  clock.now += 1_000;
  const cursor = await approved(authz, other);

  const holders = authz.holders();
  assert.deepEqual(
    holders.map((h) => [h.client_name, h.grants, h.kind]),
    [
      ['Cursor', 1, 'registered'],
      ['Claude Code', 2, 'registered'],
    ],
  );
  assert.ok(!holders.some((h) => h.client_id === idle), 'a client without tokens is no holder');
  assert.equal(holders[1]?.first_approved_at, new Date(1_700_000_000_000).toISOString());

  assert.deepEqual(authz.revoke('nobody'), []);
  assert.deepEqual(
    authz.revoke('  claude CODE ').map((h) => h.client_id),
    [clientId],
  );
  assert.equal(authz.grants.verify(claude.access_token), 'unknown');
  assert.equal(typeof authz.grants.verify(cursor.access_token), 'object');
  assert.deepEqual(
    authz.revoke(other).map((h) => h.client_name),
    ['Cursor'],
  );
  assert.equal(authz.grants.verify(cursor.access_token), 'unknown');
  assert.deepEqual(authz.holders(), []);
});

test('a revoke also ends what the client had under way: a code not yet traded, a request waiting', async () => {
  const { authz, clientId } = rig('Revoked Soon');
  await approved(authz, clientId);
  const pkce = pkcePair();
  const pending = await consent(authz, authorizeQuery(clientId, LOOPBACK, pkce));
  const code = new URL(authz.decide(await consent(authz, authorizeQuery(clientId, LOOPBACK, pkce)), true)).searchParams.get('code') ?? '';
  assert.equal(authz.revoke('Revoked Soon').length, 1);
  assert.equal(authz.waiting(pending.id), undefined, 'the waiting request is gone');
  const traded = authz.token(
    new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      client_id: clientId,
      code_verifier: pkce.verifier,
      redirect_uri: LOOPBACK,
    }),
  );
  assert.ok(isRefusal(traded) && traded.error === 'invalid_grant', 'the untraded code is dead');
});

test('a flood of registrations never takes the registration of a client whose login waits for the user', async () => {
  const { authz, clientId } = rig('Waiting Client');
  const request = await consent(authz, authorizeQuery(clientId, LOOPBACK, pkcePair()));
  for (let i = 0; i < MAX_REGISTRATIONS + 20; i++) authz.register({ client_name: `flood ${i}`, redirect_uris: [LOOPBACK] });
  assert.ok(authz.clients.known(clientId), 'its registration stays');
  assert.ok(authz.waiting(request.id));
});

test('registrations and grants written to the store come back after a restart', async () => {
  let saved: ReturnType<AuthzStore['load']> = { clients: [], grants: [] };
  const store: AuthzStore = {
    load: () => JSON.parse(JSON.stringify(saved)) as typeof saved,
    save: (snapshot) => void (saved = JSON.parse(JSON.stringify(snapshot)) as typeof saved),
  };
  const before = rig('Persistent', store);
  const issued = await approved(before.authz, before.clientId);
  assert.ok(!JSON.stringify(saved).includes(issued.access_token) && !JSON.stringify(saved).includes(issued.refresh_token));

  const after = new AuthorizationServer({ store, now: () => before.clock.now + 60_000 });
  assert.equal(typeof after.grants.verify(issued.access_token), 'object');
  assert.equal(after.holders()[0]?.client_name, 'Persistent');
  tokens(after.token(new URLSearchParams({ grant_type: 'refresh_token', refresh_token: issued.refresh_token })));
  // The registration came back too: the client may ask again without registering.
  await consent(after, authorizeQuery(before.clientId, LOOPBACK, pkcePair()));
});
