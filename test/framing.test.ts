/** The shim's stdio framing: bad lines cost only themselves, stdout carries only MCP, flow control holds. */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Cleanup, initializeRaw, spawnShim, startDaemon, textOf, type DaemonHandle } from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const echo = (id: number, text: string) =>
  JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'echo', arguments: { text } } });

/**
 * One daemon with frames up to 4096 bytes for the two bad-line tests, each with a shim of its
 * own: a limit that small is what the oversize test needs, and the malformed-line test's lines
 * are far below it.
 */
let small: Promise<DaemonHandle> | undefined;
function smallFramesDaemon(): Promise<DaemonHandle> {
  small ??= startDaemon(cleanup, { env: { EXAI_WS_MAX_BYTES: '4096' } });
  return small;
}

// Each test has its own shim, and the flow-control test its own daemon: they run side by side.
describe('framing', { concurrency: true }, () => {
  test('a malformed stdin line gets -32700 and the session goes on', async () => {
    const daemon = await smallFramesDaemon();
    const shim = spawnShim(cleanup, daemon.clientEnv);
    await initializeRaw(shim);
    shim.send('{"jsonrpc":"2.0","id":1,"method":');
    const error = JSON.parse(await shim.nextLine()) as { id: null; error: { code: number } };
    assert.equal(error.id, null);
    assert.equal(error.error.code, -32700);
    shim.send('[{"jsonrpc":"2.0","id":2,"method":"ping"}]');
    const batch = JSON.parse(await shim.nextLine()) as { error: { code: number; message: string } };
    assert.equal(batch.error.code, -32600);
    assert.match(batch.error.message, /batch/i);
    shim.send(`${echo(3, 'still here')}\r`); // CRLF line endings are accepted too
    const reply = JSON.parse(await shim.nextLine()) as { id: number; result: unknown };
    assert.equal(reply.id, 3);
    assert.equal(textOf(reply.result), 'still here');
  });

  test('an oversize stdin line is refused without crashing, the next line works', async () => {
    const daemon = await smallFramesDaemon();
    const shim = spawnShim(cleanup, daemon.clientEnv);
    await initializeRaw(shim);
    shim.send(echo(1, 'x'.repeat(20_000)));
    const refused = JSON.parse(await shim.nextLine()) as { error: { code: number; message: string } };
    assert.equal(refused.error.code, -32600);
    assert.match(refused.error.message, /4096-byte limit/);
    shim.send(echo(2, 'small'));
    const reply = JSON.parse(await shim.nextLine()) as { id: number; result: unknown };
    assert.equal(reply.id, 2);
    assert.equal(textOf(reply.result), 'small');
    assert.equal(shim.proc.exitCode, null, 'the shim is still running');
  });

  test('a client that does not read stdout for a while loses nothing; every line on stdout is JSON-RPC', async () => {
    const daemon = await startDaemon(cleanup, { env: { EXAI_WS_QUEUE_LIMIT: '4000' } });
    const shim = spawnShim(cleanup, daemon.clientEnv);
    await initializeRaw(shim);
    const count = 1500;
    const payload = 'y'.repeat(8 * 1024);
    // Stop reading the shim's stdout: replies back up through the pipe, the shim and the daemon.
    shim.proc.stdout?.pause();
    for (let id = 1; id <= count; id++) shim.send(echo(id, `${id}:${payload}`));
    await new Promise((r) => setTimeout(r, 500));
    shim.proc.stdout?.resume();
    const seen = new Set<number>();
    for (let i = 0; i < count; i++) {
      const line = await shim.nextLine(15_000);
      const reply = JSON.parse(line) as { jsonrpc: string; id: number; result: unknown };
      assert.equal(reply.jsonrpc, '2.0');
      assert.equal(textOf(reply.result), `${reply.id}:${payload}`);
      seen.add(reply.id);
    }
    assert.equal(seen.size, count);
    assert.equal(shim.proc.exitCode, null);
  });
});
