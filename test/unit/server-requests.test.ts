/**
 * The rule for server-to-client requests (src/mux/server-requests.ts) against a real MCP
 * server (the official SDK's McpServer, in memory) behind a real Upstream and ServerLink: a
 * request goes only to a session that certainly caused it, a tool seen asking is learned and
 * then runs one session at a time, and the gate (src/mux/session-gate.ts) is fair and bounded.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InMemoryTransport, McpServer, type CallToolResult } from '@modelcontextprotocol/server';
import { z } from 'zod';
import { RpcCode } from '../../src/protocol/codes.js';
import type { Answer } from '../../src/protocol/jsonrpc.js';
import { Cancellation } from '../../src/hosting/cancellation.js';
import { ServerLink } from '../../src/hosting/server-link.js';
import { MemoryLearnedTools, ServerRequests } from '../../src/mux/server-requests.js';
import { SessionContext, type SessionCore } from '../../src/mux/session-context.js';
import { SessionGate } from '../../src/mux/session-gate.js';
import { Upstream } from '../../src/hosting/upstream.js';

/** A server whose `ask` tool samples the client with its prompt; `slow` does not ask. */
function askingServer(): McpServer {
  const server = new McpServer({ name: 'asking', version: '1' });
  server.registerTool('ask', { inputSchema: { prompt: z.string() } }, async ({ prompt }, ctx) => {
    const result = await ctx.mcpReq.send({
      method: 'sampling/createMessage',
      params: { messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 10 },
    });
    return { content: [{ type: 'text', text: `answer: ${(result.content as { text?: string }).text ?? ''}` }] };
  });
  server.registerTool('slow', { inputSchema: {} }, async (): Promise<CallToolResult> => {
    await new Promise((resolve) => setTimeout(resolve, 200));
    return { content: [{ type: 'text', text: 'slow' }] };
  });
  return server;
}

interface Rig {
  requests: ServerRequests;
  server: Upstream;
  contexts: Map<string, SessionContext>;
  learned: MemoryLearnedTools;
  refused: string[];
  /** Opens a session whose client answers sampling with `<id>:<prompt>` after `holdMs`. */
  open(id: string, options?: { sampling?: boolean; holdMs?: number }): { context: SessionContext; asked: string[] };
  call(id: string, tool: string, args?: Record<string, unknown>): Promise<string>;
}

/** A hub side for contexts made outside a hub: it offers nothing and only hears the close. */
function quietCore(closed: () => void = () => undefined): SessionCore {
  const none = () => Promise.resolve(null);
  return {
    sees: () => true,
    call: none,
    subscribe: none,
    unsubscribe: none,
    levelsChanged: () => undefined,
    offer: () => undefined,
    closed,
  };
}

async function rig(asksClient: string[] = []): Promise<Rig> {
  const contexts = new Map<string, SessionContext>();
  const learned = new MemoryLearnedTools();
  const refused: string[] = [];
  const requests = new ServerRequests({ contexts, learned, requestTimeoutMs: 5_000, count: (reason) => refused.push(reason) });
  const server = new Upstream({
    name: 'asking',
    prefix: null,
    idleTimeoutMs: 0,
    asksClient,
    launch: async (wire) => {
      const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
      await askingServer().connect(serverSide);
      const link = new ServerLink('asking', clientSide, { capabilities: { sampling: {} } });
      wire(link);
      await link.start();
      return { link };
    },
  });
  server.onrequest = (request, context) => requests.answer(server, request, context);
  await server.connect();
  return {
    requests,
    server,
    contexts,
    learned,
    refused,
    open(id, options = {}) {
      const asked: string[] = [];
      const peer = {
        send: () => true,
        async request(_method: string, params: Record<string, unknown> | undefined): Promise<Answer> {
          const text = (params?.messages as { content: { text: string } }[])[0]?.content.text ?? '';
          asked.push(text);
          await new Promise((resolve) => setTimeout(resolve, options.holdMs ?? 20));
          return { result: { model: 'm', role: 'assistant', content: { type: 'text', text: `${id}:${text}` } } };
        },
      };
      const context = new SessionContext(
        id,
        {},
        peer,
        quietCore(() => contexts.delete(id)),
      );
      context.initialized({ name: `client ${id}` }, options.sampling === false ? {} : { sampling: {} });
      contexts.set(id, context);
      return { context, asked };
    },
    async call(id, tool, args = {}) {
      const context = contexts.get(id);
      assert.ok(context);
      const outcome = await requests.call(context, server, 'tools/call', { name: tool, arguments: args }, { timeoutMs: 10_000 });
      assert.ok(outcome && 'result' in outcome, JSON.stringify(outcome));
      const result = outcome.result as CallToolResult;
      return result.content.map((c) => (c.type === 'text' ? c.text : '')).join('');
    },
  };
}

test('a request while one session has calls in flight goes to it; with two it is refused, learned, and never guessed again', async () => {
  const r = await rig();
  const a = r.open('A');
  const b = r.open('B');

  // Both in flight at once, nothing learned yet: whoever asks first cannot be told apart.
  const first = await Promise.all([r.call('A', 'ask', { prompt: 'a1' }), r.call('B', 'ask', { prompt: 'b1' })]);
  assert.ok(
    first.some((text) => /requester could not be determined/.test(text)),
    `one of two overlapping calls is refused: ${first.join(' | ')}`,
  );
  assert.ok(r.refused.includes('origin_unknown'));
  for (const text of first) assert.ok(!/answer: B:a1|answer: A:b1/.test(text), `a window answered the other's prompt: ${text}`);
  assert.deepEqual([...r.learned.tools('asking')], ['ask'], 'the tool was learned');

  // From now on calls of the learned tool run one session at a time: every answer its own.
  const rounds = await Promise.all(
    ['A', 'B', 'A', 'B', 'A', 'B'].map((id, i) => r.call(id, 'ask', { prompt: `${id}-${i}` }).then((text) => ({ id, i, text }))),
  );
  for (const { id, i, text } of rounds) assert.equal(text, `answer: ${id}:${id}-${i}`);
  assert.equal(await r.call('A', 'ask', { prompt: 'solo' }), 'answer: A:solo');
  assert.ok(!a.asked.some((p) => p.startsWith('B')), `A was asked B's prompt: ${a.asked.join(', ')}`);
  assert.ok(!b.asked.some((p) => p.startsWith('A')), `B was asked A's prompt: ${b.asked.join(', ')}`);
  await r.server.close();
});

