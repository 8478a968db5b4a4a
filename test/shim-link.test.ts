/**
 * The shim's state machine (src/shim/link.ts) and what the shim does with it (src/shim/shim.ts),
 * driven with an in-memory socket and fake timers: transitions, backoff bounds, the reconnect
 * deadline, auto-start (`ensure`) calls, ack cadence, the proof the listener must give before
 * anything of value is sent (a stranger, a relay, an older daemon), and, through runShim with in-memory stdio,
 * what the client sees: one -32000 per lost request, nothing sent twice, cancellations after a
 * resume, the setup replayed into a new session, bounded waiting while reconnecting.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, mock, test } from 'node:test';
import type { DaemonAddress } from '../src/local/files.js';
import { computeProof, proofAddress } from '../src/local/proof.js';
import { LOST_MESSAGE } from '../src/shim/conversation.js';
import {
  ACK_DELAY_MS,
  ACK_EVERY_BYTES,
  ACK_EVERY_FRAMES,
  BACKOFF_CAP_MS,
  Link,
  backoffDelayMs,
  type EnsureResult,
  type LinkHandlers,
  type LinkOptions,
  type LinkOutcome,
  type LinkSocket,
  type LinkState,
  type SocketEvents,
  type SocketFactory,
} from '../src/shim/link.js';
import { MAX_QUEUED_MESSAGES, REFUSED_LINGER_MS, runShim, type ShimExit } from '../src/shim/shim.js';

type Json = Record<string, unknown> & { id?: unknown; method?: string; params?: Record<string, unknown> };

/** One in-memory socket: records what the link sends; the test plays the daemon through it. */
class FakeSocket implements LinkSocket {
  readonly sent: string[] = [];
  bufferedAmount = 0;
  closedWith: { code: number; reason: string } | undefined;
  terminated = false;
  paused = false;
  /** Opened and proven already ({@link greet}). */
  greeted = false;
  constructor(
    readonly address: DaemonAddress,
    private readonly events: SocketEvents,
  ) {}
  send(text: string, done?: () => void): void {
    this.sent.push(text);
    if (done) queueMicrotask(done);
  }
  close(code: number, reason: string): void {
    this.closedWith = { code, reason };
  }
  terminate(): void {
    this.terminated = true;
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }

  // ---- the daemon's side ----
  /** Connected and upgraded: the link sends its challenge, and nothing else. */
  open(): void {
    this.events.open();
  }
  /** The challenge the link sent first. */
  challenge(): Json {
    const first = JSON.parse(this.sent[0] ?? 'null') as Json;
    assert.equal(first.type, 'challenge', 'the first frame is the challenge');
    return first;
  }
  /**
   * Answers the challenge with this daemon's proof: by default the right one (the address's
   * token, for the address connected to); `token` or `address` make the proof of another
   * daemon, or one relayed from another port.
   */
  prove(options: { token?: string; address?: string; nonce?: string } = {}): void {
    const clientNonce = this.challenge().nonce as string;
    const daemonNonce = options.nonce ?? 'D'.repeat(43);
    const proof = computeProof(
      'daemon',
      options.token ?? (this.address.token as string),
      options.address ?? proofAddress(this.address.host, this.address.port),
      clientNonce,
      daemonNonce,
    );
    this.events.message(JSON.stringify({ type: 'proof', nonce: daemonNonce, proof }), 100);
  }
  /** Opens and proves: the link sends its hello. */
  greet(): void {
    this.open();
    this.prove();
    this.greeted = true;
  }
  ack(fields: Record<string, unknown> = {}): void {
    this.events.message(
      JSON.stringify({
        type: 'hello_ack',
        ok: true,
        session_id: 'sess-1',
        resumed: false,
        daemon: { name: 'exai-ws', version: 't', pid: 1 },
        limits: { max_inflight: 32, max_bytes: 32 * 1024 * 1024 },
        acks: true,
        ...fields,
      }),
      100,
    );
  }
  /** Opens, proves and acks in one step: the usual successful attempt. */
  accept(fields: Record<string, unknown> = {}): void {
    if (!this.greeted) this.greet();
    this.ack(fields);
  }
  refuse(code: string, message = 'no'): void {
    if (!this.greeted) this.greet();
    this.events.message(JSON.stringify({ type: 'hello_ack', ok: false, error: { code, message } }), 50);
    this.events.close(4003, message);
  }
  frame(message: unknown, bytes?: number): void {
    const text = typeof message === 'string' ? message : JSON.stringify(message);
    this.events.message(text, bytes ?? Buffer.byteLength(text));
  }
  drop(code = 1006, reason = ''): void {
    this.events.close(code, reason);
  }
  /** The upgrade answered with an HTTP status (401: wrong token). */
  reject(status: number): void {
    this.events.rejected(status);
    this.events.close(1006, '');
  }
  /** Nothing listens: refused before any upgrade. */
  fail(code = 'ECONNREFUSED'): void {
    this.events.error(code);
    this.events.close(1006, '');
  }
  /** The hello (it follows the challenge). */
  hello(): Json {
    const hello = this.parsed().find((m) => m.type === 'hello');
    assert.ok(hello, 'a hello was sent');
    return hello;
  }
  /** Frames sent after the hello, parsed. */
  after(): Json[] {
    const all = this.parsed();
    return all.slice(all.findIndex((m) => m.type === 'hello') + 1);
  }
  parsed(): Json[] {
    return this.sent.map((t) => JSON.parse(t) as Json);
  }
}

class Harness {
  readonly sockets: FakeSocket[] = [];
  readonly transitions: string[] = [];
  readonly outcomes: LinkOutcome[] = [];
  readonly frames: string[] = [];
  readonly drops: string[] = [];
  readonly opens: { resumed: boolean; reconnected: boolean }[] = [];
  ports = [4000];
  readonly factory: SocketFactory = (address, events) => {
    const socket = new FakeSocket(address, events);
    this.sockets.push(socket);
    return socket;
  };
  discover = (): DaemonAddress => ({ host: '127.0.0.1', port: this.ports[0] ?? 4000, token: 't'.repeat(32), source: 'pidfile' });

