/**
 * The daemon's security model and its handling of bad input (DESIGN.md, "Security model" and
 * "WebSocket protocol"), each against a real daemon process: authentication on the upgrade and
 * in the hello, Host and Origin checks, the hello handshake's close codes, frame limits,
 * JSON-RPC errors that cost only their own reply, session isolation, the token file, and the
 * refusal of a non-loopback bind address.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type WebSocket from 'ws';
import {
  Cleanup,
  closed,
  logPath,
  metricsPath,
  nextJson,
  openSocket,
  readJsonLines,
  sendHello,
  spawnDaemon,
  startDaemon,
  toolText,
  type DaemonHandle,
} from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

/** A wrong token of the same shape as a real one. */
const WRONG_TOKEN = randomBytes(32).toString('base64url');

/** {@link closed}, armed before the close can happen; never an unhandled rejection. */
function watchClose(ws: WebSocket, timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
  const promise = closed(ws, timeoutMs);
  promise.catch(() => undefined);
  return promise;
}

function send(ws: WebSocket, message: unknown): void {
  ws.send(JSON.stringify(message));
}

/** The next frame that answers request `id` (notifications and other replies are skipped). */
async function replyTo(ws: WebSocket, id: unknown, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const message = await nextJson(ws, Math.max(1, deadline - Date.now()));
    if (('result' in message || 'error' in message) && JSON.stringify(message.id) === JSON.stringify(id)) return message;
  }
}

async function call(
  ws: WebSocket,
  id: string | number,
  method: string,
  params?: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  send(ws, { jsonrpc: '2.0', id, method, ...(params ? { params } : {}) });
  return replyTo(ws, id);
}

function errorOf(reply: Record<string, unknown>): { code: number; message: string } {
  assert.ok('error' in reply, `expected an error reply, got ${JSON.stringify(reply)}`);
  return reply.error as { code: number; message: string };
}

/** Runs MCP initialize on a socket whose hello was accepted. */
async function initialize(ws: WebSocket): Promise<void> {
  const reply = await call(ws, 'init', 'initialize', {
    protocolVersion: '2025-06-18',
    capabilities: {},
    clientInfo: { name: 'security-test', version: '1' },
  });
  assert.ok('result' in reply, `initialize failed: ${JSON.stringify(reply)}`);
  send(ws, { jsonrpc: '2.0', method: 'notifications/initialized' });
}

/** A socket with an accepted hello (bearer token on the upgrade) and a completed initialize. */
async function openSession(daemon: DaemonHandle): Promise<WebSocket> {
  const ws = await openSocket(cleanup, daemon);
  const ack = await sendHello(ws);
  assert.equal(ack.ok, true, `hello refused: ${JSON.stringify(ack)}`);
  await initialize(ws);
  return ws;
}

/** Calls the shipped `version` tool and checks it answers for this daemon. */
async function assertVersionWorks(ws: WebSocket, daemon: DaemonHandle, id: string | number): Promise<void> {
  const reply = await call(ws, id, 'tools/call', { name: 'version', arguments: {} });
  const info = JSON.parse(toolText(reply)) as { name: string; pid: number };
  assert.equal(info.name, 'exai-ws');
  assert.equal(info.pid, daemon.pid);
}

/**
 * One plain HTTP request or WebSocket upgrade with exactly the headers given (fetch will not
 * let a caller set Host). Resolves with the status: 101 when the upgrade was accepted.
 */
function rawRequest(port: number, path: string, headers: Record<string, string>, upgrade = false): Promise<number> {
  const all: Record<string, string> = upgrade
    ? {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': randomBytes(16).toString('base64'),
        ...headers,
      }
    : headers;
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', headers: all, timeout: 5_000 });
    req.once('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('upgrade', (_res, socket) => {
      socket.destroy();
      resolve(101);
    });
    req.once('timeout', () => req.destroy(new Error(`no answer to ${path} within 5000 ms`)));
    req.once('error', reject);
    req.end();
  });
}

