/**
 * Codes and tokens of the daemon's authorization server (daemon/authz/grants.ts), on a fake
 * clock: a code is good once and briefly, tokens expire and rotate, revocation kills a grant,
 * grants survive a restart as hashes only.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isRefusal, type OAuthRefusal } from '../../src/daemon/authz/clients.js';
import {
  ACCESS_TOKEN_TTL_MS,
  CODE_TTL_MS,
  Grants,
  REFRESH_GRACE_MS,
  REFRESH_TOKEN_TTL_MS,
  verifierMatches,
  type Approval,
  type TokenAnswer,
} from '../../src/daemon/authz/grants.js';
import { pkcePair, type Pkce } from '../fixtures/authz-flow.js';

const CLIENT = 'exai-client-a';
const REDIRECT = 'http://127.0.0.1:5555/cb';

function approval(pkce: Pkce, clientId = CLIENT): Approval {
  return {
    client_id: clientId,
    client_name: `Client ${clientId}`,
    redirect_uri: REDIRECT,
    code_challenge: pkce.challenge,
    scope: 'mcp',
    resource: 'http://127.0.0.1:8765/mcp',
  };
}

function tokens(answer: TokenAnswer | OAuthRefusal): TokenAnswer {
  if (isRefusal(answer)) assert.fail(`refused: ${answer.error}: ${answer.error_description}`);
  return answer;
}

function refused(answer: TokenAnswer | OAuthRefusal, error: string, why?: RegExp): void {
  assert.ok(isRefusal(answer), `expected ${error}, got tokens`);
  assert.equal(answer.error, error, answer.error_description);
  if (why) assert.match(answer.error_description, why);
}

/** A grant of CLIENT (its first tokens) on `grants`. */
function granted(grants: Grants, clientId = CLIENT): TokenAnswer {
  const pkce = pkcePair();
  const code = grants.issueCode(approval(pkce, clientId));
  return tokens(grants.trade({ code, client_id: clientId, code_verifier: pkce.verifier, redirect_uri: REDIRECT }));
}

test('a code is good once: a second trade revokes what the first one got', () => {
  const grants = new Grants({ now: () => 1_000 });
  const pkce = pkcePair();
  const code = grants.issueCode(approval(pkce));
  const first = tokens(grants.trade({ code, client_id: CLIENT, code_verifier: pkce.verifier, redirect_uri: REDIRECT }));
  assert.equal(first.token_type, 'Bearer');
  assert.equal(first.expires_in, ACCESS_TOKEN_TTL_MS / 1000);
  assert.equal(first.scope, 'mcp');
  const grant = grants.verify(first.access_token);
  assert.ok(typeof grant === 'object' && grant.client_id === CLIENT);

  refused(grants.trade({ code, client_id: CLIENT, code_verifier: pkce.verifier }), 'invalid_grant', /used already/);
  assert.equal(grants.verify(first.access_token), 'unknown', 'the first trade’s access token is revoked');
  refused(grants.refresh({ refresh_token: first.refresh_token }), 'invalid_grant');
  assert.equal(grants.all.length, 0);
  refused(grants.trade({ code, client_id: CLIENT, code_verifier: pkce.verifier }), 'invalid_grant', /unknown or expired/);
});

test('a code is refused with the wrong verifier, client, redirect_uri or resource; and after 5 min', () => {
  let now = 1_000;
  const grants = new Grants({ now: () => now });
  const pkce = pkcePair();
  const code = grants.issueCode(approval(pkce));
  const base = { code, client_id: CLIENT, code_verifier: pkce.verifier };
  refused(grants.trade({ ...base, code_verifier: pkcePair().verifier }), 'invalid_grant', /PKCE/);
  refused(grants.trade({ ...base, code_verifier: pkce.challenge }), 'invalid_grant', /PKCE/);
  refused(grants.trade({ ...base, client_id: 'exai-client-b' }), 'invalid_grant', /another client/);
  refused(grants.trade({ ...base, redirect_uri: 'http://127.0.0.1:5556/cb' }), 'invalid_grant', /redirect_uri/);
  refused(grants.trade({ ...base, resource: 'http://127.0.0.1:8765/other' }), 'invalid_target');
  refused(grants.trade({ ...base, code: 'exai_ac_made-up' }), 'invalid_grant');
  assert.equal(grants.all.length, 0, 'no refusal granted anything');
  // The refusals did not use the code up: the client itself may still trade it.
  tokens(grants.trade(base));

  const late = pkcePair();
  const lateCode = grants.issueCode(approval(late));
  now += CODE_TTL_MS;
  refused(grants.trade({ code: lateCode, client_id: CLIENT, code_verifier: late.verifier }), 'invalid_grant', /expired/);

  assert.equal(verifierMatches('short', 'x'), false);
});

