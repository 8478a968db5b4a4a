/**
 * The in-memory transport pair (src/transport/in-memory.ts) that unit tests put sessions on:
 * it must keep the contract of the real transports, or the tests over it prove nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { InMemoryTransport } from '../../src/transport/in-memory.js';

test('messages arrive in order, later, as text; related ids are recorded', async () => {
  const [a, b] = InMemoryTransport.pair('http');
  const got: string[] = [];
  b.onmessage = (text) => got.push(text);
  a.send('{"id":1}', 1);
  a.send('{"id":2}', undefined);
  assert.deepEqual(got, [], 'nothing arrives in the same turn');
  await tick();
  assert.deepEqual(got, ['{"id":1}', '{"id":2}']);
  assert.deepEqual(a.related, [1, undefined]);
  assert.equal(a.kind, 'http');
});

test('a paused reader holds what is sent, counted as the sender buffered bytes, until it resumes', async () => {
  const [a, b] = InMemoryTransport.pair();
  const got: string[] = [];
  const written: (Error | null | undefined)[] = [];
  b.onmessage = (text) => got.push(text);
  b.pauseInput();
  a.send('12345', undefined, (error) => written.push(error));
  await tick();
  assert.equal(a.bufferedBytes, 5);
  assert.deepEqual(got, []);
  assert.deepEqual(written, []);
  b.resumeInput();
  await tick();
  assert.deepEqual(got, ['12345']);
  assert.deepEqual(written, [null]);
  assert.equal(a.bufferedBytes, 0);
});

test('close on one end closes both; each fires onclose exactly once with the code; later sends fail', async () => {
  const [a, b] = InMemoryTransport.pair();
  const closes: string[] = [];
  a.onclose = (code) => closes.push(`a:${code}`);
  b.onclose = (code) => closes.push(`b:${code}`);
  b.pauseInput();
  let heldError: Error | null | undefined;
  a.send('held', undefined, (error) => (heldError = error));
  a.close(4001, 'bye');
  a.close(1000, 'again');
  b.close(1000, 'too');
  await tick();
  assert.deepEqual(closes.sort(), ['a:4001', 'b:4001']);
  assert.equal(a.open, false);
  assert.equal(b.open, false);
  assert.deepEqual(b.closed, { code: 4001, reason: 'bye' });
  assert.ok(heldError instanceof Error, 'what never arrived is reported unwritten');
  let late: Error | null | undefined;
  a.send('late', undefined, (error) => (late = error));
  await tick();
  assert.ok(late instanceof Error);
});
