/**
 * `npm run bench`: direct `exai-ws stdio` against shim + daemon, on the built-in `version`
 * tool, all on loopback, measured against the "Performance budget" in DESIGN.md:
 *
 *   1. sequential tools/call latency (p50 / p90 / p99, microseconds);
 *   2. throughput with exactly 32 calls in flight;
 *   3. process start to the first initialize result (shim with the daemon warm, and stdio);
 *   4. PSS of a connected shim;
 *   5. daemon PSS per idle MCP session (1000 raw WebSocket sessions);
 *   6. calls/s and latency of tools marked as asking the client (run one window at a time),
 *      from two windows and from one, against the same tools unmarked (asks-client.ts);
 *   7. Streamable HTTP: the daemon's /mcp against the official SDK's own Streamable HTTP server,
 *      beside the shim path, and a hosted server through /mcp against direct stdio (http.ts);
 *   8. CPU time per call with 16 in flight: the shim, the daemon (hosted and built-in), the
 *      stdio process and a direct stdio call, against the hot path's budgets (cpu-per-call.ts).
 *
 * A benchmark, not a test: never run in CI. Every loop is bounded in count and time; every
 * child process is killed at the end, also on error. Figures go to stdout as a table and to
 * bench-results/bench-<timestamp>.json and bench-results/latest.json.
 *
 * Options: --quick (smaller counts), --only asks-client|http|cpu (phase 6, 7 or 8 alone), --only
 * pss-option (the daemon's Node options against Node's defaults, pss-option.ts), --only modern (a
 * 2026-07-28 call through /mcp against the v2 SDK's own HTTP handler, modern-latency.ts; not part
 * of the full run, which it would lengthen by a minute or more), --only search (tool search's hit
 * rates and search time, tool-search.ts; not part of the full run), --only first-list (the first
 * tools/list after a restart with 10 lazy servers seen once, lists remembered or not,
 * first-list.ts), --only oauth (an access token of the daemon's own login against the static token on
 * /mcp, and a whole login's time, oauth-http.ts), --help.
 */
import { spawn } from 'node:child_process';
import { cpus, loadavg, platform, release } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { runHosted } from './hosted.js';
import { ASKS_CLIENT_FULL, ASKS_CLIENT_QUICK, asksClientLines, mainAsksClient, runAsksClient } from './asks-client.js';
import { HTTP_FULL, HTTP_QUICK, httpBudgets, httpLines, mainHttp, runHttp } from './http.js';
import { mainPssOption } from './pss-option.js';
import { mainModernLatency } from './modern-latency.js';
import { mainOAuth } from './oauth-http.js';
import { mainToolSearch } from './tool-search.js';
import { mainFirstList } from './first-list.js';
import { CPU_FULL, CPU_QUICK, cpuBudgets, cpuLines, mainCpuPerCall, runCpuPerCall } from './cpu-per-call.js';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type WebSocket from 'ws';
import { VERSION } from '../src/protocol/version.js';
import {
  daemonHealth,
  CLI,
  ROOT,
  SHIM,
  STRIPPED_ENV,
  childEnv,
  connectClient,
  installCleanup,
  runBench,
  makeHome,
  readCpuMs,
  readMemory,
  sleep,
  startDaemon,
  timeToFirstLine,
  track,
  untrack,
  waitExit,
  type DaemonProc,
  type CallPlan,
  type McpClient,
  type MemoryKb,
} from './procs.js';
import { VERSION_CALL, callOk, sequential, throughput } from './calls.js';
import { median, percentile, round, summarize, type Summary } from './stats.js';
import { HelloWebSocketTransport, openIdleSession } from './ws-client.js';

interface Plan extends CallPlan {
  startRuns: number;
  startWarmupRuns: number;
  memoryRuns: number;
  idleSessions: number;
  sessionBatch: number;
}

const FULL: Plan = {
  warmupCalls: 300,
  sequentialCalls: 3000,
  blockCalls: 500,
  sequentialMaxMs: 60_000,
  inflight: 32,
  throughputMs: 1_000,
  throughputRounds: 3,
  throughputWarmupMs: 500,
  throughputMaxCalls: 300_000,
  startRuns: 20,
  startWarmupRuns: 2,
  memoryRuns: 3,
  idleSessions: 1000,
  sessionBatch: 50,
};

