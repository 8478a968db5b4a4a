/**
 * The shim's own states (src/shim/lifecycle.ts) with fake timers: running -> refusing ->
 * finished (exit 1 after the linger, or at once when stdin ends), running -> finished (exit
 * 0), each transition once, in order.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { REFUSED_LINGER_MS, ShimLifecycle, type ShimExit, type ShimState } from '../../src/shim/lifecycle.js';

beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
afterEach(() => mock.timers.reset());

function lifecycle() {
  const log: string[] = [];
  const exits: ShimExit[] = [];
  const machine = new ShimLifecycle({
    refusing: (why) => log.push(`refusing: ${why}`),
    finished: (code) => {
      log.push(`finished: ${code}`);
      exits.push(code);
    },
    transition: (from: ShimState, to: ShimState) => log.push(`${from} -> ${to}`),
  });
  return { machine, log, exits };
}

test('lifecycle: refused while stdin is open: refusing, answering for 2 s, then finished with 1', () => {
  const { machine, log, exits } = lifecycle();
  assert.equal(machine.state, 'running');
  assert.equal(machine.refusedWith, undefined);
  machine.refuse('the daemon refused');
  assert.equal(machine.state, 'refusing');
  assert.equal(machine.refusedWith, 'the daemon refused');
  mock.timers.tick(REFUSED_LINGER_MS - 1);
  assert.deepEqual(exits, []);
  mock.timers.tick(1);
  assert.deepEqual(exits, [1]);
  assert.deepEqual(log, ['running -> refusing', 'refusing: the daemon refused', 'refusing -> finished', 'finished: 1']);
  assert.equal(machine.refusedWith, 'the daemon refused', 'still known after the end');
});

test('lifecycle: stdin ending while refusing finishes with 1 at once; the linger timer is stopped', () => {
  const { machine, exits } = lifecycle();
  machine.refuse('gone');
  assert.equal(machine.endInput(), true);
  assert.deepEqual(exits, [1]);
  mock.timers.tick(10 * REFUSED_LINGER_MS);
  assert.deepEqual(exits, [1], 'finished once');
});

test('lifecycle: refused after stdin ended: finished with 1 at once, after the refusal is answered', () => {
  const { machine, log } = lifecycle();
  assert.equal(machine.endInput(), false, "while running, what stdin end means is the owner's");
  assert.equal(machine.stdinEnded, true);
  machine.refuse('late');
  assert.deepEqual(log, ['running -> refusing', 'refusing: late', 'refusing -> finished', 'finished: 1']);
});

test('lifecycle: the link ended normally: finished with 0; later refusals and finishes change nothing', () => {
  const { machine, log, exits } = lifecycle();
  machine.finish(0);
  machine.refuse('too late');
  machine.finish(1);
  mock.timers.tick(10 * REFUSED_LINGER_MS);
  assert.deepEqual(exits, [0]);
  assert.deepEqual(log, ['running -> finished', 'finished: 0']);
  assert.equal(machine.refusedWith, undefined);
  assert.equal(machine.endInput(), true, 'nothing left to do at stdin end');
});

test('lifecycle: a second refusal is ignored (the first reason stays); stdout gone while refusing finishes with 0', () => {
  const { machine, exits } = lifecycle();
  machine.refuse('first');
  machine.refuse('second');
  assert.equal(machine.refusedWith, 'first');
  machine.finish(0);
  mock.timers.tick(REFUSED_LINGER_MS);
  assert.deepEqual(exits, [0]);
});
