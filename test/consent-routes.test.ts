/**
 * `/oauth/authorize` over real HTTP (daemon/web/consent-routes.ts), in this process: a node:http
 * server on 127.0.0.1 port 0 routing to a real ConsentRoutes with a real AuthorizationServer and
 * WebAuth on a fake clock. What it proves: a client cannot get a code without the user. Without
 * the browser's cookie, from another origin, with another form's anti-forgery value, with a
 * used or expired one-time code, or towards a redirect URI off this machine, no redirect to the
 * client happens; with the user's cookie and click, it does, and the code trades for tokens.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import pino from 'pino';
import { AUTHZ_PATHS, AuthorizationServer, MAX_PENDING } from '../src/daemon/authz/authorization-server.js';
import { isRefusal } from '../src/daemon/authz/clients.js';
import { ConnectionGuard } from '../src/daemon/web/connections.js';
import { ConsentRoutes } from '../src/daemon/web/consent-routes.js';
import { CODE_TTL_MS, WebAuth } from '../src/daemon/web/web-auth.js';
import {
  authorizeQuery,
  consentKeyOf,
  cookieOf,
  hiddenFields,
  pkcePair,
  postForm,
  send,
  type Answer,
  type Pkce,
} from './fixtures/authz-flow.js';

const CALLBACK = 'http://127.0.0.1:5555/cb';

interface Rig {
  base: string;
  port: number;
  authz: AuthorizationServer;
  auth: WebAuth;
  clock: { now: number };
}

async function consentServer(t: TestContext): Promise<Rig> {
  const clock = { now: 1_700_000_000_000 };
  const authz = new AuthorizationServer({ now: () => clock.now, fetch: () => Promise.reject(new Error('no fetch here')) });
  const auth = new WebAuth('t'.repeat(43), { now: () => clock.now });
  const guard = new ConnectionGuard({
    maxUnauthenticated: 64,
    fdReserve: 0,
    descriptors: { limit: () => undefined, inUse: () => undefined },
    reject: () => undefined,
    log: () => undefined,
  });
  const routes = new ConsentRoutes({ authz, auth, guard, logger: pino({ level: 'silent' }), toolCount: () => Promise.resolve(3) });
  const server = createServer((req, res) => {
    if ((req.url ?? '').split('?')[0] === AUTHZ_PATHS.authorize) return routes.handle(req, res);
    res.writeHead(404).end();
  });
  server.on('connection', (socket) => guard.admit(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    guard.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  const { port } = server.address() as AddressInfo;
  return { base: `http://127.0.0.1:${port}`, port, authz, auth, clock };
}

function register(authz: AuthorizationServer, name: string): string {
  const answer = authz.register({ client_name: name, redirect_uris: ['https://client.example.com/cb', 'http://127.0.0.1/cb'] });
  if (isRefusal(answer)) assert.fail(answer.error_description);
  return answer.client_id as string;
}

/** A client's authorization request, as the browser opens it without the cookie: the code page's fields. */
async function started(
  rig: Rig,
  name = 'Flow Client',
): Promise<{ clientId: string; pkce: Pkce; request: string; csrf: string; page: Answer }> {
  const clientId = register(rig.authz, name);
  const pkce = pkcePair();
  const page = await send(rig.base, `${AUTHZ_PATHS.authorize}?${authorizeQuery(clientId, CALLBACK, pkce).toString()}`);
  assert.equal(page.status, 200, page.body);
  assert.match(page.body, /asks to use exai-ws/);
  return { clientId, pkce, ...hiddenFields(page.body), page };
}

/**
 * The browser trades a one-time code (the link `exai-ws open --print` prints) for the cookie and
 * the consent key (in the redirect's fragment: the page keeps it in its origin's storage).
 */
async function loggedIn(rig: Rig, fields: { request: string; csrf: string }): Promise<{ cookie: string; key: string }> {
  const link = `${rig.base}/?code=${rig.auth.issueCode().code}`;
  const answer = await postForm(
    rig.base,
    AUTHZ_PATHS.authorize,
    { request: fields.request, csrf: fields.csrf, code: link },
    { origin: rig.base },
  );
  assert.equal(answer.status, 303, answer.body);
  assert.match(
    answer.headers.location ?? '',
    new RegExp(`^${AUTHZ_PATHS.authorize}\\?request=${encodeURIComponent(fields.request)}#consent=[\\w-]{40,}$`),
  );
  const cookie = cookieOf(answer);
  if (cookie === undefined || !cookie.startsWith('exai_ws_session=')) assert.fail('the code bought no cookie');
  const key = consentKeyOf(answer);
  if (key === undefined) assert.fail('the code bought no consent key');
  return { cookie, key };
}

