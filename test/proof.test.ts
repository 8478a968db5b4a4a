/**
 * The proof (src/local/proof.ts): its functions, the daemon's challenge table (web-auth.ts)
 * on a fake clock, and, against a real daemon, the in-band WebSocket exchange and
 * `POST /auth/challenge` with `Authorization: Exai-Proof`, including every client mistake the
 * daemon must refuse on that connection alone (a malformed or second challenge, a hello
 * without its proof, a huge nonce) while it goes on serving everyone else.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, test } from 'node:test';
import WebSocket from 'ws';
import { CHALLENGE_TTL_MS, MAX_CHALLENGES, WebAuth } from '../src/daemon/web/web-auth.js';
import { fetchFullHealth, provenRequest } from '../src/local/health-client.js';
import { checkOpening, isNonce } from '../src/protocol/hello.js';
import { computeProof, newNonce, parseProofAuthorization, proofAddress, proofAuthorization, proofValid } from '../src/local/proof.js';
import type { IncomingMessage } from 'node:http';
import { Cleanup, closed, getHealth, nextJson, openSocket, sendHello, startDaemon, type DaemonHandle } from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const TOKEN = 'k'.repeat(43);
const CN = newNonce();
const SN = newNonce();

// ---- the functions ------------------------------------------------------------------------

test('a proof is bound to the token, the role, the address and both nonces; checks never throw', () => {
  const proof = computeProof('daemon', TOKEN, '127.0.0.1:4000', CN, SN);
  assert.match(proof, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(computeProof('daemon', TOKEN, '127.0.0.1:4000', CN, SN), proof, 'deterministic');
  assert.ok(proofValid(proof, 'daemon', TOKEN, '127.0.0.1:4000', CN, SN));
  assert.ok(proofValid(proof, 'daemon', TOKEN, 'LOCALHOST:4000'.replace('LOCALHOST', '127.0.0.1'), CN, SN));
  const others: [string, boolean][] = [
    ['the client role', proofValid(proof, 'client', TOKEN, '127.0.0.1:4000', CN, SN)],
    ['another token', proofValid(proof, 'daemon', `${TOKEN}x`, '127.0.0.1:4000', CN, SN)],
    ['another port (a relay)', proofValid(proof, 'daemon', TOKEN, '127.0.0.1:4001', CN, SN)],
    ['another host name', proofValid(proof, 'daemon', TOKEN, 'localhost:4000', CN, SN)],
    ['another client nonce', proofValid(proof, 'daemon', TOKEN, '127.0.0.1:4000', newNonce(), SN)],
    ['another daemon nonce', proofValid(proof, 'daemon', TOKEN, '127.0.0.1:4000', CN, newNonce())],
    ['nonces swapped', proofValid(proof, 'daemon', TOKEN, '127.0.0.1:4000', SN, CN)],
  ];
  for (const [what, valid] of others) assert.equal(valid, false, what);
  for (const bad of [undefined, null, 42, '', 'x'.repeat(42), `${proof}=`, 'x'.repeat(10_000_000), { proof }]) {
    assert.equal(proofValid(bad, 'daemon', TOKEN, '127.0.0.1:4000', CN, SN), false, `rejects ${typeof bad}`);
  }
  assert.equal(proofAddress('127.0.0.1', 4000), '127.0.0.1:4000');
  assert.equal(proofAddress('::1', 4000), '[::1]:4000');
  assert.equal(proofAddress('LocalHost', 80), 'localhost:80');
});

test('nonces: 32 random bytes, base64url; nothing else is one', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 100; i++) seen.add(newNonce());
  assert.equal(seen.size, 100);
  for (const nonce of seen) assert.ok(isNonce(nonce));
  for (const bad of ['', 'a'.repeat(42), 'a'.repeat(44), `${'a'.repeat(42)}+`, `${'a'.repeat(42)}=`, 'a'.repeat(1_000_000), 43, null]) {
    assert.equal(isNonce(bad), false, JSON.stringify(bad)?.slice(0, 20));
  }
});

test('the Exai-Proof header: round trip; anything else is none', () => {
  const header = proofAuthorization(SN, computeProof('client', TOKEN, 'a:1', CN, SN));
  assert.match(header, /^Exai-Proof [A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(parseProofAuthorization(header)?.daemonNonce, SN);
  for (const bad of [
    undefined,
    '',
    `Bearer ${TOKEN}`,
    `Exai-Proof ${SN}`,
    `Exai-Proof ${SN}.`,
    `Exai-Proof ${SN}.${SN}.x`,
    `Exai-Proof ${'a'.repeat(500)}`,
  ]) {
    assert.equal(parseProofAuthorization(bad), null, String(bad));
  }
});

test('first frames: a challenge needs a well-formed nonce; auth_proof must be a string', () => {
  assert.deepEqual(checkOpening(JSON.stringify({ type: 'challenge', nonce: CN })), {
    ok: true,
    challenge: { type: 'challenge', nonce: CN },
  });
  for (const nonce of [undefined, 'short', 42, 'a'.repeat(100_000)]) {
    const check = checkOpening(JSON.stringify({ type: 'challenge', nonce }));
    assert.equal(check.ok, false);
    assert.equal(!check.ok && check.code, 'bad_hello');
  }
  const proofNotString = checkOpening(JSON.stringify({ type: 'hello', protocol: 1, auth_proof: 5 }));
  assert.equal(!proofNotString.ok && proofNotString.code, 'bad_hello');
  const hello = checkOpening(JSON.stringify({ type: 'hello', protocol: 1, auth_proof: 'p' }));
  assert.ok(hello.ok && 'hello' in hello && hello.hello.auth_proof === 'p');
});

// ---- the daemon's challenge table (fake clock) ----------------------------------------------

function requestWith(headers: Record<string, string>): IncomingMessage {
  return { headers } as unknown as IncomingMessage;
}

/** A client's side of one HTTP exchange against a WebAuth: the header it would send. */
function prove(auth: WebAuth, address: string, token = TOKEN): string {
  const clientNonce = newNonce();
  const answer = auth.answerChallenge(clientNonce, address);
  assert.equal(
    proofValid(answer.proof, 'daemon', token, address, clientNonce, answer.nonce),
    token === auth.token,
    'the daemon proves its token',
  );
  return proofAuthorization(answer.nonce, computeProof('client', token, address, clientNonce, answer.nonce));
}

