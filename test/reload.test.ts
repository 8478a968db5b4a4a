/**
 * Live configuration: editing the hosted-servers config (or `exai-ws reload`) adds, removes and
 * restarts exactly the servers whose entries changed, without dropping sessions.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { CLI, Cleanup, baseEnv, getHealth, textOf, waitFor } from './helpers.js';
import { cliHere } from './fixtures/cli-here.js';
import { memoryEntry, processGone, serverReport, startHostingDaemon, waitReady } from './fixtures/hosted-servers.js';
import { connectWs } from './fixtures/ws-client.js';

const cleanup = new Cleanup();
after(() => cleanup.run());
const run = promisify(execFile);

function writeConfig(home: string, servers: Record<string, unknown>): void {
  writeFileSync(join(home, 'config.json'), JSON.stringify({ mcpServers: servers }, null, 2));
}

// Each test has its own home and daemon on port 0 (nothing shared but this file's cleanup), so they run side
// by side: most of their time is waiting on processes and timers.
describe('reload', { concurrency: 2 }, () => {
  test('editing the config while two sessions are live adds, removes and keeps exactly the right servers', async () => {
    // Three server-memory entries (kept, removed, added), each with a file of its own: which
    // server it is does not matter to a reload, and server-memory starts in half the CPU of
    // server-everything. The sessions are direct WebSocket SDK clients: what a reload keeps is the daemon's.
    const daemon = await startHostingDaemon(cleanup, (home) => ({
      memory: memoryEntry(home, { start: 'eager' }),
      scratch: memoryEntry(home, { start: 'eager', env: { MEMORY_FILE_PATH: join(home, 'scratch.jsonl') } }),
    }));
    const sessions = await Promise.all([connectWs(cleanup, daemon), connectWs(cleanup, daemon)]);
    const changed = sessions.map(() => 0);
    sessions.forEach((s, i) =>
      s.client.setNotificationHandler(ToolListChangedNotificationSchema, () => void (changed[i] = (changed[i] ?? 0) + 1)),
    );
    const memory = await waitReady(daemon, 'memory');
    const scratch = await waitReady(daemon, 'scratch');
    for (const s of sessions) assert.ok((await s.client.listTools()).tools.some((t) => t.name === 'scratch__read_graph'));

    // Add `notes` (another memory server), remove `scratch`, keep `memory` exactly as it was.
    changed.fill(0);
    writeConfig(daemon.home, {
      memory: memoryEntry(daemon.home, { start: 'eager' }),
      notes: memoryEntry(daemon.home, { env: { MEMORY_FILE_PATH: join(daemon.home, 'notes.jsonl') } }),
    });
    await waitFor(() => changed.every((n) => n > 0), 'tools/list_changed in both sessions', 10_000);
    for (const s of sessions) {
      // A session may hear an earlier list_changed too (a server that came up late): poll the list.
      const names = await waitFor(
        async () => {
          const listed = (await s.client.listTools()).tools.map((t) => t.name);
          return listed.includes('notes__read_graph') ? listed : null;
        },
        'the added server in the list',
        10_000,
      );
      assert.ok(!names.some((n) => n.startsWith('scratch__')), 'the removed server is gone');
      assert.ok(names.includes('memory__read_graph') && names.includes('version'));
    }
    await waitFor(() => processGone(scratch.pid), 'the removed server process to exit', 10_000);
    assert.equal((await serverReport(daemon, 'memory')).pid, memory.pid, 'the untouched server keeps its process');
    const health = await getHealth(daemon);
    assert.deepEqual(
      (health.servers as { name: string }[]).map((s) => s.name),
      ['memory', 'notes'],
    );
    assert.equal(health.sessions.total, 2, 'no session was dropped');
    const called = await sessions[0]?.client.callTool({ name: 'notes__read_graph', arguments: {} });
    assert.match(textOf(called), /entities/);
  });

  test('exai-ws reload applies a changed entry and reports it; a broken file changes nothing', async () => {
    const daemon = await startHostingDaemon(cleanup, (home) => ({ memory: memoryEntry(home, { start: 'eager' }) }));
    const before = await waitReady(daemon, 'memory');
    // Same name, new entry: restarted (a reload triggered by the watcher is fine too).
    writeConfig(daemon.home, {
      memory: memoryEntry(daemon.home, { start: 'eager', env: { MEMORY_FILE_PATH: join(daemon.home, 'other.jsonl') } }),
    });
    const env = { ...baseEnv(), EXAI_WS_HOME: daemon.home };
    const { stdout } = await run(process.execPath, [CLI, 'reload'], { env, timeout: 20_000 });
    assert.match(stdout, /config reloaded: .*(restarted memory|unchanged memory)/);
    const after = await waitFor(async () => {
      const r = await serverReport(daemon, 'memory');
      return r.state === 'ready' && r.pid !== null && r.pid !== before.pid ? r : null;
    }, 'memory restarted with a new process');
    assert.ok(processGone(before.pid) || (await waitFor(() => processGone(before.pid), 'old process gone')));

    writeFileSync(join(daemon.home, 'config.json'), '{ "mcpServers": { oops');
    // The same command in this process (test/fixtures/cli-here.ts); the CLI's own failed reload is control.test.ts's.
    const failed = await cliHere(['reload'], { EXAI_WS_HOME: daemon.home });
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /not valid JSON/);
    assert.equal((await serverReport(daemon, 'memory')).pid, after.pid, 'a broken file leaves the running servers alone');
  });
});
