/**
 * A session's way out to its client, over an in-memory transport pair with real backpressure:
 * the client's input stops while it does not read ours and resumes once it caught up,
 * notifications are dropped (and counted) past the drop mark while responses still go, frames
 * are held in order while detached, kept until acked for a lossless resume, and bounded.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pino from 'pino';
import { Metrics } from '../../src/daemon/files/metrics.js';
import { NOTIFY_DROP_BYTES, OUTPUT_HIGH_WATER_BYTES, Outbox } from '../../src/daemon/sessions/outbox.js';
import { ByteBudget } from '../../src/transport/byte-budget.js';
import { InMemoryTransport } from '../../src/transport/in-memory.js';
import { settle } from '../fixtures/hub-rig.js';

interface Rig {
  outbox: Outbox;
  metrics: Metrics;
  overflows: number;
}

function rig(holdMaxBytes = 1024 * 1024, holdBudget?: ByteBudget): Rig {
  const metrics = new Metrics();
  const state: Rig = {
    metrics,
    overflows: 0,
    outbox: new Outbox({
      holdMaxBytes,
      metrics,
      logger: pino({ level: 'silent' }),
      sessionId: 'unit',
      overflow: () => state.overflows++,
      holdBudget,
    }),
  };
  return state;
}

/** A connected pair: `daemon` is the session's end, `client` records what it reads. */
function connect(): { daemon: InMemoryTransport; client: InMemoryTransport; read: string[]; heard: string[] } {
  const [daemon, client] = InMemoryTransport.pair();
  const read: string[] = [];
  const heard: string[] = [];
  client.onmessage = (text) => read.push(text);
  daemon.onmessage = (text) => heard.push(text);
  return { daemon, client, read, heard };
}

const note = (n: number, pad = 0) =>
  JSON.stringify({ jsonrpc: '2.0', method: 'notifications/progress', params: { n, pad: 'p'.repeat(pad) } });
const numbers = (frames: string[]) => frames.map((f) => (JSON.parse(f) as { params: { n: number } }).params.n);

describe('backpressure', () => {
  test('a client that stops reading stops being read; once it catches up, its input flows again', async () => {
    const { outbox } = rig();
    const { daemon, client, read, heard } = connect();
    outbox.attach(daemon);
    client.pauseInput(); // the client does not read
    const big = 1024 * 1024;
    for (let i = 0; i < 5; i++) outbox.send(note(i, big));
    assert.ok(daemon.bufferedBytes > OUTPUT_HIGH_WATER_BYTES);
    client.send('{"jsonrpc":"2.0","id":1,"method":"ping"}', undefined);
    await settle();
    assert.deepEqual(heard, [], "the session stopped reading the client's requests");
    client.resumeInput();
    await settle();
    assert.deepEqual(numbers(read), [0, 1, 2, 3, 4]);
    assert.equal(daemon.bufferedBytes, 0);
    await settle();
    assert.equal(heard.length, 1, 'the request waiting meanwhile is read now');
  });

  test('past the drop mark notifications are dropped and counted once per spell; responses still go', async () => {
    const { outbox, metrics } = rig();
    const { daemon, client, read } = connect();
    outbox.attach(daemon);
    client.pauseInput();
    const big = 1024 * 1024;
    let n = 0;
    while (daemon.bufferedBytes <= NOTIFY_DROP_BYTES) outbox.send(note(n++, big));
    assert.equal(outbox.admitNotification('notifications/message'), false);
    assert.equal(outbox.admitNotification('notifications/message'), false);
    assert.equal(metrics.rejections.get('output_overflow'), 2);
    outbox.send('{"jsonrpc":"2.0","id":7,"result":{}}', 7);
    client.resumeInput();
    await settle();
    assert.equal(read.length, n + 1, 'every frame sent, the response included, arrived');
    assert.equal(outbox.admitNotification('notifications/message'), true, 'caught up: notifications resume');
  });
});

describe('held and kept frames', () => {
  test('frames sent while detached are held, then written in order after the replayed ones', async () => {
    const { outbox } = rig();
    const first = connect();
    outbox.attach(first.daemon, { acks: true });
    for (let i = 1; i <= 4; i++) outbox.send(note(i));
    assert.equal(outbox.takeAck('{"type":"ack","received":2}'), true);
    assert.equal(outbox.detach(first.daemon), true);
    assert.equal(outbox.detach(first.daemon), false, 'only the attached transport detaches');
    for (let i = 5; i <= 6; i++) outbox.send(note(i));
    assert.equal(outbox.sentCount, 4, 'held frames are numbered when written');
    assert.equal(outbox.resumable(1), false, 'acked frames are gone');
    assert.equal(outbox.resumable(2), true);
    assert.equal(outbox.resumable(5), false, 'more than was sent');
    const second = connect();
    assert.equal(outbox.attach(second.daemon, { acks: true, received: 2 }), 2);
    await settle();
    assert.deepEqual(numbers(second.read), [3, 4, 5, 6]);
    assert.equal(outbox.sentCount, 6);
  });

  test('without acks nothing is kept and an ack frame is not taken', () => {
    const { outbox } = rig();
    const { daemon } = connect();
    outbox.attach(daemon);
    for (let i = 1; i <= 3; i++) outbox.send(note(i));
    assert.equal(outbox.takeAck('{"type":"ack","received":3}'), false);
    assert.equal(outbox.resumable(2), false);
    assert.equal(outbox.resumable(3), true, 'only a resume that lost nothing');
  });

  test('held frames alone past the hold limit ask the owner to end the session; kept ones are trimmed first', () => {
    const frame = note(10);
    const state = rig(frame.length * 3);
    const outbox = state.outbox;
    const { daemon } = connect();
    outbox.attach(daemon, { acks: true });
    for (let i = 10; i <= 15; i++) outbox.send(note(i));
    assert.equal(state.overflows, 0, 'kept frames never end a session');
    assert.equal(outbox.resumable(3), true, 'the newest three (frames 4 to 6) are kept');
    assert.equal(outbox.resumable(2), false);
    outbox.detach(daemon);
    for (let i = 16; i <= 18; i++) outbox.send(note(i));
    assert.equal(state.overflows, 0);
    outbox.send(note(19));
    assert.ok(state.overflows >= 1);
  });

  test('held frames of detached sessions are bounded together: the one holding the most gives way', () => {
    const budget = new ByteBudget(note(10).length * 5);
    const a = rig(1024 * 1024, budget);
    const b = rig(1024 * 1024, budget);
    for (let i = 10; i <= 13; i++) a.outbox.send(note(i));
    b.outbox.send(note(10));
    assert.deepEqual([a.overflows, b.overflows], [0, 0], 'all within the total');
    b.outbox.send(note(11));
    assert.deepEqual([a.overflows, b.overflows], [1, 0], 'a held the most');
  });

  test('close drops what is held and kept, leaves the budget, and hands back the transport once', () => {
    const budget = new ByteBudget(1024 * 1024);
    const { outbox } = rig(1024 * 1024, budget);
    outbox.send(note(1));
    assert.ok(budget.usedBytes > 0);
    const { daemon } = connect();
    outbox.attach(daemon, { acks: true });
    outbox.detach(daemon);
    outbox.send(note(2));
    const second = connect();
    outbox.attach(second.daemon);
    assert.equal(outbox.close(), second.daemon);
    assert.equal(budget.usedBytes, 0);
    assert.equal(outbox.close(), null);
    outbox.send(note(3));
    assert.equal(budget.usedBytes, 0, 'nothing is held after close');
  });
});
