/**
 * Issue 21, memory: clients that hang up on large streamed results must not grow the daemon.
 *
 * A real daemon hosts test/fixtures/hosted-bigresult.ts, whose tool sends one progress
 * notification and then a 16 MB result. 60 HTTP clients (raw requests over 127.0.0.1, 20 at a
 * time) each initialize, call it with a progress token, read the first SSE event (the progress)
 * and hang up. The daemon must keep under a fixed peak RSS (VmHWM), stay up, answer a client
 * that resumes the lost stream with the error for the dropped result (not hang), and serve a
 * new window afterwards.
 *
 * And the rule for messages held for detached sessions, on Outboxes: bounded together, the
 * session holding the most ends first.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { Metrics } from '../src/daemon/files/metrics.js';
import { Outbox } from '../src/daemon/sessions/outbox.js';
import { ByteBudget } from '../src/transport/byte-budget.js';
import type { Transport } from '../src/transport/transport.js';
import { Cleanup, ROOT, getHealth, pool, textOf, waitFor, type DaemonHandle } from './helpers.js';
import { connectWs } from './fixtures/ws-client.js';
import { startHostingDaemon } from './fixtures/hosted-servers.js';
import { openGetStream, openRawStream, postHeaders, rawInitialize, type RawStream } from './fixtures/http-client.js';

const BIGRESULT_SCRIPT = join(ROOT, 'dist', 'test', 'fixtures', 'hosted-bigresult.js');
const CLIENTS = 60;
const AT_ONCE = 20;
/** The fixed bound the issue names for this machine: 60 x 16 MB kept would be about 1 GB. */
const RSS_LIMIT_BYTES = 768 * 1024 * 1024;
const PROTOCOL = '2025-06-18';

/** VmHWM (peak) and VmRSS of a process, in bytes, from /proc. */
function memoryOf(pid: number): { peak: number; rss: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { peak: kb('VmHWM'), rss: kb('VmRSS') };
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;

interface HungUp {
  sessionId: string;
  requestId: number;
  /** The id of the one event the client read (the progress notification). */
  eventId: string;
}

/** One client: initialize, call `big` with a progress token, read the first event, hang up. */
async function hangUpAfterFirstEvent(daemon: DaemonHandle, n: number): Promise<HungUp> {
  const { sessionId } = await rawInitialize(daemon);
  assert.ok(sessionId, `client ${n}: initialize gave a session`);
  const requestId = 1000 + n;
  const stream: RawStream = await openRawStream(daemon.port, {
    headers: postHeaders(daemon.token, { 'mcp-session-id': sessionId, 'mcp-protocol-version': PROTOCOL }),
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: requestId,
      method: 'tools/call',
      params: { name: 'big__big', arguments: {}, _meta: { progressToken: `p${n}` } },
    }),
  });
  try {
    assert.equal(stream.status, 200);
    const first = await stream.next(30_000);
    assert.equal(first.message.method, 'notifications/progress', `client ${n}: the first event is the progress`);
    assert.ok(first.id, `client ${n}: the event has an id to resume from`);
    return { sessionId, requestId, eventId: first.id };
  } finally {
    stream.close();
  }
}