  link(options: Partial<LinkOptions> = {}, handlers: Partial<LinkHandlers> = {}): Link {
    const link = new Link({
      connect: this.factory,
      discover: () => this.discover(),
      hello: { client: { name: 'test', version: '1' } },
      pid: 4242,
      random: () => 0.5,
      ...options,
      handlers: {
        opened: (_ack, info) => this.opens.push(info),
        frame: (text) => this.frames.push(text),
        dropped: (why) => this.drops.push(why),
        closed: (outcome) => this.outcomes.push(outcome),
        transition: (from: LinkState, to: LinkState) => this.transitions.push(`${from}->${to}`),
        ...handlers,
      },
    });
    return link;
  }
  get last(): FakeSocket {
    const socket = this.sockets.at(-1);
    if (!socket) throw new Error('no socket was opened');
    return socket;
  }
}

/** Lets promise callbacks and stream events (microtasks and nextTicks) run, without moving the fake clock. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
afterEach(() => mock.timers.reset());

test('backoff: the first retry waits 50-100 ms, each next one up to twice as long, never past the 2 s cap', () => {
  for (const r of [0, 0.25, 0.5, 0.999999]) {
    const first = backoffDelayMs(0, () => r);
    assert.ok(first >= 50 && first <= 100, `first retry ${first} ms`);
    for (let attempt = 0; attempt < 40; attempt++) {
      const delay = backoffDelayMs(attempt, () => r);
      const ceiling = Math.min(BACKOFF_CAP_MS, 100 * 2 ** attempt);
      assert.ok(delay >= ceiling / 2 && delay <= ceiling, `retry ${attempt}: ${delay} ms outside [${ceiling / 2}, ${ceiling}]`);
    }
  }
  assert.equal(
    backoffDelayMs(30, () => 0.999999),
    BACKOFF_CAP_MS,
  );
  // Jitter spreads shims dropped at once: the same attempt gets different delays.
  assert.notEqual(
    backoffDelayMs(5, () => 0),
    backoffDelayMs(5, () => 0.9),
  );
});

test('cold start: connecting -> open; the hello carries pid and acks, and no session_id', () => {
  const h = new Harness();
  const link = h.link();
  link.start();
  assert.equal(link.state, 'connecting');
  h.last.greet();
  const hello = h.last.hello();
  assert.equal(hello.type, 'hello');
  assert.equal(hello.pid, 4242);
  assert.equal(hello.acks, true);
  assert.equal(hello.session_id, undefined);
  assert.equal(hello.received, undefined);
  h.last.ack();
  assert.equal(link.state, 'open');
  assert.deepEqual(h.transitions, ['connecting->open']);
  assert.deepEqual(h.opens, [{ resumed: false, reconnected: false }]);
  assert.equal(link.sessionId, 'sess-1');
});

test('cold start with nothing listening and no ensure: closed at once with the reason, no retry', () => {
  const h = new Harness();
  const link = h.link();
  link.start();
  h.last.fail('ECONNREFUSED');
  assert.equal(link.state, 'closed');
  assert.equal(h.outcomes.length, 1);
  const outcome = h.outcomes[0];
  assert.equal(outcome?.kind, 'failed');
  assert.match(
    outcome?.kind === 'failed' ? outcome.why : '',
    /cannot reach the exai-ws daemon at ws:\/\/127\.0\.0\.1:4000\/ws \(ECONNREFUSED\); start it with: exai-ws daemon/,
  );
  mock.timers.tick(60_000);
  assert.equal(h.sockets.length, 1, 'no retry at a cold start');
});

test('a drop after the ack: reconnecting, first retry within 50-100 ms, hello resumes with session_id and received', () => {
  for (const [r, expected] of [
    [0, 50],
    [0.999999, 100],
  ] as const) {
    const h = new Harness();
    const link = h.link({ random: () => r });
    link.start();
    h.last.accept();
    h.last.frame({ jsonrpc: '2.0', method: 'notifications/message', params: {} });
    h.last.frame({ jsonrpc: '2.0', id: 1, result: {} });
    h.last.drop(1006);
    assert.equal(link.state, 'reconnecting');
    assert.equal(h.drops.length, 1);
    assert.match(h.drops[0] ?? '', /closed \(code 1006\)/);
    mock.timers.tick(expected - 1);
    assert.equal(h.sockets.length, 1, `no retry before ${expected} ms`);
    mock.timers.tick(1);
    assert.equal(h.sockets.length, 2, `a retry at ${expected} ms`);
    h.last.greet();
    const hello = h.last.hello();
    assert.equal(hello.session_id, 'sess-1');
    assert.equal(hello.received, 2);
    assert.equal(hello.acks, true);
    assert.equal(hello.pid, 4242);
    h.last.ack({ resumed: true });
    assert.deepEqual(h.transitions, ['connecting->open', 'open->reconnecting', 'reconnecting->open']);
    assert.deepEqual(h.opens.at(-1), { resumed: true, reconnected: true });
  }
});

test('retries back off with jitter up to the 2 s cap, re-reading the address each time, until one succeeds', () => {
  const h = new Harness();
  const link = h.link({ random: () => 0.999999 });
  link.start();
  h.last.accept();
  h.last.drop(1001, 'daemon shutting down');
  const gaps: number[] = [];
  let last = 0;
  let clock = 0;
  for (let attempt = 0; attempt < 8; attempt++) {
    const before: number = h.sockets.length;
    while (h.sockets.length === before) {
      mock.timers.tick(10);
      clock += 10;
    }
    gaps.push(clock - last);
    last = clock;
    h.last.fail('ECONNREFUSED');
  }
  assert.deepEqual(gaps, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
  // A new daemon on another port: the next attempt finds it through discover().
  h.ports = [5000];
  mock.timers.tick(2000);
  assert.equal(h.last.address.port, 5000);
  h.last.accept({ resumed: false });
  assert.equal(link.state, 'open');
  assert.deepEqual(h.opens.at(-1), { resumed: false, reconnected: true });
});

test('while reconnecting, no address card means no daemon: no socket to the default port, just the backoff', () => {
  const h = new Harness();
  const link = h.link();
  link.start();
  h.last.accept();
  h.last.drop(1006);
  const card = h.discover;
  h.discover = () => ({ ...card(), port: 8765, source: 'default' });
  mock.timers.tick(5000);
  assert.equal(h.sockets.length, 1, 'no attempt without a card');
  assert.equal(link.state, 'reconnecting');
  h.discover = card;
  mock.timers.tick(2000);
  assert.equal(h.sockets.length, 2, 'the card is back: an attempt');
});

test('the reconnect deadline closes the link with the last error, and no attempt follows', () => {
  const h = new Harness();
  const link = h.link({ reconnectMs: 3000 });
  link.start();
  h.last.accept();
  h.last.drop(1006);
  const failEvery = () => {
    const socket = h.last;
    if (!socket.closedWith && !socket.terminated) socket.fail('ECONNREFUSED');
  };
  for (let t = 0; t < 2990; t += 10) {
    mock.timers.tick(10);
    failEvery();
  }
  assert.equal(link.state, 'reconnecting');
  mock.timers.tick(10);
  assert.equal(link.state, 'closed');
  const outcome = h.outcomes[0];
  assert.equal(outcome?.kind, 'failed');
  assert.match(outcome?.kind === 'failed' ? outcome.why : '', /could not be made again within 3 s \(last: cannot reach .*ECONNREFUSED/);
  const count = h.sockets.length;
  mock.timers.tick(60_000);
  assert.equal(h.sockets.length, count);
  assert.deepEqual(h.transitions, ['connecting->open', 'open->reconnecting', 'reconnecting->closed']);
});

test('an attempt that hangs before its hello_ack is given up after the connect timeout and retried', () => {
  const h = new Harness();
  const link = h.link({ connectTimeoutMs: 1000 });
  link.start();
  h.last.accept();
  h.last.drop(1006);
  mock.timers.tick(100);
  assert.equal(h.sockets.length, 2);
  h.last.greet(); // connected and proven, but no hello_ack ever comes
  mock.timers.tick(999);
  assert.equal(h.sockets[1]?.terminated, false);
  mock.timers.tick(1);
  assert.equal(h.sockets[1]?.terminated, true);
  assert.equal(link.state, 'reconnecting');
  mock.timers.tick(200); // the second retry: 100-200 ms
  assert.equal(h.sockets.length, 3);
});

test('4010 superseded closes the link for good; 4009 and 1001 reconnect', () => {
  for (const [code, next] of [
    [4010, 'closed'],
    [4009, 'reconnecting'],
    [1001, 'reconnecting'],
    [1000, 'reconnecting'],
  ] as const) {
    const h = new Harness();
    const link = h.link();
    link.start();
    h.last.accept();
    h.last.drop(code, 'x');
    assert.equal(link.state, next, `close code ${code}`);
    if (next === 'closed') {
      const outcome = h.outcomes[0];
      assert.match(outcome?.kind === 'failed' ? outcome.why : '', /another connection took over this session \(code 4010/);
      mock.timers.tick(10_000);
      assert.equal(h.sockets.length, 1);
    }
  }
});

test('while reconnecting, a refused hello: unauthorized ends the link; session_limit and shutting_down back off', () => {
  for (const [code, next] of [
    ['unauthorized', 'closed'],
    ['unsupported_protocol', 'closed'],
    ['bad_hello', 'closed'],
    ['session_limit', 'reconnecting'],
    ['shutting_down', 'reconnecting'],
  ] as const) {
    const h = new Harness();
    const link = h.link();
    link.start();
    h.last.accept();
    h.last.drop(1006);
    mock.timers.tick(100);
    h.last.refuse(code, 'because');
    assert.equal(link.state, next, code);
    if (next === 'closed') {
      const outcome = h.outcomes[0];
      assert.match(outcome?.kind === 'failed' ? outcome.why : '', new RegExp(`refused the session \\(${code}: because\\)`));
    } else {
      mock.timers.tick(200);
      assert.equal(h.sockets.length, 3, 'retried after a transient refusal');
    }
  }
});

test('an HTTP status on the upgrade (no credential went with it) is a failed attempt, retried while reconnecting, never a refusal', () => {
  const h = new Harness();
  const link = h.link();
  link.start();
  h.last.accept();
  h.last.drop(1006);
  mock.timers.tick(100);
  h.last.reject(401);
  assert.equal(link.state, 'reconnecting');
  mock.timers.tick(200);
  assert.equal(h.sockets.length, 3, 'tried again');
  h.last.accept({ resumed: true });
  assert.equal(link.state, 'open');

  const cold = new Harness();
  const coldLink = cold.link();
  coldLink.start();
  cold.last.reject(403);
  assert.equal(coldLink.state, 'closed');
  assert.match(
    (cold.outcomes[0] as { why: string }).why,
    /^something else holds 127\.0\.0\.1:4000: it did not prove that it is this home's exai-ws daemon \(it answered the WebSocket upgrade with HTTP 403\), so nothing was sent to it$/,
  );
});

/** An ensure the test settles by hand, counting its calls. */
function manualEnsure(): { ensure: () => Promise<EnsureResult>; calls: number; settle(result: EnsureResult): void } {
  const resolvers: ((r: EnsureResult) => void)[] = [];
  const handle = {
    calls: 0,
    ensure: () => {
      handle.calls++;
      return new Promise<EnsureResult>((resolve) => resolvers.push(resolve));
    },
    settle: (result: EnsureResult) => {
      const resolve = resolvers.shift();
      if (!resolve) throw new Error('ensure was not called');
      resolve(result);
    },
  };
  return handle;
}

