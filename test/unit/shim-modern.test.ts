/**
 * The shim's conversation with a 2026-07-28 client (src/shim/conversation.ts): no initialize,
 * so a new session replays nothing; its open `subscriptions/listen` requests outlive a drop and
 * are sent again, as written and under the same ids, to a new session; every other request in
 * flight is answered -32000 as for any client.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Conversation, LOST_MESSAGE, type Note } from '../../src/shim/conversation.js';
import { readHead } from '../../src/shim/scan.js';

const META = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} };

function line(message: Record<string, unknown>): string {
  return JSON.stringify({ jsonrpc: '2.0', ...message });
}

/** The client's request `id` of `method`, with the modern `_meta`, as the client wrote it. */
function modern(id: string | number, method: string, params: Record<string, unknown> = {}): string {
  return line({ id, method, params: { ...params, _meta: META } });
}

/** The client sends `text`; it goes out at once unless `waits`. */
function send(c: Conversation, text: string, waits = false): Note {
  const note = c.read(readHead(text)!, text);
  if (!waits) assert.equal(c.sending(note), true);
  return note;
}

function deliver(c: Conversation, message: Record<string, unknown>): boolean {
  const frame = line(message);
  return c.delivered(readHead(frame)!, frame);
}

const LISTEN = modern('listen-1', 'subscriptions/listen', { notifications: { toolsListChanged: true } });

test('modern conversation: a drop answers the calls in flight -32000 but keeps the listen stream open', () => {
  const c = new Conversation();
  send(c, LISTEN);
  assert.equal(deliver(c, { method: 'notifications/subscriptions/acknowledged', params: {} }), true);
  send(c, modern(7, 'tools/call', { name: 'slow' }));
  const lost = c.lost();
  assert.deepEqual(
    lost.map((m) => [m.id, m.error.code, m.error.message]),
    [[7, -32000, LOST_MESSAGE]],
  );
  assert.equal(c.pendingCount, 1, 'the listen request is still owed its end');
  // Resumed: only the lost call is cancelled there; the stream runs on and nothing is sent again.
  assert.deepEqual(
    c.resumed().map((m) => (m.params as { requestId: unknown }).requestId),
    [7],
  );
  assert.equal(
    deliver(c, { method: 'notifications/tools/list_changed', params: { _meta: { 'io.modelcontextprotocol/subscriptionId': 'listen-1' } } }),
    true,
  );
});

test('modern conversation: a new session gets nothing replayed, and the open listen requests again, as written', () => {
  const c = new Conversation();
  const second = modern('listen-2', 'subscriptions/listen', { notifications: { resourceSubscriptions: ['file:///a'] } });
  send(c, LISTEN);
  send(c, second);
  send(c, modern(8, 'tools/list'));
  assert.equal(c.lost().length, 1, 'tools/list answered -32000');
  assert.deepEqual(c.renewed(), { toDaemon: [], toClient: [] }, 'no initialize to replay, no list_changed outside a listen stream');
  assert.deepEqual(c.relistened(), [LISTEN, second]);
  // The new session ends one stream (its complete result): the client gets that answer, once.
  assert.equal(deliver(c, { id: 'listen-2', result: {} }), true);
  assert.deepEqual(c.relistened(), [LISTEN]);
  assert.equal(c.pendingCount, 1);
});

test('modern conversation: a cancelled listen is not opened again; a waiting one goes out with the queue, not twice', () => {
  const c = new Conversation();
  send(c, LISTEN);
  send(c, line({ method: 'notifications/cancelled', params: { requestId: 'listen-1' } }));
  const waiting = send(c, modern('listen-3', 'subscriptions/listen', { notifications: { promptsListChanged: true } }), true);
  assert.deepEqual(c.lost(), []);
  c.renewed();
  assert.deepEqual(c.relistened(), [], 'the cancelled one is gone; the waiting one is sent by the queue');
  assert.equal(c.sending(waiting), true);
  assert.equal(c.relistened().length, 1, 'once sent, a later new session gets it again');
});

test('modern conversation: when the daemon cannot be used, a listen request gets its one answer', () => {
  const c = new Conversation();
  send(c, LISTEN);
  c.lost();
  const failed = c.failAll('the daemon is gone');
  assert.deepEqual(
    failed.map((m) => [m.id, m.error.code, m.error.message]),
    [['listen-1', -32000, 'the daemon is gone']],
  );
  assert.deepEqual(c.relistened(), []);
});

test('modern conversation: an id reused for another method is no listen any more', () => {
  const c = new Conversation();
  send(c, LISTEN);
  send(c, modern('listen-1', 'tools/list'));
  assert.equal(c.lost().length, 1, 'the reused id is an ordinary request: -32000');
  assert.deepEqual(c.relistened(), []);
});