test('a challenge is good once, at its own address, until it expires; a flood is bounded; a new token forgets them all', () => {
  let now = 1_000_000;
  const auth = new WebAuth(TOKEN, { now: () => now });
  const at = (authorization: string, host = '127.0.0.1:4000') => auth.credential(requestWith({ authorization, host }));

  const once = prove(auth, '127.0.0.1:4000');
  assert.equal(at(once), 'proof');
  assert.equal(at(once), null, 'used up');

  assert.equal(at(prove(auth, '127.0.0.1:4000'), 'localhost:4000'), null, 'asked at one address, used at another');
  assert.equal(at(prove(auth, '127.0.0.1:4000', 'w'.repeat(43))), null, 'a client without the token cannot prove');

  const wrongFirst = prove(auth, '127.0.0.1:4000');
  const [scheme, pair] = wrongFirst.split(' ');
  const [sn] = (pair as string).split('.');
  assert.equal(at(`${scheme} ${sn}.${'A'.repeat(43)}`), null, 'a wrong proof');
  assert.equal(at(wrongFirst), null, 'the challenge is gone after a wrong try: no guessing');

  const late = prove(auth, '127.0.0.1:4000');
  now += CHALLENGE_TTL_MS;
  assert.equal(at(late), null, 'expired');

  const oldest = prove(auth, '127.0.0.1:4000');
  for (let i = 0; i < 10 * MAX_CHALLENGES; i++) auth.answerChallenge(newNonce(), '127.0.0.1:4000');
  assert.equal(at(oldest), null, 'a flood evicts the oldest');
  assert.ok((auth as unknown as { challenges: Map<string, unknown> }).challenges.size <= MAX_CHALLENGES, 'bounded');

  const pending = prove(auth, '127.0.0.1:4000');
  auth.setToken('n'.repeat(43));
  assert.equal(at(pending), null, 'a new token forgets outstanding challenges');
  assert.equal(auth.credential(requestWith({ authorization: `Bearer ${TOKEN}` })), null, 'the old token is refused');
  assert.equal(auth.credential(requestWith({ authorization: `Bearer ${'n'.repeat(43)}` })), 'bearer');
  assert.equal(at(prove(auth, '127.0.0.1:4000', 'n'.repeat(43))), 'proof');
});

// ---- against a real daemon ----------------------------------------------------------------

let shared: DaemonHandle | undefined;
async function daemon(): Promise<DaemonHandle> {
  shared ??= await startDaemon(cleanup);
  return shared;
}

