/**
 * Windows survive the daemon going away (issue 10) with nothing started by the test: every
 * daemon here is auto-started by the shims themselves, on a cold home, the way a user gets one.
 * The daemon is killed (SIGKILL), stopped (`exai-ws stop`) or replaced (`exai-ws restart`)
 * under two windows with calls in flight; each call gets exactly one error, and the same SDK
 * client objects then list and call against the new daemon, their log level and subscription
 * held. Also: ten shims on a cold home make one daemon; a shim killed mid-call ends its session
 * within seconds and the hosted server is told to cancel.
 *
 * The times from the loss to the first successful call are printed as test diagnostics (they
 * are figures for the closing note, never asserted).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { readAddressCard } from '../src/local/files.js';
import { Cleanup, connectShim, readJsonLines, logPath, runCli, textOf, waitFor, within, type Message } from './helpers.js';
import { EVERYTHING_SCRIPT, TEE_SCRIPT, processGone } from './fixtures/hosted-servers.js';
import { coldHome, daemonsOf, healthOf, shimEnv } from './fixtures/autostarted.js';
import { answersTo, assertCarriesOn, lastRequestId, openWindow, setUp, type Window } from './fixtures/windows.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const LONG = 'everything__trigger-long-running-operation';
const linuxOnly = process.platform !== 'linux' ? 'reads /proc to find daemon processes' : false;

/**
 * shimEnv with the fixed waits at a tenth (EXAI_WS_TIMER_SCALE), for the shims (their own
 * variable: reconnect attempts at most 200 ms apart, not 2 s) and for the daemons they start
 * (daemon.env: restarts, client-process checks). What is tested is that the windows carry on
 * and when nothing is lost, not how long the shims wait between attempts.
 */
function fastEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...shimEnv(home, { ...extra, EXAI_WS_TIMER_SCALE: '0.1' }), EXAI_WS_TIMER_SCALE: '0.1' };
}

/** A cold home whose config hosts server-everything behind the tee; `received()` is what the server got. */
function teedHome(): { home: string; env: Record<string, string>; received: () => Message[] } {
  const home = coldHome(cleanup);
  const record = join(home, 'everything-stdin.jsonl');
  const entry = { command: process.execPath, args: [TEE_SCRIPT, record, process.execPath, EVERYTHING_SCRIPT, 'stdio'] };
  writeFileSync(join(home, 'config.json'), JSON.stringify({ mcpServers: { everything: entry } }));
  // A short drain: `stop` and `restart` answer the calls in flight after it instead of 5 s. Lists
  // wait for server-everything as long as its start takes (not at most 2 s): what is tested is the
  // windows carrying on, and on a loaded machine its start takes longer than 2 s.
  const env = fastEnv(home, { EXAI_WS_DRAIN_MS: '300', EXAI_WS_LIST_WAIT_MS: '0' });
  const received = () =>
    (existsSync(record) ? readFileSync(record, 'utf8').split('\n').filter(Boolean) : []).map((l) => JSON.parse(l) as Message);
  return { home, env, received };
}

function cardPid(home: string): number {
  const card = readAddressCard(join(home, 'logs', 'ws_daemon.pid'));
  assert.ok(card, `no address card in ${home}`);
  return card.pid;
}

/** Starts a call that runs for a minute at the hosted server; resolves with its outcome, never rejects. */
function longCall(window: Window): Promise<{ result?: unknown; error?: unknown }> {
  return window.client.callTool({ name: LONG, arguments: { duration: 60, steps: 60 } }, undefined, { timeout: 120_000 }).then(
    (result) => ({ result }),
    (error: unknown) => ({ error }),
  );
}

/**
 * Calls `echo` until it succeeds (a call sent before the shim noticed the loss is answered
 * -32000 and may be retried by the user); resolves with the time it took from `sinceMs`.
 */