test('cold start with ensure: a failed attempt asks ensure once, attempts wait for it, then connect again at once', async () => {
  const h = new Harness();
  const e = manualEnsure();
  const link = h.link({ ensure: e.ensure });
  link.start();
  h.last.fail('ECONNREFUSED');
  assert.equal(e.calls, 1);
  assert.equal(link.state, 'connecting');
  mock.timers.tick(30_000);
  assert.equal(h.sockets.length, 1, 'no attempt while ensure runs');
  e.settle({ ok: true, started: true });
  await settle();
  assert.equal(h.sockets.length, 2, 'connected again at once');
  h.last.accept();
  assert.equal(link.state, 'open');
  assert.equal(e.calls, 1);
});

test('cold start with ensure that fails: closed with the address it could not reach and the message', async () => {
  const h = new Harness();
  const e = manualEnsure();
  const link = h.link({ ensure: e.ensure });
  link.start();
  h.last.fail('ECONNREFUSED');
  e.settle({ ok: false, message: 'auto-start is off (EXAI_WS_AUTOSTART=0); start a daemon with: exai-ws daemon' });
  await settle();
  assert.equal(link.state, 'closed');
  assert.equal(h.outcomes.length, 1);
  assert.equal(h.outcomes[0]?.kind, 'failed');
  assert.match(
    (h.outcomes[0] as { why: string }).why,
    /^cannot reach the exai-ws daemon at ws:\/\/127\.0\.0\.1:\d+\/ws \(ECONNREFUSED\); auto-start is off \(EXAI_WS_AUTOSTART=0\); start a daemon with: exai-ws daemon$/,
  );
  assert.equal(h.sockets.length, 1);
});

