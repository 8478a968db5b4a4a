/**
 * A shared server started for a client without sampling is offered sampling when a client
 * that has it arrives: it is restarted (no call cut short), and sessions get list_changed.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { CreateMessageRequestSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { Cleanup, textOf, waitFor } from './helpers.js';
import { everythingEntry, serverReport, startHostingDaemon, waitReady } from './fixtures/hosted-servers.js';
import { connectWs } from './fixtures/ws-client.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const SAMPLING_TOOL = 'everything__trigger-sampling-request';
/** Lists wait for server-everything to start (by default at most 2 s, which a loaded machine can pass). */
const LISTS_WAIT = { EXAI_WS_LIST_WAIT_MS: '0' };
// Each test has its own daemon, home and processes: they run side by side. Windows are direct
// WebSocket SDK clients: the capabilities a server is offered are the daemon's doing.
describe('capabilities', { concurrency: true }, () => {
  test('a client with sampling arriving later gets the sampling tools of a server started without it', async () => {
    const daemon = await startHostingDaemon(cleanup, () => ({ everything: everythingEntry() }), LISTS_WAIT);
    const plain = await connectWs(cleanup, daemon, { name: 'no-sampling' });
    let changed = 0;
    plain.client.setNotificationHandler(ToolListChangedNotificationSchema, () => void changed++);
    const before = (await plain.client.listTools()).tools.map((t) => t.name);
    assert.ok(before.includes('everything__echo'));
    assert.ok(!before.includes(SAMPLING_TOOL), 'nobody offered sampling yet');
    const first = await waitReady(daemon, 'everything');

    const capable = await connectWs(cleanup, daemon, { name: 'with-sampling', capabilities: { sampling: {} } });
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

  test('a client with sampling arriving mid-call: the call finishes on the old process, then the server is renewed', async () => {
    const daemon = await startHostingDaemon(cleanup, () => ({ everything: everythingEntry() }), LISTS_WAIT);
    const plain = await connectWs(cleanup, daemon, { name: 'no-sampling' });
    await plain.client.listTools();
    const first = await waitReady(daemon, 'everything');
    // 2 s of work in flight on the process started without sampling.
    const long = plain.client.callTool(
      { name: 'everything__trigger-long-running-operation', arguments: { duration: 2, steps: 4 } },
      undefined,
      { timeout: 20_000 },
    );
    await waitFor(async () => (await serverReport(daemon, 'everything')).inflight > 0, 'the long call to be in flight');

    const capable = await connectWs(cleanup, daemon, { name: 'with-sampling', capabilities: { sampling: {} } });
    assert.equal((await serverReport(daemon, 'everything')).pid, first.pid, 'not renewed while a call is in flight');
    const done = await long;
    assert.ok(!done.isError, textOf(done));
    assert.match(textOf(done), /completed/i);
    await waitFor(async () => {
      const r = await serverReport(daemon, 'everything');
      return r.state === 'ready' && r.pid !== first.pid;
    }, 'the server renewed once idle');
    const tools = (await capable.client.listTools()).tools.map((t) => t.name);
    assert.ok(tools.includes(SAMPLING_TOOL), 'the sampling tool is offered now');
  });
});
