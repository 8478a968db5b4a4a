/**
 * One session over a real Hub (servers linked in memory) and an in-memory transport: its flow
 * control (in flight, queued, refused), the questions it asks its client on servers' behalf
 * (answered, past their deadline, at close), and the one close() that releases everything the
 * session holds: subscriptions, log level, servers kept up, its session-scoped servers.
 */
import assert from 'node:assert/strict';
import { after, describe, mock, test } from 'node:test';
import pino from 'pino';
import { CloseCode, RpcCode } from '../../src/protocol/codes.js';
import type { DaemonConfig } from '../../src/daemon/files/config.js';
import { Metrics } from '../../src/daemon/files/metrics.js';
import { RETRY_AFTER_MS, Session } from '../../src/daemon/sessions/session.js';
import { InMemoryTransport } from '../../src/transport/in-memory.js';
import { hubRig, settle, type HubRig } from '../fixtures/hub-rig.js';

type Json = Record<string, unknown>;

interface Rig {
  session: Session;
  /** What the client read, parsed. */
  read: Json[];
  /** Sends one JSON-RPC message as the client. */
  send(message: Json): void;
  /** Waits until the client read a response with this id. */
  response(id: number): Promise<Json>;
  expired: string[];
  client: InMemoryTransport;
}

function open(rig: HubRig, id: string, limits: { maxInflight?: number; queueLimit?: number } = {}, opening = {}): Rig {
  const expired: string[] = [];
  const config = {
    holdMaxBytes: 1024 * 1024,
    callTimeoutMs: 10_000,
    maxInflight: limits.maxInflight ?? 8,
    queueLimit: limits.queueLimit ?? 8,
  } as DaemonConfig;
  const session = new Session(
    id,
    { name: 'unit', version: '1' },
    { hub: rig.hub, config, metrics: new Metrics(), logger: pino({ level: 'silent' }), expire: (_s, reason) => expired.push(reason) },
    opening,
  );
  const [daemon, client] = InMemoryTransport.pair();
  const read: Json[] = [];
  client.onmessage = (text) => read.push(JSON.parse(text) as Json);
  daemon.onmessage = (text) => session.receive(text);
  session.attach(daemon);
  return {
    session,
    read,
    expired,
    client,
    send: (message) => client.send(JSON.stringify({ jsonrpc: '2.0', ...message }), undefined),
    async response(rid) {
      for (let i = 0; i < 1000; i++) {
        const found = read.find((m) => m.id === rid && m.method === undefined);
        if (found) return found;
        await settle();
      }
      assert.fail(`no response ${rid}: ${JSON.stringify(read)}`);
    },
  };
}

const call = (id: number, name: string, args: Json = {}) => ({ id, method: 'tools/call', params: { name, arguments: args } });

