/**
 * A window never notices the daemon going away (issue 10), end to end: real daemons on port 0
 * with their own home, real shim processes, the official SDK client. The daemon is killed
 * (SIGKILL) or stopped (`exai-ws stop`) under a client with a call in flight; a new daemon is
 * started on the same home (a new port, found through the address card); the same client
 * object, never reconnected by the test, must go on working with the setup it made before.
 * Auto-start is off in every shim here (EXAI_WS_AUTOSTART=0): the tests start daemons themselves.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import {
  Cleanup,
  getHealth,
  holdsFor,
  initializeRaw,
  logPath,
  readJsonLines,
  readUntilResponse,
  runCli,
  spawnShim,
  startDaemon,
  waitFor,
  within,
} from './helpers.js';
import { startTeedEverything } from './fixtures/hosted-servers.js';
import { LOST, answersTo, assertCarriesOn, lastRequestId, openWindow, setUp, slowCall } from './fixtures/windows.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

/**
 * Merged lists wait for servers still starting, at the first daemon and at the one started after
 * it on the same home: a window's first list then always holds server-everything's resources,
 * however loaded the machine (with the default 2 s, a slower start listed none and failed the
 * test). These tests are about windows surviving daemons, not about list timing.
 */
const LISTS_WAIT = { EXAI_WS_LIST_WAIT_MS: '0' };
/**
 * The shims' reconnect attempts at most 200 ms apart, not 2 s (EXAI_WS_TIMER_SCALE): what is
 * tested is what a reconnect keeps and answers, not the wait between attempts (its doubling and
 * cap are shim-link.test.ts's and unit-tested).
 */
const FAST_SHIM = { EXAI_WS_TIMER_SCALE: '0.1' };

