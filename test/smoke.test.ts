import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Cleanup, connectShim, startDaemon, textOf } from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

test('a shim under the SDK client calls version on the daemon', async () => {
  const daemon = await startDaemon(cleanup);
  const { client } = await connectShim(cleanup, daemon);
  const result = await client.callTool({ name: 'version', arguments: {} });
  const info = JSON.parse(textOf(result)) as { pid: number; name: string };
  assert.equal(info.name, 'exai-ws');
  assert.equal(info.pid, daemon.pid);
});