const QUICK: Plan = {
  ...FULL,
  warmupCalls: 100,
  sequentialCalls: 600,
  blockCalls: 200,
  throughputRounds: 1,
  throughputWarmupMs: 250,
  startRuns: 6,
  startWarmupRuns: 1,
  memoryRuns: 2,
  idleSessions: 300,
};

const WATCHDOG_MS = 10 * 60_000;
const INITIALIZE_LINE = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'exai-ws-bench-start', version: '1.0.0' } },
});

/** Latency modes: the two compared, and the SDK client straight over ws (no shim) to locate costs. */
type LatencyMode = 'direct' | 'shim' | 'ws';
const LATENCY_MODES: readonly LatencyMode[] = ['direct', 'shim', 'ws'];

function progress(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

interface ThroughputFigures {
  perS: number;
  calls: number;
  ms: number;
  roundsPerS: number[];
  /** CPU time per call of each process involved, in microseconds: where the time goes. */
  cpuUsPerCall: Record<string, number>;
}

interface LatencyResult {
  summaries: Record<LatencyMode, Summary>;
  /** CPU time per sequential call of each process involved, in microseconds. */
  sequentialCpuUsPerCall: Record<LatencyMode, Record<string, number>>;
  throughput: Record<LatencyMode, ThroughputFigures>;
}

async function measureCalls(plan: Plan, daemon: DaemonProc): Promise<LatencyResult> {
  const clients: Partial<Record<LatencyMode, Client>> = {};
  const closers: (() => Promise<void>)[] = [];
  try {
    const direct: McpClient = await connectClient('direct', makeHome());
    closers.push(() => direct.close());
    const shim: McpClient = await connectClient('shim', daemon.home);
    closers.push(() => shim.close());
    const ws = new Client({ name: 'exai-ws-bench-ws', version: '1.0.0' }, { capabilities: {} });
    await ws.connect(new HelloWebSocketTransport(daemon.port, daemon.token));
    closers.push(() => ws.close());
    clients.direct = direct.client;
    clients.shim = shim.client;
    clients.ws = ws;

    // The tool must really run where we think: in the stdio process, or in the daemon.
    const directPid = (await callOk(direct.client, VERSION_CALL)).pid;
    const shimPid = (await callOk(shim.client, VERSION_CALL)).pid;
    if (directPid !== direct.pid) throw new Error(`direct: version ran in pid ${String(directPid)}, expected ${direct.pid}`);
    if (shimPid !== daemon.pid) throw new Error(`shim: version ran in pid ${String(shimPid)}, expected the daemon ${daemon.pid}`);

    const processes: Record<LatencyMode, Record<string, number>> = {
      direct: { client: process.pid, 'stdio server': direct.pid },
      shim: { client: process.pid, shim: shim.pid, daemon: daemon.pid },
      ws: { client: process.pid, daemon: daemon.pid },
    };
    /** Runs `work` and adds the CPU time each process of `mode` spent meanwhile to `into`. */
    const withCpu = async <T>(mode: LatencyMode, into: Record<string, number>, work: () => Promise<T>): Promise<T> => {
      const pids = Object.entries(processes[mode]);
      const before = pids.map(([, pid]) => readCpuMs(pid));
      const result = await work();
      pids.forEach(([name, pid], i) => (into[name] = (into[name] ?? 0) + readCpuMs(pid) - before[i]!));
      return result;
    };

    const samples: Record<LatencyMode, number[]> = { direct: [], shim: [], ws: [] };
    const seqCpuMs: Record<LatencyMode, Record<string, number>> = { direct: {}, shim: {}, ws: {} };
    const deadline = performance.now() + plan.sequentialMaxMs;
    for (const mode of LATENCY_MODES) await sequential(clients[mode]!, VERSION_CALL, plan.warmupCalls, deadline, null);
    progress(`sequential: ${plan.sequentialCalls} calls per mode in blocks of ${plan.blockCalls}`);
    for (let done = 0; done < plan.sequentialCalls && performance.now() < deadline; done += plan.blockCalls) {
      const block = Math.min(plan.blockCalls, plan.sequentialCalls - done);
      for (const mode of LATENCY_MODES) {
        await withCpu(mode, seqCpuMs[mode], () => sequential(clients[mode]!, VERSION_CALL, block, deadline, samples[mode]));
      }
    }
    const summaries = {
      direct: summarize(samples.direct),
      shim: summarize(samples.shim),
      ws: summarize(samples.ws),
    };
    const perCall = (cpuMs: Record<string, number>, n: number) =>
      Object.fromEntries(Object.entries(cpuMs).map(([name, ms]) => [name, (ms * 1000) / n]));
    const sequentialCpuUsPerCall = {
      direct: perCall(seqCpuMs.direct, samples.direct.length),
      shim: perCall(seqCpuMs.shim, samples.shim.length),
      ws: perCall(seqCpuMs.ws, samples.ws.length),
    };

    progress(`throughput: ${plan.inflight} in flight, ${plan.throughputRounds} x ${plan.throughputMs} ms per mode`);
    const totals = Object.fromEntries(LATENCY_MODES.map((m) => [m, { calls: 0, ms: 0, rounds: [] as number[], cpuMs: {} }])) as Record<
      LatencyMode,
      { calls: number; ms: number; rounds: number[]; cpuMs: Record<string, number> }
    >;
    for (const mode of LATENCY_MODES)
      await throughput(clients[mode]!, VERSION_CALL, plan.inflight, plan.throughputWarmupMs, plan.throughputMaxCalls);
    for (let round = 0; round < plan.throughputRounds; round++) {
      for (const mode of LATENCY_MODES) {
        const t = totals[mode];
        const r = await withCpu(mode, t.cpuMs, () =>
          throughput(clients[mode]!, VERSION_CALL, plan.inflight, plan.throughputMs, plan.throughputMaxCalls),
        );
        t.calls += r.calls;
        t.ms += r.ms;
        t.rounds.push(r.perS);
      }
    }
    const tp = Object.fromEntries(
      LATENCY_MODES.map((m) => {
        const t = totals[m];
        const cpuUsPerCall = Object.fromEntries(Object.entries(t.cpuMs).map(([name, ms]) => [name, (ms * 1000) / t.calls]));
        return [m, { perS: t.calls / (t.ms / 1000), calls: t.calls, ms: t.ms, roundsPerS: t.rounds, cpuUsPerCall }];
      }),
    ) as Record<LatencyMode, ThroughputFigures>;
    return { summaries, sequentialCpuUsPerCall, throughput: tp };
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined);
  }
}

