/** One-time codes and browser sessions (web-auth.ts), on a fake clock. */
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { CODE_TTL_MS, COOKIE_NAME, COOKIE_TTL_MS, WebAuth, cookieValue } from '../../src/daemon/web/web-auth.js';

const TOKEN = 'a'.repeat(43);

function request(headers: Record<string, string>): IncomingMessage {
  return { headers } as unknown as IncomingMessage;
}

test('a code is good once and only until it expires; the cookie it buys lasts its own time', () => {
  let now = 1_000_000;
  const auth = new WebAuth(TOKEN, { now: () => now });
  const { code, expiresInS } = auth.issueCode();
  assert.equal(expiresInS, CODE_TTL_MS / 1000);
  const cookie = auth.redeem(code);
  assert.ok(cookie);
  assert.equal(auth.redeem(code), null, 'used');
  assert.equal(auth.credential(request({ cookie: `other=1; ${COOKIE_NAME}=${cookie}` })), 'cookie');

  const late = auth.issueCode().code;
  now += CODE_TTL_MS;
  assert.equal(auth.redeem(late), null, 'expired');

  now += COOKIE_TTL_MS - CODE_TTL_MS - 1;
  assert.equal(auth.credential(request({ cookie: `${COOKIE_NAME}=${cookie}` })), 'cookie');
  now += 1;
  assert.equal(auth.credential(request({ cookie: `${COOKIE_NAME}=${cookie}` })), null, 'the session expired');
});

test('the bearer token counts, a wrong one or a made-up cookie does not; a flood of codes stays bounded', () => {
  const auth = new WebAuth(TOKEN);
  assert.equal(auth.credential(request({ authorization: `Bearer ${TOKEN}` })), 'bearer');
  assert.equal(auth.credential(request({ authorization: `bearer ${TOKEN}` })), 'bearer');
  assert.equal(auth.credential(request({ authorization: `Bearer ${TOKEN}x` })), null);
  assert.equal(auth.credential(request({ authorization: TOKEN })), null);
  assert.equal(auth.credential(request({ cookie: `${COOKIE_NAME}=${TOKEN}` })), null, 'the token is no cookie');
  assert.equal(auth.redeem(TOKEN), null, 'the token is no code');

  const first = auth.issueCode().code;
  for (let i = 0; i < 10_000; i++) auth.issueCode();
  assert.equal(auth.redeem(first), null, 'the oldest codes are evicted, not kept without bound');
  const last = auth.issueCode().code;
  assert.ok(auth.redeem(last));
});

test('the Set-Cookie header keeps the cookie from scripts and other sites', () => {
  const header = new WebAuth(TOKEN).setCookieHeader('v');
  assert.match(header, /^exai_ws_session=v; /);
  for (const part of ['HttpOnly', 'SameSite=Strict', 'Path=/', `Max-Age=${COOKIE_TTL_MS / 1000}`])
    assert.ok(header.includes(`; ${part}`), part);
  assert.equal(cookieValue('a=1; exai_ws_session=xyz ; b=2', COOKIE_NAME), 'xyz');
  assert.equal(cookieValue('exai_ws_session_x=1', COOKIE_NAME), undefined);
  assert.equal(cookieValue(undefined, COOKIE_NAME), undefined);
});

test('a consent key: one of the kept keys is enough; it lasts a session, dies with a new token, never is a cookie', () => {
  let now = 1_000_000;
  const auth = new WebAuth(TOKEN, { now: () => now });
  const key = auth.issueConsentKey();
  assert.ok(auth.consentKeyValid(key));
  // The browser sends every key it kept (newest first): junk pushed in before it does not hide it.
  assert.ok(auth.consentKeyValid(`${'x'.repeat(43)} ${'y'.repeat(43)} ${key}`));
  assert.ok(!auth.consentKeyValid(`${'x'.repeat(43)} ${'y'.repeat(43)} ${'z'.repeat(43)} ${'w'.repeat(43)} ${key}`), 'at most 4 are read');
  assert.ok(!auth.consentKeyValid(''));
  assert.ok(!auth.consentKeyValid('made-up'));
  assert.equal(auth.credential(request({ cookie: `${COOKIE_NAME}=${key}` })), null, 'a key is no session cookie');
  now += COOKIE_TTL_MS;
  assert.ok(!auth.consentKeyValid(key), 'expired with the session time');
  const fresh = auth.issueConsentKey();
  auth.setToken('b'.repeat(43));
  assert.ok(!auth.consentKeyValid(fresh), 'a new token forgets the keys');
});