test("a declared tool is serialised from the first call; another window's other tools are not held, and make its requests uncertain meanwhile", async () => {
  const r = await rig(['ask']);
  const a = r.open('A', { holdMs: 300 });
  const b = r.open('B', { holdMs: 300 });
  assert.deepEqual(await Promise.all([r.call('A', 'ask', { prompt: 'x' }), r.call('B', 'ask', { prompt: 'y' })]), [
    'answer: A:x',
    'answer: B:y',
  ]);
  assert.deepEqual(r.refused, [], 'serialised from the first call: nothing refused');
  assert.deepEqual(r.requests.asksClient(r.server), ['ask']);

  // B's call to a tool not known to ask runs beside A's asking call, not held by the gate; while
  // it is in flight, A's request could be B's: refused, never guessed.
  let slowDoneMs = 0;
  const started = Date.now();
  const [asked, slow] = await Promise.all([
    r.call('A', 'ask', { prompt: 'during slow' }),
    r.call('B', 'slow').then((text) => ((slowDoneMs = Date.now() - started), text)),
  ]);
  assert.equal(slow, 'slow');
  assert.ok(slowDoneMs < 1_000, `the other tool waited for the gate (${slowDoneMs} ms)`);
  assert.match(asked, /requester could not be determined/);
  assert.deepEqual(r.refused, ['origin_unknown']);
  assert.deepEqual(a.asked, ['x']);
  assert.deepEqual(b.asked, ['y']);
  await r.server.close();
});

test('a window without the capability is told at once, and nobody else is asked', async () => {
  const r = await rig(['ask']);
  const capable = r.open('A');
  r.open('B', { sampling: false });
  const text = await r.call('B', 'ask', { prompt: 'from B' });
  assert.match(text, /the client \(client B\) did not declare the sampling capability/);
  assert.deepEqual(capable.asked, []);
  await r.server.close();
});

test('the gate lets one session at a time through, in arrival order, and a holder cannot keep it while others wait', async () => {
  const gate = new SessionGate();
  const order: string[] = [];
  const enter = async (session: string, label: string, cancel?: Cancellation, timeoutMs = 5_000) => {
    const entry = await gate.enter(session, cancel, timeoutMs);
    order.push(`${label}:${entry}`);
    return entry;
  };
  assert.equal(await enter('A', 'a1'), 'entered');
  assert.equal(await enter('A', 'a2'), 'entered', 'the holder runs concurrently while nobody waits');
  const b1 = enter('B', 'b1');
  const a3 = enter('A', 'a3'); // queued behind B: B was first
  const c1Cancel = new Cancellation();
  const c1 = enter('C', 'c1', c1Cancel);
  const b2 = enter('B', 'b2');
  const d1 = enter('D', 'd1', undefined, 50);
  c1Cancel.abort('cancelled by the client');
  assert.equal(await c1, 'cancelled');
  assert.equal(await d1, 'timeout');
  gate.leave();
  assert.equal(gate.heldBy, 'A', 'A still has a call running');
  gate.leave();
  assert.deepEqual(await Promise.all([b1, b2]), ['entered', 'entered'], 'B takes the gate with both its waiting calls');
  assert.equal(gate.heldBy, 'B');
  gate.leave();
  gate.leave();
  assert.equal(await a3, 'entered');
  assert.deepEqual(order, ['a1:entered', 'a2:entered', 'c1:cancelled', 'd1:timeout', 'b1:entered', 'b2:entered', 'a3:entered']);
  gate.leave();
  assert.equal(gate.heldBy, undefined);
  assert.equal(gate.waitingCount, 0);
});

test('a request naming a progress token goes to its call, whoever else is in flight', async () => {
  const contexts = new Map<string, SessionContext>();
  const requests = new ServerRequests({ contexts, learned: new MemoryLearnedTools(), requestTimeoutMs: 1_000 });
  const asked: string[] = [];
  for (const id of ['A', 'B']) {
    const context = new SessionContext(
      id,
      {},
      { request: () => (asked.push(id), Promise.resolve({ result: { ok: id } })), send: () => true },
      quietCore(),
    );
    context.initialized(undefined, { elicitation: {} });
    contexts.set(id, context);
  }
  const server = new Upstream({ name: 's', prefix: null, idleTimeoutMs: 0, launch: () => Promise.reject(new Error('not started')) });
  const request = { jsonrpc: '2.0' as const, id: 7, method: 'elicitation/create', params: {} };
  const answer = await requests.answer(server, request, { callers: ['A', 'B'], origin: 'B' });
  assert.deepEqual(answer, { result: { ok: 'B' } });
  const unknown = await requests.answer(server, request, { callers: ['A', 'B'], origin: undefined });
  assert.ok('error' in unknown && unknown.error.code === RpcCode.ORIGIN_UNKNOWN, JSON.stringify(unknown));
  const none = await requests.answer(server, request, { callers: [], origin: undefined });
  assert.ok('error' in none && /no window has a call in flight/.test(none.error.message), JSON.stringify(none));
  assert.deepEqual(asked, ['B']);
});