interface StartFigures {
  medianMs: number;
  p90Ms: number;
  runsMs: number[];
  /** CPU time (user + system) of the process when its first line arrived, median. */
  cpuMedianMs: number;
}

function startFigures(runs: { ms: number; cpuMs: number }[]): StartFigures {
  const wall = runs.map((r) => r.ms);
  return {
    medianMs: median(wall),
    p90Ms: percentile(wall, 90),
    runsMs: wall.map((r) => round(r, 2)),
    cpuMedianMs: median(runs.map((r) => r.cpuMs).filter((c) => Number.isFinite(c))),
  };
}

type StartKind = 'shim' | 'shimViaCli' | 'stdio' | 'bareNode' | 'bareNodeExtraCa';

async function measureStart(plan: Plan, daemon: DaemonProc): Promise<Partial<Record<StartKind, StartFigures>>> {
  const stdioHome = makeHome();
  const bareNodeArgs = ['-e', "process.stdin.once('data',()=>{process.stdout.write('{}\\n');process.exit(0)})"];
  const extraCa = process.env.NODE_EXTRA_CA_CERTS;
  const kinds: Partial<Record<StartKind, { args: string[]; env: Record<string, string>; line: string }>> = {
    shim: { args: [SHIM], env: childEnv(daemon.home), line: INITIALIZE_LINE },
    shimViaCli: { args: [CLI, 'shim'], env: childEnv(daemon.home), line: INITIALIZE_LINE },
    stdio: { args: [CLI, 'stdio'], env: childEnv(stdioHome), line: INITIALIZE_LINE },
    // Node itself: start, read one stdin line, write one stdout line. The floor for the others.
    bareNode: { args: bareNodeArgs, env: childEnv(stdioHome), line: '{}' },
  };
  // The machine's own NODE_EXTRA_CA_CERTS (stripped from every other child) costs this much.
  if (extraCa) kinds.bareNodeExtraCa = { args: bareNodeArgs, env: childEnv(stdioHome, { NODE_EXTRA_CA_CERTS: extraCa }), line: '{}' };
  const order = Object.keys(kinds) as StartKind[];
  const runs: Partial<Record<StartKind, { ms: number; cpuMs: number }[]>> = {};
  progress(`start: ${plan.startRuns} runs each of ${order.join(', ')}, alternating`);
  for (let i = 0; i < plan.startWarmupRuns + plan.startRuns; i++) {
    for (const kind of order) {
      const { args, env, line } = kinds[kind]!;
      const { ms, cpuMs, line: first } = await timeToFirstLine([...args], env, line);
      if (kind !== 'bareNode' && kind !== 'bareNodeExtraCa') {
        const reply = JSON.parse(first) as { id?: unknown; result?: unknown };
        if (reply.id !== 1 || reply.result === undefined) throw new Error(`${kind}: first line is not the initialize result: ${first}`);
      }
      if (i >= plan.startWarmupRuns) (runs[kind] ??= []).push({ ms, cpuMs });
    }
  }
  return Object.fromEntries(order.map((k) => [k, startFigures(runs[k] ?? [])]));
}