/** Stops the daemon with SIGTERM (it writes its final metrics line and flushes its log). */
async function stopDaemon(daemon: DaemonHandle): Promise<void> {
  daemon.proc.kill('SIGTERM');
  const timeout = new Promise<never>((_resolve, reject) =>
    setTimeout(() => reject(new Error('daemon did not exit after SIGTERM')), 10_000).unref(),
  );
  const code = await Promise.race([daemon.exited, timeout]);
  assert.equal(code, 0, `daemon exit: ${String(code)}; stderr: ${daemon.stderr()}`);
}
/**
 * One daemon (frames up to 4096 bytes, a 1 s hello timeout) for the tests whose property is per
 * connection or per session (Origin and Host, the handshake and its timeout, frame limits, bad
 * JSON-RPC, a misbehaving session): none needs a fresh daemon, and running them side by side on
 * it is the harder case, every one of them a misbehaving neighbour of the others. Every other
 * test on it says hello as soon as its socket is open, well within the second. Tests that stop
 * the daemon or start it differently have their own.
 */
let shared: Promise<DaemonHandle> | undefined;
function sharedDaemon(): Promise<DaemonHandle> {
  shared ??= startDaemon(cleanup, { env: { EXAI_WS_MAX_BYTES: '4096', EXAI_WS_HELLO_TIMEOUT_MS: '1000' } });
  return shared;
}

/**
 * One daemon (debug log) for the two tests that read what it leaves at shutdown: authentication
 * (failures counted in the last metrics line: lower bounds) and the token's secrecy (nowhere in
 * the log, stderr, argv or metrics). Each runs its traffic; the daemon is stopped once both are
 * done, then each reads the files. The other's traffic only makes each check harder: more
 * failures to count, more places a token could leak from.
 */
const stoppedOnce = (() => {
  let daemon: Promise<DaemonHandle> | undefined;
  const get = () => (daemon ??= startDaemon(cleanup, { env: { LOG_LEVEL: 'debug' } }));
  let running = 2;
  let allDone: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => (allDone = resolve)).then(async () => stopDaemon(await get()));
  stopped.catch(() => undefined);
  return {
    /** Runs a test's traffic, then resolves once every test's traffic is over and the daemon stopped. */
    async traffic(run: (daemon: DaemonHandle) => Promise<void>): Promise<DaemonHandle> {
      try {
        await run(await get());
      } finally {
        if (--running === 0) allDone();
      }
      await stopped;
      return get();
    },
  };
})();