test('reconnecting with ensure: asked once per spell of failures, backoff goes on when it cannot help, asked again after the next drop', async () => {
  const h = new Harness();
  const e = manualEnsure();
  const link = h.link({ ensure: e.ensure, reconnectMs: 60_000 });
  link.start();
  h.last.accept();
  h.last.drop(1006);
  mock.timers.tick(100);
  h.last.fail('ECONNREFUSED');
  assert.equal(e.calls, 1);
  mock.timers.tick(10_000);
  assert.equal(h.sockets.length, 2, 'attempts wait while ensure runs');
  e.settle({ ok: false, message: 'the daemon did not start; see /x/ws_daemon.log' });
  await settle();
  assert.equal(link.state, 'reconnecting');
  for (let i = 0; i < 5; i++) {
    const before: number = h.sockets.length;
    while (h.sockets.length === before) mock.timers.tick(10);
    h.last.fail('ECONNREFUSED');
  }
  assert.equal(e.calls, 1, 'not asked again in the same spell');
  mock.timers.tick(2000);
  h.last.accept({ resumed: false });
  assert.equal(link.state, 'open');
  h.last.drop(1006);
  mock.timers.tick(100);
  h.last.fail('ECONNREFUSED');
  assert.equal(e.calls, 2, 'a new spell asks again');
});

test('ensure said ok but the next attempt fails too: back off before asking again (no tight loop)', async () => {
  const h = new Harness();
  const e = manualEnsure();
  const link = h.link({ ensure: e.ensure });
  link.start();
  h.last.accept();
  h.last.drop(1006);
  mock.timers.tick(100);
  h.last.fail();
  e.settle({ ok: true, started: false });
  await settle();
  assert.equal(h.sockets.length, 3);
  h.last.fail();
  assert.equal(e.calls, 1, 'the failure right after ensure backs off first');
  const before: number = h.sockets.length;
  while (h.sockets.length === before) mock.timers.tick(10);
  h.last.fail();
  assert.equal(e.calls, 2);
  assert.equal(link.state, 'reconnecting');
});

test('no ack frames to a daemon whose hello_ack does not take them (one older than acks would answer each with -32600)', () => {
  const h = new Harness();
  const link = h.link();
  link.start();
  h.last.accept({ acks: undefined });
  const socket = h.last;
  for (let i = 0; i < 3 * ACK_EVERY_FRAMES; i++) socket.frame({ jsonrpc: '2.0', method: 'n', params: { i } });
  mock.timers.tick(10 * ACK_DELAY_MS);
  assert.deepEqual(
    socket.after().filter((m) => m.type === 'ack'),
    [],
  );
  assert.equal(h.frames.length, 3 * ACK_EVERY_FRAMES, 'every frame still reaches the client');
  socket.drop(1006);
  mock.timers.tick(100);
  h.last.greet();
  assert.equal(h.last.hello().received, 3 * ACK_EVERY_FRAMES, 'the resume still says what was received');
});

test('acks: after 64 frames, after 256 KB, else 200 ms after the first unacked frame; counted across a resume', () => {
  const h = new Harness();
  const link = h.link();
  link.start();
  h.last.accept();
  const socket = h.last;
  const acks = () => socket.after().filter((m) => m.type === 'ack');
  for (let i = 0; i < ACK_EVERY_FRAMES - 1; i++) socket.frame({ jsonrpc: '2.0', method: 'n', params: { i } });
  assert.equal(acks().length, 0);
  socket.frame({ jsonrpc: '2.0', method: 'n' });
  assert.deepEqual(acks(), [{ type: 'ack', received: 64 }]);
  assert.equal(socket.sent.at(-1), '{"type":"ack","received":64}', 'exactly the shape of the contract');
  socket.frame({ jsonrpc: '2.0', method: 'n' });
  mock.timers.tick(ACK_DELAY_MS - 1);
  assert.equal(acks().length, 1);
  mock.timers.tick(1);
  assert.deepEqual(acks().at(-1), { type: 'ack', received: 65 });
  mock.timers.tick(5000);
  assert.equal(acks().length, 2, 'nothing new, no ack');
  socket.frame({ jsonrpc: '2.0', method: 'big' }, ACK_EVERY_BYTES);
  assert.deepEqual(acks().at(-1), { type: 'ack', received: 66 });
  assert.equal(h.frames.length, 66);
  // Two unacked frames, then the drop: the resume says 68 and counting goes on from there.
  socket.frame({ jsonrpc: '2.0', method: 'n' });
  socket.frame({ jsonrpc: '2.0', method: 'n' });
  socket.drop(1006);
  mock.timers.tick(100);
  h.last.greet();
  assert.equal(h.last.hello().received, 68);
  h.last.ack({ resumed: true });
  h.last.frame({ jsonrpc: '2.0', method: 'n' });
  mock.timers.tick(ACK_DELAY_MS);
  assert.deepEqual(
    h.last.after().filter((m) => m.type === 'ack'),
    [{ type: 'ack', received: 69 }],
  );
  // A new session (resumed: false) counts from 0 again.
  h.last.drop(1006);
  mock.timers.tick(100);
  h.last.accept({ resumed: false });
  h.last.frame({ jsonrpc: '2.0', method: 'n' });
  mock.timers.tick(ACK_DELAY_MS);
  assert.deepEqual(
    h.last.after().filter((m) => m.type === 'ack'),
    [{ type: 'ack', received: 1 }],
  );
  assert.equal(link.received, 1);
});