interface MemoryFigures {
  pssMb: number;
  rssMb: number;
  ussMb: number;
  samplesKb: MemoryKb[];
}

function memoryFigures(samples: MemoryKb[]): MemoryFigures {
  return {
    pssMb: median(samples.map((s) => s.pss)) / 1024,
    rssMb: median(samples.map((s) => s.rss)) / 1024,
    ussMb: median(samples.map((s) => s.uss)) / 1024,
    samplesKb: samples,
  };
}

/** PSS of connected, initialized processes, one at a time (each after one tools/call). */
async function measureProcessMemory(
  plan: Plan,
  daemon: DaemonProc,
): Promise<{ shim: MemoryFigures; stdio: MemoryFigures; bareNode: MemoryFigures; daemon: MemoryFigures }> {
  progress(`memory: ${plan.memoryRuns} shims, stdio servers and bare node processes, one at a time`);
  const sample = async (mode: 'shim' | 'direct'): Promise<MemoryKb> => {
    const c = await connectClient(mode, mode === 'shim' ? daemon.home : makeHome());
    try {
      await callOk(c.client, VERSION_CALL);
      await sleep(500);
      return readMemory(c.pid);
    } finally {
      await c.close();
    }
  };
  // PSS splits shared pages (the node binary above all) among the processes mapping them, so
  // it moves with whatever else runs; an idle node process measured alike is the yardstick.
  const sampleBareNode = async (): Promise<MemoryKb> => {
    const proc = spawn(process.execPath, ['-e', 'process.stdin.resume()'], { stdio: ['pipe', 'ignore', 'ignore'] });
    track(proc.pid);
    try {
      await sleep(500);
      return readMemory(proc.pid ?? -1);
    } finally {
      proc.kill('SIGKILL');
      await waitExit(proc, 2_000);
      untrack(proc.pid);
    }
  };
  const shim: MemoryKb[] = [];
  const stdio: MemoryKb[] = [];
  const bare: MemoryKb[] = [];
  for (let i = 0; i < plan.memoryRuns; i++) {
    shim.push(await sample('shim'));
    stdio.push(await sample('direct'));
    bare.push(await sampleBareNode());
  }
  return {
    shim: memoryFigures(shim),
    stdio: memoryFigures(stdio),
    bareNode: memoryFigures(bare),
    daemon: memoryFigures([readMemory(daemon.pid)]),
  };
}

interface SessionFigures {
  sessions: number;
  openMs: number;
  before: MemoryKb;
  after: MemoryKb;
  perSessionKb: { pss: number; rss: number; uss: number };
  health: { total: number; attached: number } | null;
}

async function readMemoryMedian(pid: number, reads: number, gapMs: number): Promise<MemoryKb> {
  const samples: MemoryKb[] = [];
  for (let i = 0; i < reads; i++) {
    if (i > 0) await sleep(gapMs);
    samples.push(readMemory(pid));
  }
  return { pss: median(samples.map((s) => s.pss)), rss: median(samples.map((s) => s.rss)), uss: median(samples.map((s) => s.uss)) };
}