async function firstSuccess(window: Window, sinceMs: number): Promise<number> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const text = textOf(
        await window.client.callTool({ name: 'everything__echo', arguments: { message: 'back' } }, undefined, { timeout: 60_000 }),
      );
      assert.match(text, /back/);
      return Date.now() - sinceMs;
    } catch (error) {
      if (!(error instanceof McpError) || error.code !== -32000 || Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

// Each loss test has its own cold home (its daemons found and killed by it) and port 0, and so
// has the pair below, so they run side by side; three at a time: most of their time is the shims' reconnect and the daemons' start.
describe('windows survive the daemon going away', { concurrency: 3 }, () => {
  for (const how of ['SIGKILL', 'exai-ws stop', 'exai-ws restart'] as const) {
    test(
      `${how} under two windows with calls in flight: one error each, then the same clients work against the next daemon (auto-started)`,
      { skip: linuxOnly },
      async (t) => {
        const { home, env, received } = teedHome();
        const daemonLike = { clientEnv: env };
        const a = await openWindow(cleanup, daemonLike, 'window-a', env);
        const first = cardPid(home);
        const b = await openWindow(cleanup, daemonLike, 'window-b', env);
        assert.deepEqual(daemonsOf(home), [first], 'the two windows share the one daemon the first one started');
        const uri = await setUp(a);
        await setUp(b);

        const calls = [longCall(a), longCall(b)];
        await waitFor(async () => (await healthOf(home)).inflight >= 2, 'both calls to run at the daemon', 15_000);
        const ids = [lastRequestId(a, 'tools/call'), lastRequestId(b, 'tools/call')];

        const lostAt = Date.now();
        if (how === 'SIGKILL') {
          process.kill(first, 'SIGKILL');
        } else {
          const run = await runCli([how === 'exai-ws stop' ? 'stop' : 'restart'], env, 60_000);
          assert.equal(run.code, 0, `${how}: ${run.stdout}${run.stderr}`);
        }
        const outcomes = await within(Promise.all(calls), 30_000, 'the calls in flight to be answered');
        for (const [i, outcome] of outcomes.entries()) {
          assert.ok(outcome.error instanceof McpError, `call ${i} failed with an MCP error: ${JSON.stringify(outcome)}`);
          assert.equal(outcome.error.code, -32000);
        }
        const ms = await firstSuccess(a, lostAt);
        t.diagnostic(`${how}: ${ms} ms from the loss to the first successful call of the same window (auto-start included)`);
        await waitFor(() => processGone(first), 'the first daemon to be gone', 10_000);
        const next = cardPid(home);
        assert.notEqual(next, first);
        assert.deepEqual(daemonsOf(home), [next], 'exactly one daemon after the loss');

        const control = await openWindow(cleanup, daemonLike, 'control', env);
        await assertCarriesOn(a, control, uri, received);
        await assertCarriesOn(b, control, uri, received);
        for (const [i, window] of [a, b].entries()) {
          assert.equal(answersTo(window, ids[i]).length, 1, 'exactly one answer for the call in flight, ever');
        }
      },
    );
  }

  // One home and one auto-started daemon for these two, one after the other: the ten shims make
  // the daemon (its config hosting server-everything behind the tee), and the doomed window then
  // joins it beside the ten, which stay open. Its daemon is not lost, so nothing the first test
  // asserts is changed by the second, which only adds and ends a session. One after the other
  // (concurrency 1: a describe's tests would take the 3 of the one around it).
  describe('a cold home shared by ten shims, then a doomed window', { concurrency: 1 }, () => {
    let home: ReturnType<typeof teedHome> | undefined;
    const shared = () => (home ??= teedHome());

    test('ten shims started at once on a cold home: exactly one daemon, and it serves all ten', { skip: linuxOnly }, async () => {
      const { home, env } = shared();
      const windows = await within(
        Promise.all(Array.from({ length: 10 }, (_, i) => connectShim(cleanup, { clientEnv: env }, { name: `window-${i}`, env }))),
        60_000,
        'ten shims to initialize',
      );
      const versions = await Promise.all(windows.map((w) => w.client.callTool({ name: 'version', arguments: {} })));
      for (const v of versions) assert.match(textOf(v), /exai-ws/);
      const pid = cardPid(home);
      assert.deepEqual(daemonsOf(home), [pid], 'one daemon process for the home');
      const lines = readJsonLines(logPath(home));
      const health = await healthOf(home);
      assert.equal(health.sessions.attached, 10);
      // This home hosts server-everything (for the test after this one), and a line about a hosted
      // server carries that server's pid: such a line counts as the daemon's when its pid is the one
      // /health (read after the log) reports for that server; any other line must be the daemon's.
      const serverPids = new Map((health.servers ?? []).map((s) => [s.name, s.pid]));
      const daemonsInLog = new Set(
        lines.filter((l) => !(typeof l.server === 'string' && l.pid === serverPids.get(l.server))).map((l) => l.pid),
      );
      assert.deepEqual([...daemonsInLog], [pid], 'no other daemon ever started (or lost the race) on this home');
    });

    test(
      'a shim killed with SIGKILL mid-call: its session ends within seconds and the hosted server is told to cancel',
      { skip: linuxOnly },
      async (t) => {
        const { home, env, received } = shared();
        const window = await openWindow(cleanup, { clientEnv: env }, 'doomed', env);
        void longCall(window);
        await waitFor(async () => (await healthOf(home)).inflight >= 1, 'the call to run at the daemon', 15_000);
        const call = await waitFor(
          () =>
            received().find(
              (m) => m.method === 'tools/call' && (m.params as { name?: string } | undefined)?.name === 'trigger-long-running-operation',
            ),
          'the call to reach the server',
        );
        const killedAt = Date.now();
        process.kill(window.pid, 'SIGKILL');
        // The ten windows of the test before stay open: the doomed one's session ends, theirs stay.
        await waitFor(
          async () => {
            const { sessions } = await healthOf(home);
            return sessions.total === 10 && sessions.attached === 10;
          },
          'the session to end',
          10_000,
        );
        t.diagnostic(`the session of a killed shim ended ${Date.now() - killedAt} ms after the kill`);
        const cancelled = await waitFor(
          () => received().find((m) => m.method === 'notifications/cancelled' && m.params?.requestId === call.id),
          'notifications/cancelled for the call at the server',
          5_000,
        );
        assert.ok(cancelled);
        // The log is written in batches (at most one event-loop turn behind /health).
        const closed = await waitFor(
          () => readJsonLines(logPath(home)).find((l) => l.msg === 'session closed'),
          'the session closed line',
          5_000,
        );
        assert.equal(closed.reason, 'client_died');
      },
    );
  });
});
