/**
 * Descriptors (issue 21): a daemon under a hard and soft limit of 256 descriptors
 * (`prlimit --nofile=256:256`), with hosted servers, a window open (the SDK client over a direct WebSocket: to the daemon, one connection as a shim's is), then
 * 300 idle TCP connections that nobody authenticates. The daemon stays up, the open window
 * keeps working, a new window connects and its call starts a server (or gets a clean -32011
 * naming the cause, never "Cannot read properties"), and after the connections close everything
 * works. Once with the defaults (the unauthenticated bound drops the oldest), once with that
 * bound lifted and no reserve, so that the flood reaches the descriptor limit itself and spawns
 * fail with EMFILE.
 *
 * The idle connections are given a headers deadline of a minute here, so that the flood lasts
 * the whole test as an attacker that keeps reopening would make it last: what must hold it is
 * the bound and the reserve, not the deadline.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { Cleanup, getHealth, logPath, makeHome, readJsonLines, startDaemon, textOf, waitFor, type DaemonHandle } from './helpers.js';
import { connectWs } from './fixtures/ws-client.js';
import { memoryEntry, processGone } from './fixtures/hosted-servers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const FLOOD = 300;
const LIMIT = 256;

/** Opens `count` idle TCP connections; resolves once each is connected or already closed. */
async function flood(port: number, count: number): Promise<{ sockets: Socket[]; closed: boolean[] }> {
  const sockets: Socket[] = [];
  const closed: boolean[] = [];
  const settled: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    closed.push(false);
    socket.on('error', () => undefined); // reset by the daemon: expected
    socket.once('close', () => (closed[i] = true));
    settled.push(
      new Promise<void>((resolve) => {
        socket.once('connect', () => resolve());
        socket.once('close', () => resolve());
      }),
    );
  }
  cleanup.add(() => sockets.forEach((s) => s.destroy()));
  // At most 15 s, and the timer unref'd: a pending one kept this process alive 15 s after the tests.
  await Promise.race([Promise.all(settled), new Promise((r) => setTimeout(r, 15_000).unref())]);
  return { sockets, closed };
}

async function startLimited(env: Record<string, string>): Promise<DaemonHandle> {
  const home = makeHome(cleanup);
  // `memory` is shared and started before the flood; `mine` is one instance per window, so a
  // new window's first use spawns a process while the flood is on.
  const servers = {
    memory: memoryEntry(home),
    mine: memoryEntry(home, { scope: 'session', env: { MEMORY_FILE_PATH: join(home, 'mine.jsonl') } }),
  };
  writeFileSync(join(home, 'config.json'), JSON.stringify({ mcpServers: servers }, null, 2));
  return startDaemon(cleanup, {
    home,
    wrap: ['prlimit', `--nofile=${LIMIT}:${LIMIT}`, '--'],
    env: { EXAI_WS_HEADERS_TIMEOUT_MS: '60000', EXAI_WS_BODY_TIMEOUT_MS: '60000', ...env },
  });
}

/** `/health` as anyone may ask it (liveness), on a connection of its own. */
async function liveness(daemon: DaemonHandle): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${daemon.port}/health`, {
    headers: { connection: 'close' },
    signal: AbortSignal.timeout(5_000),
  });
  return res.ok && ((await res.json()) as { status?: unknown }).status !== undefined;
}

async function rejections(daemon: DaemonHandle, reason: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${daemon.port}/metrics`, {
    headers: { authorization: `Bearer ${daemon.token}` },
    signal: AbortSignal.timeout(5_000),
  });
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith(`exai_ws_rejections_total{reason="${reason}"}`));
  return Number(line?.split(' ').pop() ?? 0);
}

/** A call's outcome in words: the tool's text, or the error the client got. */
async function outcome(client: Client, name: string): Promise<{ ok: boolean; text: string }> {
  try {
    const result = await client.callTool({ name, arguments: {} });
    return { ok: result.isError !== true, text: textOf(result) };
  } catch (error) {
    return { ok: false, text: (error as Error).message };
  }
}

function assertClean(result: { ok: boolean; text: string }, what: string): void {
  assert.doesNotMatch(result.text, /Cannot read properties/, what);
  if (!result.ok) assert.match(result.text, /-32011.*server mine could not be started: E[A-Z0-9]+ /, what);
}

