/**
 * Ids sent to a shared server cannot be guessed from one another: a server that answers with
 * its neighbour's id (an off-by-one bug) must never hand one window another window's answer.
 * Unit tests of the id allocation and of ServerLink over an in-memory transport, then the real
 * daemon with two real shim windows and a fixture server that answers every call with id+1 and
 * id-1 before its own id.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { InMemoryTransport, type JSONRPCMessage } from '@modelcontextprotocol/client';
import { Cancellation } from '../src/hosting/cancellation.js';
import { MAX_NUMBER_ID, unusedId } from '../src/hosting/request-ids.js';
import { ServerLink } from '../src/hosting/server-link.js';
import { Cleanup, ROOT, logPath, readJsonLines, textOf, waitFor } from './helpers.js';
import { rawRequest } from './fixtures/http-client.js';
import { startHostingDaemon } from './fixtures/hosted-servers.js';
import { connectWs } from './fixtures/ws-client.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const WRONG_IDS_SCRIPT = join(ROOT, 'dist', 'test', 'fixtures', 'hosted-wrong-ids.js');

test('unusedId keeps the type of the id it stands for: a number in 1..2^31-1, or a string; never one in use', () => {
  const inUse = new Set<string | number>();
  for (let i = 0; i < 2_000; i++) {
    const n = unusedId(41, (id) => inUse.has(id));
    assert.equal(typeof n, 'number');
    assert.ok(Number.isInteger(n) && (n as number) >= 1 && (n as number) <= MAX_NUMBER_ID, String(n));
    assert.ok(!inUse.has(n), 'an id in use was given again');
    inUse.add(n);
    const s = unusedId('client-7', (id) => inUse.has(id));
    assert.equal(typeof s, 'string');
    assert.ok(!inUse.has(s));
    inUse.add(s);
  }
  // Neighbours are not predictable: of 2000 numbers, consecutive ones are not 1 apart.
  const numbers = [...inUse].filter((id): id is number => typeof id === 'number');
  const adjacent = numbers.filter((n, i) => i > 0 && Math.abs(n - (numbers[i - 1] as number)) === 1).length;
  assert.ok(adjacent < 5, `${adjacent} of 2000 ids were their predecessor +-1`);
  // An id drawn again while in use is drawn anew, never given twice.
  const draws = [7, 7, 7, 9];
  assert.equal(
    unusedId(
      1,
      (id) => id === 7,
      () => draws.shift() ?? 0,
    ),
    9,
  );
});

/** A link over an in-memory pair whose server side is scripted by `serve`; started. */
async function scriptedLink(serve: (message: JSONRPCMessage, reply: (m: unknown) => void) => void) {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const reply = (m: unknown) => void serverSide.send(m as JSONRPCMessage);
  serverSide.onmessage = (message) => {
    const m = message as { id?: unknown; method?: string };
    if (m.method === 'initialize') {
      reply({
        jsonrpc: '2.0',
        id: m.id,
        result: { protocolVersion: '2025-06-18', capabilities: {}, serverInfo: { name: 's', version: '1' } },
      });
      return;
    }
    serve(message, reply);
  };
  await serverSide.start();
  const link = new ServerLink('scripted', clientSide);
  const strays: unknown[] = [];
  link.onstray = (id) => strays.push(id);
  await link.start();
  return { link, strays };
}

test('ServerLink: answers under a neighbour id are dropped and reported, each call gets its own; string ids stay strings', async () => {
  const seen: unknown[] = [];
  const { link, strays } = await scriptedLink((message, reply) => {
    const m = message as { id?: number | string; params?: { arguments?: { who?: string } } };
    if (m.id === undefined) return;
    seen.push(m.id);
    const result = { content: [{ type: 'text', text: m.params?.arguments?.who }] };
    const wrong = typeof m.id === 'number' ? [m.id + 1, m.id - 1] : [`${m.id}0`, m.id.slice(0, -1)];
    setTimeout(() => {
      for (const id of wrong) reply({ jsonrpc: '2.0', id, result });
      setTimeout(() => reply({ jsonrpc: '2.0', id: m.id, result }), 2);
    }, 2);
  });
  const calls = [];
  for (let i = 0; i < 50; i++) {
    const who = `caller-${i}`;
    const related = i % 2 === 0 ? i : `client-${i}`;
    calls.push(link.call('tools/call', { name: 't', arguments: { who } }, { timeoutMs: 5_000, related }).then((o) => ({ who, o })));
  }
  for (const { who, o } of await Promise.all(calls)) {
    assert.ok(o && 'result' in o, JSON.stringify(o));
    assert.equal((o.result.content as { text: string }[])[0]?.text, who, 'a call got another call’s answer');
  }
  assert.equal(seen.filter((id) => typeof id === 'number').length, 25, 'a number id for each number client id');
  assert.equal(seen.filter((id) => typeof id === 'string').length, 25, 'a string id for each string client id');
  assert.equal(strays.length, 100, 'every wrong answer was reported as stray');
  await link.close();
});

