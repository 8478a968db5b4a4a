/**
 * Resume without loss (issue 10), the daemon side: hello `pid`, `acks`, `received`; numbered
 * frames kept until acked and written again on resume; `resume_gap`; `client_died`.
 *
 * Unit tests drive a Session over a fake socket; end-to-end tests run the real daemon with raw
 * WebSocket clients that really lose frames in flight (a paused reader cut by the heartbeat),
 * and real client processes killed with SIGKILL or stopped with SIGSTOP.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import type WebSocket from 'ws';
import type { Hub } from '../src/mux/hub.js';
import { SessionContext, type ClientPeer, type SessionCore, type SessionOpening } from '../src/mux/session-context.js';
import type { DaemonConfig } from '../src/daemon/files/config.js';
import { KeptFrames } from '../src/daemon/sessions/kept.js';
import { CLOSE_REASONS, Metrics } from '../src/daemon/files/metrics.js';
import { Session } from '../src/daemon/sessions/session.js';
import type { Transport } from '../src/transport/transport.js';
import { checkHello, parseAck } from '../src/protocol/hello.js';
import { startHostingDaemon, TEE_SCRIPT, EVERYTHING_SCRIPT } from './fixtures/hosted-servers.js';
import {
  Cleanup,
  ROOT,
  getHealth,
  logPath,
  nextJson,
  openSocket,
  readJsonLines,
  sendHello,
  serially,
  spawnChild,
  spawnLines,
  waitFor,
  within,
  type DaemonHandle,
  type Message,
} from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

type Json = Record<string, unknown>;

const HOSTILE_SCRIPT = join(ROOT, 'dist', 'test', 'fixtures', 'hosted-hostile.js');
const PID_CLIENT = join(ROOT, 'dist', 'test', 'fixtures', 'pid-client.js');

// ---------------------------------------------------------------------------------------------
// Units: the hello fields, ack frames, the kept buffer, a Session over a fake socket.

describe('hello fields and ack frames', () => {
  test('pid, acks and received are checked: wrong types are bad_hello with a message naming the field', () => {
    const bad: [Json, RegExp][] = [
      [{ pid: 0 }, /hello\.pid must be a positive integer/],
      [{ pid: -5 }, /hello\.pid/],
      [{ pid: 1.5 }, /hello\.pid/],
      [{ pid: '123' }, /hello\.pid/],
      [{ pid: 2 ** 53 }, /hello\.pid/],
      [{ acks: 'yes' }, /hello\.acks must be true or false/],
      [{ acks: 1 }, /hello\.acks/],
      [{ session_id: 'abc', received: -1 }, /hello\.received must be a non-negative integer/],
      [{ session_id: 'abc', received: 0.5 }, /hello\.received/],
      [{ session_id: 'abc', received: '3' }, /hello\.received/],
      [{ received: 3 }, /hello\.received .*needs hello\.session_id/],
    ];
    for (const [extra, message] of bad) {
      const check = checkHello(JSON.stringify({ type: 'hello', protocol: 1, ...extra }));
      assert.equal(check.ok, false, JSON.stringify(extra));
      if (!check.ok) {
        assert.equal(check.code, 'bad_hello', JSON.stringify(extra));
        assert.match(check.message, message, JSON.stringify(extra));
      }
    }
    const good = checkHello(JSON.stringify({ type: 'hello', protocol: 1, session_id: 'abc', pid: 4242, acks: true, received: 0 }));
    assert.equal(good.ok, true);
    if (good.ok) assert.deepEqual([good.hello.pid, good.hello.acks, good.hello.received], [4242, true, 0]);
  });

  test('an ack frame is exactly {"type":"ack","received":N}', () => {
    assert.equal(parseAck('{"type":"ack","received":0}'), 0);
    assert.equal(parseAck('{"type":"ack","received":12345}'), 12345);
    for (const text of [
      '{"type":"ack","received":-1}',
      '{"type":"ack","received":1.5}',
      '{"type":"ack","received":"3"}',
      '{"type":"ack","received":01}',
      '{"type":"ack", "received":3}',
      '{"type":"ack","received":3,"x":1}',
      '{"type":"ack"}',
      '{"type":"ack","received":99999999999999999}',
      '{"jsonrpc":"2.0","method":"ping","id":1}',
    ]) {
      assert.equal(parseAck(text), undefined, text);
    }
  });

  test('the new close reasons are counted under their own names', () => {
    for (const reason of ['client_died', 'resume_gap']) assert.ok(CLOSE_REASONS.has(reason), reason);
  });
});

describe('kept frames', () => {
  test('acks drop through a sequence number; trimming drops the oldest; after() yields the rest in order', () => {
    const kept = new KeptFrames(1);
    for (let seq = 1; seq <= 1000; seq++) kept.push(`f${seq}`, 10);
    assert.equal(kept.count, 1000);
    assert.equal(kept.bytes, 10_000);
    kept.dropThrough(600); // past the compaction threshold
    assert.deepEqual([kept.oldestSeq, kept.count, kept.bytes], [601, 400, 4000]);
    assert.deepEqual([...kept.after(997)], ['f998', 'f999', 'f1000']);
    assert.deepEqual([...kept.after(0)].slice(0, 2), ['f601', 'f602'], 'frames before the oldest are not invented');
    kept.dropThrough(300); // already gone: nothing changes
    assert.equal(kept.oldestSeq, 601);
    assert.equal(kept.trimTo(95), 391);
    assert.deepEqual([kept.oldestSeq, kept.count, kept.bytes], [992, 9, 90]);
    kept.push('f1001', 10);
    assert.deepEqual([...kept.after(999)], ['f1000', 'f1001']);
    kept.dropThrough(5000);
    assert.deepEqual([kept.oldestSeq, kept.count, kept.bytes], [1002, 0, 0]);
  });
});

class FakeSocket implements Transport {
  readonly kind = 'ws' as const;
  open = true;
  bufferedBytes = 0;
  onmessage = undefined;
  onclose = undefined;
  readonly sent: Json[] = [];
  send(text: string, _related: unknown, cb?: (error?: Error | null) => void): void {
    this.sent.push(JSON.parse(text) as Json);
    cb?.();
  }
  pauseInput(): void {}
  resumeInput(): void {}
  close(): void {
    this.open = false;
  }
}

function unitSession(holdMaxBytes = 1024 * 1024): { session: Session; expired: string[] } {
  const expired: string[] = [];
  const config = { holdMaxBytes, callTimeoutMs: 10_000, maxInflight: 4, queueLimit: 4 } as DaemonConfig;
  const session = new Session(
    'unit',
    { name: 'unit', version: '1' },
    {
      // Only what a session asks of the hub when it opens: its context.
      hub: {
        openSession: (id: string, opening: SessionOpening, peer: ClientPeer) =>
          new SessionContext(id, opening, peer, { closed: () => undefined } as unknown as SessionCore),
      } as unknown as Hub,
      config,
      metrics: new Metrics(),
      logger: pino({ level: 'silent' }),
      expire: (_session, reason) => expired.push(reason),
    },
  );
  return { session, expired };
}

/** A notification whose progress number names it. */
function note(n: number): Json {
  return { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 't', progress: n } };
}

