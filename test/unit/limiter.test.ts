/** The provider limiter: a shared slot count, waiters served in arrival order, cancellable waits. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AbortedError, Limiter } from '../../src/builtin/providers/limiter.js';

test('waiters get slots in arrival order and never more than max at once', async () => {
  const limiter = new Limiter(2);
  const order: number[] = [];
  let running = 0;
  let peak = 0;
  const job = async (n: number) => {
    const release = await limiter.acquire();
    order.push(n);
    running++;
    peak = Math.max(peak, running);
    await new Promise((r) => setTimeout(r, 5));
    running--;
    release();
  };
  await Promise.all(Array.from({ length: 10 }, (_, n) => job(n)));
  assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(peak, 2);
  assert.equal(limiter.inflight, 0);
});

test('a cancelled waiter leaves the queue and its turn passes to the next; release is idempotent', async () => {
  const limiter = new Limiter(1);
  const first = await limiter.acquire();
  const controller = new AbortController();
  const cancelled = limiter.acquire(controller.signal);
  const third = limiter.acquire();
  assert.equal(limiter.waiting, 2);
  controller.abort();
  await assert.rejects(cancelled, AbortedError);
  assert.equal(limiter.waiting, 1);
  first();
  first(); // a second release must not free a second slot
  const release = await third;
  assert.equal(limiter.inflight, 1);
  release();
  assert.equal(limiter.inflight, 0);
  assert.throws(() => new Limiter(0), TypeError);
});
