/**
 * The session manager over a real Hub (servers linked in memory) and in-memory transports, with
 * mock timers for the resume grace: sessions open, resume, are taken over, wait out their grace
 * or end at once, respect the session limit (making room first), and all end at shutdown.
 */
import assert from 'node:assert/strict';
import { after, afterEach, beforeEach, describe, mock, test } from 'node:test';
import pino from 'pino';
import { CloseCode } from '../../src/protocol/codes.js';
import { PROTOCOL_VERSION, type Hello } from '../../src/protocol/hello.js';
import {
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_HOLD_MAX_BYTES,
  DEFAULT_HOLD_TOTAL_MAX_BYTES,
  DEFAULT_MAX_INFLIGHT,
  DEFAULT_QUEUE_LIMIT,
  type DaemonConfig,
} from '../../src/daemon/files/config.js';
import { Metrics } from '../../src/daemon/files/metrics.js';
import { SessionManager } from '../../src/daemon/sessions/sessions.js';
import type { Session } from '../../src/daemon/sessions/session.js';
import { InMemoryTransport } from '../../src/transport/in-memory.js';
import { hubRig, settle, type HubRig } from '../fixtures/hub-rig.js';

const GRACE_MS = 30_000;

/** The settings the manager and its sessions read; the rest of a DaemonConfig plays no part. */
function config(overrides: Partial<DaemonConfig> = {}): DaemonConfig {
  return {
    maxSessions: 3,
    resumeGraceMs: GRACE_MS,
    holdMaxBytes: DEFAULT_HOLD_MAX_BYTES,
    holdTotalMaxBytes: DEFAULT_HOLD_TOTAL_MAX_BYTES,
    callTimeoutMs: DEFAULT_CALL_TIMEOUT_MS,
    maxInflight: DEFAULT_MAX_INFLIGHT,
    queueLimit: DEFAULT_QUEUE_LIMIT,
    timerScale: 1,
    ...overrides,
  } as DaemonConfig;
}

function manager(rig: HubRig, overrides: Partial<DaemonConfig> = {}): { manager: SessionManager; metrics: Metrics } {
  const metrics = new Metrics();
  return { manager: new SessionManager({ hub: rig.hub, config: config(overrides), metrics, logger: pino({ level: 'silent' }) }), metrics };
}

function hello(fields: Partial<Hello> = {}): Hello {
  return { type: 'hello', protocol: PROTOCOL_VERSION, client: { name: 'unit', version: '1' }, ...fields };
}

/** Opens a session and attaches one end of a fresh pair, as the server does after the hello_ack. */
function connect(
  m: SessionManager,
  fields: Partial<Hello> = {},
): { session: Session; daemon: InMemoryTransport; client: InMemoryTransport } {
  const opened = m.open(hello(fields));
  assert.ok(opened.ok, opened.ok ? undefined : opened.message);
  const [daemon, client] = InMemoryTransport.pair();
  daemon.onclose = (code) => m.transportClosed(opened.session, daemon, code);
  daemon.onmessage = (text) => opened.session.receive(text);
  opened.session.attach(daemon, { received: opened.received });
  return { session: opened.session, daemon, client };
}

