/**
 * The shim's conversation (src/shim/conversation.ts), pure bookkeeping: one answer per
 * request (-32000 for those lost in flight, never twice), late answers dropped, cancellations
 * after a resume, the setup replayed into a new session, answers to an old session's requests
 * dropped, and parameters read only where they matter.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Conversation, LOST_MESSAGE, REPLAY_ID_PREFIX, type Note } from '../../src/shim/conversation.js';
import { readHead } from '../../src/shim/scan.js';

function text(message: Record<string, unknown>): string {
  return JSON.stringify({ jsonrpc: '2.0', ...message });
}

/** The client sends `message` and it goes out at once. */
function send(c: Conversation, message: Record<string, unknown>): Note {
  const line = text(message);
  const note = c.read(readHead(line)!, line);
  assert.equal(c.sending(note), true);
  return note;
}

/** The daemon sends `message`; true when the client gets it. */
function deliver(c: Conversation, message: Record<string, unknown>): boolean {
  const frame = text(message);
  return c.delivered(readHead(frame)!, frame);
}

test('conversation: what a message is, read from its head', () => {
  const c = new Conversation();
  const read = (m: Record<string, unknown>) => c.read(readHead(text(m))!, text(m));
  assert.deepEqual(read({ id: 1, method: 'tools/list' }), { kind: 'request', key: 'n1', id: 1 });
  assert.deepEqual(read({ id: '1', method: 'tools/list' }), { kind: 'request', key: 's1', id: '1' });
  assert.deepEqual(read({ method: 'notifications/initialized' }), { kind: 'notification', method: 'notifications/initialized' });
  assert.deepEqual(read({ id: 'srv', result: {} }), { kind: 'response', key: 'ssrv' });
  assert.deepEqual(read({ id: null, method: 7 }), { kind: 'other' });
  assert.deepEqual(c.read(readHead('[1]')!, '[1]'), { kind: 'other' });
  assert.equal(c.pendingCount, 2);
});

test('conversation: a drop answers each request sent once with -32000; waiting ones stay; late answers are dropped', () => {
  const c = new Conversation();
  send(c, { id: 1, method: 'tools/call' });
  send(c, { id: 'two', method: 'tools/call' });
  const waiting = c.read(readHead(text({ id: 3, method: 'tools/list' }))!, text({ id: 3, method: 'tools/list' }));
  assert.deepEqual(
    c.lost().map((m) => [m.id, m.error.code, m.error.message]),
    [
      [1, -32000, LOST_MESSAGE],
      ['two', -32000, LOST_MESSAGE],
    ],
  );
  assert.deepEqual(c.lost(), [], 'never twice');
  assert.equal(c.pendingCount, 1, 'the waiting request is still owed its answer');
  assert.equal(deliver(c, { id: 1, result: {} }), false, 'a late answer after a resume is dropped');
  assert.deepEqual(c.resumed(), [
    { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'two', reason: 'connection lost' } },
  ]);
  assert.equal(c.sending(waiting), true);
  assert.equal(deliver(c, { id: 3, result: {} }), true);
  assert.equal(c.pendingCount, 0);
});

test("conversation: a cancelled request is owed nothing; a reused id is the client's own again", () => {
  const c = new Conversation();
  send(c, { id: 5, method: 'tools/call' });
  send(c, { method: 'notifications/cancelled', params: { requestId: 5, reason: 'user' } });
  assert.deepEqual(c.lost(), []);
  send(c, { id: 6, method: 'tools/call' });
  assert.equal(c.lost().length, 1);
  send(c, { id: 6, method: 'tools/call' }); // the client reuses the id of a lost request
  assert.equal(deliver(c, { id: 6, result: {} }), true);
});

test('conversation: a new session gets the setup replayed (answers swallowed, errors told); the client lists again', () => {
  const c = new Conversation();
  const errors: [string, unknown][] = [];
  c.onReplayError = (method, error) => errors.push([method, error]);
  assert.deepEqual(c.renewed(), { toDaemon: [], toClient: [] }, 'nothing before an initialize succeeded');
  const init = { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'u', version: '1' } };
  send(c, { id: 0, method: 'initialize', params: init });
  deliver(c, { id: 0, result: {} });
  send(c, { method: 'notifications/initialized' });
  send(c, { id: 1, method: 'logging/setLevel', params: { level: 'debug' } });
  deliver(c, { id: 1, result: {} });
  send(c, { id: 2, method: 'resources/subscribe', params: { uri: 'a' } });
  deliver(c, { id: 2, error: { code: -1, message: 'no' } }); // refused: not kept
  send(c, { id: 3, method: 'resources/subscribe', params: { uri: 'b' } });
  deliver(c, { id: 3, result: {} });
  deliver(c, { id: 'srv-1', method: 'roots/list' }); // the old session asks the client
  const { toDaemon, toClient } = c.renewed();
  assert.deepEqual(
    toDaemon.map((m) => [m.method, m.params]),
    [
      ['initialize', init],
      ['notifications/initialized', undefined],
      ['logging/setLevel', { level: 'debug' }],
      ['resources/subscribe', { uri: 'b' }],
    ],
  );
  assert.equal(toClient.length, 3);
  const answer = c.read(readHead(text({ id: 'srv-1', result: {} }))!, text({ id: 'srv-1', result: {} }));
  assert.equal(c.sending(answer), false, 'an answer meant for the old session is not sent to the new one');
  const replayIds = toDaemon.filter((m) => typeof m.id === 'string').map((m) => m.id as string);
  assert.ok(replayIds.every((id) => id.startsWith(REPLAY_ID_PREFIX)));
  assert.equal(deliver(c, { id: replayIds[0], result: {} }), false);
  assert.equal(deliver(c, { id: replayIds[1], error: { code: -32602, message: 'bad level' } }), false);
  assert.deepEqual(errors, [['logging/setLevel', { code: -32602, message: 'bad level' }]]);
});

test('conversation: refuse and failAll answer each unanswered request once, in order', () => {
  const c = new Conversation();
  const a = c.read(readHead(text({ id: 'a', method: 'x' }))!, text({ id: 'a', method: 'x' }));
  send(c, { id: 'b', method: 'x' });
  send(c, { id: 'c', method: 'x' });
  assert.equal(c.refuse(a, 'full')?.error.message, 'full');
  assert.equal(c.refuse(a, 'full'), undefined, 'once');
  assert.deepEqual(
    c.failAll('gone').map((m) => [m.id, m.error.code, m.error.message]),
    [
      ['b', -32000, 'gone'],
      ['c', -32000, 'gone'],
    ],
  );
  assert.deepEqual(c.failAll('gone'), []);
});