function noRedirect(answer: Answer, status: number): void {
  assert.equal(answer.status, status, answer.body);
  assert.equal(answer.headers.location, undefined, 'no redirect to the client');
}

function framingRefused(headers: IncomingHttpHeaders): void {
  assert.match(String(headers['content-security-policy']), /frame-ancestors 'none'/);
  assert.equal(headers['x-frame-options'], 'DENY');
  assert.equal(headers['access-control-allow-origin'], undefined);
  assert.equal(headers['cache-control'], 'no-store');
}

test('the happy path: code, cookie, consent, allow, a code at the loopback redirect URI that trades for tokens', async (t) => {
  const rig = await consentServer(t);
  const { clientId, pkce, request, csrf } = await started(rig);
  const { cookie, key } = await loggedIn(rig, { request, csrf });

  const consent = await send(rig.base, `${AUTHZ_PATHS.authorize}?request=${encodeURIComponent(request)}`, { headers: { cookie } });
  assert.equal(consent.status, 200);
  assert.match(consent.body, /Allow Flow Client to use exai-ws \(3 tools\)\?/);
  framingRefused(consent.headers);
  assert.deepEqual(hiddenFields(consent.body), { request, csrf });

  const allow = await postForm(rig.base, AUTHZ_PATHS.authorize, { request, csrf, key, decision: 'allow' }, { origin: rig.base, cookie });
  assert.equal(allow.status, 303, allow.body);
  const location = new URL(allow.headers.location ?? '');
  assert.equal(location.origin + location.pathname, CALLBACK);
  assert.equal(location.searchParams.get('state'), 'state-123');
  assert.equal(location.searchParams.get('iss'), rig.base);
  const code = location.searchParams.get('code') ?? '';

  const answer = rig.authz.token(
    new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      client_id: clientId,
      code_verifier: pkce.verifier,
      redirect_uri: CALLBACK,
    }),
  );
  assert.ok(!isRefusal(answer), JSON.stringify(answer));
  assert.equal(typeof rig.authz.grants.verify(answer.access_token), 'object');

  const twice = await postForm(rig.base, AUTHZ_PATHS.authorize, { request, csrf, key, decision: 'allow' }, { origin: rig.base, cookie });
  noRedirect(twice, 400);
});

test('deny sends the client access_denied and no code', async (t) => {
  const rig = await consentServer(t);
  const fields = await started(rig);
  const { cookie, key } = await loggedIn(rig, fields);
  const deny = await postForm(
    rig.base,
    AUTHZ_PATHS.authorize,
    { request: fields.request, csrf: fields.csrf, key, decision: 'deny' },
    { origin: rig.base, cookie },
  );
  assert.equal(deny.status, 303);
  const location = new URL(deny.headers.location ?? '');
  assert.equal(location.searchParams.get('error'), 'access_denied');
  assert.equal(location.searchParams.get('code'), null);
});

test('without the cookie, from another origin or with another csrf, an allow POST redirects nowhere', async (t) => {
  const rig = await consentServer(t);
  const { request, csrf } = await started(rig);
  const allow: Record<string, string> = { request, csrf, decision: 'allow' };

  const noCookie = await postForm(rig.base, AUTHZ_PATHS.authorize, allow, { origin: rig.base });
  noRedirect(noCookie, 401);
  assert.match(noCookie.body, /not logged in/);
  assert.equal(noCookie.headers['set-cookie'], undefined);

  const { cookie, key } = await loggedIn(rig, { request, csrf });
  // The cookie alone, as a program on another port of 127.0.0.1 gets it from the browser (cookies
  // ignore ports), with every other field right: no redirect, the code form again.
  const cookieAlone = await postForm(rig.base, AUTHZ_PATHS.authorize, allow, { origin: rig.base, cookie });
  noRedirect(cookieAlone, 401);
  assert.match(cookieAlone.body, /no approval key/);
  noRedirect(await postForm(rig.base, AUTHZ_PATHS.authorize, { ...allow, key: 'made-up' }, { origin: rig.base, cookie }), 401);
  allow.key = key;
  const otherPort = rig.port === 65535 ? 1 : rig.port + 1;
  for (const origin of [`http://127.0.0.1:${otherPort}`, `http://localhost:${rig.port}`, 'https://evil.example', 'null', undefined]) {
    const headers: Record<string, string> = { cookie };
    if (origin !== undefined) headers.origin = origin;
    noRedirect(await postForm(rig.base, AUTHZ_PATHS.authorize, allow, headers), 403);
  }
  const crossSite = await postForm(rig.base, AUTHZ_PATHS.authorize, allow, { origin: rig.base, cookie, 'sec-fetch-site': 'cross-site' });
  noRedirect(crossSite, 403);

  noRedirect(await postForm(rig.base, AUTHZ_PATHS.authorize, { ...allow, csrf: 'forged' }, { origin: rig.base, cookie }), 400);
  noRedirect(await postForm(rig.base, AUTHZ_PATHS.authorize, { request, key, decision: 'allow' }, { origin: rig.base, cookie }), 400);
  const other = await started(rig, 'Other Client');
  noRedirect(await postForm(rig.base, AUTHZ_PATHS.authorize, { ...allow, csrf: other.csrf }, { origin: rig.base, cookie }), 400);
  noRedirect(await postForm(rig.base, AUTHZ_PATHS.authorize, { ...allow, decision: 'maybe' }, { origin: rig.base, cookie }), 400);

  // None of that used the request up: the user can still answer it.
  const allowed = await postForm(rig.base, AUTHZ_PATHS.authorize, allow, { origin: rig.base, cookie });
  assert.equal(allowed.status, 303);
  assert.ok(allowed.headers.location?.startsWith(`${CALLBACK}?code=`));
});