/** A WebSocket with no credential on the upgrade, as a new shim opens it. */
async function bareSocket(d: DaemonHandle, host?: string): Promise<WebSocket> {
  return openSocket(cleanup, d, { token: null, ...(host ? { headers: { host } } : {}) });
}

async function challenge(ws: WebSocket, nonce = newNonce()): Promise<{ clientNonce: string; frame: Record<string, unknown> }> {
  ws.send(JSON.stringify({ type: 'challenge', nonce }));
  return { clientNonce: nonce, frame: await nextJson(ws) };
}

async function refusedWith(ws: WebSocket, code: string, closeCode: number, message: RegExp): Promise<void> {
  const closing = closed(ws);
  const ack = await nextJson(ws);
  assert.equal(ack.type, 'hello_ack');
  assert.equal(ack.ok, false);
  const error = ack.error as { code: string; message: string };
  assert.equal(error.code, code);
  assert.match(error.message, message);
  assert.equal((await closing).code, closeCode);
}

test('WebSocket: challenge, the daemon proves itself for the address connected to, the hello with auth_proof opens a session', async () => {
  const d = await daemon();
  for (const host of [`127.0.0.1:${d.port}`, `localhost:${d.port}`]) {
    const ws = await bareSocket(d, host);
    const { clientNonce, frame } = await challenge(ws);
    assert.equal(frame.type, 'proof');
    const sn = frame.nonce as string;
    assert.ok(proofValid(frame.proof, 'daemon', d.token, host, clientNonce, sn), `a valid proof for ${host}`);
    const other = host.startsWith('localhost') ? `127.0.0.1:${d.port}` : `localhost:${d.port}`;
    assert.equal(proofValid(frame.proof, 'daemon', d.token, other, clientNonce, sn), false, 'bound to the address connected to');
    const ack = await sendHello(ws, { auth_proof: computeProof('client', d.token, host, clientNonce, sn) });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }));
    const reply = await nextJson(ws);
    assert.ok(Array.isArray((reply.result as { tools?: unknown[] }).tools));
    ws.close();
  }
});

test('WebSocket refusals cost only that connection: malformed, second and huge challenges, hellos without or with a wrong proof', async () => {
  const d = await daemon();
  const before = await getHealth(d);
  const cases: [string, (ws: WebSocket) => Promise<void>][] = [
    [
      'a malformed challenge',
      async (ws) => {
        ws.send(JSON.stringify({ type: 'challenge', nonce: 'not-a-nonce' }));
        await refusedWith(ws, 'bad_hello', 4000, /challenge\.nonce must be 32 random bytes/);
      },
    ],
    [
      'a huge nonce',
      async (ws) => {
        ws.send(JSON.stringify({ type: 'challenge', nonce: 'A'.repeat(4 * 1024 * 1024) }));
        await refusedWith(ws, 'bad_hello', 4000, /challenge\.nonce/);
      },
    ],
    [
      'a second challenge',
      async (ws) => {
        await challenge(ws);
        ws.send(JSON.stringify({ type: 'challenge', nonce: newNonce() }));
        await refusedWith(ws, 'bad_hello', 4000, /one challenge per connection/);
      },
    ],
    [
      'a hello without its proof after a challenge, even with the right token',
      async (ws) => {
        await challenge(ws);
        ws.send(JSON.stringify({ type: 'hello', protocol: 1, auth_token: d.token }));
        await refusedWith(ws, 'unauthorized', 4003, /a hello after a challenge must carry auth_proof/);
      },
    ],
    [
      'a wrong proof',
      async (ws) => {
        const { clientNonce, frame } = await challenge(ws);
        const wrong = computeProof('client', 'x'.repeat(43), `127.0.0.1:${d.port}`, clientNonce, frame.nonce as string);
        ws.send(JSON.stringify({ type: 'hello', protocol: 1, auth_proof: wrong }));
        await refusedWith(ws, 'unauthorized', 4003, /^wrong proof$/);
      },
    ],
    [
      "the daemon's own proof sent back",
      async (ws) => {
        const { frame } = await challenge(ws);
        ws.send(JSON.stringify({ type: 'hello', protocol: 1, auth_proof: frame.proof }));
        await refusedWith(ws, 'unauthorized', 4003, /^wrong proof$/);
      },
    ],
    [
      'a proof without a challenge',
      async (ws) => {
        ws.send(JSON.stringify({ type: 'hello', protocol: 1, auth_proof: 'A'.repeat(43) }));
        await refusedWith(ws, 'bad_hello', 4000, /auth_proof needs a challenge first/);
      },
    ],
    [
      'a JSON-RPC message after the challenge, before the hello',
      async (ws) => {
        await challenge(ws);
        ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize' }));
        await refusedWith(ws, 'not_hello', 4001, /first frame must be/);
      },
    ],
  ];
  // A session that works all along.
  const { client } = await import('./helpers.js').then(({ connectShim }) => connectShim(cleanup, d));
  for (const [what, run] of cases) {
    const ws = await bareSocket(d);
    await run(ws).catch((error: Error) => assert.fail(`${what}: ${error.message}`));
    const version = await client.callTool({ name: 'version', arguments: {} });
    assert.ok(!version.isError, `${what}: the daemon goes on serving`);
  }
  const health = await getHealth(d);
  assert.equal(health.pid, before.pid, 'the same daemon: nothing crashed');
  assert.equal(health.sessions.total, before.sessions.total + 1, 'no session was opened by a refused connection');
  await client.close();
});

