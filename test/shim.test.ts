/**
 * Shim lifecycle end to end, with real shim and daemon processes: what a killed or closed
 * shim leaves behind in the daemon, and what a shim tells its client when the daemon is gone.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  Cleanup,
  closedPort,
  connectShim,
  getHealth,
  logPath,
  makeHome,
  readJsonLines,
  spawnShim,
  startDaemon,
  waitFor,
  type DaemonHandle,
  type RawShim,
  within,
  initializeRaw,
  readUntilResponse,
} from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

type Json = Record<string, unknown>;

/** Resolves once the shim has exited and its stdout and stderr are closed; call before it exits. */
function fullyClosed(shim: RawShim): Promise<void> {
  return new Promise((resolve) => shim.proc.once('close', () => resolve()));
}

/** Every stdout line the shim wrote and the test has not read yet (call after it closed). */
async function remainingLines(shim: RawShim): Promise<string[]> {
  const lines: string[] = [];
  for (;;) {
    try {
      lines.push(await shim.nextLine(1));
    } catch {
      return lines;
    }
  }
}

function sessionLines(home: string, msg: string, sessionId?: string): Json[] {
  return readJsonLines(logPath(home)).filter((l) => l.msg === msg && (sessionId === undefined || l.session_id === sessionId));
}
// The tests run side by side; two groups share a daemon, one test at a time (see each).
/**
 * The shim's fixed waits at a tenth (EXAI_WS_TIMER_SCALE): reconnect attempts at most 200 ms
 * apart, and 200 ms of answering after a refusal. For the shims whose initialize was sent before
 * the refusal (so the linger is only waited out) and the one that reconnects; the shims that must
 * still answer an initialize sent after the refusal keep the real 2 s.
 */
const FAST_SHIM = { EXAI_WS_TIMER_SCALE: '0.1' };

