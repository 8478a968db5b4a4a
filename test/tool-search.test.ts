/**
 * Tool search (issue 25): a window of a `"search": true` profile lists exactly `search_tools` and
 * `call_tool`, finds the hosted servers' tools by what a person types (the committed query set,
 * against the real servers), and `call_tool` behaves as the direct call: it changes the shared
 * server, delivers progress, stops on cancellation, and a server's sampling question reaches the
 * calling window only.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { Client as ModernClient, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { Cleanup, ROOT, connectShim, makeHome, startDaemon, textOf, waitFor, type DaemonHandle } from './helpers.js';
import { everythingEntry, memoryEntry, serverReport, waitReady } from './fixtures/hosted-servers.js';
import { connectWs } from './fixtures/ws-client.js';

const FILESYSTEM = join(ROOT, 'node_modules', '@modelcontextprotocol', 'server-filesystem', 'dist', 'index.js');
const QUERIES = JSON.parse(readFileSync(join(ROOT, 'test', 'fixtures', 'tool-queries.json'), 'utf8')) as {
  query: string;
  expect: string[];
}[];
const SAMPLING_TOOL = 'everything__trigger-sampling-request';

const cleanup = new Cleanup();
after(() => cleanup.run());

let daemon: DaemonHandle;
/** The search window (through the real shim) and a full window beside it; both can be asked for sampling. */
let searcher: Client;
let full: Client;
const sampled = { searcher: 0, full: 0 };

interface Found {
  tools: { name: string; description?: string; inputSchema?: unknown }[];
}

/**
 * Watches a client's transport (below the SDK): `before(token)` is the progress of that token
 * that reached the client before the response to the request that carried the token.
 */
function watchProgress(client: Client): {
  messages: Record<string, unknown>[];
  before(token: string): Record<string, unknown>[];
  stop(): void;
} {
  const transport = client.transport;
  assert.ok(transport);
  const onmessage = transport.onmessage;
  const send = transport.send.bind(transport);
  const messages: Record<string, unknown>[] = [];
  const sent: Record<string, unknown>[] = [];
  transport.onmessage = (message, extra) => {
    messages.push(message);
    onmessage?.(message, extra);
  };
  transport.send = (message, options) => {
    sent.push(message);
    return send(message, options);
  };
  const tokenOf = (m: Record<string, unknown>) =>
    ((m.params as { _meta?: { progressToken?: unknown } } | undefined)?._meta ?? {}).progressToken;
  return {
    messages,
    before(token) {
      const request = sent.find((m) => tokenOf(m) === token);
      const progress: Record<string, unknown>[] = [];
      for (const m of messages) {
        if (m.method === undefined && m.id === request?.id) break;
        const params = m.params as Record<string, unknown> | undefined;
        if (m.method === 'notifications/progress' && params?.progressToken === token) progress.push(params);
      }
      return progress;
    },
    stop() {
      transport.onmessage = onmessage;
      transport.send = send;
    },
  };
}

async function search(query: string, limit?: number): Promise<Found> {
  const result = await searcher.callTool({ name: 'search_tools', arguments: limit === undefined ? { query } : { query, limit } });
  assert.ok(!result.isError, textOf(result));
  return result.structuredContent as Found;
}