// Each test has its own home and daemon on port 0 (nothing shared but this file's cleanup), so they run side
// by side: most of their time is waiting on processes and timers.
describe('reconnect', { concurrency: 3 }, () => {
  for (const how of ['SIGKILL', 'exai-ws stop'] as const) {
    test(`${how} under a window with a call in flight: that call gets one -32000; the same client then works against a new daemon, its level and subscription held`, async () => {
      // `exai-ws stop` lets calls in flight finish for EXAI_WS_DRAIN_MS (5 s) before it answers
      // the rest -32000; this call never finishes, so half a second shows the same outcome.
      const { daemon, received } = await startTeedEverything(cleanup, {
        ...LISTS_WAIT,
        ...(how === 'SIGKILL' ? {} : { EXAI_WS_DRAIN_MS: '500' }),
      });
      const window = await openWindow(cleanup, daemon, 'window', FAST_SHIM);
      const uri = await setUp(window);
      const { outcome, id } = await slowCall(window, daemon);

      if (how === 'SIGKILL') {
        daemon.proc.kill('SIGKILL');
      } else {
        const stop = await runCli(['stop'], { EXAI_WS_HOME: daemon.home }, 60_000);
        assert.equal(stop.code, 0, `exai-ws stop: ${stop.stdout}${stop.stderr}`);
      }
      await within(daemon.exited, 30_000, 'the first daemon to exit');
      const failed = (await within(outcome, 30_000, 'the call in flight to be answered')) as { error?: unknown };
      assert.ok(failed.error instanceof McpError, `the call in flight failed with an MCP error: ${String(failed.error)}`);
      assert.equal(failed.error.code, -32000);
      if (how === 'SIGKILL') assert.match(failed.error.message, LOST);
      assert.equal(answersTo(window, id).length, 1, 'exactly one answer for the call in flight');

      // The same home, a new daemon on a new port: the shim finds it through the address card.
      const second = await startDaemon(cleanup, { home: daemon.home, env: LISTS_WAIT });
      assert.notEqual(second.port, daemon.port);
      const control = await openWindow(cleanup, second, 'control');
      await assertCarriesOn(window, control, uri, received);
      assert.equal(answersTo(window, id).length, 1, 'no second answer for the lost call, ever');
      assert.match(window.stderr(), /reconnected: new session/);
    });
  }

  // Also the test once named 'stdin ending while the shim reconnects exits 0 at once; after a
  // reconnect it still ends its session at once': its shim ends its stdin while no daemon runs here,
  // and this window, reconnected twice, closes at the third daemon.
  test('requests sent while no daemon runs wait and are answered once one is back; past EXAI_WS_RECONNECT_MS they get -32000 and the shim exits 1; stdin ending while the shim reconnects exits 0 at once, and after a reconnect it still ends its session at once', async () => {
    // The fixture daemon alone (its built-in tools): what waits here is the shim's, and a hosted
    // server would only add its start at each of the three daemons.
    const daemon = await startDaemon(cleanup);
    const window = await openWindow(cleanup, daemon, 'patient', FAST_SHIM);
    const closing = spawnShim(cleanup, { ...daemon.clientEnv, EXAI_WS_AUTOSTART: '0', ...FAST_SHIM });
    await initializeRaw(closing);
    await window.client.listTools();
    daemon.proc.kill('SIGKILL');
    await within(daemon.exited, 10_000, 'the daemon to exit');
    // "While no daemon runs" starts when the shim has seen its connection drop: a request sent in
    // the moment before that is in flight on the dying connection, and is rightly answered -32000.
    await waitFor(() => /reconnecting \(for up to/.test(window.stderr()), 'the shim to see the daemon gone', 10_000);

    // No daemon: a client closes its end while its shim reconnects; the shim exits by itself, 0.
    await waitFor(() => closing.stderr().includes('reconnecting'), 'the closing shim to notice the drop');
    closing.proc.stdin?.end();
    assert.equal(await within(closing.exited, 10_000, 'the reconnecting shim to exit'), 0);

    let settled = false;
    const listed = window.client.listTools(undefined, { timeout: 120_000 }).finally(() => (settled = true));
    // Nothing answers while no daemon runs: the shim holds the request through its reconnect
    // attempts (backoff from 100 ms: three or more within the watch).
    await holdsFor(() => !settled, 'the request waiting for a daemon instead of failing', 700);

    const second = await startDaemon(cleanup, { home: daemon.home });
    const tools = (await within(listed, 30_000, 'the waiting request to be answered')).tools.map((t) => t.name);
    assert.ok(tools.includes('sleep'), `tools: ${tools.join(', ')}`);
    const id = lastRequestId(window, 'tools/list');
    assert.equal(answersTo(window, id).length, 1);

    // A shim that may wait only 3 s: its request is answered -32000 at the deadline and it exits 1.
    const raw = spawnShim(cleanup, { ...second.clientEnv, EXAI_WS_AUTOSTART: '0', EXAI_WS_RECONNECT_MS: '3000', ...FAST_SHIM });
    await initializeRaw(raw);
    second.proc.kill('SIGKILL');
    await within(second.exited, 10_000, 'the second daemon to exit');
    await waitFor(() => /reconnecting \(for up to/.test(raw.stderr()), 'the 3 s shim to see the daemon gone', 10_000);
    raw.send(JSON.stringify({ jsonrpc: '2.0', id: 'late', method: 'tools/list' }));
    const { response } = await readUntilResponse(raw, 'late', 20_000);
    const error = response.error as { code: number; message: string } | undefined;
    assert.equal(error?.code, -32000);
    assert.match(error?.message ?? '', /could not be made again within 3 s/);
    assert.equal(await within(raw.exited, 10_000, 'the shim to exit after its deadline'), 1);

    // The first window keeps waiting (its own deadline is the default 120 s) and works again.
    const third = await startDaemon(cleanup, { home: daemon.home });
    const again = (await window.client.listTools(undefined, { timeout: 60_000 })).tools.map((t) => t.name);
    assert.ok(again.includes('sleep'));
    assert.equal((await getHealth(third)).sessions.total, 1);

    // Reconnected to a new daemon, then closed: the session ends at once (client_closed), no resume grace.
    const ours = (msg: string) => readJsonLines(logPath(third.home)).filter((l) => l.msg === msg && l.pid === third.pid);
    const opened = await waitFor(() => ours('session opened')[0], 'the new session in the log');
    assert.equal(ours('session opened').length, 1, 'one session at the new daemon: the window');
    await window.client.close();
    const closed = await waitFor(
      () => ours('session closed').find((l) => l.session_id === opened.session_id),
      'the session to close',
      5_000,
    );
    assert.equal(closed.reason, 'client_closed');
    assert.equal((await getHealth(third)).sessions.total, 0);
  });

  // One shim and daemon for both: the acks are checked on the session first, before its connection is dropped.
  test('ack frames never come back to the client; a dropped connection to the same daemon resumes the session: same session, no replay, the client keeps working', async () => {
    // The heartbeat cuts a shim that stops answering pings (here: stopped with SIGSTOP).
    const daemon = await startDaemon(cleanup, { env: { EXAI_WS_HEARTBEAT_MS: '200' } });
    const raw = spawnShim(cleanup, { ...daemon.clientEnv, EXAI_WS_AUTOSTART: '0', ...FAST_SHIM });
    await initializeRaw(raw);

    // A window that works for a while sees no stray error for id null: more than one ack's worth
    // of frames, then time for the delayed ack.
    for (let i = 0; i < 70; i++) raw.send(JSON.stringify({ jsonrpc: '2.0', id: `p${i}`, method: 'ping' }));
    await readUntilResponse(raw, 'p69');
    await new Promise((r) => setTimeout(r, 500));
    raw.send(JSON.stringify({ jsonrpc: '2.0', id: 'last', method: 'ping' }));
    const { before: beforeLast } = await readUntilResponse(raw, 'last');
    assert.deepEqual(beforeLast, [], 'nothing but answers to what the client asked');

    raw.send(JSON.stringify({ jsonrpc: '2.0', id: 'before', method: 'tools/list' }));
    await readUntilResponse(raw, 'before');
    const lines = (msg: string) => readJsonLines(logPath(daemon.home)).filter((l) => l.msg === msg);
    const opened = await waitFor(() => lines('session opened')[0], 'the session in the log');

    raw.proc.kill('SIGSTOP');
    try {
      await waitFor(() => lines('session detached')[0], 'the heartbeat to cut the stopped shim', 10_000);
    } finally {
      raw.proc.kill('SIGCONT');
    }
    await waitFor(() => lines('session resumed')[0], 'the shim to resume its session', 15_000);
    raw.send(JSON.stringify({ jsonrpc: '2.0', id: 'after', method: 'tools/list' }));
    const { response, before } = await readUntilResponse(raw, 'after', 10_000);
    assert.ok(response.result, JSON.stringify(response));
    assert.deepEqual(
      before.filter((m) => typeof m.method === 'string' && m.method.endsWith('list_changed')),
      [],
      'a resumed session is the same session: nothing to list again',
    );
    assert.equal(lines('session opened').length, 1, 'no new session was opened');
    assert.equal((await getHealth(daemon)).sessions.total, 1);
    assert.equal(lines('session resumed')[0]?.session_id, opened.session_id);
    assert.match(raw.stderr(), new RegExp(`session ${String(opened.session_id)} resumed`));
  });
});