const progressOf = (frames: Json[]) => frames.map((m) => (m.params as { progress?: number } | undefined)?.progress);

describe('a session over a fake socket', () => {
  test('frames are numbered across connections; a resume writes the unacked ones after `received`, then the held ones', () => {
    const { session } = unitSession();
    const first = new FakeSocket();
    assert.equal(session.attach(first, { acks: true }), 0);
    for (let i = 1; i <= 10; i++) session.send(note(i));
    session.receive('{"type":"ack","received":4}');
    assert.equal(first.sent.length, 10, 'an ack is never answered');
    assert.equal(session.sentCount, 10);
    assert.equal(session.resumable(3), false, 'acked frames are gone');
    assert.equal(session.resumable(4), true);
    assert.equal(session.resumable(10), true);
    assert.equal(session.resumable(11), false, 'more than was sent');

    session.detach(first);
    for (let i = 11; i <= 13; i++) session.send(note(i));
    assert.equal(session.sentCount, 10, 'held frames get their number when written');

    const second = new FakeSocket();
    assert.equal(session.attach(second, { acks: true, received: 6 }), 4);
    assert.deepEqual(progressOf(second.sent), [7, 8, 9, 10, 11, 12, 13]);
    assert.equal(session.sentCount, 13);
    // The replayed and the held frames are kept until acked, like any other.
    assert.equal(session.resumable(6), true);
    session.receive('{"type":"ack","received":13}');
    assert.equal(session.resumable(12), false);
    assert.equal(session.resumable(13), true);
  });

  test('without acks nothing is kept: only a resume that lost nothing can be honoured; an ack frame is an invalid message', () => {
    const { session } = unitSession();
    const socket = new FakeSocket();
    session.attach(socket);
    for (let i = 1; i <= 5; i++) session.send(note(i));
    assert.equal(session.resumable(4), false);
    assert.equal(session.resumable(5), true);
    session.receive('{"type":"ack","received":5}');
    const reply = socket.sent[5] as { id?: unknown; error?: { code: number } };
    assert.equal(reply.error?.code, -32600, JSON.stringify(reply));
    assert.equal(reply.id, null);
    assert.equal(session.sentCount, 6, 'the error reply is a frame like any other');
  });

  test('a malformed ack on an acking connection is an invalid message and drops nothing', () => {
    const { session } = unitSession();
    const socket = new FakeSocket();
    session.attach(socket, { acks: true });
    for (let i = 1; i <= 3; i++) session.send(note(i));
    session.receive('{"type":"ack","received":"3"}');
    assert.equal((socket.sent[3] as { error?: { code: number } }).error?.code, -32600);
    assert.equal(session.resumable(0), true, 'nothing was acked');
  });

  test('kept frames past the hold limit are trimmed oldest first while attached, never ending the session', () => {
    const frameBytes = JSON.stringify(note(10)).length;
    const { session, expired } = unitSession(frameBytes * 5 + frameBytes / 2);
    const socket = new FakeSocket();
    session.attach(socket, { acks: true });
    for (let i = 10; i <= 99; i++) session.send(note(i)); // all the same size
    assert.deepEqual(expired, []);
    assert.equal(socket.sent.length, 90);
    assert.equal(session.resumable(85), true, 'the newest five are kept');
    assert.equal(session.resumable(84), false, 'older ones are not: that resume is a gap');
  });

  test('while detached, held frames push kept ones out; held frames alone past the limit end the session', () => {
    const frameBytes = JSON.stringify(note(10)).length;
    const { session, expired } = unitSession(frameBytes * 4);
    const socket = new FakeSocket();
    session.attach(socket, { acks: true });
    for (let i = 10; i <= 13; i++) session.send(note(i));
    session.detach(socket);
    session.send(note(14));
    session.send(note(15));
    assert.equal(session.resumable(2), true, 'two kept frames left room for two held ones');
    assert.equal(session.resumable(1), false);
    session.send(note(16));
    session.send(note(17));
    assert.equal(session.resumable(4), true, 'no kept frame left: only a resume that lost nothing');
    assert.equal(session.resumable(3), false);
    assert.deepEqual(expired, []);
    session.send(note(18));
    assert.deepEqual(expired, ['hold_overflow']);
  });

  test('an idle acking session holds no kept frame once everything is acked', () => {
    const { session } = unitSession();
    const socket = new FakeSocket();
    session.attach(socket, { acks: true });
    for (let i = 1; i <= 3; i++) session.send(note(i));
    session.receive('{"type":"ack","received":3}');
    assert.equal(Reflect.get(Reflect.get(session, 'outbox') as object, 'kept'), null, 'the kept buffer is released, not left empty');
  });
});

