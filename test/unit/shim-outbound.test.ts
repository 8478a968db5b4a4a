/**
 * The shim's outbound queue (src/shim/outbound.ts) over a fake link: sent at once while the
 * link can send; waiting in order, bounded by count and bytes, while it cannot; in transit
 * after the first hello (in flight only once the ack says ok; retracted and sent again, once,
 * when the attempt failed); stdin paused past the socket's high-water mark and resumed below
 * its low-water mark, by the write callback of the frame that filled it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Conversation, type Note } from '../../src/shim/conversation.js';
import type { LinkState } from '../../src/shim/link.js';
import {
  MAX_QUEUED_BYTES,
  MAX_QUEUED_MESSAGES,
  Outbound,
  SOCKET_HIGH_WATER_BYTES,
  SOCKET_LOW_WATER_BYTES,
  type OutboundLink,
} from '../../src/shim/outbound.js';
import { readHead } from '../../src/shim/scan.js';

class FakeLink implements OutboundLink {
  state: LinkState = 'connecting';
  canSend = false;
  bufferedAmount = 0;
  readonly sent: { text: string; done: (() => void) | undefined }[] = [];
  send(text: string, done?: () => void): boolean {
    this.sent.push({ text, done });
    return true;
  }
  ids(): unknown[] {
    return this.sent.map((s) => (JSON.parse(s.text) as { id?: unknown }).id);
  }
}

function setup() {
  const link = new FakeLink();
  const conversation = new Conversation();
  const input = {
    paused: 0,
    resumed: 0,
    pause() {
      this.paused++;
    },
    resume() {
      this.resumed++;
    },
  };
  const answers: { id: unknown; error: { code: number; message: string } }[] = [];
  const outbound = new Outbound(link, conversation, input, (a) => answers.push(a));
  const offer = (message: Record<string, unknown>): Note => {
    const line = JSON.stringify({ jsonrpc: '2.0', ...message });
    const note = conversation.read(readHead(line)!, line);
    outbound.offer(line, note);
    return note;
  };
  return { link, conversation, input, answers, outbound, offer };
}

test('outbound: sent at once while the link can send; waits in order while it cannot; flushed in order', () => {
  const { link, outbound, offer, conversation } = setup();
  link.state = 'open';
  link.canSend = true;
  offer({ id: 1, method: 'tools/list' });
  assert.deepEqual(link.ids(), [1]);
  link.state = 'reconnecting';
  link.canSend = false;
  offer({ id: 2, method: 'tools/list' });
  offer({ id: 3, method: 'tools/list' });
  assert.equal(outbound.waiting, 2);
  link.state = 'open';
  link.canSend = true;
  offer({ id: 4, method: 'tools/list' }); // something waits: this one waits behind it
  assert.deepEqual(link.ids(), [1]);
  outbound.flush();
  assert.deepEqual(link.ids(), [1, 2, 3, 4]);
  assert.equal(outbound.waiting, 0);
  assert.equal(conversation.lost().length, 4, 'all four are in flight now');
});

test('outbound: past 256 waiting messages a request is answered -32000 at once; a notification is dropped', () => {
  const { link, outbound, offer, answers } = setup();
  link.state = 'reconnecting';
  for (let i = 0; i < MAX_QUEUED_MESSAGES; i++) offer({ id: i, method: 'tools/list' });
  offer({ id: 'over', method: 'tools/list' });
  offer({ method: 'notifications/roots/list_changed' });
  assert.equal(outbound.waiting, MAX_QUEUED_MESSAGES);
  assert.deepEqual(
    answers.map((a) => [a.id, a.error.code]),
    [['over', -32000]],
  );
  assert.match(
    answers[0]!.error.message,
    /256 messages already wait to be sent \(limit 256 messages, 8388608 bytes\); try again once it is back/,
  );
});

test('outbound: the byte bound holds too, but one message larger than it still waits when alone', () => {
  const { link, outbound, offer, answers } = setup();
  link.state = 'reconnecting';
  const huge = 'x'.repeat(MAX_QUEUED_BYTES + 10);
  offer({ id: 'alone', method: 'tools/call', params: { text: huge } });
  assert.equal(outbound.waiting, 1);
  offer({ id: 'next', method: 'tools/list' });
  assert.deepEqual(
    answers.map((a) => a.id),
    ['next'],
  );
});

test('outbound: in transit after the first hello; in flight once the ack says ok', () => {
  const { link, outbound, offer, conversation } = setup();
  link.canSend = true; // connecting, the hello is out: pipelined
  offer({ id: 0, method: 'initialize', params: {} });
  assert.deepEqual(link.ids(), [0]);
  assert.equal(outbound.unconfirmed, 1);
  assert.deepEqual(conversation.lost(), [], 'not in flight before the ack: a drop owes it nothing yet');
  outbound.opened();
  assert.equal(outbound.unconfirmed, 0);
  assert.deepEqual(
    conversation.lost().map((m) => m.id),
    [0],
  );
});

test('outbound: a retracted attempt puts the in-transit lines first in line again; sent once more, once', () => {
  const { link, outbound, offer } = setup();
  link.canSend = true;
  offer({ id: 0, method: 'initialize', params: {} });
  link.canSend = false; // the attempt failed before its ack
  offer({ id: 1, method: 'tools/list' });
  outbound.retract();
  assert.equal(outbound.waiting, 2);
  link.canSend = true; // the next attempt's hello is out
  outbound.flush();
  assert.deepEqual(link.ids(), [0, 0, 1], 'the first attempt carried 0; the second carries 0 and 1, in order');
  outbound.retract();
  outbound.retract();
  assert.equal(outbound.waiting, 2, 'retracting twice does not duplicate');
});

test('outbound: stdin pauses past the high-water mark and resumes below the low-water mark, from the write callback', () => {
  const { link, offer, input } = setup();
  link.state = 'open';
  link.canSend = true;
  offer({ id: 1, method: 'tools/list' });
  assert.equal(link.sent[0]!.done, undefined, 'a small frame into an empty socket needs no write callback');
  link.bufferedAmount = SOCKET_HIGH_WATER_BYTES + 1;
  offer({ id: 2, method: 'tools/list' });
  assert.equal(input.paused, 1);
  const done = link.sent[1]!.done;
  assert.ok(done, 'the frame that filled the socket carries the callback that resumes stdin');
  offer({ id: 3, method: 'tools/list' }); // the rest of the chunk
  assert.equal(input.paused, 1, 'paused once');
  link.bufferedAmount = SOCKET_LOW_WATER_BYTES;
  done();
  assert.equal(input.resumed, 0, 'not yet below the low-water mark');
  link.bufferedAmount = SOCKET_LOW_WATER_BYTES - 1;
  link.sent[2]!.done?.();
  assert.equal(input.resumed, 1);
});

test('outbound: a single large frame that fills the socket carries the callback even from an empty socket', () => {
  const { link, offer, input } = setup();
  link.state = 'open';
  link.canSend = true;
  const big = 'x'.repeat(SOCKET_LOW_WATER_BYTES);
  link.send = function (text, done) {
    this.sent.push({ text, done });
    this.bufferedAmount += SOCKET_HIGH_WATER_BYTES + 1; // the socket holds it all
    return true;
  };
  offer({ id: 'big', method: 'tools/call', params: { text: big } });
  assert.equal(input.paused, 1);
  assert.ok(link.sent[0]!.done);
  link.bufferedAmount = 0;
  link.sent[0]!.done();
  assert.equal(input.resumed, 1);
});

test('outbound: stdin end answers what waits (never sent) and clear() forgets everything', () => {
  const { link, outbound, offer } = setup();
  link.state = 'reconnecting';
  offer({ id: 1, method: 'tools/list' });
  offer({ method: 'notifications/initialized' });
  const answers = outbound.refuseWaiting('closed');
  assert.deepEqual(
    answers.map((a) => [a.id, a.error.code, a.error.message]),
    [[1, -32000, 'closed']],
  );
  assert.equal(outbound.waiting, 0);
  link.canSend = true;
  link.state = 'connecting';
  offer({ id: 2, method: 'tools/list' });
  outbound.clear();
  assert.equal(outbound.unconfirmed, 0);
});