describe('shim lifecycle', { concurrency: 4 }, () => {
  // One daemon (default grace: 30 s) for the tests that count its sessions, one after another:
  // each ends with no session left, and what it proves is its own shim's session, not a fresh
  // daemon's. Tests that kill the daemon or change its limits have their own.
  describe('on one daemon, one test at a time', { concurrency: 1 }, () => {
    let shared: Promise<DaemonHandle> | undefined;
    const lifecycleDaemon = (): Promise<DaemonHandle> => (shared ??= startDaemon(cleanup));

    test('a shim killed with SIGKILL frees its session at once, without waiting out the resume grace', async () => {
      const daemon = await lifecycleDaemon();
      const seen = sessionLines(daemon.home, 'session opened').length;
      const shim = await connectShim(cleanup, daemon);
      assert.equal((await getHealth(daemon)).sessions.total, 1);
      const opened = await waitFor(() => sessionLines(daemon.home, 'session opened')[seen], 'the session opened line');

      process.kill(shim.pid, 'SIGKILL');
      await waitFor(async () => (await getHealth(daemon)).sessions.total === 0, 'the session to be gone from /health', 5_000);
      const closedLine = await waitFor(
        () => sessionLines(daemon.home, 'session closed', opened.session_id as string)[0],
        'the session closed line',
      );
      assert.equal(closedLine.reason, 'client_died', 'the shim named its pid in the hello: the daemon sees it is gone');
    });

    test('a shim whose stdin ends exits 0 and closes its session at once, without a resume grace', async () => {
      const daemon = await lifecycleDaemon();
      const seen = sessionLines(daemon.home, 'session opened').length;
      const shim = spawnShim(cleanup, daemon.clientEnv);
      await initializeRaw(shim);
      const opened = await waitFor(() => sessionLines(daemon.home, 'session opened')[seen], 'the session opened line');
      const sessionId = opened.session_id as string;
      assert.equal(typeof sessionId, 'string');

      shim.proc.stdin?.end(); // as a client that closes its end
      assert.equal(await within(shim.exited, 10_000, 'the shim to exit'), 0);
      const closedLine = await waitFor(() => sessionLines(daemon.home, 'session closed', sessionId)[0], 'the session closed line', 5_000);
      assert.equal(closedLine.reason, 'client_closed');
      const health = await getHealth(daemon);
      assert.equal(health.sessions.total, 0, 'no detached session is kept for a normal close');
    });

    test('a shim with a stale token finds no proof of it: it sends nothing and answers the waiting initialize naming the port', async () => {
      const daemon = await lifecycleDaemon();
      // A token file that no longer matches the daemon's, as after a token rotation.
      const home = makeHome(cleanup);
      writeFileSync(join(home, 'token'), `${'t'.repeat(64)}\n`, { mode: 0o600 });
      const shim = spawnShim(cleanup, { EXAI_WS_HOME: home, EXAI_WS_TEST_DEFAULT_PORT: String(daemon.port), ...FAST_SHIM });
      shim.send(
        JSON.stringify({
          jsonrpc: '2.0',
          id: 'init',
          method: 'initialize',
          params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
        }),
      );
      const reply = JSON.parse(await shim.nextLine(10_000)) as { id?: unknown; error?: { code: number; message: string } };
      assert.equal(reply.id, 'init');
      assert.equal(reply.error?.code, -32000);
      // The shim cannot tell its own daemon with another token from a stranger: it proves neither.
      assert.match(
        reply.error?.message ?? '',
        new RegExp(
          `^something else holds 127\\.0\\.0\\.1:${daemon.port}: it did not prove .*\\(its proof does not match the token\\), so nothing was sent to it`,
        ),
      );
      assert.equal(await within(shim.exited, 10_000, 'the shim to exit'), 1);
      assert.equal((await getHealth(daemon)).sessions.total, 0);
    });
  });

  // One daemon with room for one session for these two, one after another: the refused hello
  // first (its first window takes the one session, and ends it once the refusal is checked), then
  // the daemon dying mid-call, whose shim is then the daemon's only session and which kills it.
  describe('on one daemon of one session, one test at a time', { concurrency: 1 }, () => {
    let limited: Promise<DaemonHandle> | undefined;
    const limitedDaemon = (): Promise<DaemonHandle> => (limited ??= startDaemon(cleanup, { env: { EXAI_WS_MAX_SESSIONS: '1' } }));

    test('a shim whose hello is refused answers the waiting initialize with the reason, then exits 1', async () => {
      const daemon = await limitedDaemon();
      const first = await connectShim(cleanup, daemon);
      const shim = spawnShim(cleanup, { ...daemon.clientEnv, ...FAST_SHIM });
      shim.send(
        JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'initialize',
          params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
        }),
      );
      const reply = JSON.parse(await shim.nextLine(10_000)) as { id?: unknown; error?: { code: number; message: string } };
      assert.equal(reply.id, 1);
      assert.equal(reply.error?.code, -32000);
      assert.match(reply.error?.message ?? '', /refused the session \(session_limit/);
      assert.equal(await within(shim.exited, 10_000, 'the shim to exit'), 1);
      assert.match(shim.stderr(), /session_limit/);
      assert.equal((await getHealth(daemon)).sessions.total, 1, 'the first window keeps its session');
      // Its one session ended, for the next test on this daemon.
      await first.client.close();
      await waitFor(async () => (await getHealth(daemon)).sessions.total === 0, 'the first window to end its session', 5_000);
    });
    test('the daemon dying mid-call: the shim answers the open request once with -32000 at once, stays, and serves the next daemon', async () => {
      const daemon = await limitedDaemon();
      const shim = spawnShim(cleanup, { ...daemon.clientEnv, EXAI_WS_AUTOSTART: '0', ...FAST_SHIM });
      await initializeRaw(shim);
      shim.send(
        JSON.stringify({ jsonrpc: '2.0', id: 'call-7', method: 'tools/call', params: { name: 'sleep', arguments: { ms: 10_000 } } }),
      );
      await waitFor(async () => (await getHealth(daemon)).inflight === 1, 'the call to be running');

      daemon.proc.kill('SIGKILL');
      const lost = await readUntilResponse(shim, 'call-7', 10_000);
      const error = lost.response.error as { code: number; message: string } | undefined;
      assert.equal(error?.code, -32000);
      assert.match(error?.message ?? '', /the connection to the exai-ws daemon was lost; the request may or may not have run/);
      await waitFor(() => shim.stderr().includes('reconnecting'), 'the shim to say it reconnects');
      assert.equal(shim.proc.exitCode, null, 'the shim stays: the client keeps its stdio');

      const next = await startDaemon(cleanup, { home: daemon.home });
      shim.send(JSON.stringify({ jsonrpc: '2.0', id: 'after', method: 'tools/list' }));
      const listed = await readUntilResponse(shim, 'after', 20_000);
      assert.ok(Array.isArray((listed.response.result as { tools?: unknown[] } | undefined)?.tools), JSON.stringify(listed.response));
      const shimClosed = fullyClosed(shim);
      shim.proc.stdin?.end();
      assert.equal(await within(shim.exited, 10_000, 'the shim to exit'), 0);
      await within(shimClosed, 5_000, 'the shim stdout to close');
      const all = [...lost.before, ...listed.before, ...(await remainingLines(shim)).map((l) => JSON.parse(l) as { id?: unknown })];
      assert.deepEqual(
        all.filter((m) => m.id === 'call-7'),
        [],
        'exactly one answer for the call in flight, never a second one',
      );
      assert.equal((await getHealth(next)).sessions.total, 0, 'stdin end ended the new session at once');
    });
  });

  for (const withToken of [true, false]) {
    test(`a shim with no daemon to reach${withToken ? '' : ' and no token'} answers an initialize sent after it failed with the reason and what to do, then exits 1`, async () => {
      const home = makeHome(cleanup);
      if (withToken) writeFileSync(join(home, 'token'), `${'t'.repeat(64)}\n`, { mode: 0o600 });
      const port = await closedPort();
      const shim = spawnShim(cleanup, { EXAI_WS_HOME: home, EXAI_WS_TEST_DEFAULT_PORT: String(port) });
      const shimClosed = fullyClosed(shim);
      // The refusal takes milliseconds; a slow client writes its initialize only after it.
      await waitFor(() => shim.stderr().includes('auto-start is off'), 'the shim to find no daemon');
      shim.send(
        JSON.stringify({
          jsonrpc: '2.0',
          id: 0,
          method: 'initialize',
          params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
        }),
      );
      shim.send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
      const reply = JSON.parse(await shim.nextLine(10_000)) as { id?: unknown; error?: { code: number; message: string } };
      assert.equal(reply.id, 0);
      assert.equal(reply.error?.code, -32000);
      // Without a token the shim has no proof to check, so it does not even connect: auto-start says why.
      assert.match(
        reply.error?.message ?? '',
        new RegExp(
          `${withToken ? `cannot reach the exai-ws daemon at ws://127\\.0\\.0\\.1:${port}/ws .*` : '^'}no exai-ws daemon is running .*auto-start is off \\(EXAI_WS_AUTOSTART=0\\): start one with: exai-ws daemon`,
        ),
      );
      assert.equal(await within(shim.exited, 10_000, 'the shim to exit'), 1);
      await within(shimClosed, 5_000, 'the shim stdout to close');
      const lines = shim
        .stderr()
        .split('\n')
        .filter((l) => l.trim().length > 0);
      assert.equal(lines.length, 1, `expected one stderr line, got:\n${shim.stderr()}`);
      assert.deepEqual(await remainingLines(shim), [], 'the notification gets no answer');
    });
  }
});
