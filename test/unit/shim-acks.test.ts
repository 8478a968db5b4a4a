/**
 * The shim's ack counter (src/shim/acks.ts) with fake timers: the cadence (64 frames, 256 KB,
 * else 200 ms after the first unacked frame), the count across a resume, nothing to a daemon
 * that does not take acks, and an ack that could not be sent is sent later.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { ACK_DELAY_MS, ACK_EVERY_BYTES, ACK_EVERY_FRAMES, AckCounter } from '../../src/shim/acks.js';

beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
afterEach(() => mock.timers.reset());

function counter(open = () => true) {
  const sent: number[] = [];
  const acks = new AckCounter((frame) => {
    if (!open()) return false;
    const parsed = JSON.parse(frame) as { type: string; received: number };
    assert.equal(parsed.type, 'ack');
    sent.push(parsed.received);
    return true;
  });
  return { acks, sent };
}

test('acks: after 64 frames at once, else 200 ms after the first unacked frame; one timer, not one per frame', () => {
  const { acks, sent } = counter();
  acks.opened(false, true);
  for (let i = 0; i < ACK_EVERY_FRAMES - 1; i++) acks.count(10);
  assert.deepEqual(sent, []);
  acks.count(10);
  assert.deepEqual(sent, [ACK_EVERY_FRAMES]);
  acks.count(10);
  mock.timers.tick(ACK_DELAY_MS - 1);
  acks.count(10);
  assert.deepEqual(sent, [ACK_EVERY_FRAMES], 'the delay runs from the first unacked frame');
  mock.timers.tick(1);
  assert.deepEqual(sent, [ACK_EVERY_FRAMES, ACK_EVERY_FRAMES + 2]);
  mock.timers.tick(10 * ACK_DELAY_MS);
  assert.equal(sent.length, 2, 'nothing new, no ack');
  assert.equal(acks.received, ACK_EVERY_FRAMES + 2);
});

test('acks: 256 KB unacked sends an ack at once', () => {
  const { acks, sent } = counter();
  acks.opened(false, true);
  acks.count(ACK_EVERY_BYTES - 1);
  assert.deepEqual(sent, []);
  acks.count(1);
  assert.deepEqual(sent, [2]);
});

test('acks: none to a daemon that does not take them, but the frames are still counted for the resume', () => {
  const { acks, sent } = counter();
  acks.opened(false, false);
  for (let i = 0; i < 3 * ACK_EVERY_FRAMES; i++) acks.count(ACK_EVERY_BYTES);
  mock.timers.tick(10 * ACK_DELAY_MS);
  assert.deepEqual(sent, []);
  assert.equal(acks.received, 3 * ACK_EVERY_FRAMES);
});

test('acks: a resumed session goes on counting; a new one counts from 0; stop() cancels the due ack', () => {
  const { acks, sent } = counter();
  acks.opened(false, true);
  acks.count(1);
  acks.count(1);
  acks.stop(); // the connection dropped
  mock.timers.tick(ACK_DELAY_MS);
  assert.deepEqual(sent, []);
  acks.opened(true, true);
  assert.equal(acks.received, 2, 'a resume says what was received');
  acks.count(1);
  mock.timers.tick(ACK_DELAY_MS);
  assert.deepEqual(sent, [3]);
  acks.opened(false, true);
  assert.equal(acks.received, 0);
  acks.count(1);
  mock.timers.tick(ACK_DELAY_MS);
  assert.deepEqual(sent, [3, 1]);
});

test('acks: an ack that found no open connection is not counted as sent: the next one covers it', () => {
  let open = false;
  const { acks, sent } = counter(() => open);
  acks.opened(false, true);
  acks.count(1);
  mock.timers.tick(ACK_DELAY_MS);
  assert.deepEqual(sent, []);
  open = true;
  acks.count(1);
  mock.timers.tick(ACK_DELAY_MS);
  assert.deepEqual(sent, [2]);
});