test('an access token expires after 1 h; a refresh gives new tokens; the replaced refresh token is honoured for a minute, then refused', () => {
  let now = 1_000_000;
  const grants = new Grants({ now: () => now });
  const first = granted(grants);
  now += ACCESS_TOKEN_TTL_MS - 1;
  assert.equal(typeof grants.verify(first.access_token), 'object');
  now += 1;
  assert.equal(grants.verify(first.access_token), 'expired');

  const second = tokens(grants.refresh({ refresh_token: first.refresh_token, client_id: CLIENT }));
  assert.notEqual(second.access_token, first.access_token);
  assert.notEqual(second.refresh_token, first.refresh_token);
  assert.equal(typeof grants.verify(second.access_token), 'object');
  // Within a minute of the rotation the replaced token still works (two processes of one client
  // refreshing at once) and gives the same new refresh token: the login stays one chain.
  const raced = tokens(grants.refresh({ refresh_token: first.refresh_token, client_id: CLIENT }));
  assert.equal(raced.refresh_token, second.refresh_token);
  assert.notEqual(raced.access_token, second.access_token);
  refused(grants.refresh({ refresh_token: second.refresh_token, client_id: 'exai-client-b' }), 'invalid_grant', /another client/);
  refused(grants.refresh({ refresh_token: second.refresh_token, scope: 'mcp admin' }), 'invalid_scope');
  assert.equal(grants.all.length, 1, 'one approval, one grant');

  // A refresh while the access token is still good: the previous one stays good until it expires.
  const third = tokens(grants.refresh({ refresh_token: second.refresh_token }));
  assert.equal(typeof grants.verify(raced.access_token), 'object');
  assert.equal(typeof grants.verify(third.access_token), 'object');
  // Two rotations on, the first refresh token is a loose copy: its use revokes the login.
  refused(grants.refresh({ refresh_token: first.refresh_token }), 'invalid_grant', /used already: the login is revoked/);
  assert.equal(grants.verify(third.access_token), 'unknown');

  now += REFRESH_TOKEN_TTL_MS;
  refused(grants.refresh({ refresh_token: third.refresh_token }), 'invalid_grant', /expired/);
});

test('a replaced refresh token used after its minute of grace revokes the login: a copy of it is loose', () => {
  let now = 1_000_000;
  const grants = new Grants({ now: () => now });
  const first = granted(grants);
  const second = tokens(grants.refresh({ refresh_token: first.refresh_token }));
  now += REFRESH_GRACE_MS;
  refused(grants.refresh({ refresh_token: first.refresh_token }), 'invalid_grant', /used already/);
  assert.equal(grants.verify(second.access_token), 'unknown', 'the whole login is revoked');
  refused(grants.refresh({ refresh_token: second.refresh_token }), 'invalid_grant');
  assert.equal(grants.all.length, 0);
});

test('revoking by access or refresh token kills the grant; revokeClient kills all of a client’s', () => {
  const grants = new Grants({ now: () => 1_000 });
  const byAccess = granted(grants);
  const byRefresh = granted(grants);
  const other = granted(grants, 'exai-client-b');
  assert.equal(grants.all.length, 3);

  grants.revokeToken(byAccess.access_token);
  assert.equal(grants.verify(byAccess.access_token), 'unknown');
  refused(grants.refresh({ refresh_token: byAccess.refresh_token }), 'invalid_grant');

  grants.revokeToken(byRefresh.refresh_token);
  assert.equal(grants.verify(byRefresh.access_token), 'unknown');
  refused(grants.refresh({ refresh_token: byRefresh.refresh_token }), 'invalid_grant');
  grants.revokeToken('exai_at_never-issued');
  assert.equal(typeof grants.verify(other.access_token), 'object', 'other grants are untouched');

  granted(grants);
  const again = granted(grants);
  assert.equal(grants.revokeClient(CLIENT), 2);
  assert.equal(grants.verify(again.access_token), 'unknown');
  assert.equal(grants.revokeClient(CLIENT), 0);
  assert.equal(typeof grants.verify(other.access_token), 'object');
  assert.deepEqual(
    grants.all.map((g) => g.client_id),
    ['exai-client-b'],
  );
});

test('grants survive a restart (restored from what was written), and what is written holds no token', () => {
  let now = 1_000;
  let writes = 0;
  const before = new Grants({ now: () => now, changed: () => writes++ });
  const issued = granted(before);
  const refreshed = granted(before, 'exai-client-b');
  assert.ok(writes > 0, 'a change is written');

  const written = JSON.stringify(before.all);
  for (const secret of [issued.access_token, issued.refresh_token, refreshed.access_token, refreshed.refresh_token])
    assert.ok(!written.includes(secret), 'no token in clear');
  assert.doesNotMatch(written, /exai_(at|rt)_/);

  now += 60_000;
  const after = new Grants({ now: () => now, restored: JSON.parse(written) as Grants['all'] });
  const grant = after.verify(issued.access_token);
  assert.ok(typeof grant === 'object' && grant.client_id === CLIENT, 'the access token still verifies after a restart');
  const next = tokens(after.refresh({ refresh_token: refreshed.refresh_token, client_id: 'exai-client-b' }));
  assert.equal(typeof after.verify(next.access_token), 'object');
  after.revokeToken(issued.refresh_token);
  assert.equal(after.verify(issued.access_token), 'unknown');
});
