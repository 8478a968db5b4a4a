/**
 * The first `tools/list` after a daemon restart, with 10 lazy hosted servers that were seen
 * once (issue 25): its time, and how many server processes it started. Two modes, alternating
 * run by run on one home: `before`, the remembered lists (`<home>/lists`) deleted before the
 * restart (every server is started to be listed, as before lists were remembered), and `after`,
 * the daemon restarted with them (listed from memory, nothing started). The servers are
 * test/fixtures/counted-server.ts, each start appending its pid to a file, so the processes
 * are counted from outside the daemon. The daemon runs with its default settings (list wait
 * included: a list answers without a server still starting after 2 s); the number of tools
 * listed is shown beside the time. The window (a shim under the SDK client) connects before the
 * clock starts. Alone: `npm run bench -- --only first-list` or `node dist/bench/first-list.js`
 * (`--quick`: 2 runs per mode instead of 5).
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { DAEMON_NODE_OPTIONS } from '../src/local/daemon-launch.js';
import { readAddressCard } from '../src/local/files.js';
import { isEntryPoint } from './calls.js';
import {
  CLI,
  ROOT,
  SHIM,
  childEnv,
  installCleanup,
  makeHome,
  runBench,
  sleep,
  track,
  untrack,
  waitExit,
  writePhaseResults,
} from './procs.js';

const WATCHDOG_MS = 5 * 60_000;
const SERVERS = 10;
const COUNTED = join(ROOT, 'dist', 'test', 'fixtures', 'counted-server.js');
type Mode = 'before' | 'after';

interface Run {
  mode: Mode;
  ms: number;
  started: number;
  tools: number;
}

export interface FirstListResults {
  loadavg_before: number[];
  loadavg_after: number[];
  servers: number;
  runs: Run[];
  median_ms: Record<Mode, number>;
  started: Record<Mode, number[]>;
}

function startsIn(file: string): number {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).length : 0;
}

function remembered(home: string): number {
  const dir = join(home, 'lists');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')).length : 0;
}

/** Waits (bounded) until `done` holds. */
async function until(done: () => boolean, what: string, limitMs = 60_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${limitMs} ms`);
    await sleep(20);
  }
}

/** One daemon life on `home`: connect a window, time its first tools/list, count the starts, stop with SIGTERM. */
async function once(home: string, startsFile: string, mode: Mode): Promise<Run> {
  if (mode === 'before') rmSync(join(home, 'lists'), { recursive: true, force: true });
  const proc = spawn(process.execPath, [...DAEMON_NODE_OPTIONS, CLI, 'daemon'], {
    env: childEnv(home, { EXAI_WS_PORT: '0' }),
    stdio: 'ignore',
  });
  track(proc.pid);
  const client = new Client({ name: 'first-list-bench', version: '1' }, { capabilities: {} });
  try {
    await until(() => readAddressCard(join(home, 'logs', 'ws_daemon.pid'))?.pid === proc.pid, 'the daemon start', 15_000);
    await until(() => (readAddressCard(join(home, 'logs', 'ws_daemon.pid'))?.port ?? 0) > 0, 'the daemon port', 15_000);
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [SHIM], env: childEnv(home), stderr: 'ignore' }));
    const startsBefore = startsIn(startsFile);
    const t0 = performance.now();
    const { tools } = await client.listTools();
    const ms = performance.now() - t0;
    const started = startsIn(startsFile) - startsBefore;
    // Seen: the next run finds every server's lists remembered (the refresh writes them once each is ready).
    await until(() => remembered(home) >= SERVERS, 'the lists remembered');
    return { mode, ms, started, tools: tools.length };
  } finally {
    await client.close().catch(() => undefined);
    proc.kill('SIGTERM');
    if (!(await waitExit(proc, 15_000))) proc.kill('SIGKILL');
    untrack(proc.pid);
  }
}

export async function runFirstList(runsPerMode: number, progress: (line: string) => void): Promise<FirstListResults> {
  if (!existsSync(COUNTED)) throw new Error(`${COUNTED} is missing: run npm run build`);
  const loadBefore = loadavg();
  const home = makeHome();
  const startsFile = join(home, 'starts.txt');
  const servers = Object.fromEntries(
    Array.from({ length: SERVERS }, (_, i) => [`s${i}`, { command: process.execPath, args: [COUNTED, startsFile, `s${i}`] }]),
  );
  writeFileSync(join(home, 'config.json'), JSON.stringify({ mcpServers: servers }));
  progress('first-list: the servers seen once');
  await once(home, startsFile, 'before');
  const runs: Run[] = [];
  for (let i = 0; i < runsPerMode; i++) {
    for (const mode of ['before', 'after'] as const) {
      const run = await once(home, startsFile, mode);
      progress(`first-list: ${mode} ${Math.round(run.ms)} ms, ${run.started} started, ${run.tools} tools`);
      runs.push(run);
    }
  }
  const median = (mode: Mode) => {
    const ms = runs
      .filter((r) => r.mode === mode)
      .map((r) => r.ms)
      .sort((a, b) => a - b);
    return Math.round(ms[Math.floor(ms.length / 2)] ?? 0);
  };
  return {
    loadavg_before: loadBefore,
    loadavg_after: loadavg(),
    servers: SERVERS,
    runs,
    median_ms: { before: median('before'), after: median('after') },
    started: {
      before: runs.filter((r) => r.mode === 'before').map((r) => r.started),
      after: runs.filter((r) => r.mode === 'after').map((r) => r.started),
    },
  };
}

export function firstListLines(results: FirstListResults): string[] {
  const row = (mode: Mode, label: string) => {
    const own = results.runs.filter((r) => r.mode === mode);
    return `  ${label.padEnd(34)} ${String(results.median_ms[mode]).padStart(6)} ms   started ${results.started[mode].join(',')}   tools ${own.map((r) => r.tools).join(',')}`;
  };
  return [
    `First tools/list after a daemon restart, ${results.servers} lazy servers seen once (median of ${results.runs.length / 2} runs each)`,
    row('before', 'before (lists not remembered)'),
    row('after', 'after (lists remembered)'),
  ];
}

export async function mainFirstList(quick: boolean): Promise<void> {
  installCleanup(WATCHDOG_MS);
  const startedAt = new Date();
  const results = await runFirstList(quick ? 2 : 5, (line) => process.stderr.write(`bench: ${line}\n`));
  writePhaseResults('first-list', startedAt, quick, 'first_list', results, firstListLines(results));
}

if (isEntryPoint(import.meta.url)) runBench(() => mainFirstList(process.argv.includes('--quick')));
