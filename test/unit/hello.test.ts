/**
 * The hello handshake's checks (src/protocol/hello.ts), without a socket: what a first frame may
 * be (a hello, or a challenge), every refusal with its code and words (the client shows them),
 * the client's check of the daemon's proof frame, and the exact shape of an ack frame.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ACK_PREFIX,
  PROTOCOL_VERSION,
  checkHello,
  checkOpening,
  isNonce,
  parseAck,
  parseProofFrame,
  type OpeningRefusal,
} from '../../src/protocol/hello.js';

const NONCE = 'A'.repeat(42) + '_';
const HELLO = { type: 'hello', protocol: PROTOCOL_VERSION };

/** `text` (or a value, stringified) is refused with `code`, and the message matches `words`. */
function refused(text: unknown, code: OpeningRefusal['code'], words: RegExp): void {
  const frame = typeof text === 'string' ? text : JSON.stringify(text);
  for (const check of [checkHello(frame), checkOpening(frame)]) {
    assert.equal(check.ok, false, `${frame} is refused`);
    if (check.ok) return;
    assert.equal(check.code, code, frame);
    assert.match(check.message, words, frame);
  }
}

test('a minimal hello, and one with every field, are accepted as they are', () => {
  const minimal = checkHello(JSON.stringify(HELLO));
  assert.deepEqual(minimal, { ok: true, hello: HELLO });
  const full = {
    ...HELLO,
    session_id: 'abc-DEF_123',
    auth_token: 't'.repeat(4096),
    client: { name: 'n', version: 'v' },
    cwd: '/work',
    server: 'memory',
    pid: 4242,
    acks: true,
    received: 0,
    future_field: 'ignored',
  };
  assert.deepEqual(checkHello(JSON.stringify(full)), { ok: true, hello: full });
  assert.deepEqual(checkOpening(JSON.stringify(full)), { ok: true, hello: full });
  const proved = checkHello(JSON.stringify({ ...HELLO, auth_proof: 'p'.repeat(256) }));
  assert.equal(proved.ok, true, 'a proof of up to 256 characters');
});

test('not JSON, or not an object: bad_hello', () => {
  refused('{"type":"hello"', 'bad_hello', /^hello is not valid JSON$/);
  refused('', 'bad_hello', /^hello is not valid JSON$/);
  for (const value of ['null', '[]', '[{"type":"hello"}]', '"hello"', '1', 'true']) {
    refused(value, 'bad_hello', /^hello must be a JSON object$/);
  }
});

test('a first frame that is neither hello nor challenge: not_hello (what an older daemon says to a challenge)', () => {
  refused({ type: 'ack', received: 0 }, 'not_hello', /first frame must be \{"type":"hello",\.\.\.\}/);
  refused({ jsonrpc: '2.0', id: 1, method: 'initialize' }, 'not_hello', /or \{"type":"challenge",\.\.\.\}/);
  const challenge = checkHello(JSON.stringify({ type: 'challenge', nonce: NONCE }));
  assert.equal(challenge.ok, false, 'checkHello takes no challenge: the frame after a proof must be the hello');
  assert.equal(!challenge.ok && challenge.code, 'not_hello');
});

test('the protocol: an integer, and the one this daemon speaks', () => {
  for (const protocol of [undefined, '1', 1.5, null, true]) {
    refused({ type: 'hello', protocol }, 'bad_hello', /^hello\.protocol must be an integer$/);
  }
  refused({ type: 'hello', protocol: 2 }, 'unsupported_protocol', /^hello protocol 2 is not supported; this daemon speaks 1$/);
  refused({ type: 'hello', protocol: 0 }, 'unsupported_protocol', /hello protocol 0/);
});

