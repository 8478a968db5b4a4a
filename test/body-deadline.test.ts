/**
 * Deadlines on what a connection sends (issue 21), against a real daemon with short ones
 * (EXAI_WS_BODY_TIMEOUT_MS=3000, EXAI_WS_HEADERS_TIMEOUT_MS=2000; Node checks them every
 * 100 ms here, a tenth of the daemon's second by EXAI_WS_TIMER_SCALE): an authenticated chunked POST that never ends is closed within the body deadline
 * while another window's calls go on; a response that takes longer than the deadline (a long
 * call over HTTP, a WebSocket window) is not cut. And the hostile client's other ways of
 * holding a connection: headers (or an upgrade) sent slowly, keep-alive after a 401, WebSockets
 * that never say hello (dropped oldest first past EXAI_WS_MAX_UNAUTHENTICATED).
 */
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import WebSocket from 'ws';
import { Cleanup, startDaemon, textOf, waitFor, type DaemonHandle } from './helpers.js';
import { connectHttp } from './fixtures/http-client.js';
import { connectWs } from './fixtures/ws-client.js';

const BODY_TIMEOUT_MS = 3_000;
const HEADERS_TIMEOUT_MS = 2_000;
const MAX_UNAUTHENTICATED = 16;
/** Node's check interval (CONNECTIONS_CHECK_MS at TIMER_SCALE) and room for a loaded machine. */
const TIMER_SCALE = 0.1;
const CHECK_MS = 1_000 * TIMER_SCALE;
const SLACK_MS = 1_500;

const cleanup = new Cleanup();
after(() => cleanup.run());
let daemon: DaemonHandle;

before(async () => {
  daemon = await startDaemon(cleanup, {
    env: {
      EXAI_WS_BODY_TIMEOUT_MS: String(BODY_TIMEOUT_MS),
      EXAI_WS_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      EXAI_WS_MAX_UNAUTHENTICATED: String(MAX_UNAUTHENTICATED),
      EXAI_WS_TIMER_SCALE: String(TIMER_SCALE),
    },
  });
});

/** A raw TCP connection to the daemon: what it received, and when it closed (ms after open). */
function rawConnection(): Promise<{ socket: Socket; received: () => string; closedAfterMs: Promise<number> }> {
  const socket = connect(daemon.port, '127.0.0.1');
  cleanup.add(() => socket.destroy());
  let data = '';
  socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
  socket.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.once('connect', () => {
      const openedAt = Date.now();
      const closedAfterMs = new Promise<number>((done) => socket.once('close', () => done(Date.now() - openedAt)));
      resolve({ socket, received: () => data, closedAfterMs });
    });
  });
}

/** Writes `next()` every `everyMs` until the socket closes (or 60 writes: bounded). */
function dribble(socket: Socket, everyMs: number, next: (i: number) => string): void {
  let i = 0;
  const timer = setInterval(() => {
    if (socket.destroyed || i >= 60) return clearInterval(timer);
    socket.write(next(i++));
  }, everyMs);
  socket.once('close', () => clearInterval(timer));
  cleanup.add(() => clearInterval(timer));
}