async function health(daemon: DaemonProc): Promise<{ total: number; attached: number } | null> {
  return (await daemonHealth(daemon))?.sessions ?? null;
}

/** Daemon PSS before and after `plan.idleSessions` idle, initialized sessions held by this process. */
async function measureSessions(plan: Plan, nodeOptions?: readonly string[]): Promise<SessionFigures> {
  const count = plan.idleSessions;
  const daemon = await startDaemon({ EXAI_WS_MAX_SESSIONS: String(Math.max(2_000, count + 100)) }, undefined, nodeOptions);
  const sockets: WebSocket[] = [];
  try {
    // Warm the code paths (upgrade, hello, initialize, close) so their one-time cost is not
    // charged to the sessions.
    const warm = await Promise.all(Array.from({ length: 20 }, () => openIdleSession(daemon.port, daemon.token)));
    for (const ws of warm) ws.close(1000, 'warm-up done');
    await sleep(1_000);
    const before = await readMemoryMedian(daemon.pid, 3, 200);
    progress(`sessions: opening ${count} idle sessions (daemon pid ${daemon.pid}, PSS before ${round(before.pss / 1024)} MB)`);
    const t0 = performance.now();
    const deadline = t0 + 120_000;
    while (sockets.length < count) {
      if (performance.now() > deadline) throw new Error(`only ${sockets.length} of ${count} sessions opened within 120 s`);
      const batch = Math.min(plan.sessionBatch, count - sockets.length);
      sockets.push(...(await Promise.all(Array.from({ length: batch }, () => openIdleSession(daemon.port, daemon.token)))));
    }
    const openMs = performance.now() - t0;
    await sleep(2_000);
    const after = await readMemoryMedian(daemon.pid, 3, 300);
    const h = await health(daemon);
    if (h && h.attached < count) throw new Error(`the daemon holds ${h.attached} attached sessions, expected ${count}`);
    return {
      sessions: count,
      openMs,
      before,
      after,
      perSessionKb: {
        pss: (after.pss - before.pss) / count,
        rss: (after.rss - before.rss) / count,
        uss: (after.uss - before.uss) / count,
      },
      health: h,
    };
  } finally {
    for (const ws of sockets) ws.terminate();
    await daemon.stop();
  }
}

interface Budget {
  figure: string;
  value: number;
  limit: number;
  unit: string;
  /** 'max': value <= limit passes; 'min': value >= limit passes. */
  kind: 'max' | 'min';
  ok: boolean;
}