test('close(): a normal close (1000) from any state, once; the link is closed and stays so', () => {
  const h = new Harness();
  const link = h.link();
  link.start();
  h.last.accept();
  link.close();
  link.close();
  assert.deepEqual(h.last.closedWith, { code: 1000, reason: 'client closed stdin' });
  assert.deepEqual(h.outcomes, [{ kind: 'ended' }]);
  h.last.drop(1000);
  mock.timers.tick(10_000);
  assert.equal(h.sockets.length, 1);
  assert.deepEqual(h.transitions, ['connecting->open', 'open->closed']);

  const r = new Harness();
  const reconnecting = r.link();
  reconnecting.start();
  r.last.accept();
  r.last.drop(1006);
  reconnecting.close();
  mock.timers.tick(10_000);
  assert.equal(r.sockets.length, 1, 'no retry after close()');
  assert.deepEqual(r.outcomes, [{ kind: 'ended' }]);
});

// ---- the proof: nothing of value before the listener proved it holds the token ---------

const TOKEN = 't'.repeat(32);

test('the challenge goes first and alone; the hello follows a valid proof and carries the client proof, never the token', () => {
  const h = new Harness();
  const link = h.link({ nonce: () => 'C'.repeat(43) });
  link.start();
  const socket = h.last;
  socket.open();
  assert.deepEqual(socket.parsed(), [{ type: 'challenge', nonce: 'C'.repeat(43) }]);
  assert.equal(link.canSend, false, 'the client waits until the daemon proved itself');
  socket.prove({ nonce: 'D'.repeat(43) });
  const hello = socket.hello();
  assert.equal(hello.auth_proof, computeProof('client', TOKEN, '127.0.0.1:4000', 'C'.repeat(43), 'D'.repeat(43)));
  assert.equal(hello.auth_token, undefined);
  assert.ok(!socket.sent.some((text) => text.includes(TOKEN)), 'the token never crosses the wire');
  assert.equal(link.canSend, true, 'pipelining starts with the hello');
  socket.ack();
  assert.equal(link.state, 'open');
});

test('every attempt has a fresh nonce; the proof of an earlier attempt does not pass', () => {
  const h = new Harness();
  let n = 0;
  const link = h.link({ nonce: () => String(n++).padStart(43, 'N') });
  link.start();
  h.last.accept();
  h.last.drop(1006);
  mock.timers.tick(100);
  const second = h.last;
  second.open();
  assert.notEqual(second.challenge().nonce, h.sockets[0]?.challenge().nonce);
  // A replay of the first exchange's proof: it was made for the first nonce.
  const replay = h.sockets[0]?.challenge().nonce as string;
  const proof = computeProof('daemon', TOKEN, '127.0.0.1:4000', replay, 'D'.repeat(43));
  (second as unknown as { events: SocketEvents }).events.message(JSON.stringify({ type: 'proof', nonce: 'D'.repeat(43), proof }), 100);
  assert.equal(second.parsed().length, 1, 'no hello after a replayed proof');
  assert.equal(second.terminated, true);
  assert.equal(link.state, 'reconnecting');
});