async function rejections(reason: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${daemon.port}/metrics`, { headers: { authorization: `Bearer ${daemon.token}` } });
  const line = (await res.text()).split('\n').find((l) => l.startsWith(`exai_ws_rejections_total{reason="${reason}"}`));
  return Number(line?.split(' ').pop() ?? 0);
}

// The deadline tests are mostly waiting for a deadline to pass, on connections of their own to
// the one daemon, and count rejections of their own reason only: they run side by side. The
// half-open flood below comes after them, alone: it drops unauthenticated connections, which the
// headers test's must not be.
describe('deadlines', { concurrency: true }, () => {
  test('Body deadline: an authenticated chunked POST that never ends is closed within the deadline; another window goes on meanwhile', async () => {
    // Windows are direct WebSocket SDK clients: the deadlines are the daemon's.
    const window = await connectWs(cleanup, daemon, { name: 'bystander' });
    const post = await rawConnection();
    post.socket.write(
      `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${daemon.port}\r\nAuthorization: Bearer ${daemon.token}\r\n` +
        'Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n',
    );
    // One byte of a JSON-RPC request every 1.2 s: each arrives well within any idle timeout.
    const body = '{"jsonrpc":"2.0","id":1,"method":"ping"';
    dribble(post.socket, 1_200, (i) => `1\r\n${body[i % body.length]}\r\n`);

    // Meanwhile another client's calls are answered at once.
    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      const result = await window.client.callTool({ name: 'echo', arguments: { text: `meanwhile ${i}` } });
      assert.equal(textOf(result), `meanwhile ${i}`);
      assert.ok(Date.now() - started < 1_000, 'not held up by the slow body');
      await new Promise((r) => setTimeout(r, 500));
    }

    const closedAfterMs = await post.closedAfterMs;
    assert.ok(closedAfterMs <= BODY_TIMEOUT_MS + CHECK_MS + SLACK_MS, `closed after ${closedAfterMs} ms`);
    assert.ok(closedAfterMs >= BODY_TIMEOUT_MS - 200, `not before the deadline: ${closedAfterMs} ms`);
    assert.match(post.received(), /^HTTP\/1\.1 408 /, 'told why');
    assert.ok((await rejections('body_timeout')) >= 1, 'counted');
    assert.equal(textOf(await window.client.callTool({ name: 'echo', arguments: { text: 'after' } })), 'after');
  });

  test('a response longer than the body deadline is not cut: a long call over HTTP, an idle WebSocket window', async () => {
    const window = await connectWs(cleanup, daemon, { name: 'idle-window' });
    const http = await connectHttp(cleanup, daemon);
    const ms = BODY_TIMEOUT_MS + CHECK_MS + 500;
    const result = await http.client.callTool({ name: 'sleep', arguments: { ms } });
    assert.equal(textOf(result), `slept ${ms}`);
    // The window's WebSocket sat idle through the same time.
    assert.equal(textOf(await window.client.callTool({ name: 'echo', arguments: { text: 'still open' } })), 'still open');
  });

  test('headers or an upgrade sent slowly, or nothing at all, are closed within the headers deadline', async () => {
    const before = await rejections('headers_timeout');
    const idle = await rawConnection();
    const upgrade = await rawConnection();
    upgrade.socket.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${daemon.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`);
    dribble(upgrade.socket, 500, (i) => `X-Slow-${i}: 1\r\n`);
    const limit = HEADERS_TIMEOUT_MS + CHECK_MS + SLACK_MS;
    for (const [what, conn] of [
      ['an idle connection', idle],
      ['a slow upgrade', upgrade],
    ] as const) {
      const closedAfterMs = await conn.closedAfterMs;
      assert.ok(closedAfterMs <= limit, `${what} closed after ${closedAfterMs} ms`);
      assert.match(conn.received(), /^(HTTP\/1\.1 408 |$)/, `${what}: a 408 or nothing`);
    }
    assert.ok((await rejections('headers_timeout')) >= before + 2);
  });

  test('a request without the token is answered 401 and its connection closed: no keep-alive for strangers', async () => {
    const conn = await rawConnection();
    conn.socket.write(
      `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${daemon.port}\r\nConnection: keep-alive\r\nContent-Type: application/json\r\n` +
        `Content-Length: 2\r\n\r\n{}`,
    );
    const closedAfterMs = await conn.closedAfterMs;
    assert.match(conn.received(), /^HTTP\/1\.1 401 /);
    assert.match(conn.received(), /\r\nConnection: close\r\n/i);
    assert.ok(closedAfterMs < 1_000, `closed after the answer (${closedAfterMs} ms)`);
  });
});

test('WebSockets that never say hello: past the bound the oldest are dropped at once, and a new window connects', async () => {
  const count = 60;
  const sockets: WebSocket[] = [];
  const closedAt: (number | undefined)[] = [];
  const opened: Promise<void>[] = [];
  const start = Date.now();
  for (let i = 0; i < count; i++) {
    const ws = new WebSocket(daemon.url());
    cleanup.add(() => ws.terminate());
    ws.on('error', () => undefined);
    ws.once('close', () => (closedAt[i] = Date.now() - start));
    sockets.push(ws);
    opened.push(new Promise((resolve) => ws.once('open', () => resolve()).once('close', () => resolve())));
    // One at a time, so "oldest" is well defined.
    await opened[i];
  }
  await waitFor(() => closedAt.filter((t) => t !== undefined).length >= count - MAX_UNAUTHENTICATED, 'the oldest to be dropped', 3_000);
  assert.ok(
    closedAt.slice(0, count - MAX_UNAUTHENTICATED).every((t) => t !== undefined && t < 4_000),
    'the oldest went at once, before any hello timeout',
  );
  assert.ok(
    closedAt.slice(count - 8).every((t) => t === undefined),
    'the newest are open, waiting for their hello',
  );
  const window = await connectWs(cleanup, daemon, { name: 'after-half-open' });
  assert.equal(textOf(await window.client.callTool({ name: 'echo', arguments: { text: 'in' } })), 'in');
  assert.ok((await rejections('unauthenticated_limit')) >= count - MAX_UNAUTHENTICATED);
});