describe('the session manager', async () => {
  const rig = await hubRig([{ name: 'alpha' }, { name: 'mine', scope: 'session' }]);
  after(() => rig.close());
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'setInterval'] }));
  afterEach(() => mock.timers.reset());

  test('a detached session waits out its grace, then ends (resume_grace_expired)', async () => {
    const { manager: m, metrics } = manager(rig);
    const { session, client } = connect(m);
    client.close(1006, 'lost');
    await settle();
    assert.equal(session.state, 'detached');
    assert.equal(m.size, 1);
    mock.timers.tick(GRACE_MS - 1);
    assert.equal(session.state, 'detached');
    mock.timers.tick(1);
    assert.equal(session.state, 'closed');
    assert.equal(m.size, 0);
    assert.equal(metrics.closeReasons.get('resume_grace_expired'), 1);
  });

  test('a resume within the grace gets the same session back, with what was held meanwhile', async () => {
    const { manager: m } = manager(rig);
    const first = connect(m, { session_id: 'resumed' });
    first.client.close(1006, 'lost');
    await settle();
    first.session.send({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'held' } });
    mock.timers.tick(GRACE_MS - 1);
    const opened = m.open(hello({ session_id: 'resumed' }));
    assert.ok(opened.ok && opened.resumed && opened.session === first.session);
    const [daemon, client] = InMemoryTransport.pair();
    const read: string[] = [];
    client.onmessage = (text) => read.push(text);
    opened.session.attach(daemon);
    mock.timers.tick(GRACE_MS);
    assert.equal(opened.session.state, 'attached', 'the grace stopped with the resume');
    await settle();
    assert.equal(read.length, 1);
    assert.match(read[0] ?? '', /held/);
    m.closeAll(CloseCode.GOING_AWAY, 'daemon shutting down');
  });

  test('a second connection with the same id takes the session over: the first is closed with 4010', async () => {
    const { manager: m } = manager(rig);
    const first = connect(m, { session_id: 'taken' });
    const closed: number[] = [];
    first.client.onclose = (code) => closed.push(code);
    const second = connect(m, { session_id: 'taken', client: { name: 'newer', version: '2' } });
    await settle();
    assert.equal(second.session, first.session);
    assert.deepEqual(closed, [CloseCode.SUPERSEDED]);
    assert.equal(second.session.state, 'attached', "the old connection's close does not detach the new one");
    assert.equal(second.session.client.name, 'newer');
    m.closeAll(CloseCode.GOING_AWAY, 'daemon shutting down');
  });

  test('a normal close ends the session at once (client_closed); with no grace any close does (client_gone)', async () => {
    const { manager: m, metrics } = manager(rig);
    const normal = connect(m);
    normal.client.close(CloseCode.NORMAL, 'bye');
    await settle();
    assert.equal(normal.session.state, 'closed');
    const { manager: graceless, metrics: gracelessMetrics } = manager(rig, { resumeGraceMs: 0 });
    const lost = connect(graceless);
    lost.client.close(1006, 'lost');
    await settle();
    assert.equal(lost.session.state, 'closed');
    assert.equal(metrics.closeReasons.get('client_closed'), 1);
    assert.equal(gracelessMetrics.closeReasons.get('client_gone'), 1);
  });

  test('a resume from before the kept frames starts a new session under the same id (resume_gap)', async () => {
    const { manager: m, metrics } = manager(rig);
    const first = connect(m, { session_id: 'gap' });
    first.session.send({ jsonrpc: '2.0', method: 'notifications/message', params: {} });
    first.client.close(1006, 'lost');
    await settle();
    const opened = m.open(hello({ session_id: 'gap', received: 0 }));
    assert.ok(opened.ok);
    assert.equal(opened.resumed, false, 'no acks: the frame the client did not get is not kept');
    assert.notEqual(opened.session, first.session);
    assert.equal(opened.session.id, 'gap');
    assert.equal(first.session.state, 'closed');
    assert.equal(metrics.closeReasons.get('resume_gap'), 1);
    m.closeAll(CloseCode.GOING_AWAY, 'daemon shutting down');
  });

  test('the session limit refuses a new session unless one can make room; an unknown server is a bad hello', () => {
    const { manager: m, metrics } = manager(rig, { maxSessions: 2 });
    connect(m);
    const second = connect(m);
    let asked = 0;
    m.makeRoom = () => (asked++, false);
    assert.deepEqual(m.open(hello()), { ok: false, code: 'session_limit', message: 'session limit reached (2)' });
    assert.equal(asked, 1);
    assert.equal(metrics.rejections.get('session_limit'), 1);
    m.makeRoom = () => (m.expire(second.session, 'http_idle'), true);
    assert.ok(m.open(hello()).ok, 'room was made');
    assert.deepEqual(m.open(hello({ server: 'nope' })), {
      ok: false,
      code: 'bad_hello',
      message: "no hosted server named 'nope' (configured: alpha, mine)",
    });
    assert.equal(metrics.rejections.get('unknown_server'), 1);
    m.closeAll(CloseCode.GOING_AWAY, 'daemon shutting down');
  });

  test('closeAll ends every session, closes its transport with the code, and stops its grace timer', async () => {
    const { manager: m, metrics } = manager(rig);
    const attached = connect(m);
    const detached = connect(m);
    const codes: number[] = [];
    attached.client.onclose = (code) => codes.push(code);
    detached.client.close(1006, 'lost');
    await settle();
    assert.deepEqual(m.byTransport, { ws: 2, http: 0, stdio: 0 });
    assert.equal(m.attachedCount, 1);
    m.closeAll(CloseCode.GOING_AWAY, 'daemon shutting down');
    await settle();
    assert.deepEqual(codes, [CloseCode.GOING_AWAY]);
    assert.equal(m.size, 0);
    assert.equal(metrics.closeReasons.get('daemon shutting down'), 2);
    mock.timers.tick(GRACE_MS);
    assert.equal(metrics.sessionsClosed, 2, 'no grace fires for a session already closed');
  });
});