test('a used or expired one-time code buys no cookie', async (t) => {
  const rig = await consentServer(t);
  const { request, csrf } = await started(rig);
  const fields = { request, csrf };
  const code = rig.auth.issueCode().code;
  const first = await postForm(rig.base, AUTHZ_PATHS.authorize, { ...fields, code }, { origin: rig.base });
  assert.equal(first.status, 303);
  const reused = await postForm(rig.base, AUTHZ_PATHS.authorize, { ...fields, code }, { origin: rig.base });
  noRedirect(reused, 401);
  assert.equal(reused.headers['set-cookie'], undefined);
  assert.match(reused.body, /used already, has expired/);

  const late = rig.auth.issueCode().code;
  rig.clock.now += CODE_TTL_MS;
  const expired = await postForm(rig.base, AUTHZ_PATHS.authorize, { ...fields, code: `${rig.base}/?code=${late}` }, { origin: rig.base });
  noRedirect(expired, 401);
  assert.equal(expired.headers['set-cookie'], undefined);

  const madeUp = await postForm(rig.base, AUTHZ_PATHS.authorize, { ...fields, code: 'x'.repeat(43) }, { origin: rig.base });
  noRedirect(madeUp, 401);
  assert.equal(madeUp.headers['set-cookie'], undefined);
  // A code POST from elsewhere is refused before the code is even looked at.
  const fresh = rig.auth.issueCode().code;
  noRedirect(await postForm(rig.base, AUTHZ_PATHS.authorize, { ...fields, code: fresh }, { origin: 'https://evil.example' }), 403);
  assert.ok(rig.auth.redeem(fresh), 'the refused POST did not burn the code');
});

test('a redirect URI off this machine, or an unknown client, gets an error page and no redirect', async (t) => {
  const rig = await consentServer(t);
  const clientId = register(rig.authz, 'Web Client');
  const pkce = pkcePair();
  for (const uri of ['https://client.example.com/cb', 'http://192.168.1.10/cb', 'http://127.0.0.1:5555/not-registered']) {
    const page = await send(rig.base, `${AUTHZ_PATHS.authorize}?${authorizeQuery(clientId, uri, pkce).toString()}`);
    noRedirect(page, 400);
    assert.match(page.body, /cannot go on/);
    framingRefused(page.headers);
  }
  noRedirect(await send(rig.base, `${AUTHZ_PATHS.authorize}?${authorizeQuery('exai-unknown', CALLBACK, pkce).toString()}`), 400);
  noRedirect(await send(rig.base, `${AUTHZ_PATHS.authorize}?request=made-up`), 400);
});