// ---------------------------------------------------------------------------------------------
// End to end: the real daemon, raw WebSocket clients, real client processes.

function send(ws: WebSocket, message: Json): void {
  ws.send(JSON.stringify({ jsonrpc: '2.0', ...message }));
}

/** Every JSON-RPC frame a socket gets after its hello_ack, until `stop()`: what the client received. */
function track(ws: WebSocket): { frames: Json[]; stop: () => void } {
  let live = true;
  const frames: Json[] = [];
  ws.on('message', (data: Buffer) => {
    if (!live) return;
    const message = JSON.parse(data.toString('utf8')) as Json;
    if (message.type !== 'hello_ack') frames.push(message);
  });
  return { frames, stop: () => (live = false) };
}

async function initialize(ws: WebSocket, frames: Json[]): Promise<void> {
  send(ws, {
    id: 'init',
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'resume-test', version: '1' } },
  });
  await waitFor(() => frames.find((m) => m.id === 'init'), 'the initialize response');
  send(ws, { method: 'notifications/initialized' });
}

function sessionClosedLines(home: string, sessionId: string): Json[] {
  return readJsonLines(logPath(home)).filter((l) => l.msg === 'session closed' && l.session_id === sessionId);
}

function hostileDaemon(env: Record<string, string> = {}): Promise<DaemonHandle> {
  return startHostingDaemon(cleanup, () => ({ hostile: { command: process.execPath, args: [HOSTILE_SCRIPT] } }), env);
}

