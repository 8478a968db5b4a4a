/**
 * Metrics stay bounded whatever names clients send: 20k made-up method names and 20k made-up
 * tool names (about 1 KB each) end up in one `other` series, the metrics line stays small and
 * the daemon's heap after a full GC does not keep them; known methods and tools keep their own
 * series.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type WebSocket from 'ws';
import { DAEMON_NODE_OPTIONS } from '../src/local/daemon-launch.js';
import { readAddressCard } from '../src/local/files.js';
import { KNOWN_METHODS, Metrics, OTHER } from '../src/daemon/files/metrics.js';
import {
  Cleanup,
  ROOT,
  baseEnv,
  getHealth,
  makeHome,
  metricsPath,
  nextJson,
  openSocket,
  readJsonLines,
  sendHello,
  textOf,
  waitFor,
  type DaemonHandle,
} from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const GC_DAEMON = join(ROOT, 'dist', 'test', 'fixtures', 'gc-daemon.js');
const UNIQUE_NAMES = 20_000;
const NAME_BYTES = 1_000;
/** Requests sent before awaiting their answers: the per-session in-flight limit. */
const WINDOW = 32;

/** The daemon with a `heap_after_gc` tool, run with --expose-gc. */
async function startGcDaemon(env: Record<string, string>): Promise<DaemonHandle> {
  const home = makeHome(cleanup);
  const proc = spawn(process.execPath, ['--expose-gc', ...DAEMON_NODE_OPTIONS, GC_DAEMON], {
    env: { ...baseEnv(), EXAI_WS_HOME: home, EXAI_WS_PORT: '0', EXAI_WS_CONFIG: join(home, 'config.json'), ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  cleanup.add(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
  });
  const card = await waitFor(() => {
    if (proc.exitCode !== null) throw new Error(`daemon exited during start: ${err}`);
    const c = readAddressCard(join(home, 'logs', 'ws_daemon.pid'));
    return c && c.port > 0 && c.pid === proc.pid ? c : null;
  }, 'the daemon address card');
  return {
    home,
    port: card.port,
    pid: card.pid,
    token: readFileSync(join(home, 'token'), 'utf8').trim(),
    proc,
    clientEnv: { EXAI_WS_HOME: home },
    stderr: () => err,
    exited,
    url: (path = '/ws') => `ws://127.0.0.1:${card.port}${path}`,
  };
}

let nextId = 1;

/** Sends requests `WINDOW` at a time and awaits every answer; returns them in order. */
async function requestAll(
  ws: WebSocket,
  requests: { method: string; params?: Record<string, unknown> }[],
): Promise<Record<string, unknown>[]> {
  const answers: Record<string, unknown>[] = [];
  for (let at = 0; at < requests.length; at += WINDOW) {
    const batch = requests.slice(at, at + WINDOW).map((r) => ({ jsonrpc: '2.0', id: nextId++, ...r }));
    for (const message of batch) ws.send(JSON.stringify(message));
    for (let i = 0; i < batch.length; i++) answers.push(await nextJson(ws, 15_000));
  }
  return answers;
}

async function heapAfterGc(ws: WebSocket): Promise<number> {
  const [answer] = await requestAll(ws, [{ method: 'tools/call', params: { name: 'heap_after_gc', arguments: {} } }]);
  const text = textOf(answer?.result);
  assert.match(text, /^\d+$/, `heap_after_gc answered ${JSON.stringify(answer)}`);
  return Number(text);
}

function uniqueName(prefix: string, i: number): string {
  return `${prefix}-${i}-`.padEnd(NAME_BYTES, 'x');
}

// Each test has its own home and daemon on port 0 (nothing shared but this file's cleanup), so they run side
// by side: most of their time is waiting on processes and timers.
describe('metrics bounds', { concurrency: 2 }, () => {
  test('20k made-up method and tool names are counted as `other`: the metrics line stays small and the heap does not keep them', async () => {
    const daemon = await startGcDaemon({ EXAI_WS_METRICS_INTERVAL_MS: '200' });
    const ws = await openSocket(cleanup, daemon);
    assert.equal((await sendHello(ws)).ok, true);
    const [init] = await requestAll(ws, [
      {
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'metrics-test', version: '1' } },
      },
    ]);
    assert.ok(init?.result, 'initialize answered');
    const version = await requestAll(ws, [{ method: 'tools/call', params: { name: 'version', arguments: {} } }]);
    assert.match(textOf(version[0]?.result), /exai-ws/);
    // Warm every code path once, so the baseline already holds what the first calls allocate.
    await requestAll(
      ws,
      Array.from({ length: 200 }, (_, i) => ({ method: uniqueName('warm-method', i) })),
    );
    await requestAll(
      ws,
      Array.from({ length: 200 }, (_, i) => ({ method: 'tools/call', params: { name: uniqueName('warm-tool', i), arguments: {} } })),
    );
    const heapBefore = await heapAfterGc(ws);

    const methodAnswers = await requestAll(
      ws,
      Array.from({ length: UNIQUE_NAMES }, (_, i) => ({ method: uniqueName('made-up-method', i) })),
    );
    assert.ok(
      methodAnswers.every((a) => (a.error as { code?: number } | undefined)?.code === -32601),
      'each made-up method is -32601',
    );
    const toolAnswers = await requestAll(
      ws,
      Array.from({ length: UNIQUE_NAMES }, (_, i) => ({
        method: 'tools/call',
        params: { name: uniqueName('made-up-tool', i), arguments: {} },
      })),
    );
    assert.ok(
      toolAnswers.every((a) => a.error !== undefined),
      'each made-up tool is refused',
    );

    const heapAfter = await heapAfterGc(ws);
    const growth = heapAfter - heapBefore;
    process.stderr.write(`metrics-bounds: heap after GC ${heapBefore} -> ${heapAfter} bytes (${growth >= 0 ? '+' : ''}${growth})\n`);
    // 40k names of 1 KB would be over 40 MB if any of them were kept.
    assert.ok(growth < 8 * 1024 * 1024, `heap after GC grew by ${growth} bytes`);

    const line = await waitFor(
      () => {
        let text = '';
        try {
          text = readFileSync(metricsPath(daemon.home), 'utf8');
        } catch {
          return null;
        }
        const last = text.trimEnd().split('\n').at(-1) ?? '';
        const parsed = last === '' ? null : (JSON.parse(last) as Record<string, unknown>);
        return parsed && (parsed.requests as number) >= 2 * UNIQUE_NAMES + 400 + 4 ? { text: last, parsed } : null;
      },
      'a metrics line that counts every request',
      10_000,
    );
    assert.ok(Buffer.byteLength(line.text) < 64 * 1024, `the metrics line is ${Buffer.byteLength(line.text)} bytes`);
    const byMethod = line.parsed.by_method as Record<string, number>;
    const byTool = line.parsed.by_tool as Record<string, number>;
    assert.ok((byMethod[OTHER] ?? 0) >= UNIQUE_NAMES, `by_method.other = ${byMethod[OTHER]}`);
    assert.ok((byTool[OTHER] ?? 0) >= UNIQUE_NAMES, `by_tool.other = ${byTool[OTHER]}`);
    // Known names keep their own series.
    assert.ok((byMethod['tools/call'] ?? 0) >= UNIQUE_NAMES + 1);
    assert.equal(byMethod.initialize, 1);
    assert.equal(byTool.version, 1);
    assert.ok((byTool.heap_after_gc ?? 0) >= 2);
    for (const name of Object.keys(byMethod))
      assert.ok(name === OTHER || KNOWN_METHODS.has(name), `unexpected method series ${name.slice(0, 40)}`);
    assert.ok(Object.keys(byTool).length <= 3, `tool series: ${Object.keys(byTool).join(', ')}`);

    const health = await getHealth(daemon);
    assert.equal(typeof health.memory?.heap_used_bytes, 'number');
    assert.equal(health.metrics_file?.dropped_lines, 0);
    assert.ok(readJsonLines(metricsPath(daemon.home)).length > 0);
  });

  test('metrics series come from fixed sets: reasons and names outside them count as `other`', () => {
    const known = new Set(['chat']);
    const metrics = new Metrics({ isKnownTool: (name) => known.has(name) });
    metrics.request('tools/call', 'chat', 1, false);
    metrics.request('tools/call', 'nope', 1, true);
    metrics.request('__proto__', undefined, 1, true);
    metrics.request('constructor', undefined, 1, true);
    metrics.reject('queue_full');
    // @ts-expect-error: a name outside the list is a compile error; at run time it counts as `other`.
    metrics.reject('x'.repeat(1000));
    metrics.sessionClosed('client_gone');
    // @ts-expect-error: as above, for close reasons.
    metrics.sessionClosed('some reason nobody listed');
    const line = metrics.snapshot({ sessionsActive: 0, sessionsDetached: 0, inflight: 0 });
    assert.deepEqual(line.by_method, { 'tools/call': 2, other: 2 });
    assert.deepEqual(line.by_tool, { chat: 1, other: 1 });
    assert.deepEqual(line.rejections, { queue_full: 1, other: 1 });
    assert.deepEqual((line.sessions as { close_reasons: unknown }).close_reasons, { client_gone: 1, other: 1 });
    // The method list is the SDK's: every request a client may send, nothing else.
    for (const method of ['initialize', 'ping', 'tools/list', 'tools/call', 'resources/read', 'prompts/get', 'completion/complete']) {
      assert.ok(KNOWN_METHODS.has(method), method);
    }
    assert.equal(KNOWN_METHODS.has('notifications/initialized'), false);
    // A predicate that throws is a name we do not know, not a failed request.
    const throwing = new Metrics({
      isKnownTool: () => {
        throw new Error('catalog gone');
      },
    });
    assert.doesNotThrow(() => throwing.request('tools/call', 'chat', 1, false));
  });
});
