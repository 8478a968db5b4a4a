/**
 * Issue 21, one-shot clients: HTTP sessions that initialize and never send DELETE (CLI tools
 * that connect once) must not lock everyone out. At the session limit the least recently used
 * idle HTTP session gives way to a new one; sessions in use (a call in flight, a stream open)
 * never do, so the limit still holds for them. Real daemons, raw HTTP over 127.0.0.1, raw
 * WebSocket hellos and real shims under the official SDK client.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  Cleanup,
  ROOT,
  connectShim,
  getHealth,
  openSocket,
  runCli,
  sendHello,
  startDaemon,
  textOf,
  waitFor,
  within,
  type DaemonHandle,
  pool,
} from './helpers.js';
import { startHostingDaemon } from './fixtures/hosted-servers.js';
import { openGetStream, postHeaders, rawInitialize, rawRequest, type RawStream } from './fixtures/http-client.js';

const BIGRESULT_SCRIPT = join(ROOT, 'dist', 'test', 'fixtures', 'hosted-bigresult.js');
const PROTOCOL = '2025-06-18';

/** The RSS of a process, in bytes, from /proc. */
function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) * 1024;
}

test('2100 one-shot HTTP sessions (initialize, no DELETE): none refused, the least recently used idle ones give way, and a new shim window works', async (t) => {
  const cleanup = new Cleanup();
  t.after(() => cleanup.run());
  const daemon = await startDaemon(cleanup);
  const before = rssOf(daemon.pid);
  const statuses = await pool(2_100, 20, async (n) => {
    const { response } = await rawInitialize(daemon);
    if (n === 1_999) t.diagnostic(`daemon RSS with 2000 idle HTTP sessions: ${mb(rssOf(daemon.pid))} (${mb(before)} before)`);
    return response.status;
  });
  const refused = statuses.filter((status) => status !== 200);
  assert.deepEqual(refused, [], 'no one-shot session is refused');
  const perSession = (rssOf(daemon.pid) - before) / 2_000;
  t.diagnostic(`about ${(perSession / 1024).toFixed(1)} KB of RSS per idle HTTP session`);
  assert.ok(perSession < 100 * 1024, `an idle HTTP session costs ${(perSession / 1024).toFixed(1)} KB, under 100 KB`);

  const window = await connectShim(cleanup, daemon, { name: 'new-window' });
  const answer = await window.client.callTool({ name: 'version', arguments: {} });
  assert.ok(textOf(answer).length > 0, 'the new window is served');

  const health = await getHealth(daemon);
  assert.ok(health.sessions.total <= 2_000, `${health.sessions.total} sessions within the limit`);
  // 100 one-shot sessions past the limit, and one more for the shim: each ended one idle session.
  assert.deepEqual(health.sessions.idle_ended, { idle: 0, session_limit: 101 });

  const metrics = await rawRequest(daemon.port, { method: 'GET', path: '/metrics', headers: { authorization: `Bearer ${daemon.token}` } });
  assert.match(metrics.body, /^exai_ws_idle_sessions_ended_total\{reason="session_limit"\} 101$/m);
  assert.match(metrics.body, /^exai_ws_idle_sessions_ended_total\{reason="idle"\} 0$/m);
  const status = await runCli(['status'], daemon.clientEnv);
  assert.match(
    status.stdout,
    /^ {2}idle +101 idle HTTP sessions ended \(0 unused for the idle time, 101 to make room at the session limit\)$/m,
  );
});

test('with EXAI_WS_MAX_SESSIONS=50 and 50 sessions in use the next one is refused; once one is idle it gives way', async (t) => {
  const cleanup = new Cleanup();
  t.after(() => cleanup.run());
  const daemon = await startHostingDaemon(cleanup, () => ({ big: { command: process.execPath, args: [BIGRESULT_SCRIPT] } }), {
    EXAI_WS_MAX_SESSIONS: '50',
  });
  // 25 sessions with a call in flight (a hosted tool that answers only when cancelled)...
  const calls: { sessionId: string; abort: () => void }[] = [];
  for (let n = 0; n < 25; n++) {
    const { sessionId } = await rawInitialize(daemon);
    assert.ok(sessionId);
    calls.push({ sessionId, abort: pendingCall(daemon, sessionId, n) });
  }
  await waitFor(async () => (await getHealth(daemon)).inflight === 25, 'the 25 calls to be in flight', 20_000);
  // ... and 25 with their GET stream open.
  const streams: { sessionId: string; stream: RawStream }[] = [];
  for (let n = 0; n < 25; n++) {
    const { sessionId } = await rawInitialize(daemon);
    assert.ok(sessionId);
    const stream = await openGetStream(daemon, sessionId, PROTOCOL);
    cleanup.add(() => stream.close());
    assert.equal(stream.status, 200);
    streams.push({ sessionId, stream });
  }
  cleanup.add(() => calls.forEach((c) => c.abort()));

  const refused = await rawInitialize(daemon);
  assert.equal(refused.response.status, 503, 'an HTTP initialize is refused while all 50 are in use');
  assert.match(String((refused.response.json?.error as { message?: string } | undefined)?.message), /session limit reached \(50\)/);
  const ws = await openSocket(cleanup, daemon);
  const ack = await sendHello(ws);
  assert.equal(ack.ok, false, 'a shim hello is refused too');
  assert.equal((ack.error as { code?: string }).code, 'session_limit');
  assert.deepEqual((await getHealth(daemon)).sessions.idle_ended, { idle: 0, session_limit: 0 }, 'no session in use was ended');

  // One client closes its GET stream: that session is idle now and gives way to a new window.
  const left = streams[0]!;
  left.stream.close();
  // A shim refused for the limit tries again by itself: it gets in once the daemon saw the stream go.
  const shim = await within(connectShim(cleanup, daemon, { name: 'after-one-left' }), 20_000, 'a shim window once one session is idle');
  const answer = await shim.client.callTool({ name: 'big__big', arguments: { bytes: 3, delayMs: 0 } });
  assert.equal(textOf(answer), 'xxx');
  assert.deepEqual((await getHealth(daemon)).sessions.idle_ended, { idle: 0, session_limit: 1 });
  const gone = await rawRequest(daemon.port, {
    headers: postHeaders(daemon.token, { 'mcp-session-id': left.sessionId, 'mcp-protocol-version': PROTOCOL }),
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  });
  assert.equal(gone.status, 404, 'the session that gave way is gone: its client initializes again');
  // The ones in use are all still there.
  const health = await getHealth(daemon);
  assert.equal(health.inflight, 25, 'the calls in flight go on');
  assert.equal(health.sessions.total, 50);
});

/** POSTs a call to the blocking hosted tool for `sessionId` and leaves it waiting; returns a function that drops it. */
function pendingCall(daemon: DaemonHandle, sessionId: string, n: number): () => void {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 100 + n, method: 'tools/call', params: { name: 'big__block', arguments: {} } });
  const req = request({
    host: '127.0.0.1',
    port: daemon.port,
    method: 'POST',
    path: '/mcp',
    headers: postHeaders(daemon.token, { 'mcp-session-id': sessionId, 'mcp-protocol-version': PROTOCOL }),
  });
  req.on('error', () => undefined);
  req.end(body);
  return () => req.destroy();
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