test('a listener that does not prove itself gets nothing but the nonce: a failed attempt (ensure is asked), never a refusal', async () => {
  const cases: [string, (socket: FakeSocket) => void, RegExp][] = [
    ['the proof of another token', (s) => s.prove({ token: 'x'.repeat(32) }), /its proof does not match the token/],
    ['a proof relayed from another port', (s) => s.prove({ address: '127.0.0.1:4001' }), /its proof does not match the token/],
    ['a frame that is no proof', (s) => s.frame({ type: 'hello_ack', ok: true }), /its answer to the challenge is no proof/],
    [
      'a proof frame with a bad nonce',
      (s) => s.frame({ type: 'proof', nonce: 'short', proof: 'x' }),
      /its answer to the challenge is no proof/,
    ],
    ['text that is not JSON', (s) => s.frame('HTTP/1.1 200 OK'), /its answer to the challenge is no proof/],
    ['a close instead of a proof', (s) => s.drop(1000, 'bye'), /it closed the connection instead \(code 1000: bye\)/],
  ];
  for (const [what, answer, detail] of cases) {
    const h = new Harness();
    const e = manualEnsure();
    const link = h.link({ ensure: e.ensure });
    link.start();
    const socket = h.last;
    socket.open();
    answer(socket);
    assert.deepEqual(
      socket.parsed().map((m) => m.type),
      ['challenge'],
      `${what}: nothing but the challenge was sent`,
    );
    assert.equal(link.state, 'connecting', `${what}: not a refusal`);
    assert.equal(e.calls, 1, `${what}: auto-start is asked (it may start this user's own daemon)`);
    e.settle({ ok: false, message: 'auto-start is off (EXAI_WS_AUTOSTART=0): start a daemon of your own with: exai-ws daemon' });
    await settle();
    assert.equal(link.state, 'closed');
    const why = (h.outcomes[0] as { why: string }).why;
    assert.match(why, /^something else holds 127\.0\.0\.1:4000: it did not prove that it is this home's exai-ws daemon \(/, what);
    assert.match(why, detail, what);
    assert.match(why, /so nothing was sent to it; auto-start is off/, `${what}: one line, then why no daemon was started`);
    assert.ok(!why.includes('\n'));
  }
});

test('a listener that never proves within the connect timeout: dropped, the attempt failed, the hello never sent', () => {
  const h = new Harness();
  const link = h.link({ connectTimeoutMs: 1000 });
  link.start();
  h.last.open();
  mock.timers.tick(999);
  assert.equal(h.last.terminated, false);
  mock.timers.tick(1);
  assert.equal(h.last.terminated, true);
  assert.equal(h.last.sent.length, 1);
  assert.match((h.outcomes[0] as { why: string }).why, /^something else holds 127\.0\.0\.1:4000: .*\(it gave no proof within 1000 ms\)/);
});

test('an older daemon refuses the challenge as not_hello: the attempt fails saying to run exai-ws restart; no hello, no token', async () => {
  const h = new Harness();
  const e = manualEnsure();
  const link = h.link({ ensure: e.ensure });
  link.start();
  const socket = h.last;
  socket.open();
  socket.frame({ type: 'hello_ack', ok: false, error: { code: 'not_hello', message: 'the first frame must be {"type":"hello",...}' } });
  socket.drop(4001, 'the first frame must be');
  assert.equal(socket.sent.length, 1);
  assert.equal(e.calls, 1, 'a failed attempt, not a refusal');
  e.settle({ ok: false, message: 'the exai-ws daemon on 127.0.0.1:4000 (pid 7, version 0.0.9) is older than this exai-ws' });
  await settle();
  // Auto-start's own line says it all (it looked at the daemon's version).
  assert.equal(
    (h.outcomes[0] as { why: string }).why,
    'the exai-ws daemon on 127.0.0.1:4000 (pid 7, version 0.0.9) is older than this exai-ws',
  );

  const alone = new Harness();
  const bare = alone.link();
  bare.start();
  alone.last.open();
  alone.last.frame({ type: 'hello_ack', ok: false, error: { code: 'not_hello', message: 'x' } });
  assert.match(
    (alone.outcomes[0] as { why: string }).why,
    /^the exai-ws daemon at ws:\/\/127\.0\.0\.1:4000\/ws is older than this shim: .*so nothing was sent to it; run `exai-ws restart` to run the new version$/,
  );
});

test('while reconnecting, a stranger on the port is retried with backoff and told nothing; the real daemon back on it resumes', () => {
  const h = new Harness();
  const link = h.link();
  link.start();
  h.last.accept();
  h.last.frame({ jsonrpc: '2.0', id: 1, result: {} });
  h.last.drop(1006);
  for (let i = 0; i < 3; i++) {
    const before = h.sockets.length;
    while (h.sockets.length === before) mock.timers.tick(10);
    h.last.open();
    h.last.prove({ token: 'another-users-token-0123456789' });
    assert.equal(h.last.sent.length, 1, 'only the challenge');
    assert.equal(link.state, 'reconnecting');
  }
  const before = h.sockets.length;
  while (h.sockets.length === before) mock.timers.tick(10);
  h.last.greet();
  assert.equal(h.last.hello().session_id, 'sess-1');
  assert.equal(h.last.hello().received, 1);
  h.last.ack({ resumed: true });
  assert.equal(link.state, 'open');
});

test('no token to check a proof with: no socket is opened at all; the failure names where the token should be', () => {
  const h = new Harness();
  h.discover = () => ({ host: '127.0.0.1', port: 4000, token: null, source: 'default' });
  const link = h.link({ noTokenHint: 'no token found: check /home/u/.local/state/exai-ws/token' });
  link.start();
  assert.equal(h.sockets.length, 0);
  assert.equal(link.state, 'closed');
  assert.equal(
    (h.outcomes[0] as { why: string }).why,
    "no token to check the exai-ws daemon's proof with: no token found: check /home/u/.local/state/exai-ws/token",
  );
});

// ---- the shim over the link: what the client sees ---------------------------------------

interface ShimRun {
  h: Harness;
  input: PassThrough;
  /** Messages written to the client so far (read with take()). */
  take(): Json[];
  send(message: unknown): void;
  exit: Promise<ShimExit>;
  stderr(): string;
}

function startShim(env: Record<string, string> = {}, ensure?: () => Promise<EnsureResult>): ShimRun {
  const h = new Harness();
  const input = new PassThrough();
  const output = new PassThrough();
  const errors = new PassThrough();
  let out = '';
  let err = '';
  output.on('data', (c: Buffer) => (out += c.toString()));
  errors.on('data', (c: Buffer) => (err += c.toString()));
  const exit = runShim({
    env: { EXAI_WS_HOME: '/nonexistent-exai-ws-test-home', ...env },
    // The home's address card, as a running daemon publishes it.
    discover: () => ({ host: '127.0.0.1', port: 4000, token: 't'.repeat(32), source: 'pidfile' }),
    input,
    output,
    errors,
    connect: h.factory,
    ensure,
    pid: 4242,
    random: () => 0.5,
  });
  return {
    h,
    input,
    exit,
    send: (message) => input.write(`${JSON.stringify(message)}\n`),
    take: () => {
      const lines = out.split('\n').filter((l) => l.length > 0);
      out = '';
      return lines.map((l) => JSON.parse(l) as Json);
    },
    stderr: () => err,
  };
}

const INIT = { protocolVersion: '2025-06-18', capabilities: { roots: {} }, clientInfo: { name: 'unit', version: '9' } };

/** Runs the shim through initialize, initialized, a log level and two subscriptions (one undone). */
async function setUp(run: ShimRun): Promise<FakeSocket> {
  const socket = run.h.last;
  socket.accept();
  run.send({ jsonrpc: '2.0', id: 0, method: 'initialize', params: INIT });
  await settle();
  socket.frame({
    jsonrpc: '2.0',
    id: 0,
    result: { protocolVersion: '2025-06-18', capabilities: {}, serverInfo: { name: 'x', version: '1' } },
  });
  run.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  run.send({ jsonrpc: '2.0', id: 1, method: 'logging/setLevel', params: { level: 'debug' } });
  run.send({ jsonrpc: '2.0', id: 2, method: 'logging/setLevel', params: { level: 'error' } }); // refused below: not kept
  run.send({ jsonrpc: '2.0', id: 3, method: 'resources/subscribe', params: { uri: 'test://a' } });
  run.send({ jsonrpc: '2.0', id: 4, method: 'resources/subscribe', params: { uri: 'test://b' } });
  run.send({ jsonrpc: '2.0', id: 5, method: 'resources/unsubscribe', params: { uri: 'test://b' } });
  run.send({ jsonrpc: '2.0', id: 6, method: 'resources/subscribe', params: { uri: 'test://c' } }); // refused below
  await settle();
  socket.frame({ jsonrpc: '2.0', id: 1, result: {} });
  socket.frame({ jsonrpc: '2.0', id: 2, error: { code: -32602, message: 'no' } });
  for (const id of [3, 4, 5]) socket.frame({ jsonrpc: '2.0', id, result: {} });
  socket.frame({ jsonrpc: '2.0', id: 6, error: { code: -32602, message: 'no such resource' } });
  await settle();
  assert.equal(run.take().length, 7, 'the client got its seven answers');
  return socket;
}

test('shim: requests in flight at a drop get exactly one -32000 each at once; never sent again; cancelled after a resume, late answers dropped', async () => {
  const run = startShim();
  const first = await setUp(run);
  run.send({ jsonrpc: '2.0', id: 10, method: 'tools/call', params: { name: 'sleep', arguments: { ms: 5000 } } });
  run.send({ jsonrpc: '2.0', id: 'eleven', method: 'tools/call', params: { name: 'sleep', arguments: { ms: 5000 } } });
  await settle();
  first.drop(1006);
  await settle();
  const errors = run.take();
  assert.deepEqual(
    errors.map((m) => [m.id, (m.error as { code: number }).code, (m.error as { message: string }).message]),
    [
      [10, -32000, LOST_MESSAGE],
      ['eleven', -32000, LOST_MESSAGE],
    ],
  );
  mock.timers.tick(100);
  const second = run.h.last;
  assert.notEqual(second, first);
  second.accept({ resumed: true });
  await settle();
  const sent = second.after();
  assert.deepEqual(sent, [
    { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 10, reason: 'connection lost' } },
    { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'eleven', reason: 'connection lost' } },
  ]);
  assert.ok(!second.sent.some((t) => t.includes('tools/call')), 'a lost request is never sent again');
  // The daemon still had one answer on its way: dropped, the client already has its error.
  second.frame({ jsonrpc: '2.0', id: 10, result: { content: [] } });
  second.frame({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'still here' } });
  await settle();
  assert.deepEqual(
    run.take().map((m) => m.method ?? m.id),
    ['notifications/message'],
  );
  run.send({ jsonrpc: '2.0', id: 12, method: 'tools/list' });
  await settle();
  assert.equal(second.after().at(-1)?.id, 12);
  run.input.end();
  assert.equal(await run.exit, 0);
  assert.deepEqual(second.closedWith, { code: 1000, reason: 'client closed stdin' });
  assert.match(run.stderr(), /reconnected: session sess-1 resumed/);
});

