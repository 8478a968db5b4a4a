/**
 * Daemon lifecycle end to end, against real daemon processes: stale address cards (the
 * single-instance lock is in test/files.test.ts), session resume and takeover, the in-flight limit and queue,
 * cancellation, graceful shutdown (SIGTERM and `exai-ws stop`), `exai-ws status`, heartbeat.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import WebSocket from 'ws';
import { readAddressCard } from '../src/local/files.js';
import type { HealthReport } from '../src/local/health.js';
import {
  baseEnv,
  Cleanup,
  CLI,
  closed,
  closedPort,
  getHealth,
  makeHome,
  nextJson,
  toolText,
  openSession,
  openSocket,
  sendHello,
  startDaemon,
  waitFor,
  type DaemonHandle,
  within,
} from './helpers.js';
import { cliHere } from './fixtures/cli-here.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

type Json = Record<string, unknown>;

function pidPath(home: string): string {
  return join(home, 'logs', 'ws_daemon.pid');
}

function send(ws: WebSocket, message: Json): void {
  ws.send(JSON.stringify({ jsonrpc: '2.0', ...message }));
}

function callTool(ws: WebSocket, id: number, name: string, args: Json, meta?: Json): void {
  send(ws, { id, method: 'tools/call', params: { name, arguments: args, ...(meta ? { _meta: meta } : {}) } });
}

/** Waits until the daemon reports `n` requests in flight. */
function inflightIs(daemon: DaemonHandle, n: number): Promise<true> {
  return waitFor(async () => (await getHealth(daemon)).inflight === n || null, `${n} request(s) in flight`);
}

type SessionEntry = NonNullable<HealthReport['sessions']['list']>[number];

/** The daemon's `/health` entries for session `id` (one while it is open; more would be a duplicate). */
async function entriesOf(daemon: DaemonHandle, id: string): Promise<SessionEntry[]> {
  return ((await getHealth(daemon)).sessions.list ?? []).filter((s) => s.id === id);
}

/** Waits until session `id` has `n` requests in flight at the daemon (its own count, whoever else the daemon serves). */
function sessionInflightIs(daemon: DaemonHandle, id: string, n: number): Promise<true> {
  return waitFor(async () => (await entriesOf(daemon, id))[0]?.inflight === n || null, `${n} request(s) in flight in session ${id}`);
}

let shared: Promise<DaemonHandle> | undefined;
/**
 * One daemon for the tests whose property is their own session's (resume, takeover,
 * cancellation): each opens its own sessions under ids of its own and reads only its own
 * sessions' entries in /health, and nothing a test changes is seen by the others. Serving them
 * side by side is the daemon's everyday case (one daemon, many windows). Tests about limits,
 * stopping, the address card or timers set at start have their own.
 */
function sharedDaemon(): Promise<DaemonHandle> {
  shared ??= startDaemon(cleanup);
  return shared;
}