test('an older client still works: the token on the upgrade, or auth_token in the hello', async () => {
  const d = await daemon();
  const bearer = await openSocket(cleanup, d);
  assert.equal((await sendHello(bearer)).ok, true);
  bearer.close();
  const inHello = await bareSocket(d);
  assert.equal((await sendHello(inHello, { auth_token: d.token })).ok, true);
  inHello.close();
});

/** A raw HTTP request; resolves with the status and the body parsed as JSON (null when it is not). */
function http(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; body: Record<string, unknown> | null }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let body: Record<string, unknown> | null = null;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        } catch {
          body = null;
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

test('HTTP: POST /auth/challenge proves the daemon; Exai-Proof is taken once where the bearer token is; bad challenges are refused', async () => {
  const d = await daemon();
  const address = `127.0.0.1:${d.port}`;
  const cn = newNonce();
  const answer = await http(d.port, '/auth/challenge', { method: 'POST', body: JSON.stringify({ nonce: cn }) });
  assert.equal(answer.status, 200);
  const sn = answer.body?.nonce as string;
  assert.ok(proofValid(answer.body?.proof, 'daemon', d.token, address, cn, sn));
  assert.equal(answer.body?.expires_in_s, 30);
  const authorization = proofAuthorization(sn, computeProof('client', d.token, address, cn, sn));
  const full = await http(d.port, '/health', { headers: { authorization } });
  assert.equal(typeof full.body?.sessions, 'object', 'the full report');
  const again = await http(d.port, '/health', { headers: { authorization } });
  assert.equal(again.body?.sessions, undefined, 'a proof is good once: liveness only now');

  for (const [what, body, status] of [
    ['not JSON', 'nonce', 400],
    ['no nonce', '{}', 400],
    ['a short nonce', JSON.stringify({ nonce: 'abc' }), 400],
    ['a huge body', JSON.stringify({ nonce: 'A'.repeat(100_000) }), 413],
  ] as const) {
    const refused = await http(d.port, '/auth/challenge', { method: 'POST', body }).catch(() => ({ status: -1, body: null }));
    assert.equal(refused.status, status, what);
  }
  assert.equal((await http(d.port, '/auth/challenge')).status, 405);

  // The client helper every command uses, and /mcp taking the proof like the bearer token.
  const proven = await provenRequest(
    { host: '127.0.0.1', port: d.port, token: d.token },
    { method: 'GET', path: '/health', timeoutMs: 5_000 },
  );
  assert.ok(proven.ok && typeof (proven.body as { sessions?: unknown }).sessions === 'object');
  const mcp = await provenRequest(
    { host: '127.0.0.1', port: d.port, token: d.token },
    {
      method: 'POST',
      path: '/mcp',
      timeoutMs: 5_000,
      body: { jsonrpc: '2.0', id: 1, method: 'ping' },
    },
  );
  assert.ok(mcp.ok && mcp.status !== 401, `/mcp takes the proof: ${mcp.ok ? mcp.status : mcp.detail}`);
  const wrongToken = await fetchFullHealth('127.0.0.1', d.port, 5_000, 'w'.repeat(43));
  assert.equal(wrongToken, null, 'a client with another token gets no full report: the daemon did not prove that token');
  const noToken = await provenRequest(
    { host: '127.0.0.1', port: d.port, token: null },
    { method: 'GET', path: '/health', timeoutMs: 5_000 },
  );
  assert.deepEqual(noToken.ok ? null : noToken.failure, 'no_token');
});