// Each test has its own home and daemon on port 0 under its own limit, so they run side by side.
describe('descriptors', { concurrency: 3 }, () => {
  test('Descriptors: 300 idle connections under a limit of 256: the oldest idle ones are dropped, every window works', async () => {
    const daemon = await startLimited({});
    const a = await connectWs(cleanup, daemon, { name: 'window-a' });
    assert.equal((await outcome(a.client, 'memory__read_graph')).ok, true);

    const { sockets, closed } = await flood(daemon.port, FLOOD);
    await waitFor(() => closed.filter(Boolean).length >= FLOOD - 64, 'the daemon to drop all but 64 idle connections');
    assert.ok(closed.slice(0, FLOOD - 100).every(Boolean), 'the oldest went first: every one of the first 200 was dropped');
    assert.ok(closed.slice(FLOOD - 50).filter((c) => !c).length >= 45, 'the newest are still open');

    assert.ok(!processGone(daemon.pid), 'the daemon is up');
    assert.equal(await liveness(daemon), true, '/health answers');
    const { sockets: held } = await getHealth(daemon);
    assert.ok(held && held.unauthenticated <= 64, `/health counts the connections without the token: ${JSON.stringify(held)}`);
    assert.equal(held.descriptor_cap, 256 - 64, 'the limit less the reserve');
    assert.equal((await outcome(a.client, 'memory__read_graph')).ok, true, 'the open window keeps working');

    const b = await connectWs(cleanup, daemon, { name: 'window-b' });
    const spawned = await outcome(b.client, 'mine__read_graph');
    assertClean(spawned, 'a new window whose call starts a server');
    assert.equal(spawned.ok, true, `the reserve leaves room for the spawn: ${spawned.text}`);
    assert.ok(!processGone(daemon.pid));
    assert.ok((await rejections(daemon, 'unauthenticated_limit')) >= FLOOD - 64, 'the drops are counted');

    for (const socket of sockets) socket.destroy();
    const c = await connectWs(cleanup, daemon, { name: 'window-c' });
    assert.equal((await outcome(c.client, 'mine__read_graph')).ok, true, 'after the flood a new window works');
    assert.equal((await outcome(a.client, 'memory__read_graph')).ok, true);
    const warnings = await waitFor(() => {
      const lines = readJsonLines(logPath(daemon.home)).filter((l) => String(l.msg).startsWith('too many connections without the token'));
      return lines.length > 0 ? lines : null;
    }, 'the drops in the log');
    assert.equal(warnings.length, 1, 'logged once for the spell, not per connection');
    assert.doesNotMatch(daemon.stderr(), /Cannot read properties|uncaught/i);
  });

  test('Descriptors: with the bound lifted and no reserve the flood reaches the limit: spawns fail cleanly with EMFILE, nothing crashes', async () => {
    const daemon = await startLimited({ EXAI_WS_MAX_UNAUTHENTICATED: '100000', EXAI_WS_FD_RESERVE: '0' });
    const a = await connectWs(cleanup, daemon, { name: 'window-a' });
    assert.equal((await outcome(a.client, 'memory__read_graph')).ok, true);

    const { sockets } = await flood(daemon.port, FLOOD);
    // At the very limit a new connection may meet a full accept queue for a moment (the daemon is
    // still taking the flood's backlog): asked again, as any client would.
    await waitFor(
      async () => (await rejections(daemon, 'fd_reserve_dropped').catch(() => 0)) > 0,
      'the descriptor cap to drop idle connections',
    );
    assert.ok(!processGone(daemon.pid), 'the daemon is up');
    await waitFor(() => liveness(daemon).catch(() => false), '/health to answer');
    assert.equal((await outcome(a.client, 'memory__read_graph')).ok, true, 'the open window keeps working');

    const b = await connectWs(cleanup, daemon, { name: 'window-b' });
    const spawned = await outcome(b.client, 'mine__read_graph');
    assertClean(spawned, 'a call whose server cannot be spawned');
    // Four descriptors left free (MIN_FREE_FDS), fewer than the six of a child's three pipes.
    assert.match(spawned.text, /could not be started: EMFILE /, 'the spawn met the limit');
    assert.ok(!processGone(daemon.pid), 'a failed spawn does not crash the daemon');

    for (const socket of sockets) socket.destroy();
    // The failed instance is retried on its next use, as other failed starts are.
    const retried = await waitFor(
      async () => {
        const again = await outcome(b.client, 'mine__read_graph');
        assertClean(again, 'a retry');
        return again.ok ? again : null;
      },
      'the failed server to start on a later call',
      15_000,
      500,
    );
    assert.equal(retried.ok, true);
    const c = await connectWs(cleanup, daemon, { name: 'window-c' });
    assert.equal((await outcome(c.client, 'mine__read_graph')).ok, true, 'after the flood a new window works');
    assert.ok(!processGone(daemon.pid));
    assert.doesNotMatch(daemon.stderr(), /Cannot read properties|uncaught/i);
  });

  test('a hosted server whose command does not exist: -32011 naming ENOENT, the daemon alive', async () => {
    const home = makeHome(cleanup);
    writeFileSync(
      join(home, 'config.json'),
      JSON.stringify({ mcpServers: { mine: { command: 'no-such-command-xyz', scope: 'session' } } }),
    );
    const daemon = await startDaemon(cleanup, { home });
    const { client } = await connectWs(cleanup, daemon);
    const result = await outcome(client, 'mine__anything');
    assert.equal(result.ok, false);
    assert.match(result.text, /-32011.*server mine could not be started: ENOENT no-such-command-xyz: command not found/);
    assert.ok(!processGone(daemon.pid));
    assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'still here' } })), 'still here');
  });
});