test('every field refusal: bad_hello with words that name the field', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ session_id: 'ab' }, /session_id must be 3-64 characters/],
    [{ session_id: 'x'.repeat(65) }, /session_id must be 3-64 characters/],
    [{ session_id: 'has space' }, /session_id/],
    [{ session_id: 12345 }, /session_id/],
    [{ auth_token: 't'.repeat(4097) }, /auth_token, hello\.cwd, hello\.server and hello\.profile must be strings/],
    [{ auth_token: 5 }, /auth_token/],
    [{ cwd: ['/'] }, /hello\.cwd/],
    [{ cwd: 'c'.repeat(4097) }, /hello\.cwd/],
    [{ server: 's'.repeat(257) }, /hello\.server/],
    [{ server: null }, /hello\.server/],
    [{ profile: 'p'.repeat(257) }, /hello\.profile/],
    [{ profile: 3 }, /hello\.profile/],
    [{ auth_proof: 'p'.repeat(257) }, /auth_proof must be a string/],
    [{ auth_proof: 1 }, /auth_proof/],
    [{ pid: 0 }, /pid must be a positive integer/],
    [{ pid: -1 }, /pid/],
    [{ pid: 1.5 }, /pid/],
    [{ pid: '12' }, /pid/],
    [{ pid: 2 ** 53 }, /pid/],
    [{ acks: 'yes' }, /acks must be true or false/],
    [{ acks: 1 }, /acks/],
    [{ session_id: 'abc', received: -1 }, /received must be a non-negative integer/],
    [{ session_id: 'abc', received: 0.5 }, /received/],
    [{ received: 3 }, /received is only meaningful on a resume: it needs hello\.session_id/],
    [{ client: 'me' }, /client must be an object/],
    [{ client: null }, /client must be an object/],
    [{ client: ['n'] }, /client must be an object/],
    [{ client: { name: 1 } }, /client\.name and version must be strings/],
    [{ client: { version: 'v'.repeat(257) } }, /client\.name and version/],
  ];
  for (const [extra, words] of cases) refused({ ...HELLO, ...extra }, 'bad_hello', words);
});

test('a challenge opens a connection only with a well-formed nonce', () => {
  assert.deepEqual(checkOpening(JSON.stringify({ type: 'challenge', nonce: NONCE, extra: 1 })), {
    ok: true,
    challenge: { type: 'challenge', nonce: NONCE },
  });
  for (const nonce of [undefined, 'short', `${NONCE}A`, 'A'.repeat(42) + '=', 'A'.repeat(42) + '+', 42]) {
    const check = checkOpening(JSON.stringify({ type: 'challenge', nonce }));
    assert.equal(check.ok, false, String(nonce));
    assert.equal(!check.ok && check.code, 'bad_hello');
    assert.match(!check.ok ? check.message : '', /challenge\.nonce must be 32 random bytes as base64url \(43 characters\)/);
  }
  assert.equal(isNonce(NONCE), true);
  assert.equal(isNonce(`${NONCE}\n`), false, 'no trailing newline');
});

test('parseProofFrame: the nonce and proof of a proof frame, null for anything else', () => {
  assert.deepEqual(parseProofFrame(JSON.stringify({ type: 'proof', nonce: NONCE, proof: 'xyz' })), { nonce: NONCE, proof: 'xyz' });
  for (const text of [
    'not json',
    '[]',
    JSON.stringify({ type: 'hello_ack', ok: true }),
    JSON.stringify({ type: 'proof', nonce: 'short', proof: 'xyz' }),
    JSON.stringify({ type: 'proof', nonce: NONCE }),
    JSON.stringify({ type: 'proof', nonce: NONCE, proof: 1 }),
  ]) {
    assert.equal(parseProofFrame(text), null, text);
  }
});

test('parseAck: exactly {"type":"ack","received":N}, N a plain integer of at most 16 digits', () => {
  assert.equal(parseAck('{"type":"ack","received":0}'), 0);
  assert.equal(parseAck('{"type":"ack","received":42}'), 42);
  assert.equal(parseAck(`{"type":"ack","received":${Number.MAX_SAFE_INTEGER}}`), Number.MAX_SAFE_INTEGER);
  assert.ok('{"type":"ack","received":1}'.startsWith(ACK_PREFIX));
  for (const text of [
    '{"type":"ack","received":-1}',
    '{"type":"ack","received":01}',
    '{"type":"ack","received":1.0}',
    '{"type":"ack","received":1e3}',
    '{"type":"ack","received":"1"}',
    '{"type":"ack", "received":1}',
    '{"received":1,"type":"ack"}',
    '{"type":"ack","received":1} ',
    '{"type":"ack","received":1,"x":2}',
    '{"type":"ack","received":12345678901234567}',
    // 16 digits past the largest safe integer: the right shape, a count that cannot be exact.
    '{"type":"ack","received":9999999999999999}',
    '{"jsonrpc":"2.0","id":1,"result":{}}',
  ]) {
    assert.equal(parseAck(text), undefined, text);
  }
});
