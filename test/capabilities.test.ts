/**
 * A shared server started for a client without sampling is offered sampling when a client
 * that has it arrives: it is restarted (no call cut short), and sessions get list_changed.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { CreateMessageRequestSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { Cleanup, connectShim, textOf, waitFor } from './helpers.js';
import { everythingEntry, serverReport, startHostingDaemon, waitReady } from './fixtures/hosted-servers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const SAMPLING_TOOL = 'everything__trigger-sampling-request';

test('a client with sampling arriving later gets the sampling tools of a server started without it', async () => {
  const daemon = await startHostingDaemon(cleanup, () => ({ everything: everythingEntry() }));
  const plain = await connectShim(cleanup, daemon, { name: 'no-sampling' });
  let changed = 0;
  plain.client.setNotificationHandler(ToolListChangedNotificationSchema, () => void changed++);
  const before = (await plain.client.listTools()).tools.map((t) => t.name);
  assert.ok(before.includes('everything__echo'));
  assert.ok(!before.includes(SAMPLING_TOOL), 'nobody offered sampling yet');
  const first = await waitReady(daemon, 'everything');

  const capable = await connectShim(cleanup, daemon, { name: 'with-sampling', capabilities: { sampling: {} } });
  capable.client.setRequestHandler(CreateMessageRequestSchema, () => ({
    role: 'assistant',
    content: { type: 'text', text: 'sampled by the capable client' },
    model: 'test-model',
  }));
  await waitFor(async () => {
    const r = await serverReport(daemon, 'everything');
    return r.state === 'ready' && r.pid !== first.pid;
  }, 'the server restarted with the new capabilities');
  await waitFor(() => changed > 0, 'tools/list_changed at the first session');
  const after = (await capable.client.listTools()).tools.map((t) => t.name);
  assert.ok(after.includes(SAMPLING_TOOL), 'the sampling tool is offered now');
  const result = await capable.client.callTool({ name: SAMPLING_TOOL, arguments: { prompt: 'hello', maxTokens: 10 } });
  assert.match(textOf(result), /sampled by the capable client/);
  assert.equal((await serverReport(daemon, 'everything')).restarts, 0, 'a planned restart is not counted as a crash');
});
