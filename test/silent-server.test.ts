/**
 * A server that is slow or silent never holds up the others: lists answer within the list wait
 * with what is known (a server still starting shows up later with `list_changed`), calls to
 * other servers go at their normal speed, and a server that never answers `initialize` is
 * marked failed with that reason once its deadline passes, and retried in the background.
 * Unit tests of the catalog's wait and the start deadline over in-memory servers, then the real
 * daemon with direct WebSocket windows (the SDK client; the shim is not what is tested), real
 * server-memory and a fixture server that never answers.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport, McpServer } from '@modelcontextprotocol/server';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { Catalog, type CatalogView } from '../src/mux/catalog.js';
import type { ListKind } from '../src/mux/lists.js';
import { ServerLink } from '../src/hosting/server-link.js';
import { Upstream } from '../src/hosting/upstream.js';
import { parseUpstreams } from '../src/hosting/upstream-config.js';
import { Cleanup, ROOT, logPath, readJsonLines, textOf, waitFor } from './helpers.js';
import { connectWs } from './fixtures/ws-client.js';
import { cmdline, descendants, memoryEntry, serverReport, startHostingDaemon, waitReady } from './fixtures/hosted-servers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const SILENT_SCRIPT = join(ROOT, 'dist', 'test', 'fixtures', 'hosted-silent.js');
/** The bound for a list or a call while another server is silent. */
const ANSWER_WITHIN_MS = 3_000;

/** An in-memory server with one tool, started only once `gate` resolves (a server still starting). */
function inMemoryUpstream(name: string, tool: string, options: { gate?: Promise<void>; silent?: boolean; initTimeoutMs?: number } = {}) {
  return new Upstream({
    name,
    prefix: name,
    idleTimeoutMs: 0,
    initTimeoutMs: options.initTimeoutMs,
    retryFailedStart: true,
    launch: async (wire) => {
      const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
      if (options.silent) {
        await serverSide.start(); // reads, never answers
      } else {
        await options.gate;
        const server = new McpServer({ name, version: '1' });
        server.registerTool(tool, { description: tool }, () => ({ content: [{ type: 'text', text: `${name}:${tool}` }] }));
        await server.connect(serverSide);
      }
      const link = new ServerLink(name, clientSide);
      wire(link);
      await link.start();
      return { link };
    },
  });
}

function names(outcome: Awaited<ReturnType<Catalog['list']>>): string[] {
  assert.ok('items' in outcome, JSON.stringify(outcome));
  return outcome.items.map((item) => String(item.name)).sort();
}