let quiet: Promise<DaemonHandle> | undefined;
const quietTurns = serially();
/**
 * Runs `body` on a daemon shared by the tests that need one without a heartbeat, with a long
 * grace and pid checks every 100 ms (EXAI_WS_TIMER_SCALE; only the unseen-pid test's hello
 * names a pid), one test at a time: each counts the daemon's sessions or calls in flight, and a
 * test done leaves only attached sessions (its sockets stay open) and nothing in flight, so
 * what the next one counts is its own. The chain goes on after a failure.
 */
function onQuietDaemon(body: (daemon: DaemonHandle) => Promise<void>): Promise<void> {
  quiet ??= hostileDaemon({ EXAI_WS_HEARTBEAT_MS: '0', EXAI_WS_RESUME_GRACE_MS: '60000', EXAI_WS_TIMER_SCALE: '0.1' });
  const daemon = quiet;
  return quietTurns(async () => body(await daemon));
}

// Alone, not beside other tests: a 300 ms heartbeat must not cut the reader before it pauses.
test('frames lost in flight when the heartbeat cuts a paused reader are replayed on resume: every one after `received`, once, in order', async () => {
  // A heartbeat short enough to cut the paused reader soon, long enough that a loaded machine's
  // slow pong does not cut it before it pauses.
  const daemon = await hostileDaemon({ EXAI_WS_HEARTBEAT_MS: '1000' });
  const ws = await openSocket(cleanup, daemon);
  const first = track(ws);
  const ack = await sendHello(ws, { session_id: 'resume-lossless', acks: true, pid: process.pid });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  assert.equal(ack.resumed, false);
  await initialize(ws, first.frames);
  const opened = await waitFor(
    () => readJsonLines(logPath(daemon.home)).find((l) => l.msg === 'session opened' && l.session_id === 'resume-lossless'),
    'the session opened line',
  );
  assert.deepEqual(
    [opened?.pid, opened?.client_pid],
    [daemon.pid, process.pid],
    'the log line names the daemon as pid, the client as client_pid',
  );

  // Acks as the shim sends them, every 64 frames, until the reader stops.
  let acked = 0;
  let paused = false;
  const STEPS = 100;
  const PAUSE_AT = 20;
  ws.on('message', () => {
    if (paused) return;
    if (first.frames.length - acked >= 64) {
      acked = first.frames.length;
      ws.send(JSON.stringify({ type: 'ack', received: acked }));
    }
    const progressed = first.frames.filter((m) => m.method === 'notifications/progress').length;
    if (progressed >= PAUSE_AT) {
      // Stops reading: frames the daemon writes from now on sit unread in the socket, and the
      // pings go unanswered, so the heartbeat terminates the connection.
      paused = true;
      ws.pause();
    }
  });
  send(ws, {
    id: 2,
    method: 'tools/call',
    params: { name: 'progress', arguments: { steps: STEPS, interval_ms: 15 }, _meta: { progressToken: 'p' } },
  });
  send(ws, { id: 3, method: 'tools/call', params: { name: 'sleep', arguments: { ms: 3500 } } }); // answered while detached

  await waitFor(() => paused, 'the reader to pause', 10_000);
  await waitFor(async () => (await getHealth(daemon)).sessions.detached === 1 || null, 'the heartbeat to cut the paused client', 10_000);
  first.stop(); // what the client did not read before now, it never gets from this socket
  ws.terminate();
  const received = first.frames.length;

  const ws2 = await openSocket(cleanup, daemon);
  const second = track(ws2);
  const again = await sendHello(ws2, { session_id: 'resume-lossless', acks: true, pid: process.pid, received });
  assert.equal(again.ok, true, JSON.stringify(again));
  assert.equal(again.resumed, true);
  assert.ok(
    typeof again.replayed === 'number' && again.replayed > 0,
    `frames written to the cut connection and never read must be replayed: ${JSON.stringify(again)}`,
  );
  await waitFor(() => second.frames.some((m) => m.id === 2) && second.frames.some((m) => m.id === 3), 'both responses', 20_000);

  const all = [...first.frames, ...second.frames];
  const progress = all.filter((m) => m.method === 'notifications/progress').map((m) => (m.params as { progress: number }).progress);
  assert.deepEqual(
    progress,
    Array.from({ length: STEPS }, (_, i) => i + 1),
    `every progress notification exactly once, in order (client had ${received} frames, replayed ${String(again.replayed)})`,
  );
  const ids = all.filter((m) => m.method === undefined).map((m) => m.id);
  assert.deepEqual([...ids].sort(), [2, 3, 'init'], `each response exactly once: ${JSON.stringify(ids)}`);
  const at = (id: unknown) => all.findIndex((m) => m.id === id);
  const lastProgress = all.findLastIndex((m) => m.method === 'notifications/progress');
  assert.ok(at(2) > lastProgress, 'the call answers after its last progress');

  // The session goes on over the new connection.
  send(ws2, { id: 4, method: 'tools/call', params: { name: 'echo', arguments: { text: 'after resume' } } });
  const echo = await waitFor(() => second.frames.find((m) => m.id === 4), 'the echo');
  assert.equal(((echo.result as Json).content as { text: string }[])[0]?.text, 'after resume');
  const health = await getHealth(daemon);
  assert.equal(health.sessions.total, 1);
  assert.equal(health.sessions.attached, 1);
});

