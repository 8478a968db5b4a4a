/**
 * Hosted servers when things go wrong or go quiet: a server killed mid-call, the daemon
 * killed with SIGKILL or stopped with SIGTERM (no hosted process may outlive it), eager and
 * lazy start, and idle stop. Real daemon, the real npm servers; the windows are SDK clients over
 * their own WebSocket, as a shim opens them (what is tested is the daemon's hosting, not the shim).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { Cleanup, textOf, waitFor, within, type DaemonHandle } from './helpers.js';
import {
  cmdline,
  descendants,
  everythingEntry,
  memoryEntry,
  processGone,
  serverReport,
  startHostingDaemon,
  waitReady,
} from './fixtures/hosted-servers.js';
import { connectWs } from './fixtures/ws-client.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const UPSTREAM_UNAVAILABLE = -32011;

// The tests that kill or stop a daemon have their own daemon, home and servers: they run side by side.
describe('hosted servers failing', { concurrency: true }, () => {
  // One daemon for the tests below, one after another: each opens its own sessions, and each uses
  // a server of its own or leaves it as the next test needs it. The eager/lazy test comes first
  // (it needs the eager server with no session yet, and the lazy one never started); the mid-call
  // test then kills and restarts the eager server (the next test uses another); the idle test has
  // its own server ('idle', with its own graph file), used by no other test. Tests that kill or
  // stop the daemon have their own.
  describe('on one daemon, one test at a time', { concurrency: 1 }, () => {
    const idleMs = 300;
    let shared: Promise<DaemonHandle> | undefined;
    const hostingDaemon = (): Promise<DaemonHandle> =>
      (shared ??= startHostingDaemon(cleanup, (home) => ({
        memory: memoryEntry(home),
        everything: everythingEntry({ start: 'eager' }),
        idle: memoryEntry(home, { idle_timeout_ms: idleMs, env: { MEMORY_FILE_PATH: join(home, 'idle-memory.jsonl') } }),
      })));

    test('an eager server runs before any session; a lazy one waits for its first use', async () => {
      const daemon = await hostingDaemon();
      const eager = await waitReady(daemon, 'everything');
      assert.equal(eager.sessions, 0);
      assert.ok(!processGone(eager.pid));
      const lazy = await serverReport(daemon, 'memory');
      assert.equal(lazy.state, 'stopped');
      assert.equal(lazy.pid, null);

      // Connecting is not using: initialize alone starts nothing.
      const { client } = await connectWs(cleanup, daemon);
      assert.equal((await serverReport(daemon, 'memory')).state, 'stopped');
      await client.callTool({ name: 'memory__read_graph', arguments: {} });
      const used = await serverReport(daemon, 'memory');
      assert.equal(used.state, 'ready');
      assert.equal(typeof used.pid, 'number');
      assert.equal((await serverReport(daemon, 'everything')).pid, eager.pid, 'the eager server was not restarted');
    });

    test('a hosted server killed mid-call fails that call with -32011; the next call runs on a restarted server', async () => {
      const daemon = await hostingDaemon();
      const { client } = await connectWs(cleanup, daemon);
      let progressed = 0;
      const call = client
        .callTool({ name: 'everything__trigger-long-running-operation', arguments: { duration: 10, steps: 10 } }, undefined, {
          onprogress: () => progressed++,
        })
        .then(
          (result) => ({ result }),
          (error: unknown) => ({ error }),
        );
      await waitFor(() => progressed > 0, 'the long call under way', 15_000);
      const before = await waitReady(daemon, 'everything');
      process.kill(before.pid, 'SIGKILL');

      const outcome = await call;
      assert.ok('error' in outcome, `the call should fail, got ${JSON.stringify(outcome)}`);
      const error = outcome.error;
      assert.ok(error instanceof McpError, String(error));
      assert.equal(error.code, UPSTREAM_UNAVAILABLE);
      assert.deepEqual(error.data, { server: 'everything' });

      // Called at once: the call waits out the short restart backoff instead of failing.
      const echo = await client.callTool({ name: 'everything__echo', arguments: { message: 'after the crash' } });
      assert.equal(textOf(echo), 'Echo: after the crash');
      const after = await serverReport(daemon, 'everything');
      assert.equal(after.state, 'ready');
      assert.ok(after.restarts >= 1, `restarts: ${after.restarts}`);
      assert.equal(typeof after.pid, 'number');
      assert.notEqual(after.pid, before.pid);
      assert.match(after.last_error ?? '', /SIGKILL/);
      assert.ok(processGone(before.pid));
    });

    test('a server with idle_timeout_ms stops once no session uses it, and starts again on the next call', async () => {
      const daemon = await hostingDaemon();
      const first = await connectWs(cleanup, daemon);
      await first.client.callTool({
        name: 'idle__create_entities',
        arguments: { entities: [{ name: 'kept-on-disk', entityType: 'test', observations: ['before the idle stop'] }] },
      });
      const running = await waitReady(daemon, 'idle');
      assert.equal(running.sessions, 1);

      // An open session keeps it up, however long it stays quiet: three idle times (a dozen idle checks).
      await new Promise((r) => setTimeout(r, 3 * idleMs));
      const quiet = await serverReport(daemon, 'idle');
      assert.equal(quiet.state, 'ready');
      assert.equal(quiet.pid, running.pid);

      await first.client.close();
      await waitFor(async () => (await serverReport(daemon, 'idle')).state === 'stopped', 'idle stopped for idleness', 10_000);
      await waitFor(() => processGone(running.pid), 'the idle server process to exit', 10_000);
      const stopped = await serverReport(daemon, 'idle');
      assert.equal(stopped.pid, null);
      assert.equal(stopped.restarts, 0, 'an idle stop is not a crash');

      const second = await connectWs(cleanup, daemon);
      const graph = JSON.parse(textOf(await second.client.callTool({ name: 'idle__read_graph', arguments: {} }))) as {
        entities: { name: string }[];
      };
      assert.deepEqual(
        graph.entities.map((e) => e.name),
        ['kept-on-disk'],
      );
      const again = await waitReady(daemon, 'idle');
      assert.notEqual(again.pid, running.pid);
    });
  });

  /** Starts memory and everything through one session; returns their pids and every daemon descendant. */
  async function startBoth(daemon: Pick<DaemonHandle, 'port' | 'token' | 'pid' | 'url'>) {
    const { client } = await connectWs(cleanup, daemon);
    await client.callTool({ name: 'memory__read_graph', arguments: {} });
    await client.callTool({ name: 'everything__echo', arguments: { message: 'up' } });
    const memory = (await waitReady(daemon, 'memory')).pid;
    const everything = (await waitReady(daemon, 'everything')).pid;
    const all = descendants(daemon.pid);
    assert.ok(all.includes(memory) && all.includes(everything), `daemon descendants ${all.join(', ')}`);
    assert.match(cmdline(memory), /server-memory/);
    assert.match(cmdline(everything), /server-everything/);
    return { memory, everything, all };
  }

  test('a daemon killed with SIGKILL leaves no hosted server (or anything else of its) running', async () => {
    const daemon = await startHostingDaemon(cleanup, (home) => ({ memory: memoryEntry(home), everything: everythingEntry() }));
    const { all } = await startBoth(daemon);
    daemon.proc.kill('SIGKILL');
    await daemon.exited;
    await waitFor(() => all.every(processGone), 'every process the daemon started to end', 10_000);
  });

  test('SIGTERM stops every hosted server before the daemon exits 0', async () => {
    const daemon = await startHostingDaemon(cleanup, (home) => ({ memory: memoryEntry(home), everything: everythingEntry() }));
    const { memory, everything, all } = await startBoth(daemon);
    daemon.proc.kill('SIGTERM');
    // `within` clears its timer: a bare 15 s timer kept this file's process alive after its tests.
    const code = await within(daemon.exited, 15_000, 'the daemon to exit after SIGTERM');
    assert.equal(code, 0, daemon.stderr());
    assert.ok(processGone(memory), 'server-memory stopped with the daemon');
    assert.ok(processGone(everything), 'server-everything stopped with the daemon');
    // The rest (the orphan watchdog) ends on its own once the daemon is gone.
    await waitFor(() => all.every(processGone), 'every process the daemon started to end', 5_000);
  });
});
