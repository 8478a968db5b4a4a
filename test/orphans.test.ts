/**
 * No orphans, even from servers that ignore stdin EOF and SIGTERM and start children of their
 * own: a graceful stop and a daemon killed with SIGKILL both end the whole process group.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Cleanup, ROOT, textOf, waitFor } from './helpers.js';
import { connectWs } from './fixtures/ws-client.js';
import { processGone, startHostingDaemon } from './fixtures/hosted-servers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const STUBBORN = join(ROOT, 'dist', 'test', 'fixtures', 'hosted-stubborn.js');

async function stubbornPids(signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
  // The group's grace before SIGKILL at a fifth, 400 ms (EXAI_WS_TIMER_SCALE): the stubborn
  // server ignores SIGTERM, so the grace is waited out whole, whatever its length.
  const daemon = await startHostingDaemon(cleanup, () => ({ stubborn: { command: process.execPath, args: [STUBBORN] } }), {
    EXAI_WS_TIMER_SCALE: '0.2',
  });
  const { client } = await connectWs(cleanup, daemon); // a window without a shim: the property is the daemon's
  const pids = JSON.parse(textOf(await client.callTool({ name: 'stubborn__pids', arguments: {} }))) as { pid: number; grandchild: number };
  cleanup.add(() => {
    for (const pid of [pids.pid, pids.grandchild]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone, as it should be
      }
    }
  });
  assert.ok(!processGone(pids.pid) && !processGone(pids.grandchild));
  daemon.proc.kill(signal);
  await daemon.exited;
  await waitFor(() => processGone(pids.pid) && processGone(pids.grandchild), `the server and its child gone after ${signal}`, 12_000);
}

// Each test has its own home and daemon on port 0 (nothing shared but this file's cleanup), so they run side
// by side: most of their time is waiting on processes and timers.
describe('orphans', { concurrency: 2 }, () => {
  test('a daemon killed with SIGKILL leaves no server process, not even a stubborn one or its child', () => stubbornPids('SIGKILL'));

  test('a graceful stop ends a stubborn server and its child too', () => stubbornPids('SIGTERM'));
});