// Each test has its own daemon and home, or takes its turn on the quiet daemon: they run side by side.
describe('resume end to end', { concurrency: true }, () => {
  test('a resume that needs frames no longer kept (past EXAI_WS_HOLD_MAX_BYTES) gets a new session: resumed false, the old one ends resume_gap', async () => {
    const daemon = await hostileDaemon({ EXAI_WS_HOLD_MAX_BYTES: '32768', EXAI_WS_HEARTBEAT_MS: '0' });
    const ws = await openSocket(cleanup, daemon);
    const first = track(ws);
    assert.equal((await sendHello(ws, { session_id: 'resume-gap', acks: true })).ok, true);
    await initialize(ws, first.frames);
    // ~200 KB of progress to a client that reads everything and never acks: far past the limit.
    send(ws, {
      id: 2,
      method: 'tools/call',
      params: { name: 'hostile__flood', arguments: { count: 200, bytes: 1000 }, _meta: { progressToken: 'f' } },
    });
    const done = await waitFor(() => first.frames.find((m) => m.id === 2), 'the flood to finish', 20_000);
    assert.ok(done.result, `the attached session is not ended by the limit: ${JSON.stringify(done)}`);
    assert.equal(first.frames.filter((m) => m.method === 'notifications/progress').length, 200, 'nothing was dropped on the wire');

    first.stop();
    ws.terminate();
    await waitFor(async () => (await getHealth(daemon)).sessions.detached === 1 || null, 'the session to detach');

    // Claims to have lost everything after the initialize response: long trimmed.
    const ws2 = await openSocket(cleanup, daemon);
    const second = track(ws2);
    const again = await sendHello(ws2, { session_id: 'resume-gap', acks: true, received: 1 });
    assert.equal(again.ok, true, JSON.stringify(again));
    assert.equal(again.session_id, 'resume-gap');
    assert.equal(again.resumed, false, 'a gap is never papered over');
    assert.equal(again.replayed, 0);
    const closedLine = await waitFor(() => sessionClosedLines(daemon.home, 'resume-gap')[0], 'the old session closed line');
    assert.equal(closedLine.reason, 'resume_gap');

    // A new MCP session under the same id: it wants its own initialize, and works.
    await initialize(ws2, second.frames);
    send(ws2, { id: 3, method: 'tools/call', params: { name: 'echo', arguments: { text: 'fresh' } } });
    const echo = await waitFor(() => second.frames.find((m) => m.id === 3), 'the echo');
    assert.equal(((echo.result as Json).content as { text: string }[])[0]?.text, 'fresh');
    assert.ok(
      second.frames.every((m) => m.method !== 'notifications/progress'),
      'nothing of the old session reaches the new one',
    );
    const health = await getHealth(daemon);
    assert.equal(health.sessions.total, 1);
  });

  test('a resume whose `received` is larger than what was sent gets resumed false (resume_gap); a truthful one resumes', async () => {
    const daemon = await hostileDaemon({ EXAI_WS_HEARTBEAT_MS: '0' });

    const honest = await openSocket(cleanup, daemon);
    const h = track(honest);
    assert.equal((await sendHello(honest, { session_id: 'resume-honest', acks: true })).ok, true);
    await initialize(honest, h.frames);
    honest.terminate();
    await waitFor(async () => (await getHealth(daemon)).sessions.detached === 1 || null, 'the session to detach');
    const honest2 = await openSocket(cleanup, daemon);
    const back = await sendHello(honest2, { session_id: 'resume-honest', acks: true, received: h.frames.length });
    assert.deepEqual([back.ok, back.resumed, back.replayed], [true, true, 0], JSON.stringify(back));

    const liar = await openSocket(cleanup, daemon);
    const l = track(liar);
    assert.equal((await sendHello(liar, { session_id: 'resume-liar', acks: true })).ok, true);
    await initialize(liar, l.frames);
    liar.terminate();
    await waitFor(async () => (await getHealth(daemon)).sessions.detached === 1 || null, 'the session to detach');
    const liar2 = await openSocket(cleanup, daemon);
    const refused = await sendHello(liar2, { session_id: 'resume-liar', acks: true, received: l.frames.length + 5 });
    assert.deepEqual([refused.ok, refused.resumed, refused.session_id], [true, false, 'resume-liar'], JSON.stringify(refused));
    const closedLine = await waitFor(() => sessionClosedLines(daemon.home, 'resume-liar')[0], 'the old session closed line');
    assert.equal(closedLine.reason, 'resume_gap');
    assert.equal((await getHealth(daemon)).sessions.total, 2);
  });

  test('clients without acks are served as before: held messages on resume, no replay, an ack frame is an invalid message', () =>
    onQuietDaemon(async (daemon) => {
      const ws = await openSocket(cleanup, daemon);
      const first = track(ws);
      assert.equal((await sendHello(ws, { session_id: 'no-acks' })).ok, true);
      await initialize(ws, first.frames);

      // An ack frame on a connection that does not send acks: -32600, and the session goes on.
      ws.send('{"type":"ack","received":1}');
      const invalid = await waitFor(() => first.frames.find((m) => m.id === null), 'the invalid-message reply');
      assert.equal((invalid.error as { code: number }).code, -32600);

      send(ws, { id: 2, method: 'tools/call', params: { name: 'sleep', arguments: { ms: 400 } } });
      await waitFor(async () => (await getHealth(daemon)).inflight === 1 || null, 'the call in flight');
      first.stop();
      ws.terminate();
      await waitFor(async () => (await getHealth(daemon)).inflight === 0 || null, 'the call to finish while detached');

      const ws2 = await openSocket(cleanup, daemon);
      const again = await sendHello(ws2, { session_id: 'no-acks' });
      assert.deepEqual([again.ok, again.resumed, again.replayed], [true, true, 0], JSON.stringify(again));
      const held = await nextJson(ws2);
      assert.equal(held.id, 2, `the held reply follows the ack: ${JSON.stringify(held)}`);
      assert.equal(((held.result as Json).content as { text: string }[])[0]?.text, 'slept 400');
    }));

  test('a malformed ack frame on an acking connection is an invalid message that harms nothing else', () =>
    onQuietDaemon(async (daemon) => {
      const ws = await openSocket(cleanup, daemon);
      const frames = track(ws).frames;
      assert.equal((await sendHello(ws, { acks: true })).ok, true);
      await initialize(ws, frames);
      for (const bad of ['{"type":"ack","received":-1}', '{"type":"ack","received":"1"}', '{"type":"ack"}']) ws.send(bad);
      send(ws, { id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'fine' } } });
      await waitFor(() => frames.find((m) => m.id === 2), 'the echo');
      const invalid = frames.filter((m) => m.id === null);
      assert.equal(invalid.length, 3, JSON.stringify(frames));
      for (const m of invalid) assert.equal((m.error as { code: number }).code, -32600);
      ws.send('{"type":"ack","received":5}'); // a good one: never answered
      send(ws, { id: 3, method: 'ping' });
      await waitFor(() => frames.find((m) => m.id === 3), 'the ping');
      assert.equal(frames.length, 6, 'the ack got no answer');
    }));
});

