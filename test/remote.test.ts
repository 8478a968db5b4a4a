/**
 * A remote (Streamable HTTP) server in the daemon's config is shared like a stdio one; losing
 * it fails the calls in flight with -32011 at once, and it is reached again once it is back.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { Cleanup, ROOT, textOf, waitFor } from './helpers.js';
import { serverReport, startHostingDaemon } from './fixtures/hosted-servers.js';
import { connectWs } from './fixtures/ws-client.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const REMOTE = join(ROOT, 'dist', 'test', 'fixtures', 'remote-server.js');

/** Starts the fixture server on `port` (0: any) and resolves with it and its port. */
function startRemote(port: number): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(process.execPath, [REMOTE, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  cleanup.add(() => proc.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the remote fixture did not start')), 10_000);
    proc.stdout?.on('data', (chunk: Buffer) => {
      const match = /listening (\d+)/.exec(chunk.toString());
      if (match) {
        clearTimeout(timer);
        resolve({ proc, port: Number(match[1]) });
      }
    });
  });
}

test('a remote server is reachable through the daemon; killing it gives -32011, restarting it recovers', async () => {
  const first = await startRemote(0);
  const url = `http://127.0.0.1:${first.port}/mcp`;
  const daemon = await startHostingDaemon(cleanup, () => ({ remote: { url } }));
  // Two windows over direct WebSockets: sharing and losing a remote server is the daemon's doing.
  const [a, b] = await Promise.all([connectWs(cleanup, daemon), connectWs(cleanup, daemon)]);
  for (const [client, text] of [
    [a.client, 'from a'],
    [b.client, 'from b'],
  ] as const) {
    assert.equal(textOf(await client.callTool({ name: 'remote__echo', arguments: { text } })), `remote: ${text}`);
  }

  const inFlight = a.client.callTool({ name: 'remote__slow', arguments: { ms: 10_000 } });
  await waitFor(async () => (await serverReport(daemon, 'remote')).inflight > 0, 'the slow call in flight at the remote server');
  const startedMs = Date.now();
  first.proc.kill('SIGKILL');
  const error = await inFlight.then(
    () => assert.fail('the call should fail when its server is gone'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof McpError, String(error));
  assert.equal(error.code, -32011);
  assert.deepEqual(error.data, { server: 'remote' });
  assert.ok(Date.now() - startedMs < 5_000, 'the caller learns at once, not at its deadline');

  await startRemote(first.port);
  const back = await b.client.callTool({ name: 'remote__echo', arguments: { text: 'again' } });
  assert.equal(textOf(back), 'remote: again');
  const report = await serverReport(daemon, 'remote');
  assert.equal(report.state, 'ready');
  assert.ok(report.restarts >= 1 || report.last_error !== null);
});