function budget(figure: string, value: number, kind: 'max' | 'min', limit: number, unit: string): Budget {
  return { figure, value, limit, unit, kind, ok: kind === 'max' ? value <= limit : value >= limit };
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function pad(text: string, width: number, right = false): string {
  return right ? text.padStart(width) : text.padEnd(width);
}

function fmt(value: number, digits = 1): string {
  return Number.isFinite(value) ? round(value, digits).toFixed(digits) : '-';
}

/** Left-aligned first column, right-aligned figures; `lastLeft` keeps a status column left. */
function table(rows: string[][], lastLeft = false): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const right = (i: number, n: number) => i > 0 && !(lastLeft && i === n - 1);
  return rows.map((r) => `  ${r.map((cell, i) => pad(cell, widths[i]!, right(i, r.length))).join('  ')}`.trimEnd()).join('\n');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write('usage: npm run bench [-- --quick] [-- --only asks-client|http|cpu|pss-option|modern|search|first-list|oauth]\n');
    return;
  }
  const quick = args.includes('--quick');
  const only = args.indexOf('--only');
  if (only >= 0) {
    const phase = args[only + 1];
    if (phase === 'asks-client') return mainAsksClient(quick);
    if (phase === 'http') return mainHttp(quick);
    if (phase === 'cpu') return mainCpuPerCall(quick, args);
    if (phase === 'pss-option') return mainPssOption(quick);
    if (phase === 'modern') return mainModernLatency(quick);
    if (phase === 'search') return mainToolSearch(quick);
    if (phase === 'first-list') return mainFirstList(quick);
    if (phase === 'oauth') return mainOAuth(quick);
    throw new Error(`--only: expected asks-client, http, cpu, pss-option, modern, search, first-list or oauth, got ${phase ?? 'nothing'}`);
  }
  const plan = quick ? QUICK : FULL;
  installCleanup(WATCHDOG_MS);
  const startedAt = new Date();
  const loadBefore = loadavg();
  progress(`${quick ? 'quick' : 'full'} run; load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`);

  const daemon = await startDaemon();
  let calls: LatencyResult;
  let start: Awaited<ReturnType<typeof measureStart>>;
  let memory: Awaited<ReturnType<typeof measureProcessMemory>>;
  try {
    calls = await measureCalls(plan, daemon);
    start = await measureStart(plan, daemon);
    memory = await measureProcessMemory(plan, daemon);
  } finally {
    await daemon.stop();
  }
  const sessions = await measureSessions(plan);
  // Diagnostic: the same under Node's defaults (a daemon started without `npm run daemon`'s
  // options), where V8 grows its young generation for the burst of opening the sessions.
  progress('sessions again with the daemon under Node defaults (diagnostic)');
  const sessionsNodeDefaults = await measureSessions(plan, []);
  const hosted = await runHosted(
    {
      warmupCalls: plan.warmupCalls,
      sequentialCalls: Math.min(plan.sequentialCalls, 2_000),
      throughputMs: plan.throughputMs * plan.throughputRounds,
      inflight: plan.inflight,
      clients: 4,
    },
    progress,
  );
  const asksClient = await runAsksClient(quick ? ASKS_CLIENT_QUICK : ASKS_CLIENT_FULL, progress);
  const http = await runHttp(quick ? HTTP_QUICK : HTTP_FULL, progress);
  const cpu = await runCpuPerCall(quick ? CPU_QUICK : CPU_FULL, progress);
  const loadAfter = loadavg();

  const s = calls.summaries;
  const tp = calls.throughput;
  const ratio = {
    p50: s.shim.p50 / s.direct.p50,
    p90: s.shim.p90 / s.direct.p90,
    p99: s.shim.p99 / s.direct.p99,
    throughput: tp.shim.perS / tp.direct.perS,
  };
  const budgets = [
    budget('tools/call p50, shim+daemon / direct', ratio.p50, 'max', 1.5, 'x'),
    budget('tools/call p99, shim+daemon / direct', ratio.p99, 'max', 2, 'x'),
    budget('throughput 32 in flight, shim+daemon / direct', ratio.throughput, 'min', 0.8, 'x'),
    budget('shim start to initialize result (median)', start.shim!.medianMs, 'max', 80, 'ms'),
    budget('shim PSS', memory.shim.pssMb, 'max', 20, 'MB'),
    budget('daemon PSS per idle session', sessions.perSessionKb.pss, 'max', 20, 'KB'),
    budget('hosted server tools/call p50, shim+daemon / direct', hosted.latency_ratio.p50, 'max', 2, 'x'),
    budget('4 clients x 3 npx servers: PSS via daemon / direct', hosted.pss_4x3_npx_mb.ratio, 'max', 0.25, 'x'),
    ...httpBudgets(http).map((b) => budget(b.figure, b.value, b.kind, b.limit, b.unit)),
    ...cpuBudgets(cpu).map((b) => budget(b.figure, b.value, b.kind, b.limit, b.unit)),
  ];

  const results = {
    timestamp: startedAt.toISOString(),
    quick,
    exai_ws_version: VERSION,
    machine: {
      node: process.version,
      platform: `${platform()} ${release()}`,
      cpus: cpus().length,
      cpu_model: cpus()[0]?.model ?? 'unknown',
      loadavg_before: loadBefore,
      loadavg_after: loadAfter,
    },
    plan,
    latency_us: { direct: s.direct, shim_daemon: s.shim, sdk_ws_no_shim: s.ws },
    latency_ratio: ratio,
    sequential_cpu_us_per_call: calls.sequentialCpuUsPerCall,
    throughput_per_s: {
      inflight: plan.inflight,
      direct: tp.direct,
      shim_daemon: tp.shim,
      sdk_ws_no_shim: tp.ws,
    },
    start_ms: {
      shim: start.shim,
      shim_via_cli: start.shimViaCli,
      stdio: start.stdio,
      bare_node: start.bareNode,
      bare_node_extra_ca_certs: start.bareNodeExtraCa,
    },
    env_stripped_from_children: STRIPPED_ENV.filter((k) => process.env[k] !== undefined),
    memory_mb: { shim: memory.shim, stdio: memory.stdio, bare_node: memory.bareNode, daemon_after_calls: memory.daemon },
    idle_sessions: sessions,
    idle_sessions_node_defaults: sessionsNodeDefaults,
    hosted,
    asks_client: asksClient,
    http,
    cpu_per_call: cpu,
    budgets,
  };
  const dir = join(ROOT, 'bench-results');
  mkdirSync(dir, { recursive: true });
  const text = `${JSON.stringify(results, null, 2)}\n`;
  const file = join(dir, `bench-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, text);
  writeFileSync(join(dir, 'latest.json'), text);

  const startColumns = (
    [
      ['shim', 'shim.cjs (daemon warm)'],
      ['shimViaCli', 'exai-ws shim'],
      ['stdio', 'stdio'],
      ['bareNode', 'bare node'],
      ['bareNodeExtraCa', 'bare node + NODE_EXTRA_CA_CERTS'],
    ] as const
  ).filter(([k]) => start[k] !== undefined);
  const out: string[] = [];
  out.push(
    `exai-ws ${VERSION} bench${quick ? ' (--quick)' : ''}: ${results.machine.cpus} x ${results.machine.cpu_model}, Node ${process.version}, load ${loadBefore[0]!.toFixed(2)} -> ${loadAfter[0]!.toFixed(2)}`,
    '',
    `tools/call of built-in "version", official SDK client; ${s.direct.n} sequential calls per mode, ${plan.inflight} in flight for ${plan.throughputRounds} x ${plan.throughputMs / 1000} s`,
  );
  out.push(
    table([
      ['', 'direct stdio', 'shim+daemon', 'ratio', 'sdk->ws (no shim)'],
      ['p50 (us)', fmt(s.direct.p50, 0), fmt(s.shim.p50, 0), `${fmt(ratio.p50, 2)}x`, fmt(s.ws.p50, 0)],
      ['p90 (us)', fmt(s.direct.p90, 0), fmt(s.shim.p90, 0), `${fmt(ratio.p90, 2)}x`, fmt(s.ws.p90, 0)],
      ['p99 (us)', fmt(s.direct.p99, 0), fmt(s.shim.p99, 0), `${fmt(ratio.p99, 2)}x`, fmt(s.ws.p99, 0)],
      ['calls/s, 32 in flight', fmt(tp.direct.perS, 0), fmt(tp.shim.perS, 0), `${fmt(ratio.throughput, 2)}x`, fmt(tp.ws.perS, 0)],
    ]),
    '',
    'CPU time per call (us), by process: where the time goes',
    table([
      ['', 'client', 'stdio server', 'shim', 'daemon', 'total'],
      ...(
        [
          ['sequential: direct stdio', calls.sequentialCpuUsPerCall.direct],
          ['sequential: shim+daemon', calls.sequentialCpuUsPerCall.shim],
          ['sequential: sdk->ws (no shim)', calls.sequentialCpuUsPerCall.ws],
          ['32 in flight: direct stdio', tp.direct.cpuUsPerCall],
          ['32 in flight: shim+daemon', tp.shim.cpuUsPerCall],
          ['32 in flight: sdk->ws (no shim)', tp.ws.cpuUsPerCall],
        ] as const
      ).map(([label, c]) => {
        const cell = (name: string) => (c[name] === undefined ? '-' : fmt(c[name], 0));
        return [label, cell('client'), cell('stdio server'), cell('shim'), cell('daemon'), fmt(sum(Object.values(c)), 0)];
      }),
    ]),
    '',
    `process start to first initialize result (ms), ${plan.startRuns} runs each`,
    table([
      ['', ...startColumns.map(([, label]) => label)],
      ['median', ...startColumns.map(([k]) => fmt(start[k]!.medianMs))],
      ['p90', ...startColumns.map(([k]) => fmt(start[k]!.p90Ms))],
      ['CPU used by then, median', ...startColumns.map(([k]) => fmt(start[k]!.cpuMedianMs, 0))],
    ]),
    '',
    `memory of one connected process (MB, median of ${plan.memoryRuns})`,
    table([
      ['', 'PSS', 'RSS', 'USS'],
      ['shim', fmt(memory.shim.pssMb), fmt(memory.shim.rssMb), fmt(memory.shim.ussMb)],
      ['stdio server', fmt(memory.stdio.pssMb), fmt(memory.stdio.rssMb), fmt(memory.stdio.ussMb)],
      ['idle bare node (yardstick)', fmt(memory.bareNode.pssMb), fmt(memory.bareNode.rssMb), fmt(memory.bareNode.ussMb)],
      ['daemon (after the call phases)', fmt(memory.daemon.pssMb), fmt(memory.daemon.rssMb), fmt(memory.daemon.ussMb)],
    ]),
    '',
    `daemon with ${sessions.sessions} idle initialized sessions (opened in ${fmt(sessions.openMs / 1000, 2)} s)`,
    table([
      ['', 'PSS', 'RSS', 'USS'],
      ['before (MB)', fmt(sessions.before.pss / 1024), fmt(sessions.before.rss / 1024), fmt(sessions.before.uss / 1024)],
      ['after (MB)', fmt(sessions.after.pss / 1024), fmt(sessions.after.rss / 1024), fmt(sessions.after.uss / 1024)],
      ['per session (KB)', fmt(sessions.perSessionKb.pss), fmt(sessions.perSessionKb.rss), fmt(sessions.perSessionKb.uss)],
      [
        'per session, Node defaults (KB)',
        fmt(sessionsNodeDefaults.perSessionKb.pss),
        fmt(sessionsNodeDefaults.perSessionKb.rss),
        fmt(sessionsNodeDefaults.perSessionKb.uss),
      ],
    ]),
    '',
    `hosted server (${hosted.tool}): direct stdio against the same server hosted by the daemon, through a shim`,
    table([
      ['', 'direct stdio', 'shim+daemon', 'ratio'],
      ['p50 (us)', fmt(hosted.latency_us.direct.p50, 0), fmt(hosted.latency_us.shim_daemon.p50, 0), `${fmt(hosted.latency_ratio.p50, 2)}x`],
      ['p99 (us)', fmt(hosted.latency_us.direct.p99, 0), fmt(hosted.latency_us.shim_daemon.p99, 0), `${fmt(hosted.latency_ratio.p99, 2)}x`],
      [
        'calls/s, 32 in flight',
        fmt(hosted.throughput_per_s.direct, 0),
        fmt(hosted.throughput_per_s.shim_daemon, 0),
        `${fmt(hosted.throughput_per_s.ratio, 2)}x`,
      ],
    ]),
    '',
    '4 clients x 3 servers launched with npx (memory, everything, filesystem): total PSS',
    table([
      ['', 'processes', 'PSS (MB)'],
      ['each client starts its own (12 trees)', String(hosted.pss_4x3_npx_mb.direct_processes), fmt(hosted.pss_4x3_npx_mb.direct)],
      ['daemon hosts them once + 4 shims', String(hosted.pss_4x3_npx_mb.daemon_processes), fmt(hosted.pss_4x3_npx_mb.daemon)],
      ['ratio', '', `${fmt(hosted.pss_4x3_npx_mb.ratio, 2)}x`],
    ]),
    '',
    ...asksClientLines(asksClient),
    '',
    ...httpLines(http),
    '',
    ...cpuLines(cpu),
    '',
    'budget (DESIGN.md, "Performance budget")',
    table(
      [
        ['figure', 'measured', 'budget', ''],
        ...budgets.map((b) => [
          b.figure,
          `${fmt(b.value, b.unit === 'x' ? 2 : 1)} ${b.unit}`,
          `${b.kind === 'max' ? '<=' : '>='} ${b.limit} ${b.unit}`,
          b.ok ? 'ok' : 'MISSED',
        ]),
      ],
      true,
    ),
    '',
    `written: ${file}`,
  );
  const stripped = STRIPPED_ENV.filter((k) => process.env[k] !== undefined);
  if (stripped.length > 0)
    out.push(`note: ${stripped.join(', ')} set here; removed from every child's environment (machine setup, not exai-ws)`);
  if (loadBefore[0]! > 0.5)
    out.push(`note: load average was ${loadBefore[0]!.toFixed(2)} at start; other work on this machine skews the figures`);
  process.stdout.write(`${out.join('\n')}\n`);
}

runBench(main);