// Each test has its own daemon, home and client processes, or takes its turn on the quiet daemon
// (the resume tests' turns are over by then): they run side by side.
describe('dead clients', { concurrency: true }, () => {
  const LONG_OP = 'everything__trigger-long-running-operation';
  /**
   * A pid check every 100 ms, not every second (EXAI_WS_TIMER_SCALE): these tests count checks
   * (pidChecksPassed) and bound the session's end far inside the grace, not at a second.
   */
  const PID_CHECKS_FAST = { EXAI_WS_TIMER_SCALE: '0.1' };

  /**
   * Resolves once the daemon has run a pid check of its detached sessions since this was called
   * (twice with `checks: 2`). The daemon says nothing when it checks a live pid, so a witness
   * shows it: a session whose hello names a live process is detached, that process is killed,
   * and the check that finds it gone ends that session (client_died). Every detached session
   * with a pid is checked in the same pass.
   */
  async function pidChecksPassed(daemon: DaemonHandle, label: string, checks = 1): Promise<void> {
    for (let n = 1; n <= checks; n++) {
      const witness = spawnChild(cleanup, 'sleep', ['60']); // any live process: `sleep` costs less than a Node
      const pid = witness.proc.pid as number;
      const ws = await openSocket(cleanup, daemon);
      const sessionId = `${label}-witness-${n}`;
      assert.equal((await sendHello(ws, { session_id: sessionId, pid })).ok, true);
      ws.terminate(); // abnormal: detached, its pid watched
      await waitFor(
        () => readJsonLines(logPath(daemon.home)).some((l) => l.msg === 'session detached' && l.session_id === sessionId),
        `the witness session ${sessionId} to detach`,
        10_000,
      );
      witness.proc.kill('SIGKILL');
      await within(witness.exited, 5_000, 'the witness process to die');
      const closedLine = await waitFor(
        () => sessionClosedLines(daemon.home, sessionId)[0],
        `the witness session ${sessionId} to end`,
        10_000,
      );
      assert.equal(closedLine.reason, 'client_died', 'the witness ended at a pid check');
    }
  }

  /** A daemon hosting server-everything behind the tee, which records what the server receives. */
  async function teedDaemon(): Promise<{ daemon: DaemonHandle; received: () => Message[] }> {
    let record = '';
    const daemon = await startHostingDaemon(
      cleanup,
      (home) => {
        record = join(home, 'everything-stdin.jsonl');
        return { everything: { command: process.execPath, args: [TEE_SCRIPT, record, process.execPath, EVERYTHING_SCRIPT, 'stdio'] } };
      },
      // The client's call is its first request: it waits for server-everything however long that
      // takes to start (under load, longer than the default 2 s list wait).
      { EXAI_WS_HEARTBEAT_MS: '400', EXAI_WS_RESUME_GRACE_MS: '60000', EXAI_WS_LIST_WAIT_MS: '0', ...PID_CHECKS_FAST },
    );
    const received = () => readJsonLines(record) as Message[];
    return { daemon, received };
  }

  /** Starts a client process whose hello names its own pid and whose long call is running at the server. */
  async function startClient(daemon: DaemonHandle, sessionId: string) {
    const client = spawnLines(cleanup, [
      PID_CLIENT,
      daemon.url(),
      daemon.token,
      sessionId,
      LONG_OP,
      JSON.stringify({ duration: 60, steps: 60 }),
    ]);
    const line = JSON.parse(await client.nextLine(20_000)) as { session_id: string; pid: number };
    assert.equal(line.session_id, sessionId);
    return client;
  }

  test('a client process killed with SIGKILL mid-call: its session ends within seconds (client_died) and the server gets the cancellation', async () => {
    const { daemon, received } = await teedDaemon();
    const client = await startClient(daemon, 'dies-mid-call');
    const call = received().find((m) => m.method === 'tools/call' && m.params?.name === 'trigger-long-running-operation');
    assert.ok(call, 'the server got the long call');
    assert.equal((await getHealth(daemon)).sessions.attached, 1);

    client.proc.kill('SIGKILL');
    await within(client.exited, 5_000, 'the client to die');
    // Far inside the 60 s resume grace.
    await waitFor(async () => (await getHealth(daemon)).sessions.total === 0 || null, 'the session to end', 5_000);
    const closedLine = await waitFor(() => sessionClosedLines(daemon.home, 'dies-mid-call')[0], 'the session closed line', 5_000);
    assert.equal(closedLine.reason, 'client_died');
    await waitFor(
      () => received().some((m) => m.method === 'notifications/cancelled' && m.params?.requestId === call.id),
      'notifications/cancelled for the call at the server',
      5_000,
    );
    await waitFor(async () => (await getHealth(daemon)).inflight === 0 || null, 'nothing in flight', 5_000);
  });

  test('a stopped client (SIGSTOP) keeps its detached session; once killed while detached, the session ends within seconds', async () => {
    const { daemon, received } = await teedDaemon();
    const client = await startClient(daemon, 'stopped-client');
    const call = received().find((m) => m.method === 'tools/call' && m.params?.name === 'trigger-long-running-operation');
    assert.ok(call, 'the server got the long call');
    cleanup.add(() => client.proc.kill('SIGCONT'));

    client.proc.kill('SIGSTOP');
    // The heartbeat cuts the connection of a process that cannot answer pings...
    await waitFor(async () => (await getHealth(daemon)).sessions.detached === 1 || null, 'the heartbeat to detach it', 10_000);
    // ...but the process is alive: several pid checks later the session is still held.
    await pidChecksPassed(daemon, 'stopped-client', 2);
    const health = await getHealth(daemon);
    assert.deepEqual([health.sessions.total, health.sessions.detached], [1, 1], 'a stopped client keeps its session');
    assert.equal(sessionClosedLines(daemon.home, 'stopped-client').length, 0);
    assert.ok(!received().some((m) => m.method === 'notifications/cancelled'), 'its call still runs');

    client.proc.kill('SIGKILL');
    await within(client.exited, 5_000, 'the client to die');
    await waitFor(async () => (await getHealth(daemon)).sessions.total === 0 || null, 'the detached session to end', 5_000);
    const closedLine = await waitFor(() => sessionClosedLines(daemon.home, 'stopped-client')[0], 'the session closed line', 5_000);
    assert.equal(closedLine.reason, 'client_died');
    await waitFor(
      () => received().some((m) => m.method === 'notifications/cancelled' && m.params?.requestId === call.id),
      'notifications/cancelled for the call at the server',
      5_000,
    );
  });

  test('a pid the daemon cannot see is ignored: the session waits out the grace as before', () =>
    onQuietDaemon(async (daemon) => {
      const ws = await openSocket(cleanup, daemon);
      // Far above any pid_max: no such process, at hello time already.
      assert.equal((await sendHello(ws, { session_id: 'unseen-pid', pid: 2 ** 30 + 7 })).ok, true);
      ws.terminate();
      await waitFor(async () => (await getHealth(daemon)).sessions.detached === 1 || null, 'the session to detach');
      await pidChecksPassed(daemon, 'unseen-pid', 2);
      assert.equal((await getHealth(daemon)).sessions.detached, 1, 'not ended as client_died');
      assert.equal(sessionClosedLines(daemon.home, 'unseen-pid').length, 0);
    }));
});