// Each test has its own home and daemon on port 0 (nothing shared but this file's cleanup), so they run side
// by side: most of their time is waiting on processes and timers.
// All three daemons at once: two of the tests assert answers within 3 s, and the third (the
// deadline one) asserts no time, so its load comes beside them only while they start.
describe('slow and silent servers', { concurrency: 3 }, () => {
  test('catalog: a list answers without a server still starting; calls to the others are routed at once; it shows up with list_changed', async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const quick = inMemoryUpstream('quick', 'a');
    const held = inMemoryUpstream('held', 'b', { gate });
    const arrived: [string, ListKind][] = [];
    const catalog = new Catalog({ listTimeoutMs: 5_000, listWaitMs: 200, onarrived: (server, kind) => arrived.push([server.name, kind]) });
    const view: CatalogView = { single: false, key: 'all', servers: () => [quick, held] };
    try {
      assert.deepEqual(names(await catalog.list('tools', view)), ['quick__a']);
      assert.equal(held.state, 'starting', 'the held server keeps starting in the background');
      assert.deepEqual(arrived, []);
      const target = await catalog.resolve('tools', 'quick__a', view);
      assert.equal(target?.server, quick);
      assert.equal(target?.name, 'a');
      // A name under the prefix of the server still starting goes to it (its call waits for the start).
      assert.equal((await catalog.resolve('tools', 'held__b', view))?.server, held);

      open();
      await waitFor(() => arrived.length > 0, 'the held server to arrive');
      assert.deepEqual(arrived, [['held', 'tools']]);
      assert.deepEqual(names(await catalog.list('tools', view)), ['held__b', 'quick__a']);
    } finally {
      open();
      await Promise.all([quick.close(), held.close()]);
    }
  });

  test('catalog: a call resolves by its prefix without waiting for a silent server, even before any list', async () => {
    const quick = inMemoryUpstream('quick', 'a');
    const silent = inMemoryUpstream('silent', 'b', { silent: true });
    // A wait longer than the test: only the prefix path can answer.
    const catalog = new Catalog({ listTimeoutMs: 60_000, listWaitMs: 60_000 });
    const view: CatalogView = { single: false, key: 'all', servers: () => [silent, quick] };
    try {
      const starting = silent.connect().catch(() => undefined); // someone else's start, under way
      const target = await catalog.resolve('tools', 'quick__a', view);
      assert.equal(target?.server, quick);
      assert.equal(silent.state, 'starting');
      void starting;
    } finally {
      await Promise.all([quick.close(), silent.close()]);
    }
  });

  test('upstream: no answer to initialize within the deadline is a failed start with that reason, retried; close() does not wait for it', async () => {
    const logged: { event: string; details: Record<string, unknown> }[] = [];
    const silent = new Upstream({
      name: 'silent',
      prefix: 'silent',
      idleTimeoutMs: 0,
      initTimeoutMs: 150,
      retryFailedStart: true,
      log: (event, details) => logged.push({ event, details }),
      launch: async (wire) => {
        const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
        await serverSide.start();
        const link = new ServerLink('silent', clientSide);
        wire(link);
        await link.start();
        return { link };
      },
    });
    try {
      await assert.rejects(silent.connect(), /did not answer initialize within 0\.15 s/);
      const report = silent.report();
      assert.equal(report.state, 'failed');
      assert.equal(report.last_error, 'did not answer initialize within 0.15 s');
      await waitFor(() => silent.report().retries >= 2, 'two retries in the background');
      assert.equal(silent.report().last_error, 'did not answer initialize within 0.15 s');
      assert.equal(logged.filter((l) => l.event === 'server failed to start').length, 1, 'the same failure is logged once');
    } finally {
      await silent.close();
    }
    // A start under way when it closes is abandoned at once, not waited out.
    const slow = inMemoryUpstream('slow', 'x', { silent: true, initTimeoutMs: 60_000 });
    const starting = slow.connect().then(
      () => 'started',
      (error: Error) => error.message,
    );
    await new Promise((r) => setTimeout(r, 20));
    const t0 = Date.now();
    await slow.close();
    assert.match(await starting, /shutting down/);
    assert.ok(Date.now() - t0 < 5_000, 'close() waited for the start deadline');
  });

  test('config: init_timeout_ms (or initTimeoutMs) per entry, a positive whole number of milliseconds', () => {
    const { servers, problems } = parseUpstreams({
      mcpServers: {
        a: { command: 'x', init_timeout_ms: 5_000 },
        b: { command: 'x', initTimeoutMs: 7_000 },
        c: { command: 'x' },
        d: { command: 'x', init_timeout_ms: 0 },
        e: { command: 'x', init_timeout_ms: 1_000, initTimeoutMs: 2_000 },
      },
    });
    assert.deepEqual(
      servers.map((s) => [s.name, s.initTimeoutMs]),
      [
        ['a', 5_000],
        ['b', 7_000],
        ['c', undefined],
      ],
    );
    assert.deepEqual(
      problems.map((p) => [p.server, p.key]),
      [
        ['d', 'init_timeout_ms'],
        ['e', 'init_timeout_ms'],
      ],
    );
  });

  /** A fresh SDK window's tools/list and how long it took. */
  async function timedList(client: Client): Promise<{ names: string[]; ms: number }> {
    const t0 = performance.now();
    const listed = await client.listTools();
    return { names: listed.tools.map((t) => t.name), ms: performance.now() - t0 };
  }

  test('a silent server beside server-memory: a new window lists within 3 s and calls server-memory at its normal speed', async () => {
    const daemon = await startHostingDaemon(cleanup, (home) => ({
      silent: { command: process.execPath, args: [SILENT_SCRIPT] },
      memory: memoryEntry(home, { start: 'eager' }),
    }));
    await waitReady(daemon, 'memory');
    // Baseline: a call to server-memory in a window, before the silent server was ever started.
    const first = await connectWs(cleanup, daemon, { name: 'first' });
    const base0 = performance.now();
    await first.client.callTool({ name: 'memory__read_graph', arguments: {} });
    const baselineMs = performance.now() - base0;
    assert.equal((await serverReport(daemon, 'silent')).state, 'stopped', 'the baseline call did not start the silent server');

    const { client } = await connectWs(cleanup, daemon, { name: 'second' });
    const listed = await timedList(client);
    assert.ok(listed.ms < ANSWER_WITHIN_MS, `tools/list took ${Math.round(listed.ms)} ms`);
    assert.ok(listed.names.includes('memory__read_graph'), `server-memory's tools are listed: ${listed.names.join(', ')}`);
    assert.ok(!listed.names.some((n) => n.startsWith('silent__')));
    assert.equal((await serverReport(daemon, 'silent')).state, 'starting', 'the silent server is still being waited for');

    // A third window calls server-memory first thing, without listing, while the other is silent.
    const third = await connectWs(cleanup, daemon, { name: 'third' });
    const t0 = performance.now();
    const called = await third.client.callTool({ name: 'memory__read_graph', arguments: {} });
    const callMs = performance.now() - t0;
    assert.match(textOf(called), /entities/);
    assert.ok(callMs < ANSWER_WITHIN_MS, `the call took ${Math.round(callMs)} ms (baseline ${Math.round(baselineMs)} ms)`);
    // Again: the list's answer is kept, it does not wait a second time.
    assert.ok((await timedList(third.client)).ms < ANSWER_WITHIN_MS);
    console.log(
      `silent beside memory: list ${Math.round(listed.ms)} ms, first call ${Math.round(callMs)} ms, baseline call ${Math.round(baselineMs)} ms`,
    );
  });

  test('a server slow to start is listed later: the window that listed without it gets tools/list_changed', async () => {
    const daemon = await startHostingDaemon(cleanup, (home) => ({
      // Up 1 s after the list's 2 s wait (DEFAULT_LIST_WAIT_MS) has given up on it, counted from
      // its own start, which comes later still: the first list cannot hold it.
      slow: { command: process.execPath, args: [SILENT_SCRIPT, '--answer-after-ms', '3000'] },
      memory: memoryEntry(home, { start: 'eager' }),
    }));
    await waitReady(daemon, 'memory');
    const { client } = await connectWs(cleanup, daemon, { name: 'lister' });
    let changed = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      changed++;
    });
    const before = await timedList(client);
    assert.ok(before.ms < ANSWER_WITHIN_MS, `tools/list took ${Math.round(before.ms)} ms`);
    assert.ok(before.names.includes('memory__read_graph'));
    assert.ok(!before.names.includes('slow__hello'));
    await waitFor(() => changed > 0, 'tools/list_changed once the slow server is up', 15_000);
    const now = await timedList(client);
    assert.ok(now.names.includes('slow__hello'), `listed now: ${now.names.join(', ')}`);
    assert.ok(now.names.includes('memory__read_graph'));
    assert.equal(textOf(await client.callTool({ name: 'slow__hello', arguments: {} })), 'hello from the slow server');
  });

  test('a server that never answers initialize is failed with that reason once its init_timeout_ms passes, and retried', async () => {
    // Retried after a tenth of the backoff (25, 50 ms ...: EXAI_WS_TIMER_SCALE): the deadline is what is waited out,
    // half a second, three times (the failure and two retries).
    const daemon = await startHostingDaemon(
      cleanup,
      (home) => ({
        silent: { command: process.execPath, args: [SILENT_SCRIPT], init_timeout_ms: 500 },
        // Up before the first list: a loaded machine may take longer than the list's 2 s wait to start it.
        memory: memoryEntry(home, { start: 'eager' }),
      }),
      { EXAI_WS_TIMER_SCALE: '0.1' },
    );
    await waitReady(daemon, 'memory');
    const { client } = await connectWs(cleanup, daemon);
    const listed = await timedList(client);
    assert.ok(listed.names.includes('memory__read_graph'));
    const failed = await waitFor(async () => {
      const r = await serverReport(daemon, 'silent');
      return r.state === 'failed' || r.retries > 0 ? r : null;
    }, 'the silent server failed');
    assert.equal(failed.last_error, 'did not answer initialize within 0.5 s');
    const retried = await waitFor(async () => {
      const r = await serverReport(daemon, 'silent');
      return r.retries >= 2 ? r : null;
    }, 'the silent server retried in the background');
    assert.equal(retried.last_error, 'did not answer initialize within 0.5 s', 'killing it for the deadline is not an exit of its own');
    const warned = readJsonLines(logPath(daemon.home)).filter((l) => l.msg === 'server failed to start' && l.server === 'silent');
    assert.ok(warned.length >= 1);
    assert.equal(warned[0]?.error, 'did not answer initialize within 0.5 s');
    // A call to it says why, at once or after its own start's deadline.
    await assert.rejects(client.callTool({ name: 'silent__anything', arguments: {} }), /did not answer initialize within 0\.5 s/);
    // The processes given up on are stopped: they do not pile up with the retries.
    const running = descendants(daemon.pid).filter((pid) => cmdline(pid).includes('hosted-silent'));
    assert.ok(running.length <= 1, `${running.length} silent server processes run`);
  });
});