describe('a session', async () => {
  const rig = await hubRig([{ name: 'alpha' }, { name: 'mine', scope: 'session' }]);
  after(() => rig.close());

  test('runs at most maxInflight requests, queues queueLimit more, refuses the next with -32010', async () => {
    const r = open(rig, 'flow', { maxInflight: 1, queueLimit: 1 });
    r.send(call(1, 'alpha__hold'));
    r.send(call(2, 'alpha__echo', { text: 'queued' }));
    r.send(call(3, 'alpha__echo', { text: 'refused' }));
    r.send(call(1, 'alpha__echo', { text: 'same id' }));
    const refused = await r.response(3);
    assert.deepEqual(refused.error, {
      code: RpcCode.OVER_CAPACITY,
      message: 'session over capacity: 1 in flight and 1 queued',
      data: { retry_after_ms: RETRY_AFTER_MS },
    });
    const duplicate = (await r.response(1)).error as { code: number; message: string };
    assert.equal(duplicate.code, RpcCode.INVALID_REQUEST);
    assert.equal(duplicate.message, 'Invalid request: id 1 is already in flight');
    assert.equal(r.session.inflightCount, 1);
    assert.equal(r.session.queuedCount, 1);
    while (rig.release() === 0) await settle();
    await r.response(2);
    const answered = r.read.filter((m) => m.id === 1 || m.id === 2);
    assert.equal(answered.length, 3, 'the duplicate error, then the held call and the queued one');
    assert.deepEqual(
      answered.slice(1).map((m) => 'result' in m),
      [true, true],
    );
    assert.equal(r.session.inflightCount, 0);
    r.session.close(CloseCode.NORMAL, 'done');
  });

  test('cancelling a queued request drops it; draining answers queued and new requests -32000', async () => {
    const r = open(rig, 'drain', { maxInflight: 1, queueLimit: 4 });
    r.send(call(1, 'alpha__hold'));
    r.send(call(2, 'alpha__echo', { text: 'cancelled' }));
    r.send(call(3, 'alpha__echo', { text: 'drained' }));
    r.send({ method: 'notifications/cancelled', params: { requestId: 2 } });
    while (r.session.queuedCount !== 1) await settle();
    r.session.drain('daemon is shutting down');
    assert.deepEqual((await r.response(3)).error, {
      code: RpcCode.CONNECTION_CLOSED,
      message: 'connection closed: daemon is shutting down',
    });
    r.send(call(4, 'alpha__echo', { text: 'late' }));
    assert.equal(((await r.response(4)).error as { code: number }).code, RpcCode.CONNECTION_CLOSED);
    r.session.abortInflight('daemon is shutting down');
    assert.equal(((await r.response(1)).error as { code: number }).code, RpcCode.CONNECTION_CLOSED);
    assert.equal(r.read.filter((m) => m.id === 2).length, 0, 'a cancelled request gets no answer');
    rig.release();
    r.session.close(CloseCode.NORMAL, 'done');
  });

  test('a question to the client resolves with its answer, -32001 past its deadline, -32000 when the session ends', async () => {
    const r = open(rig, 'asks');
    const answered = r.session.request('roots/list', undefined, 1_000);
    await settle();
    const asked = r.read.at(-1) as { id: string; method: string };
    assert.equal(asked.method, 'roots/list');
    r.send({ id: asked.id, result: { roots: [] } });
    assert.deepEqual(await answered, { result: { roots: [] } });

    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const late = r.session.request('sampling/createMessage', { messages: [] }, 5_000);
      mock.timers.tick(5_000);
      assert.deepEqual(await late, {
        error: { code: RpcCode.REQUEST_TIMEOUT, message: 'the client did not answer sampling/createMessage within 5000 ms' },
      });
    } finally {
      mock.timers.reset();
    }
    const unsendable = await r.session.request('elicitation/create', { big: 10n as unknown as number }, 1_000);
    assert.deepEqual(unsendable, {
      error: { code: RpcCode.INTERNAL_ERROR, message: 'elicitation/create cannot be sent to the client: its params cannot be serialised' },
    });
    const pending = r.session.request('roots/list', undefined, 60_000);
    r.session.close(CloseCode.NORMAL, 'client went away');
    assert.deepEqual(await pending, { error: { code: RpcCode.CONNECTION_CLOSED, message: 'the client session closed: client went away' } });
    assert.deepEqual(await r.session.request('roots/list', undefined, 1_000), {
      error: { code: RpcCode.CONNECTION_CLOSED, message: 'the client session is closed' },
    });
  });

  test('close() releases everything it holds: subscriptions, log level, servers kept up, its session-scoped server', async () => {
    const keeper = open(rig, 'keeper');
    const r = open(rig, 'leaver', {}, { cwd: '/somewhere' });
    assert.equal(r.session.cwd, '/somewhere');
    r.send(call(1, 'mine__echo', { text: 'x' }));
    r.send({ id: 2, method: 'resources/subscribe', params: { uri: 'mem://alpha/note' } });
    r.send({ id: 3, method: 'logging/setLevel', params: { level: 'debug' } });
    keeper.send({ id: 1, method: 'logging/setLevel', params: { level: 'warning' } });
    await r.response(1);
    await r.response(2);
    await r.response(3);
    await keeper.response(1);
    assert.equal(r.session.logLevel, 'debug');
    const own = rig.instances.get('mine@leaver');
    const alpha = rig.instances.get('alpha');
    assert.ok(own && alpha);
    assert.equal(own.state, 'ready');
    assert.ok(own.userIds.has('leaver'));
    rig.heard.length = 0;
    r.session.close(CloseCode.NORMAL, 'bye');
    await settle();
    await settle();
    assert.equal(r.session.state, 'closed');
    assert.equal(own.state, 'closed', 'a session-scoped server lives exactly as long as its session');
    assert.deepEqual(rig.hub.subscribers(alpha, 'mem://alpha/note').size, 0);
    assert.ok(rig.heard.includes('alpha resources/unsubscribe mem://alpha/note'), rig.heard.join());
    assert.ok(rig.heard.includes('alpha logging/setLevel warning'), `the level left is the keeper's: ${rig.heard.join()}`);
    assert.equal(r.client.closed?.code, CloseCode.NORMAL, 'the transport is closed with the code');
    r.session.close(CloseCode.NORMAL, 'again');
    keeper.session.close(CloseCode.NORMAL, 'done');
  });
});