test('shim: a new session (resumed: false) gets the client setup replayed first, answers swallowed; the client gets three list_changed', async () => {
  const run = startShim();
  const first = await setUp(run);
  // A request from the old session the client answers only after the reconnect: that answer is dropped.
  first.frame({ jsonrpc: '2.0', id: 'srv-1', method: 'roots/list' });
  await settle();
  assert.equal(run.take()[0]?.method, 'roots/list');
  first.drop(1001, 'daemon shutting down');
  await settle();
  run.send({ jsonrpc: '2.0', id: 'srv-1', result: { roots: [] } });
  run.send({ jsonrpc: '2.0', id: 20, method: 'tools/list' });
  await settle();
  assert.deepEqual(run.take(), [], 'nothing was lost in flight, nothing answered yet');
  mock.timers.tick(100);
  const second = run.h.last;
  second.accept({ session_id: 'sess-1', resumed: false });
  await settle();
  const sent = second.after();
  const replayIds = sent.filter((m) => typeof m.id === 'string' && m.id.startsWith('exai-ws-shim-replay-')).map((m) => m.id);
  assert.deepEqual(
    sent.map((m) => [m.method, m.params]),
    [
      ['initialize', INIT],
      ['notifications/initialized', undefined],
      ['logging/setLevel', { level: 'debug' }],
      ['resources/subscribe', { uri: 'test://a' }],
      ['tools/list', undefined],
    ],
    'the setup, then what the client queued; not the answer meant for the old session',
  );
  assert.equal(replayIds.length, 3);
  assert.equal(sent.at(-1)?.id, 20);
  assert.deepEqual(
    run.take().map((m) => m.method),
    ['notifications/tools/list_changed', 'notifications/prompts/list_changed', 'notifications/resources/list_changed'],
  );
  for (const id of replayIds) second.frame({ jsonrpc: '2.0', id, result: {} });
  second.frame({ jsonrpc: '2.0', id: 20, result: { tools: [] } });
  await settle();
  assert.deepEqual(
    run.take().map((m) => m.id),
    [20],
    'the replayed requests are answered to the shim, not the client',
  );
  assert.match(run.stderr(), /new session sess-1/);
  run.input.end();
  assert.equal(await run.exit, 0);
});

test('shim: while reconnecting requests wait, bounded; past the bound each gets -32000 at once; they go out in order once open', async () => {
  const run = startShim();
  const first = await setUp(run);
  first.drop(1006);
  await settle();
  for (let i = 0; i < MAX_QUEUED_MESSAGES + 3; i++) run.send({ jsonrpc: '2.0', id: 100 + i, method: 'tools/list' });
  run.send({ jsonrpc: '2.0', method: 'notifications/roots/list_changed' }); // over the bound, and no answer is owed
  await settle();
  const refused = run.take();
  assert.deepEqual(
    refused.map((m) => m.id),
    [100 + MAX_QUEUED_MESSAGES, 101 + MAX_QUEUED_MESSAGES, 102 + MAX_QUEUED_MESSAGES],
  );
  for (const m of refused) {
    assert.equal((m.error as { code: number }).code, -32000);
    assert.match((m.error as { message: string }).message, /256 messages already wait/);
  }
  mock.timers.tick(100);
  run.h.last.accept({ resumed: true });
  await settle();
  const ids = run.h.last.after().map((m) => m.id);
  assert.deepEqual(
    ids,
    Array.from({ length: MAX_QUEUED_MESSAGES }, (_, i) => 100 + i),
  );
  run.input.end();
  assert.equal(await run.exit, 0);
});