test('the pages cannot be framed, send no CORS header, and escape the client’s name', async (t) => {
  const rig = await consentServer(t);
  const name = '<script>alert("x")</script> & Co';
  const { request, csrf, page } = await started(rig, name);
  framingRefused(page.headers);
  assert.ok(!page.body.includes('<script>'), 'no script from the client’s name on the code page');
  assert.match(page.body, /&#60;script&#62;alert\(&#34;x&#34;\)&#60;\/script&#62; &#38; Co asks to use exai-ws/);

  const { cookie } = await loggedIn(rig, { request, csrf });
  const consent = await send(rig.base, `${AUTHZ_PATHS.authorize}?request=${encodeURIComponent(request)}`, {
    headers: { cookie, origin: 'http://127.0.0.1:5555' },
  });
  assert.equal(consent.status, 200);
  framingRefused(consent.headers);
  assert.ok(!consent.body.includes('<script>alert'), 'no script from the client’s name on the consent page');
  // Its own one script runs, pinned by hash; no other could.
  assert.match(String(consent.headers['content-security-policy']), /script-src 'sha256-[\w+/=]{44}'/);
  assert.equal(consent.body.split('<script>').length, 2, 'one script on the consent page');
  // Its buttons start disabled: the script wakes them once the page is visible and focused.
  assert.match(consent.body, /value="allow" data-wait disabled>/);
  assert.match(consent.body, /Allow &#60;script&#62;alert\(&#34;x&#34;\)&#60;\/script&#62; &#38; Co to use exai-ws/);
});

test('a request whose query holds a raw "?" (legal in a query, RFC 3986) is read whole', async (t) => {
  const rig = await consentServer(t);
  const clientId = register(rig.authz, 'Raw Client');
  const query = authorizeQuery(clientId, CALLBACK, pkcePair());
  query.delete('state');
  const page = await send(rig.base, `${AUTHZ_PATHS.authorize}?state=ab?cd&${query.toString()}`);
  assert.equal(page.status, 200, page.body);
  const fields = hiddenFields(page.body);
  const { cookie, key } = await loggedIn(rig, fields);
  const allow = await postForm(rig.base, AUTHZ_PATHS.authorize, { ...fields, key, decision: 'allow' }, { origin: rig.base, cookie });
  assert.equal(allow.status, 303, allow.body);
  assert.equal(new URL(allow.headers.location ?? '').searchParams.get('state'), 'ab?cd');
});

test("the page opens only as the browser's own page: never inside a frame or from another site", async (t) => {
  const rig = await consentServer(t);
  const clientId = register(rig.authz, 'Framed Client');
  const path = `${AUTHZ_PATHS.authorize}?${authorizeQuery(clientId, CALLBACK, pkcePair()).toString()}`;
  const framedOrCrossSite: Record<string, string>[] = [
    { 'sec-fetch-dest': 'iframe' },
    { 'sec-fetch-dest': 'frame' },
    { 'sec-fetch-site': 'cross-site', 'sec-fetch-dest': 'document' },
  ];
  for (const headers of framedOrCrossSite) {
    const page = await send(rig.base, path, { headers });
    noRedirect(page, 403);
    assert.doesNotMatch(page.body, /name="csrf"/);
  }
  // Opened by the user (a client hands the URL to the browser), or from a page of this machine.
  for (const site of ['none', 'same-origin', 'same-site']) {
    const page = await send(rig.base, path, { headers: { 'sec-fetch-site': site, 'sec-fetch-dest': 'document' } });
    assert.equal(page.status, 200, site);
  }
});

test('a flood of authorization requests does not take the page from under the user', async (t) => {
  const rig = await consentServer(t);
  const { request, csrf } = await started(rig, 'Real Client');
  const { cookie } = await loggedIn(rig, { request, csrf });
  // The user's browser shows the request (it is then kept before any other).
  const shown = await send(rig.base, `${AUTHZ_PATHS.authorize}?request=${encodeURIComponent(request)}`, { headers: { cookie } });
  assert.equal(shown.status, 200);
  // Many clients (each is held to a few requests of its own), past the bound of all requests.
  const floods = Array.from({ length: 12 }, (_, i) => register(rig.authz, `Flood ${i}`));
  for (let i = 0; i < MAX_PENDING + 16; i++) {
    const flood = floods[i % floods.length] as string;
    const page = await send(rig.base, `${AUTHZ_PATHS.authorize}?${authorizeQuery(flood, CALLBACK, pkcePair()).toString()}`);
    assert.equal(page.status, 200);
  }
  assert.ok(rig.authz.waiting(request, csrf), 'the request the user saw still waits for the user');

  // When every waiting request was seen (a browser with the cookie looked at them all), a new one
  // is refused: none the user looks at is taken away.
  for (const flood of floods) {
    for (let i = 0; i < 8; i++) {
      const page = await send(rig.base, `${AUTHZ_PATHS.authorize}?${authorizeQuery(flood, CALLBACK, pkcePair()).toString()}`);
      if (page.status !== 200) break;
      const fields = hiddenFields(page.body);
      assert.equal(
        (await send(rig.base, `${AUTHZ_PATHS.authorize}?request=${encodeURIComponent(fields.request)}`, { headers: { cookie } })).status,
        200,
      );
    }
  }
  const refused = await send(rig.base, `${AUTHZ_PATHS.authorize}?${authorizeQuery(floods[0] as string, CALLBACK, pkcePair()).toString()}`);
  noRedirect(refused, 400);
  assert.match(refused.body, /too many logins wait/);
  assert.ok(rig.authz.waiting(request, csrf), 'still there');
});