describe('tool search', { concurrency: true }, () => {
  before(async () => {
    const home = makeHome(cleanup);
    const files = join(home, 'files');
    mkdirSync(files);
    const config = {
      mcpServers: {
        everything: everythingEntry({ start: 'eager' }),
        memory: memoryEntry(home, { start: 'eager' }),
        fs: { command: process.execPath, args: [FILESYSTEM, files], start: 'eager' },
      },
      profiles: { find: { search: true } },
    };
    writeFileSync(join(home, 'config.json'), JSON.stringify(config));
    daemon = await startDaemon(cleanup, { home, env: { EXAI_WS_LIST_WAIT_MS: '0' } });
    for (const name of ['everything', 'memory', 'fs']) await waitReady(daemon, name, 30_000);
    const sampling = { capabilities: { sampling: {} } };
    searcher = (await connectShim(cleanup, daemon, { name: 'search-window', args: ['--profile', 'find'], ...sampling })).client;
    full = (await connectWs(cleanup, daemon, { name: 'full-window', ...sampling })).client;
    for (const [who, client] of [
      ['searcher', searcher],
      ['full', full],
    ] as const) {
      client.setRequestHandler(CreateMessageRequestSchema, () => {
        sampled[who]++;
        return { role: 'assistant', content: { type: 'text', text: `sampled by ${who}` }, model: 'test-model' };
      });
    }
  });

  test('lists exactly search_tools and call_tool, under 5% of the full list', async (t) => {
    const listed = await searcher.listTools();
    assert.deepEqual(listed.tools.map((t) => t.name).sort(), ['call_tool', 'search_tools']);
    const whole = await full.listTools();
    const ratio = JSON.stringify(listed.tools).length / JSON.stringify(whole.tools).length;
    t.diagnostic(`search list ${JSON.stringify(listed.tools).length} B, full list ${JSON.stringify(whole.tools).length} B`);
    assert.ok(whole.tools.length > 30, `the full window sees the three servers (${whole.tools.length} tools)`);
    assert.ok(ratio < 0.05, `the search list is ${(ratio * 100).toFixed(1)}% of the full list`);
  });

  test('the query set finds its tool in the top 3 at least 90% of the time', async (t) => {
    let top1 = 0;
    let top3 = 0;
    const missed: string[] = [];
    for (const { query, expect } of QUERIES) {
      const names = (await search(query, 3)).tools.map((tool) => tool.name);
      if (expect.includes(names[0] ?? '')) top1++;
      if (names.some((n) => expect.includes(n))) top3++;
      else missed.push(`${query} -> ${names.join(', ')}`);
    }
    t.diagnostic(`top-1 ${top1}/${QUERIES.length}, top-3 ${top3}/${QUERIES.length}; missed: ${missed.join(' | ')}`);
    assert.ok(QUERIES.length >= 20);
    assert.ok(top3 / QUERIES.length >= 0.9, `top-3 ${top3}/${QUERIES.length}: ${missed.join(' | ')}`);
  });

  test('a found tool comes with its input schema', async () => {
    const found = await search('store a new entity in the knowledge graph');
    const tool = found.tools.find((x) => x.name === 'memory__create_entities');
    assert.ok(tool, JSON.stringify(found.tools.map((x) => x.name)));
    assert.equal((tool.inputSchema as { type?: string }).type, 'object');
  });

  test('call_tool of a memory tool changes the shared server: another window sees it', async () => {
    const entity = { name: `SearchEntity${process.pid}`, entityType: 'test', observations: ['made through call_tool'] };
    const made = await searcher.callTool({
      name: 'call_tool',
      arguments: { name: 'memory__create_entities', arguments: { entities: [entity] } },
    });
    assert.ok(!made.isError, textOf(made));
    const graph = await full.callTool({ name: 'memory__read_graph', arguments: {} });
    assert.match(textOf(graph), new RegExp(entity.name));
  });

  test('call_tool of a long-running tool delivers its progress, and a cancellation stops it', async () => {
    // A token of the test's own, watched on the wire: the v1 SDK client runs a notification a
    // turn after a response read in the same chunk, so its own onprogress misses progress that
    // arrives just before the result (under load, all of it): the daemon's part is the wire.
    const wire = watchProgress(searcher);
    const params = { duration: 1, steps: 3 };
    const done = await searcher.callTool(
      {
        name: 'call_tool',
        arguments: { name: 'everything__trigger-long-running-operation', arguments: params },
        _meta: { progressToken: 'lr-1' },
      },
      undefined,
      { timeout: 30_000 },
    );
    wire.stop();
    assert.ok(!done.isError, textOf(done));
    const mine = wire.before('lr-1');
    assert.ok(mine.length >= 2, `progress with the call's own token, before its result: ${JSON.stringify(wire.messages)}`);
    assert.deepEqual(
      mine.map((p) => p.progress),
      mine.map((_, i) => i + 1),
      'in order, from the first step',
    );

    const controller = new AbortController();
    const cut = searcher.callTool(
      { name: 'call_tool', arguments: { name: 'everything__trigger-long-running-operation', arguments: { duration: 30, steps: 30 } } },
      undefined,
      { signal: controller.signal, onprogress: () => controller.abort(), timeout: 60_000 },
    );
    await assert.rejects(cut, /abort/i);
    // The daemon passed the cancellation on and forgot the call: nothing of it stays in flight.
    await waitFor(async () => (await serverReport(daemon, 'everything')).inflight === 0, 'the cancelled call gone from everything', 15_000);
  });

  test('call_tool of a tool that asks for sampling reaches the calling window only', async () => {
    // Both windows declared sampling: the server is renewed to be offered it, then lists its sampling tool.
    await waitFor(async () => (await full.listTools()).tools.some((x) => x.name === SAMPLING_TOOL), 'the sampling tool listed', 30_000);
    const before = { ...sampled };
    const result = await searcher.callTool({
      name: 'call_tool',
      arguments: { name: SAMPLING_TOOL, arguments: { prompt: 'hello', maxTokens: 10 } },
    });
    assert.match(textOf(result), /sampled by searcher/);
    assert.equal(sampled.searcher, before.searcher + 1);
    assert.equal(sampled.full, before.full, 'the other window was not asked');
  });

  test('a 2026-07-28 client over /mcp?profile= searches and calls the same way', async () => {
    const transport = new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${daemon.port}/mcp?profile=find`), {
      requestInit: { headers: { authorization: `Bearer ${daemon.token}` } },
    });
    const modern = new ModernClient({ name: 'modern-search', version: '1.0.0' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } });
    cleanup.add(() => modern.close());
    await modern.connect(transport);
    const listed = await modern.listTools();
    assert.deepEqual(listed.tools.map((t) => t.name).sort(), ['call_tool', 'search_tools']);
    const found = await modern.callTool({ name: 'search_tools', arguments: { query: 'echo a message back' } });
    assert.ok((found.structuredContent as Found).tools.some((t) => t.name === 'everything__echo'));
    const echoed = await modern.callTool({
      name: 'call_tool',
      arguments: { name: 'everything__echo', arguments: { message: 'modern hi' } },
    });
    assert.match(JSON.stringify(echoed.content), /modern hi/);
  });

  test('call_tool errors are those of the direct call', async () => {
    await assert.rejects(
      searcher.callTool({ name: 'call_tool', arguments: { name: 'memory__no_such_tool', arguments: {} } }),
      /Unknown tool/,
    );
    const bad = await searcher.callTool({ name: 'call_tool', arguments: { arguments: {} } });
    assert.equal(bad.isError, true, 'no name: the tool says what is missing');
    const found = await search('zzzz qqqq');
    assert.deepEqual(found.tools, []);
  });
});