test('ServerLink: progress and cancellation reach the server under the call’s own id, string or number', async () => {
  const cancelled: unknown[] = [];
  const received: { id: unknown; token: unknown }[] = [];
  const { link, strays } = await scriptedLink((message, reply) => {
    const m = message as { id?: number | string; method?: string; params?: Record<string, unknown> };
    if (m.method === 'notifications/cancelled') {
      cancelled.push(m.params?.requestId);
      // A late answer to a cancelled call is no stray: the server may have been answering already.
      reply({ jsonrpc: '2.0', id: m.params?.requestId, result: { late: true } });
      return;
    }
    if (m.id === undefined) return;
    const token = (m.params?._meta as { progressToken?: unknown } | undefined)?.progressToken;
    received.push({ id: m.id, token });
    if (m.params?.hold === true) return;
    reply({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress: 1 } });
    setTimeout(() => reply({ jsonrpc: '2.0', id: m.id, result: { done: true } }), 2);
  });
  for (const related of [3, 'three']) {
    const progress: unknown[] = [];
    const outcome = await link.call(
      'tools/call',
      { name: 't', _meta: { progressToken: 'client-token' } },
      { timeoutMs: 5_000, related, onProgress: (p) => progress.push(p.progress) },
    );
    assert.deepEqual(outcome, { result: { done: true } });
    assert.deepEqual(progress, [1]);
    const sent = received.at(-1);
    assert.equal(typeof sent?.id, typeof related);
    assert.equal(sent?.token, sent?.id, 'the progress token sent is the call’s own id');
    const cancel = new Cancellation();
    const held = link.call('tools/call', { name: 't', hold: true }, { timeoutMs: 5_000, related, cancel });
    await waitFor(() => received.length > 0 && received.at(-1)?.token === undefined, 'the held call to arrive');
    cancel.abort('the user pressed stop');
    assert.equal(await held, null);
    await waitFor(() => cancelled.length > 0 && cancelled.at(-1) === received.at(-1)?.id, 'the cancellation under the call’s id');
  }
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(strays, [], 'late answers to cancelled calls are not strays');
  await link.close();
});

test('two windows calling a server that answers with its neighbours’ ids: no window ever sees the other’s answer; the drops are logged once', async () => {
  const daemon = await startHostingDaemon(cleanup, () => ({ wrong: { command: process.execPath, args: [WRONG_IDS_SCRIPT] } }));
  // Windows over direct WebSockets: the ids a hosted server sees are the daemon's, whatever carries the window.
  const windows = await Promise.all(['x', 'y'].map((name) => connectWs(cleanup, daemon, { name: `window-${name}` })));
  const CALLS = 40;
  let crossed = 0;
  const seen: string[] = [];
  await Promise.all(
    windows.map(async ({ client }, w) => {
      const name = w === 0 ? 'x' : 'y';
      await Promise.all(
        Array.from({ length: CALLS }, async (_, i) => {
          const caller = `${name}-${i}`;
          const result = await client.callTool({ name: 'wrong__whoami', arguments: { caller } });
          const text = textOf(result);
          if (text !== caller) {
            crossed++;
            seen.push(`${caller} got ${text}`);
          }
        }),
      );
    }),
  );
  assert.equal(crossed, 0, `${crossed} of ${2 * CALLS} answers crossed: ${seen.slice(0, 5).join('; ')}`);

  // Each call drew two wrong answers; every one was dropped, counted, and logged once for the server.
  const strays = await waitFor(async () => {
    const res = await rawRequest(daemon.port, { method: 'GET', path: '/metrics', headers: { authorization: `Bearer ${daemon.token}` } });
    const n = Number(/^exai_ws_rejections_total\{reason="stray_answer"\} (\d+)$/m.exec(res.body)?.[1] ?? 0);
    return n >= 2 * 2 * CALLS ? n : null;
  }, 'every dropped answer counted');
  assert.equal(strays, 2 * 2 * CALLS);
  const lines = readJsonLines(logPath(daemon.home)).filter((l) => /matches no call/.test(String(l.msg)));
  assert.equal(lines.length, 1, `one log line for the dropped answers: ${JSON.stringify(lines)}`);
  assert.equal(lines[0]?.server, 'wrong');
});