test('60 HTTP clients hanging up on 16 MB results: the daemon stays under 768 MB, stays up, resumes with an error and serves a new window', async (t) => {
  const cleanup = new Cleanup();
  t.after(() => cleanup.run());
  const daemon = await startHostingDaemon(cleanup, () => ({ big: { command: process.execPath, args: [BIGRESULT_SCRIPT] } }));

  // Let the hosted server start (lazily, at the first call) with a small result.
  // Windows are direct WebSocket clients: the daemon's memory is the property, not the shim.
  const warm = await connectWs(cleanup, daemon, { name: 'warm-up' });
  const small = await warm.client.callTool({ name: 'big__big', arguments: { bytes: 10, delayMs: 0 } });
  assert.equal(textOf(small), 'x'.repeat(10));
  await warm.client.close();
  const before = memoryOf(daemon.pid);

  let peakSeen = before.peak;
  const sampler = setInterval(() => {
    try {
      peakSeen = Math.max(peakSeen, memoryOf(daemon.pid).rss);
    } catch {
      // the process is gone: the assertions below say so
    }
  }, 50);
  let hungUp: HungUp[];
  try {
    hungUp = await pool(CLIENTS, AT_ONCE, (n) => hangUpAfterFirstEvent(daemon, n));
    // Every call finishes at the daemon (the results come and are dropped or kept).
    await waitFor(async () => (await getHealth(daemon)).inflight === 0, 'every call to finish', 120_000, 200);
  } finally {
    clearInterval(sampler);
  }
  assert.equal(daemon.proc.exitCode, null, 'the daemon is still running');
  const after = memoryOf(daemon.pid);
  t.diagnostic(
    `daemon memory: before ${mb(before.rss)} RSS; after ${CLIENTS} hung-up 16 MB results: peak (VmHWM) ${mb(after.peak)}, RSS now ${mb(after.rss)} (sampled max ${mb(peakSeen)})`,
  );
  assert.ok(after.peak < RSS_LIMIT_BYTES, `peak RSS ${mb(after.peak)} must stay under ${mb(RSS_LIMIT_BYTES)}`);

  // A client that resumes its lost stream gets the error for the result that was not kept, then the end.
  const lost = hungUp[0]!;
  const resumed = await openGetStream(daemon, lost.sessionId, PROTOCOL, lost.eventId);
  try {
    assert.equal(resumed.status, 200);
    const event = await resumed.next(5_000);
    const error = event.message.error as { code: number; message: string } | undefined;
    assert.equal(event.message.id, lost.requestId, 'the event answers the lost request');
    assert.equal(error?.code, -32603);
    assert.match(error?.message ?? '', /^the result \(\d+ bytes\) was too large to keep for resumption \(limit \d+ bytes\)$/);
    await assert.rejects(resumed.next(5_000), /the stream ended/, 'the resumed stream ends after the response');
  } finally {
    resumed.close();
  }

  // A new window works.
  const window = await connectWs(cleanup, daemon, { name: 'after' });
  const answer = await window.client.callTool({ name: 'big__big', arguments: { bytes: 5, delayMs: 0 } });
  assert.equal(textOf(answer), 'xxxxx');
  assert.equal(daemon.proc.exitCode, null, 'the daemon is still running');
});

test('messages held for detached sessions are bounded together: past the total, the session holding the most ends', () => {
  const budget = new ByteBudget(12_000);
  const ended: string[] = [];
  const outboxes = new Map<string, Outbox>();
  const detached = (name: string) => {
    const outbox = new Outbox({
      holdMaxBytes: 10_000,
      metrics: new Metrics(),
      logger: pino({ level: 'silent' }),
      sessionId: name,
      // What the session manager does: the session ends, and its outbox with it.
      overflow: () => {
        ended.push(name);
        outbox.close();
      },
      holdBudget: budget,
    });
    outboxes.set(name, outbox);
    return outbox;
  };
  const frame = (n: number) =>
    JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { data: `${n}:${'h'.repeat(950)}` } });
  const a = detached('a');
  const b = detached('b');
  for (let i = 0; i < 8; i++) a.send(frame(i));
  for (let i = 0; i < 3; i++) b.send(frame(i));
  assert.deepEqual(ended, [], 'each within its own limit and all within the total');
  const together = budget.usedBytes;
  assert.ok(together > 10_000 && together <= 12_000, `${together} bytes held`);
  // b holds more now: past the total, a (holding the most) ends, not b.
  b.send(frame(3));
  b.send(frame(4));
  assert.deepEqual(ended, ['a']);
  assert.ok(budget.usedBytes <= 12_000 && budget.usedBytes > 4_000, `${budget.usedBytes} bytes held: b's frames`);
  // b's client comes back: its held frames go out, in order, and leave the budget.
  const written: string[] = [];
  const client: Transport = {
    kind: 'ws',
    open: true,
    bufferedBytes: 0,
    send: (text) => written.push(text),
    pauseInput: () => undefined,
    resumeInput: () => undefined,
    close: () => undefined,
    onmessage: undefined,
    onclose: undefined,
  };
  b.attach(client);
  assert.equal(written.length, 5);
  assert.equal(budget.usedBytes, 0);
});
