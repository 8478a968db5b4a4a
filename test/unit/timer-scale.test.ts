/**
 * `EXAI_WS_TIMER_SCALE`, the tests' knob over fixed waits: parsed once on each side (the
 * daemon's config.ts, the shim's shim.ts), 1 (the defaults) unless set, refused outside
 * 0.01-1, and carried as options down to what waits: the restart backoff and process group
 * waits (hostingTimers -> Upstream, ProcessGroup), the shim's backoff cap and refused linger.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, mock, test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/daemon/files/config.js';
import { GROUP_GRACE_MS, KILLED_WAIT_MS } from '../../src/hosting/process-group.js';
import { hostingTimers, RESTART_BACKOFF_MS } from '../../src/hosting/upstream-options.js';
import { MIN_TIMER_SCALE } from '../../src/local/timer-scale.js';
import { Upstream } from '../../src/hosting/upstream.js';
import { REFUSED_LINGER_MS, ShimLifecycle, type ShimExit } from '../../src/shim/lifecycle.js';
import { BACKOFF_CAP_MS, backoffDelayMs } from '../../src/shim/link-options.js';
import { timerScaleFrom } from '../../src/shim/shim.js';

const dir = mkdtempSync(join(tmpdir(), 'exai-ws-timer-scale-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const base = { EXAI_WS_HOME: join(dir, 'home'), EXAI_WS_SETTINGS: join(dir, 'none.env'), EXAI_WS_CONFIG: join(dir, 'none.json') };

test('daemon config: EXAI_WS_TIMER_SCALE is 1 unless set, taken from 0.01 to 1, refused outside', () => {
  assert.equal(loadConfig(base).timerScale, 1, 'users keep the defaults');
  assert.equal(loadConfig({ ...base, EXAI_WS_TIMER_SCALE: '0.1' }).timerScale, 0.1);
  assert.equal(loadConfig({ ...base, EXAI_WS_TIMER_SCALE: String(MIN_TIMER_SCALE) }).timerScale, MIN_TIMER_SCALE);
  assert.equal(loadConfig({ ...base, EXAI_WS_TIMER_SCALE: '1' }).timerScale, 1);
  for (const bad of ['0', '0.001', '1.5', '-1', 'fast']) {
    assert.throws(() => loadConfig({ ...base, EXAI_WS_TIMER_SCALE: bad }), ConfigError, `${bad} is refused`);
  }
});

test('hostingTimers: the defaults at scale 1; scaled, rounded to whole ms, never below 1 ms', () => {
  assert.deepEqual(hostingTimers(), {
    restartBackoffMs: RESTART_BACKOFF_MS,
    group: { graceMs: GROUP_GRACE_MS, killedWaitMs: KILLED_WAIT_MS },
  });
  assert.deepEqual(hostingTimers(1), hostingTimers());
  assert.deepEqual(hostingTimers(0.1), {
    restartBackoffMs: [25, 50, 100, 200, 500, 1_000, 3_000],
    group: { graceMs: 200, killedWaitMs: 200 },
  });
  assert.deepEqual(hostingTimers(0.001).restartBackoffMs, [1, 1, 1, 2, 5, 10, 30], 'never 0 ms');
  assert.ok(Object.isFrozen(hostingTimers(0.5).restartBackoffMs));
});

test('Upstream: a failed start is retried after the given backoff, its last value repeated', async () => {
  const retries: unknown[] = [];
  let attempt = 0;
  const upstream = new Upstream({
    name: 'srv',
    prefix: null,
    idleTimeoutMs: 0,
    retryFailedStart: true,
    restartBackoffMs: [7, 9],
    launch: () => Promise.reject(new Error(`no start ${++attempt}`)),
    log: (event, details) => {
      if (event === 'server failed to start') retries.push(details.retry_in_ms);
    },
  });
  await assert.rejects(upstream.connect(), /no start 1/);
  const deadline = Date.now() + 5_000;
  while (retries.length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  await upstream.close();
  assert.deepEqual(retries.slice(0, 3), [7, 9, 9]);
});

test('shim: EXAI_WS_TIMER_SCALE is 1 unless set; a value outside 0.01-1 is 1, with a line', () => {
  const lines: string[] = [];
  const say = (line: string) => lines.push(line);
  assert.equal(timerScaleFrom({}, say), 1);
  assert.equal(timerScaleFrom({ EXAI_WS_TIMER_SCALE: ' ' }, say), 1);
  assert.equal(timerScaleFrom({ EXAI_WS_TIMER_SCALE: '0.05' }, say), 0.05);
  assert.deepEqual(lines, []);
  for (const bad of ['0', '2', 'fast']) assert.equal(timerScaleFrom({ EXAI_WS_TIMER_SCALE: bad }, say), 1);
  assert.deepEqual(lines, [
    'EXAI_WS_TIMER_SCALE=0 is not a number from 0.01 to 1; using 1',
    'EXAI_WS_TIMER_SCALE=2 is not a number from 0.01 to 1; using 1',
    'EXAI_WS_TIMER_SCALE=fast is not a number from 0.01 to 1; using 1',
  ]);
});

test('shim: the reconnect backoff stops at the cap it is given (BACKOFF_CAP_MS by default)', () => {
  assert.equal(
    backoffDelayMs(30, () => 0.999999),
    BACKOFF_CAP_MS,
  );
  assert.equal(
    backoffDelayMs(30, () => 0.999999, 200),
    200,
  );
  assert.equal(
    backoffDelayMs(30, () => 0, 200),
    100,
    'equal jitter: at least half the cap',
  );
  assert.equal(
    backoffDelayMs(0, () => 0.999999, 200),
    100,
    'the first retry is not longer for it',
  );
});

test('shim lifecycle: refusing lasts the linger it is given', (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const exits: ShimExit[] = [];
  const hooks = { refusing: () => undefined, finished: (code: ShimExit) => exits.push(code) };
  const short = new ShimLifecycle(hooks, undefined, 200);
  const usual = new ShimLifecycle(hooks);
  short.refuse('no daemon');
  usual.refuse('no daemon');
  mock.timers.tick(199);
  assert.deepEqual(exits, []);
  mock.timers.tick(1);
  assert.deepEqual(exits, [1], 'the short one finished');
  mock.timers.tick(REFUSED_LINGER_MS - 200);
  assert.deepEqual(exits, [1, 1], 'the default one after REFUSED_LINGER_MS');
});
