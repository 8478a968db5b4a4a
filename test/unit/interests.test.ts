/**
 * Resource subscriptions shared by sessions, against a scripted server: the server hears the
 * first subscribe and the last unsubscribe, and a session that leaves while the first
 * subscribe is still on its way to the server is not left behind as a subscriber.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Interests } from '../../src/mux/interests.js';
import type { CallOutcome } from '../../src/hosting/server-link.js';
import type { Upstream } from '../../src/hosting/upstream.js';

/** A server whose answers the test releases one by one, recording what it was sent. */
function scriptedServer() {
  const calls: string[] = [];
  const answers: ((outcome: CallOutcome) => void)[] = [];
  const server = {
    call: (method: string, params: { uri: string }) => {
      calls.push(`${method} ${params.uri}`);
      return new Promise<CallOutcome>((resolve) => answers.push(resolve));
    },
  };
  const answerNext = async (outcome: CallOutcome = { result: {} }) => {
    answers.shift()?.(outcome);
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { server: server as unknown as Upstream, calls, answerNext };
}

function interests(): Interests {
  return new Interests({ timeoutMs: 1_000, servers: () => [], sees: () => true, levels: () => [] });
}

const OPTIONS = { timeoutMs: 1_000 };

test('a session that unsubscribes while its first subscribe is in flight is not subscribed, and the server is unsubscribed', async () => {
  const { server, calls, answerNext } = scriptedServer();
  const hub = interests();
  const subscribed = hub.subscribe('a', server, 'file:///x', OPTIONS);
  assert.deepEqual(await hub.unsubscribe('a', server, 'file:///x', OPTIONS), { result: {} });
  await answerNext();
  assert.deepEqual(await subscribed, { result: {} });
  assert.deepEqual([...hub.subscribers(server, 'file:///x')], []);
  assert.deepEqual(calls, ['resources/subscribe file:///x', 'resources/unsubscribe file:///x']);
});

test('a session that ends while its first subscribe is in flight leaves no subscription behind', async () => {
  const { server, calls, answerNext } = scriptedServer();
  const hub = interests();
  const subscribed = hub.subscribe('a', server, 'file:///x', OPTIONS);
  hub.sessionClosed('a');
  await answerNext();
  await subscribed;
  assert.deepEqual(hub.subscribedUris(server), []);
  assert.deepEqual(calls, ['resources/subscribe file:///x', 'resources/unsubscribe file:///x']);
});

test('sessions joining one first subscribe share it; one leaving meanwhile leaves the other subscribed', async () => {
  const { server, calls, answerNext } = scriptedServer();
  const hub = interests();
  const a = hub.subscribe('a', server, 'file:///x', OPTIONS);
  const b = hub.subscribe('b', server, 'file:///x', OPTIONS);
  await hub.unsubscribe('a', server, 'file:///x', OPTIONS);
  await answerNext();
  assert.deepEqual([await a, await b], [{ result: {} }, { result: {} }]);
  assert.deepEqual([...hub.subscribers(server, 'file:///x')], ['b']);
  assert.deepEqual(calls, ['resources/subscribe file:///x'], 'one subscribe, and no unsubscribe while b is subscribed');
  // A third session joins an existing subscription without the server hearing of it.
  assert.deepEqual(await hub.subscribe('c', server, 'file:///x', OPTIONS), { result: {} });
  assert.deepEqual(calls.length, 1);
});

test('a refused first subscribe subscribes nobody, and the next one asks the server again', async () => {
  const { server, calls, answerNext } = scriptedServer();
  const hub = interests();
  const refused = hub.subscribe('a', server, 'file:///x', OPTIONS);
  await answerNext({ error: { code: -32602, message: 'no such resource' } });
  assert.deepEqual(await refused, { error: { code: -32602, message: 'no such resource' } });
  assert.deepEqual(hub.subscribedUris(server), []);
  const again = hub.subscribe('a', server, 'file:///x', OPTIONS);
  await answerNext();
  await again;
  assert.deepEqual([...hub.subscribers(server, 'file:///x')], ['a']);
  assert.deepEqual(calls, ['resources/subscribe file:///x', 'resources/subscribe file:///x']);
});