describe('security', { concurrency: 4 }, () => {
  test('authentication: bearer on the upgrade or auth_token in the hello, and failures are counted', async () => {
    const daemon = await stoppedOnce.traffic(async (daemon) => {
      // No header and no auth_token: refused in the ack, closed 4003.
      const anonymous = await openSocket(cleanup, daemon, { token: null });
      const anonymousClose = watchClose(anonymous);
      const anonymousAck = await sendHello(anonymous);
      assert.equal(anonymousAck.type, 'hello_ack');
      assert.equal(anonymousAck.ok, false);
      assert.equal((anonymousAck.error as { code: string }).code, 'unauthorized');
      assert.equal((await anonymousClose).code, 4003);

      // A wrong bearer token never gets a WebSocket: HTTP 401 before the upgrade.
      await assert.rejects(openSocket(cleanup, daemon, { token: WRONG_TOKEN }), /HTTP 401/);

      // A wrong auth_token in the hello (no header): 4003.
      const wrong = await openSocket(cleanup, daemon, { token: null });
      const wrongClose = watchClose(wrong);
      const wrongAck = await sendHello(wrong, { auth_token: WRONG_TOKEN });
      assert.equal(wrongAck.ok, false);
      assert.equal((wrongAck.error as { code: string }).code, 'unauthorized');
      assert.equal((await wrongClose).code, 4003);

      // The right token in the hello only: a working MCP session.
      const good = await openSocket(cleanup, daemon, { token: null });
      const goodAck = await sendHello(good, { auth_token: daemon.token });
      assert.equal(goodAck.ok, true, JSON.stringify(goodAck));
      assert.equal(typeof goodAck.session_id, 'string');
      await initialize(good);
      await assertVersionWorks(good, daemon, 1);
      good.close(1000);
      await closed(good);
    });
    const lines = readJsonLines(metricsPath(daemon.home));
    const last = lines[lines.length - 1];
    assert.ok(last, 'no metrics line written at shutdown');
    assert.ok((last.auth_failures as number) >= 3, `auth_failures ${String(last.auth_failures)} < 3`);
    assert.ok(((last.rejections as Record<string, number>).unauthorized ?? 0) >= 2, JSON.stringify(last.rejections));
  });

  test('foreign Origin and foreign Host headers are refused with 403 on /health and on the upgrade; loopback Origins are served', async () => {
    const daemon = await sharedDaemon();
    const own = `127.0.0.1:${daemon.port}`;

    // Controls: the daemon's own address (either spelling) is served.
    assert.equal(await rawRequest(daemon.port, '/health', { host: own }), 200);
    assert.equal(await rawRequest(daemon.port, '/health', { host: `localhost:${daemon.port}` }), 200);
    assert.equal(await rawRequest(daemon.port, '/ws', { host: own, authorization: `Bearer ${daemon.token}` }, true), 101);

    // Cross-site WebSocket hijacking: a foreign Origin is refused, even with the right token;
    // a page served from loopback (any port) is the user's own and may connect.
    for (const origin of ['https://evil.example', 'null', 'http://127.0.0.1.evil.example', 'file://', 'http://localhost.evil.example:80']) {
      await assert.rejects(openSocket(cleanup, daemon, { headers: { origin } }), /HTTP 403/, origin);
    }
    for (const origin of [`http://${own}`, 'http://localhost:5173', 'http://[::1]:8080', 'https://127.0.0.1']) {
      const ws = await openSocket(cleanup, daemon, { headers: { origin } });
      ws.close();
    }
    const res = await fetch(`http://${own}/health`, { headers: { origin: 'https://evil.example' } });
    await res.arrayBuffer();
    assert.equal(res.status, 403);
    assert.equal(await rawRequest(daemon.port, '/health', { host: own, origin: 'https://evil.example' }), 403);

    // DNS rebinding: a Host that is not the daemon's own address and port.
    for (const host of [`evil.example:${daemon.port}`, `127.0.0.1:${daemon.port + 1}`, '127.0.0.1']) {
      assert.equal(await rawRequest(daemon.port, '/health', { host }), 403, `/health with Host ${host}`);
      assert.equal(
        await rawRequest(daemon.port, '/ws', { host, authorization: `Bearer ${daemon.token}` }, true),
        403,
        `upgrade with Host ${host}`,
      );
    }
    assert.equal(await rawRequest(daemon.port, '/', { host: `evil.example:${daemon.port}` }, true), 403);

    // Refused before anything else: a foreign page cannot even probe which paths exist.
    assert.equal(await rawRequest(daemon.port, '/nope', { host: own }, true), 404);
    assert.equal(await rawRequest(daemon.port, '/nope', { host: `evil.example:${daemon.port}` }, true), 403);
    assert.equal(await rawRequest(daemon.port, '/nope', { host: own, origin: 'https://evil.example' }, true), 403);
    assert.equal(await rawRequest(daemon.port, '/nope', { host: `evil.example:${daemon.port}` }), 403);
  });

  test('the hello handshake: not a hello 4001, bad JSON or shape 4000, unsupported protocol 4004', async () => {
    const daemon = await sharedDaemon();

    const refused = async (frame: string, ackCode: string | null, closeCode: number, label: string) => {
      const ws = await openSocket(cleanup, daemon);
      const closing = watchClose(ws);
      ws.send(frame);
      if (ackCode !== null) {
        const ack = await nextJson(ws);
        assert.equal(ack.type, 'hello_ack', label);
        assert.equal(ack.ok, false, label);
        assert.equal((ack.error as { code: string }).code, ackCode, label);
      }
      assert.equal((await closing).code, closeCode, label);
    };

    await refused(
      JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {} } }),
      'not_hello',
      4001,
      'initialize as the first frame',
    );
    await refused('{"type":"hello","protocol":1', 'bad_hello', 4000, 'hello that is not JSON');
    await refused(JSON.stringify({ type: 'hello', protocol: '1' }), 'bad_hello', 4000, 'protocol as a string');
    await refused(JSON.stringify({ type: 'hello', protocol: 1, session_id: 'no spaces allowed' }), 'bad_hello', 4000, 'bad session_id');
    await refused(JSON.stringify({ type: 'hello', protocol: 1, session_id: 'ab' }), 'bad_hello', 4000, 'session_id too short');
    await refused(JSON.stringify({ type: 'hello', protocol: 1, session_id: 42 }), 'bad_hello', 4000, 'session_id a number');
    await refused(JSON.stringify({ type: 'hello', protocol: 1, pid: '123' }), 'bad_hello', 4000, 'pid a string');
    await refused(JSON.stringify({ type: 'hello', protocol: 1, pid: 0 }), 'bad_hello', 4000, 'pid 0');
    await refused(JSON.stringify({ type: 'hello', protocol: 1, acks: 'yes' }), 'bad_hello', 4000, 'acks a string');
    await refused(JSON.stringify({ type: 'hello', protocol: 1, session_id: 'abc', received: -1 }), 'bad_hello', 4000, 'received negative');
    await refused(JSON.stringify({ type: 'hello', protocol: 1, received: 3 }), 'bad_hello', 4000, 'received without session_id');
    await refused(JSON.stringify({ type: 'hello', protocol: 2 }), 'unsupported_protocol', 4004, 'protocol 2');

    // The daemon is unharmed: a proper hello still gets a working session.
    const ws = await openSession(daemon);
    await assertVersionWorks(ws, daemon, 'v');
  });

  test('a connection that sends no hello is closed with 4002 after the hello timeout', async () => {
    const daemon = await sharedDaemon();
    const ws = await openSocket(cleanup, daemon);
    const result = await closed(ws, 10_000);
    assert.equal(result.code, 4002);
  });

  test('oversize and binary frames close only their own socket (1009, 1003)', async () => {
    const daemon = await sharedDaemon();

    const big = await openSocket(cleanup, daemon);
    const ack = await sendHello(big);
    assert.equal(ack.ok, true);
    assert.equal((ack.limits as { max_bytes: number }).max_bytes, 4096);
    const bigClose = watchClose(big);
    send(big, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'x'.repeat(10 * 1024) } } });
    assert.equal((await bigClose).code, 1009);

    const binary = await openSocket(cleanup, daemon);
    assert.equal((await sendHello(binary)).ok, true);
    const binaryClose = watchClose(binary);
    binary.send(Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' })), { binary: true });
    assert.equal((await binaryClose).code, 1003);

    // A frame just under the limit is fine, and the daemon keeps serving new sessions.
    const ws = await openSession(daemon);
    const echo = await call(ws, 2, 'tools/call', { name: 'echo', arguments: { text: 'y'.repeat(3000) } });
    assert.equal(toolText(echo), 'y'.repeat(3000));
    await assertVersionWorks(ws, daemon, 3);
  });

  test('bad JSON-RPC input costs only its own reply: -32700, -32600, -32601', async () => {
    const daemon = await sharedDaemon();
    const ws = await openSession(daemon);
    const closing = watchClose(ws);
    let socketClosed = false;
    ws.once('close', () => (socketClosed = true));

    ws.send('{"jsonrpc":"2.0","id":7,"method":');
    const parse = await replyTo(ws, null);
    assert.equal(errorOf(parse).code, -32700);
    assert.equal(parse.id, null);
    assert.deepEqual((await call(ws, 'p1', 'ping')).result, {});

    ws.send(JSON.stringify([{ jsonrpc: '2.0', id: 8, method: 'ping' }]));
    const batch = await replyTo(ws, null);
    assert.equal(errorOf(batch).code, -32600);
    assert.deepEqual((await call(ws, 'p2', 'ping')).result, {});

    const unknown = await call(ws, 'u-1', 'no/such/method');
    assert.equal(errorOf(unknown).code, -32601);
    assert.equal(unknown.id, 'u-1');
    const unknownNumeric = await call(ws, 41, 'no/such/method');
    assert.equal(errorOf(unknownNumeric).code, -32601);
    assert.equal(unknownNumeric.id, 41);

    ws.send(JSON.stringify({ jsonrpc: '2.0', id: {}, method: 'ping' }));
    const badId = await replyTo(ws, null);
    assert.equal(errorOf(badId).code, -32600);

    // Still the same session, still working.
    await assertVersionWorks(ws, daemon, 'after');
    assert.equal(socketClosed, false);
    ws.close(1000);
    await closing;
  });

  test('a misbehaving session never harms another concurrently open session', async () => {
    const daemon = await sharedDaemon();
    const victim = await openSession(daemon);
    const events: string[] = [];
    send(victim, { jsonrpc: '2.0', id: 'slow', method: 'tools/call', params: { name: 'sleep', arguments: { ms: 2_500 } } });
    const slow = replyTo(victim, 'slow', 20_000).then((reply) => {
      events.push('victim answered');
      return reply;
    });
    slow.catch(() => undefined);

    // The same request id as the victim's, garbage, a batch, a bad id.
    const rude = await openSession(daemon);
    const rudeClose = watchClose(rude);
    send(rude, { jsonrpc: '2.0', id: 'slow', method: 'no/such/method' });
    assert.equal(errorOf(await replyTo(rude, 'slow')).code, -32601);
    rude.send('not json at all');
    assert.equal(errorOf(await replyTo(rude, null)).code, -32700);
    rude.send('[]');
    assert.equal(errorOf(await replyTo(rude, null)).code, -32600);
    // Invalid UTF-8 in a text frame: 1007.
    rude.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    assert.equal((await rudeClose).code, 1007);

    const binary = await openSession(daemon);
    const binaryClose = watchClose(binary);
    binary.send(Buffer.from([1, 2, 3]), { binary: true });
    assert.equal((await binaryClose).code, 1003);

    const big = await openSession(daemon);
    const bigClose = watchClose(big);
    big.send('x'.repeat(10 * 1024));
    assert.equal((await bigClose).code, 1009);
    events.push('misbehaving sockets closed');

    const reply = await slow;
    assert.equal(toolText(reply), 'slept 2500');
    assert.deepEqual(events, ['misbehaving sockets closed', 'victim answered'], 'the victim answered before the misbehaviour ended');
    await assertVersionWorks(victim, daemon, 'still-here');
  });

  test('the token file is 0600 and the token never appears in the log, stderr or argv', async () => {
    const daemon = await stoppedOnce.traffic(async (daemon) => {
      const tokenFile = join(daemon.home, 'token');
      assert.ok(existsSync(tokenFile));
      assert.equal((statSync(tokenFile).mode & 0o777).toString(8), '600');
      assert.ok(daemon.token.length >= 43, 'the token is at least 32 random bytes');

      // Traffic that carries tokens in every place a client may put them, right and wrong.
      const viaHello = await openSocket(cleanup, daemon, { token: null });
      assert.equal((await sendHello(viaHello, { auth_token: daemon.token })).ok, true);
      await initialize(viaHello);
      await assertVersionWorks(viaHello, daemon, 1);
      const viaHeader = await openSession(daemon);
      await assertVersionWorks(viaHeader, daemon, 2);
      await assert.rejects(openSocket(cleanup, daemon, { token: WRONG_TOKEN }), /HTTP 401/);
      const wrong = await openSocket(cleanup, daemon, { token: null });
      const wrongClose = watchClose(wrong);
      await sendHello(wrong, { auth_token: WRONG_TOKEN });
      await wrongClose;

      if (process.platform === 'linux') {
        const argv = readFileSync(`/proc/${daemon.pid}/cmdline`, 'utf8');
        assert.ok(argv.length > 0);
        assert.ok(!argv.includes(daemon.token), 'the token is in the daemon argv');
      }
    });
    const log = readFileSync(logPath(daemon.home), 'utf8');
    assert.match(log, /session opened/, 'the log was written');
    assert.ok(!log.includes(daemon.token), 'the token is in ws_daemon.log');
    assert.ok(!log.includes(WRONG_TOKEN), 'a guessed token is in ws_daemon.log');
    assert.ok(!daemon.stderr().includes(daemon.token), 'the token is on the daemon stderr');
    const metrics = readFileSync(metricsPath(daemon.home), 'utf8');
    assert.ok(!metrics.includes(daemon.token), 'the token is in metrics.jsonl');
  });

  test('a non-loopback EXAI_WS_HOST is refused at start with one clear line', async () => {
    // The three starts at once: each is its own process and home.
    const hosts = ['0.0.0.0', '::', '192.168.1.10'];
    const starts = hosts.map((host) => ({ host, ...spawnDaemon(cleanup, { env: { EXAI_WS_HOST: host } }) }));
    for (const { host, home, exited, stderr } of starts) {
      const timeout = new Promise<never>((_resolve, reject) =>
        setTimeout(() => reject(new Error(`daemon with host ${host} did not exit`)), 10_000).unref(),
      );
      const code = await Promise.race([exited, timeout]);
      assert.notEqual(code, 0, `host ${host}`);
      assert.equal(typeof code, 'number', `host ${host}: exited by ${String(code)}`);
      const lines = stderr()
        .split('\n')
        .filter((l) => l.trim().length > 0);
      assert.equal(lines.length, 1, `host ${host}: stderr was ${JSON.stringify(stderr())}`);
      assert.match(lines[0] ?? '', /EXAI_WS_HOST/);
      assert.match(lines[0] ?? '', /loopback/);
      assert.ok(lines[0]?.includes(host));
      assert.ok(!existsSync(join(home, 'logs', 'ws_daemon.pid')), 'no address card for a refused daemon');
    }
  });
});