/** Runs `exai-ws <args>` to completion. */
function runCli(
  args: string[],
  env: Record<string, string>,
  timeoutMs = 20_000,
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, [CLI, ...args], { env: { ...baseEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<{ code: number | string; stdout: string; stderr: string }>((resolve) =>
    proc.once('close', (code, signal) => resolve({ code: code ?? signal ?? -1, stdout, stderr })),
  );
  cleanup.add(() => proc.kill('SIGKILL'));
  return within(done, timeoutMs, `exai-ws ${args.join(' ')}`);
}

function nonEmptyLines(text: string): string[] {
  return text.split('\n').filter((l) => l.trim().length > 0);
}

// Each test has its own home and daemon on port 0 (but those on sharedDaemon), so they run side by side:
// most of their time is waiting on processes and timers.
describe('daemon lifecycle', { concurrency: 3 }, () => {
  test('a stale address card is taken over: dead pid, or a live pid that does not answer /health', async () => {
    // A pid that surely belongs to no process: a child that has already exited.
    const dead = spawn(process.execPath, ['-e', '']);
    await within(new Promise((resolve) => dead.once('exit', resolve)), 10_000, 'the short-lived child');
    assert.ok(dead.pid);
    const port = await closedPort();
    const stale = [
      { what: 'dead pid', pid: dead.pid },
      { what: 'live pid without /health', pid: process.pid },
    ];
    // Two homes, two daemons, side by side.
    await Promise.all(
      stale.map(async ({ what, pid }) => {
        const home = makeHome(cleanup);
        mkdirSync(join(home, 'logs'), { recursive: true });
        const card = { pid, host: '127.0.0.1', port, version: '0.0.0', started_at: new Date().toISOString() };
        writeFileSync(pidPath(home), `${JSON.stringify(card)}\n`);
        const daemon = await startDaemon(cleanup, { home }); // waits for a card with the new pid
        const now = readAddressCard(pidPath(home));
        assert.equal(now?.pid, daemon.proc.pid, `${what}: the card names the new daemon`);
        assert.notEqual(now?.port, port);
        assert.equal((await getHealth(daemon)).pid, daemon.proc.pid, `${what}: the new daemon answers`);
      }),
    );
  });

  test('a session resumed within the grace gets the replies held while it was detached, in order', async () => {
    const daemon = await sharedDaemon();
    const { ws: first, ack } = await openSession(cleanup, daemon, { sessionId: 'resume-test-1' });
    assert.equal(ack.session_id, 'resume-test-1');
    assert.equal(ack.resumed, false);

    // Long enough that a loaded machine still sees both in flight (at 500 ms it sometimes did not).
    callTool(first, 2, 'sleep', { ms: 1_500 });
    callTool(first, 3, 'progress', { steps: 2, interval_ms: 750 }, { progressToken: 'tok' });
    await sessionInflightIs(daemon, 'resume-test-1', 2); // both reached the daemon before the connection drops
    first.terminate();
    await closed(first);
    // Whatever the first socket got before it dropped (nothing, unless the machine is very slow).
    const received: Json[] = [];
    for (;;) {
      try {
        received.push(await nextJson(first, 1));
      } catch {
        break;
      }
    }
    await sessionInflightIs(daemon, 'resume-test-1', 0); // every reply was produced while detached
    assert.deepEqual(
      (await entriesOf(daemon, 'resume-test-1')).map((e) => e.state),
      ['detached'],
    );

    const second = await openSocket(cleanup, daemon);
    const again = await sendHello(second, { session_id: 'resume-test-1' });
    assert.equal(again.ok, true);
    assert.equal(again.session_id, 'resume-test-1');
    assert.equal(again.resumed, true);
    while (received.length < 4) received.push(await nextJson(second));

    const label = (m: Json) =>
      m.method === 'notifications/progress' ? `progress ${(m.params as Json).progress as number}` : `reply ${m.id as number}`;
    const order = received.map(label);
    assert.deepEqual([...order].sort(), ['progress 1', 'progress 2', 'reply 2', 'reply 3'], `got ${order.join(', ')}`);
    assert.ok(order.indexOf('progress 1') < order.indexOf('progress 2'), `progress out of order: ${order.join(', ')}`);
    assert.ok(order.indexOf('progress 2') < order.indexOf('reply 3'), `reply before its progress: ${order.join(', ')}`);
    for (const m of received.filter((m) => m.method === 'notifications/progress')) assert.equal((m.params as Json).progressToken, 'tok');
    assert.equal(toolText(received.find((m) => m.id === 2) ?? {}), 'slept 1500');
    assert.equal(toolText(received.find((m) => m.id === 3) ?? {}), 'done 2');
  });

  test('a second connection with an attached session id takes over: the first gets 4010', async () => {
    const daemon = await sharedDaemon();
    const { ws: first } = await openSession(cleanup, daemon, { sessionId: 'takeover-1' });
    // Long enough to outlast the takeover's hello on a loaded machine (at 300 ms the reply sometimes went to the first).
    callTool(first, 2, 'sleep', { ms: 1_500 });
    await sessionInflightIs(daemon, 'takeover-1', 1);
    const firstClosed = closed(first);

    const second = await openSocket(cleanup, daemon);
    const ack = await sendHello(second, { session_id: 'takeover-1' });
    assert.equal(ack.ok, true);
    assert.equal(ack.session_id, 'takeover-1');
    assert.equal((await firstClosed).code, 4010);

    // The request sent on the old connection is answered on the new one.
    const reply = await nextJson(second);
    assert.equal(reply.id, 2);
    assert.equal(toolText(reply), 'slept 1500');
    callTool(second, 3, 'echo', { text: 'taken over' });
    assert.equal(toolText(await nextJson(second)), 'taken over');
    // One session under that id, attached (the takeover made no second one).
    assert.deepEqual(
      (await entriesOf(daemon, 'takeover-1')).map((e) => e.state),
      ['attached'],
    );
  });

  test('in-flight limit and queue: past the queue a request gets -32010 at once, the rest complete', async () => {
    const daemon = await startDaemon(cleanup, { env: { EXAI_WS_BACKPRESSURE: '2', EXAI_WS_QUEUE_LIMIT: '3' } });
    const { ws } = await openSession(cleanup, daemon);
    for (let id = 11; id <= 16; id++) callTool(ws, id, 'sleep', { ms: 800 });

    const refused = await nextJson(ws);
    assert.equal(refused.id, 16, `the first answer must be the refusal, got ${JSON.stringify(refused)}`);
    const error = refused.error as { code: number; data?: { retry_after_ms?: unknown } };
    assert.equal(error.code, -32010);
    assert.equal(typeof error.data?.retry_after_ms, 'number');
    assert.ok((error.data?.retry_after_ms as number) > 0);

    // Sample /health while the five run, two at a time.
    const samples: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        samples.push((await getHealth(daemon)).inflight);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const replies: Json[] = [];
    try {
      while (replies.length < 5) replies.push(await nextJson(ws, 10_000));
    } finally {
      sampling = false;
      await sampler;
    }
    assert.deepEqual(replies.map((r) => r.id).sort(), [11, 12, 13, 14, 15]);
    for (const r of replies) assert.equal(toolText(r), 'slept 800', JSON.stringify(r));
    assert.equal(Math.max(...samples), 2, `in flight never reached the limit 2: ${samples.join(',')}`);
    assert.ok(
      samples.every((n) => n <= 2),
      `in flight exceeded the limit: ${samples.join(',')}`,
    );
  });

  test('notifications/cancelled stops a running call: no response for it, the session goes on', async () => {
    const daemon = await sharedDaemon();
    const { ws } = await openSession(cleanup, daemon, { sessionId: 'cancel-1' });
    callTool(ws, 2, 'sleep', { ms: 600 });
    await sessionInflightIs(daemon, 'cancel-1', 1);
    send(ws, { method: 'notifications/cancelled', params: { requestId: 2, reason: 'user pressed stop' } });
    await sessionInflightIs(daemon, 'cancel-1', 0);
    callTool(ws, 3, 'echo', { text: 'next' });
    const reply = await nextJson(ws);
    assert.equal(reply.id, 3);
    assert.equal(toolText(reply), 'next');
    // Well past the cancelled call's own duration: nothing may arrive for it.
    await assert.rejects(nextJson(ws, 1_200), /no message within/);
    callTool(ws, 4, 'echo', { text: 'still' });
    const last = await nextJson(ws);
    assert.equal(last.id, 4);
    assert.equal(toolText(last), 'still');
  });

  test('SIGTERM drains: the running call gets its result, then 1001, exit 0, pid file removed', async () => {
    const daemon = await startDaemon(cleanup, { env: { EXAI_WS_DRAIN_MS: '5000' } });
    const { ws } = await openSession(cleanup, daemon);
    callTool(ws, 2, 'sleep', { ms: 700 });
    await inflightIs(daemon, 1);
    const wsClosed = closed(ws);
    daemon.proc.kill('SIGTERM');

    const reply = await nextJson(ws, 10_000);
    assert.equal(reply.id, 2);
    assert.equal(toolText(reply), 'slept 700');
    assert.equal((await wsClosed).code, 1001);
    assert.equal(await within(daemon.exited, 10_000, 'the daemon to exit'), 0);
    assert.equal(existsSync(pidPath(daemon.home)), false, 'the pid file is removed');
  });

  test('SIGTERM with a drain limit shorter than the call: the call gets -32000, the daemon exits', async () => {
    const daemon = await startDaemon(cleanup, { env: { EXAI_WS_DRAIN_MS: '200' } });
    const { ws } = await openSession(cleanup, daemon);
    callTool(ws, 2, 'sleep', { ms: 30_000 });
    await inflightIs(daemon, 1);
    const wsClosed = closed(ws);
    daemon.proc.kill('SIGTERM');

    const reply = await nextJson(ws, 10_000);
    assert.equal(reply.id, 2);
    assert.equal((reply.error as { code: number } | undefined)?.code, -32000, JSON.stringify(reply));
    assert.equal((await wsClosed).code, 1001);
    // Long before the 30 s call would have ended.
    assert.equal(await within(daemon.exited, 10_000, 'the daemon to exit'), 0);
    assert.equal(existsSync(pidPath(daemon.home)), false, 'the pid file is removed');
  });

  test('exai-ws status reports the running daemon; exai-ws stop stops it; status then exits 1', async () => {
    const daemon = await startDaemon(cleanup, { plain: true });
    const env = { EXAI_WS_HOME: daemon.home };
    const ws = await openSocket(cleanup, daemon);
    assert.equal((await sendHello(ws)).ok, true);

    // The real CLI stops the daemon and then fails (exit 1, one line on stderr only); the reports
    // between are the same commands in this process (test/fixtures/cli-here.ts).
    const status = await cliHere(['status'], env);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`pid\\s+${daemon.pid}\\b`));
    assert.match(status.stdout, /sessions\s+1\b/);

    const json = await cliHere(['status', '--json'], env);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as { daemon: { pid: number }; sessions: unknown[] };
    assert.equal(report.daemon.pid, daemon.pid);
    assert.equal(report.sessions.length, 1);

    const wsClosed = closed(ws);
    const stop = await runCli(['stop'], env);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal(await within(daemon.exited, 10_000, 'the daemon to exit'), 0);
    assert.equal((await wsClosed).code, 1001, 'clients are told the daemon is going away');
    assert.equal(existsSync(pidPath(daemon.home)), false, 'the pid file is removed');

    const down = await runCli(['status'], env);
    assert.equal(down.code, 1);
    assert.equal(down.stdout, '');
    assert.equal(nonEmptyLines(down.stderr).length, 1, down.stderr);
    const downJson = await cliHere(['status', '--json'], env);
    assert.equal(downJson.code, 1);
    assert.equal((JSON.parse(downJson.stdout) as { status: string }).status, 'down');
    const stopAgain = await cliHere(['stop'], env);
    assert.equal(stopAgain.code, 1, 'stop with no daemon fails');
  });

  test('heartbeat: a client that never answers pings is terminated; a normal one stays', async () => {
    const daemon = await startDaemon(cleanup, { env: { EXAI_WS_HEARTBEAT_MS: '200' } });
    const { ws: normal } = await openSession(cleanup, daemon);

    const silent = new WebSocket(daemon.url(), { headers: { authorization: `Bearer ${daemon.token}` }, autoPong: false });
    cleanup.add(() => silent.terminate());
    const ack = await within(
      new Promise<Json>((resolve, reject) => {
        silent.once('error', reject);
        silent.once('message', (data: Buffer) => resolve(JSON.parse(data.toString()) as Json));
        silent.once('open', () => silent.send(JSON.stringify({ type: 'hello', protocol: 1, client: { name: 'silent', version: '1' } })));
      }),
      5_000,
      'the hello_ack',
    );
    assert.equal(ack.ok, true);
    assert.equal((await closed(silent, 5_000)).code, 1006, 'terminated without a close frame');

    // Several more heartbeats later the normal client is still attached and served.
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(normal.readyState, WebSocket.OPEN);
    send(normal, { id: 9, method: 'ping' });
    const pong = await nextJson(normal);
    assert.equal(pong.id, 9);
    assert.deepEqual(pong.result, {});
    assert.equal((await getHealth(daemon)).sessions.attached, 1);
  });
});