test('shim: the byte bound holds too: a queue of 8 MB refuses the next request', async () => {
  const run = startShim();
  const first = await setUp(run);
  first.drop(1006);
  const big = 'x'.repeat(3 * 1024 * 1024);
  for (let i = 0; i < 3; i++)
    run.send({ jsonrpc: '2.0', id: `big-${i}`, method: 'tools/call', params: { name: 'echo', arguments: { text: big } } });
  await settle();
  assert.deepEqual(
    run.take().map((m) => [m.id, (m.error as { code: number }).code]),
    [['big-2', -32000]],
  );
  run.input.end();
  assert.equal(await run.exit, 0);
});

test('shim: at the reconnect deadline what waited gets -32000, the shim answers late requests for 2 s, then exits 1', async () => {
  const run = startShim({ EXAI_WS_RECONNECT_MS: '3000' });
  const first = await setUp(run);
  first.drop(1006);
  await settle();
  run.send({ jsonrpc: '2.0', id: 30, method: 'tools/list' });
  await settle();
  let exited: ShimExit | undefined;
  void run.exit.then((code) => (exited = code));
  for (let t = 0; t < 3000; t += 10) {
    mock.timers.tick(10);
    const socket = run.h.last;
    if (socket !== first && !socket.terminated && socket.sent.length === 0) socket.fail('ECONNREFUSED');
  }
  await settle();
  const answers = run.take();
  assert.equal(answers.length, 1);
  assert.equal(answers[0]?.id, 30);
  assert.equal((answers[0]?.error as { code: number }).code, -32000);
  assert.match((answers[0]?.error as { message: string }).message, /could not be made again within 3 s/);
  run.send({ jsonrpc: '2.0', id: 31, method: 'tools/list' });
  await settle();
  assert.equal(run.take()[0]?.id, 31, 'a request sent after giving up is answered too');
  assert.equal(exited, undefined);
  mock.timers.tick(REFUSED_LINGER_MS);
  await settle();
  assert.equal(exited, 1);
  assert.match(run.stderr(), /reconnecting \(for up to 3 s\)/);
});

test('shim: stdin ending while reconnecting answers what waited and exits 0 at once', async () => {
  const run = startShim();
  const first = await setUp(run);
  first.drop(1006);
  run.send({ jsonrpc: '2.0', id: 40, method: 'tools/list' });
  await settle();
  run.input.end();
  assert.equal(await run.exit, 0);
  const answers = run.take();
  assert.deepEqual(
    answers.map((m) => [m.id, (m.error as { code: number }).code]),
    [[40, -32000]],
  );
  const count = run.h.sockets.length;
  mock.timers.tick(10_000);
  assert.equal(run.h.sockets.length, count, 'no attempt after the end');
});

test('shim: a cancelled request is owed nothing: a drop does not answer it', async () => {
  const run = startShim();
  const first = await setUp(run);
  run.send({ jsonrpc: '2.0', id: 50, method: 'tools/call', params: { name: 'sleep', arguments: { ms: 5000 } } });
  run.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 50, reason: 'user' } });
  run.send({ jsonrpc: '2.0', id: 51, method: 'tools/call', params: { name: 'sleep', arguments: { ms: 5000 } } });
  await settle();
  first.drop(1006);
  await settle();
  assert.deepEqual(
    run.take().map((m) => m.id),
    [51],
  );
  run.input.end();
  assert.equal(await run.exit, 0);
});

test("shim, cold start: the client's first lines follow the hello at once, before the ack", async () => {
  const run = startShim();
  const socket = run.h.last;
  run.send({ jsonrpc: '2.0', id: 0, method: 'initialize', params: INIT });
  await settle();
  assert.equal(socket.sent.length, 0, 'nothing before the socket is open');
  socket.open();
  await settle();
  assert.deepEqual(
    socket.parsed().map((m) => m.type),
    ['challenge'],
    'only the challenge until the daemon has proven itself',
  );
  socket.prove();
  await settle();
  assert.deepEqual(
    socket.parsed().map((m) => m.type ?? m.method),
    ['challenge', 'hello', 'initialize'],
  );
  socket.ack();
  socket.frame({
    jsonrpc: '2.0',
    id: 0,
    result: { protocolVersion: '2025-06-18', capabilities: {}, serverInfo: { name: 'x', version: '1' } },
  });
  await settle();
  assert.deepEqual(
    run.take().map((m) => m.id),
    [0],
  );
  run.input.end();
  assert.equal(await run.exit, 0);
});

test('shim, cold start: lines sent before an ack that never came go out again on the next attempt, once; never answered -32000', async () => {
  const e = manualEnsure();
  const run = startShim({}, e.ensure);
  const first = run.h.last;
  first.greet();
  run.send({ jsonrpc: '2.0', id: 0, method: 'initialize', params: INIT });
  await settle();
  assert.equal(first.after()[0]?.method, 'initialize');
  first.refuse('shutting_down', 'daemon is shutting down');
  assert.equal(e.calls, 1);
  e.settle({ ok: true, started: true });
  await settle();
  const second = run.h.last;
  assert.notEqual(second, first);
  second.greet();
  await settle();
  assert.deepEqual(
    second.after().map((m) => [m.method, m.id]),
    [['initialize', 0]],
  );
  second.ack();
  second.frame({
    jsonrpc: '2.0',
    id: 0,
    result: { protocolVersion: '2025-06-18', capabilities: {}, serverInfo: { name: 'x', version: '1' } },
  });
  await settle();
  const got = run.take();
  assert.equal(got.length, 1);
  assert.ok(got[0]?.result, 'the initialize got its result, and no error');
  run.input.end();
  assert.equal(await run.exit, 0);
});

test('shim, cold start: a refused hello answers what the client already sent with the reason, once, then exits 1', async () => {
  const run = startShim();
  const socket = run.h.last;
  socket.greet();
  run.send({ jsonrpc: '2.0', id: 'init', method: 'initialize', params: INIT });
  run.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  await settle();
  socket.refuse('unauthorized', 'wrong token');
  await settle();
  const got = run.take();
  assert.deepEqual(
    got.map((m) => [m.id, (m.error as { code: number }).code]),
    [['init', -32000]],
  );
  assert.match((got[0]?.error as { message: string }).message, /refused the session \(unauthorized: wrong token\)/);
  mock.timers.tick(REFUSED_LINGER_MS);
  assert.equal(await run.exit, 1);
  assert.equal(run.h.sockets.length, 1);
});
