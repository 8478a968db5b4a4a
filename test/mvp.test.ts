/**
 * The MVP plan end to end: one daemon, two MCP clients (official SDK) each through its own
 * real shim process, calling tools concurrently with colliding request ids.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import {
  Cleanup,
  connectShim,
  getHealth,
  logPath,
  metricsPath,
  readJsonLines,
  spawnShim,
  startDaemon,
  textOf,
  waitFor,
} from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const CALLS_PER_CLIENT = 200;

// Each test has its own home and daemon on port 0 (nothing shared but this file's cleanup), so they run side
// by side: most of their time is waiting on processes and timers.
describe('two clients, one daemon', { concurrency: 2 }, () => {
  test('two clients share one daemon: concurrent calls, colliding ids, one pid, two sessions, counted', async () => {
    const daemon = await startDaemon(cleanup, { env: { EXAI_WS_METRICS_INTERVAL_MS: '200' } });
    const a = await connectShim(cleanup, daemon, { name: 'window-a' });
    const b = await connectShim(cleanup, daemon, { name: 'window-b' });
    assert.notEqual(a.pid, b.pid, 'each client runs its own shim process');

    // Both SDK clients number their requests from the same start, so ids collide on the daemon.
    const run = async (client: typeof a.client, tag: string) => {
      const calls = Array.from({ length: CALLS_PER_CLIENT }, async (_, i) => {
        const text = `${tag}-${i}`;
        if (i % 2 === 0) {
          const result = await client.callTool({ name: 'version', arguments: {} });
          const info = JSON.parse(textOf(result)) as { pid: number; name: string };
          assert.equal(info.pid, daemon.pid);
          return;
        }
        const result = await client.callTool({ name: 'echo', arguments: { text } });
        assert.equal(textOf(result), text, `${tag} got someone else's reply`);
      });
      await Promise.all(calls);
    };
    await Promise.all([run(a.client, 'a'), run(b.client, 'b')]);

    const health = await getHealth(daemon);
    assert.equal(health.status, 'ok');
    assert.equal(health.pid, daemon.pid);
    assert.equal(health.sessions.total, 2);
    assert.equal(health.sessions.attached, 2);

    const opened = await waitFor(() => {
      const lines = readJsonLines(logPath(daemon.home)).filter((l) => l.msg === 'session initialized');
      return lines.length >= 2 ? lines : null;
    }, 'two session lines in the log');
    assert.equal(new Set(opened.map((l) => l.pid)).size, 1, 'one daemon pid in the log');
    assert.equal(opened[0]?.pid, daemon.pid);
    assert.equal(new Set(opened.map((l) => l.session_id)).size, 2, 'two distinct sessions');
    assert.deepEqual(opened.map((l) => l.mcp_client).sort(), ['window-a', 'window-b']);

    const expected = CALLS_PER_CLIENT; // half version, half echo, per client, two clients
    const line = await waitFor(
      () =>
        readJsonLines(metricsPath(daemon.home))
          .reverse()
          .find((l) => {
            const byTool = l.by_tool as Record<string, number>;
            return (byTool.version ?? 0) >= expected && (byTool.echo ?? 0) >= expected;
          }),
      'a metrics line counting every call',
    );
    const byTool = line.by_tool as Record<string, number>;
    assert.equal(byTool.version, expected);
    assert.equal(byTool.echo, expected);
    assert.equal((line.by_method as Record<string, number>)['tools/call'], 2 * expected);
    const latency = line.latency_ms as { p50: number | null; p99: number | null; max: number | null };
    assert.equal(typeof (line.sessions as Record<string, unknown>).opened, 'number');
    assert.ok(latency.max === null || latency.max >= 0);
  });

  test('the same request id in two sessions at the same time: each gets only its own reply', async () => {
    const daemon = await startDaemon(cleanup);
    const shims = [spawnShim(cleanup, daemon.clientEnv), spawnShim(cleanup, daemon.clientEnv)];
    const init = (id: number) =>
      JSON.stringify({
        jsonrpc: '2.0',
        id,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
      });
    for (const shim of shims) shim.send(init(0));
    for (const shim of shims) assert.equal((JSON.parse(await shim.nextLine()) as { id: number }).id, 0);
    // Slow call first on A, fast on B, same id 7, and a string id "7" on both as well.
    const call = (id: number | string, name: string, args: Record<string, unknown>) =>
      JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });
    const [sa, sb] = shims as [(typeof shims)[0], (typeof shims)[0]];
    sa.send(call(7, 'sleep', { ms: 300 }));
    sb.send(call(7, 'echo', { text: 'from-b' }));
    sa.send(call('7', 'echo', { text: 'string-a' }));
    sb.send(call('7', 'echo', { text: 'string-b' }));
    const collect = async (shim: typeof sa) => {
      const got = new Map<string, string>();
      for (let i = 0; i < 2; i++) {
        const reply = JSON.parse(await shim.nextLine()) as { id: number | string; result: unknown };
        got.set(`${typeof reply.id}:${reply.id}`, textOf(reply.result));
      }
      return got;
    };
    const [ra, rb] = await Promise.all([collect(sa), collect(sb)]);
    assert.deepEqual(Object.fromEntries(ra), { 'number:7': 'slept 300', 'string:7': 'string-a' });
    assert.deepEqual(Object.fromEntries(rb), { 'number:7': 'from-b', 'string:7': 'string-b' });
  });
});
