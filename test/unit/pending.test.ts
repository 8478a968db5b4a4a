/**
 * The pending-requests table (src/protocol/pending.ts) that the session, the server link and the
 * shim keep their requests in: answers settle once, deadlines fire once and remove first, a
 * closed connection fails every request once, oldest first. Node's mock timers stand in for time.
 */
import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { PendingRequests, type Timers } from '../../src/protocol/pending.js';

function fakeTimers(): Timers {
  mock.timers.enable({ apis: ['setTimeout'] });
  return { setTimeout: (callback, ms) => setTimeout(callback, ms), clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout) };
}

test('an answer settles its request once; an unknown or repeated id finds nothing', () => {
  const table = new PendingRequests<number, string>();
  table.add(1, 'a');
  table.add(2, 'b');
  assert.equal(table.settle(1), 'a');
  assert.equal(table.settle(1), undefined);
  assert.equal(table.settle(99), undefined);
  assert.deepEqual([...table.values()], ['b']);
  assert.equal(table.size, 1);
});

test('a second request under a waiting id throws instead of losing the first answer', () => {
  const table = new PendingRequests<string, number>();
  table.add('x', 1);
  assert.throws(() => table.add('x', 2), /already waiting/);
  assert.equal(table.get('x'), 1);
});

test('a deadline removes the entry before it reports it, so a late answer is dropped; a settled entry never expires', (t) => {
  const timers = fakeTimers();
  t.after(() => mock.timers.reset());
  const table = new PendingRequests<number, string>(timers);
  const expired: string[] = [];
  table.add(1, 'slow', { ms: 1_000, onexpire: (value) => expired.push(`${value}:${table.has(1)}`) });
  table.add(2, 'quick', { ms: 1_000, onexpire: (value) => expired.push(value) });
  mock.timers.tick(500);
  assert.equal(table.settle(2), 'quick');
  mock.timers.tick(500);
  assert.deepEqual(expired, ['slow:false']);
  assert.equal(table.settle(1), undefined, 'the late answer finds nothing');
  mock.timers.tick(5_000);
  assert.deepEqual(expired, ['slow:false'], 'nothing fires twice');
});

test('failAll hands every waiting request over once, oldest first, and stops their deadlines', (t) => {
  const timers = fakeTimers();
  t.after(() => mock.timers.reset());
  const table = new PendingRequests<number, string>(timers);
  const expired: string[] = [];
  for (const [id, value] of [
    [3, 'c'],
    [1, 'a'],
    [2, 'b'],
  ] as const)
    table.add(id, value, { ms: 100, onexpire: (v) => expired.push(v) });
  const failed: string[] = [];
  table.failAll((value, key) => failed.push(`${key}=${value}`));
  assert.deepEqual(failed, ['3=c', '1=a', '2=b']);
  assert.equal(table.size, 0);
  mock.timers.tick(1_000);
  assert.deepEqual(expired, []);
  table.failAll(() => assert.fail('nothing is left to fail'));
});

/** Mock timers with the clock they keep, for shared deadlines. */
function fakeClockTimers(): Timers {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  return {
    setTimeout: (callback, ms) => setTimeout(callback, ms),
    clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
    now: () => Date.now(),
  };
}

test('shared deadlines: each entry expires at its own time, oldest first; a settled one never does', (t) => {
  const timers = fakeClockTimers();
  t.after(() => mock.timers.reset());
  const table = new PendingRequests<number, string>(timers, { sharedDeadlines: true });
  const expired: string[] = [];
  const deadline = { ms: 1_000, onexpire: (value: string) => expired.push(`${value}@${Date.now() - 1_000_000}`) };
  table.add(1, 'a', deadline);
  mock.timers.tick(300);
  table.add(2, 'b', deadline);
  table.add(3, 'c', deadline);
  mock.timers.tick(300);
  table.add(4, 'd', deadline);
  assert.equal(table.settle(1), 'a');
  assert.equal(table.settle(3), 'c');
  mock.timers.tick(400);
  assert.deepEqual(expired, [], 'the settled oldest does not expire, and nothing else is due yet');
  mock.timers.tick(300);
  assert.deepEqual(expired, ['b@1300']);
  assert.equal(table.has(2), false, 'removed before it is reported');
  mock.timers.tick(300);
  assert.deepEqual(expired, ['b@1300', 'd@1600']);
  assert.equal(table.size, 0);
  mock.timers.tick(10_000);
  assert.deepEqual(expired, ['b@1300', 'd@1600'], 'nothing fires twice');
});

test('shared deadlines: a shorter deadline added later expires first; failAll stops them all', (t) => {
  const timers = fakeClockTimers();
  t.after(() => mock.timers.reset());
  const table = new PendingRequests<string, string>(timers, { sharedDeadlines: true });
  const expired: string[] = [];
  const onexpire = (value: string) => expired.push(value);
  table.add('long', 'long', { ms: 5_000, onexpire });
  table.add('short', 'short', { ms: 100, onexpire });
  table.add('none', 'none');
  mock.timers.tick(100);
  assert.deepEqual(expired, ['short']);
  table.add('later', 'later', { ms: 5_000, onexpire });
  const failed: string[] = [];
  table.failAll((value) => failed.push(value));
  assert.deepEqual(failed, ['long', 'none', 'later']);
  mock.timers.tick(60_000);
  assert.deepEqual(expired, ['short']);
});

test('shared deadlines: thousands settled behind a stuck oldest entry leave it to expire on time, and an expiry may add anew', (t) => {
  const timers = fakeClockTimers();
  t.after(() => mock.timers.reset());
  const table = new PendingRequests<number, string>(timers, { sharedDeadlines: true });
  const expired: number[] = [];
  const deadline = {
    ms: 1_000,
    onexpire: (value: string) => {
      expired.push(Number(value));
      if (value === '0') table.add(-1, '-1', deadline); // a retry, added while the queue expires
    },
  };
  table.add(0, '0', deadline);
  for (let i = 1; i <= 5_000; i++) {
    table.add(i, String(i), deadline);
    assert.equal(table.settle(i), String(i));
  }
  table.add(9_999, '9999', deadline);
  mock.timers.tick(999);
  assert.deepEqual(expired, []);
  mock.timers.tick(1);
  assert.deepEqual(expired, [0, 9_999]);
  mock.timers.tick(1_000);
  assert.deepEqual(expired, [0, 9_999, -1]);
  assert.equal(table.size, 0);
});

test('shared deadlines: an answered entry behind one still waiting is let go at once, not kept until its deadline', async () => {
  // A server link's answered call must not keep its result alive (through the entry's value and
  // expiry, which reach the promise it resolved) while an older call holds the queue's front:
  // 60 dropped 16 MB results kept the daemon at 1.1 GB that way (test/memory-bound.test.ts).
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const table = new PendingRequests<number, { payload: Uint8Array }>(undefined, { sharedDeadlines: true });
  const expired: number[] = [];
  table.add(1, { payload: new Uint8Array(1) }, { ms: 60_000, onexpire: () => void expired.push(1) });
  const answered = (() => {
    const value = { payload: new Uint8Array(16 * 1024 * 1024) };
    table.add(2, value, { ms: 60_000, onexpire: () => void expired.push(2, value.payload.length) });
    return new WeakRef(value);
  })();
  assert.ok(table.settle(2));
  for (let i = 0; i < 5 && answered.deref() !== undefined; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    gc();
  }
  assert.ok(answered.deref() === undefined, 'the answered entry is collectable while entry 1 still waits');
  assert.equal(table.size, 1);
  table.failAll(() => undefined);
  assert.deepEqual(expired, []);
});
