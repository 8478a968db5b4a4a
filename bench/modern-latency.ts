/**
 * A 2026-07-28 call through the daemon's `/mcp` against the official v2 SDK's own HTTP handler
 * serving the same tool (issue 24). One server process (modern-echo-server.ts: `createMcpHandler`,
 * one tool `echo`, 2026-07-28 only) and one daemon hosting it as a `url` server (so the daemon
 * speaks 2026-07-28 to it; checked in the daemon's log). The same client, the official v2 SDK
 * client pinned to 2026-07-28 over Streamable HTTP, in this process, calls:
 *
 *   A  sdk       `echo` on the SDK's handler directly;
 *   B  /mcp      `bench__echo` through the daemon's `/mcp` (with its token), the same server behind;
 *   B' /mcp/NAME `echo` through the daemon's one-server view `/mcp/bench` (diagnostic);
 *   C  built-in  the daemon's own `version` tool through `/mcp` (reference: no upstream hop).
 *
 * Each round runs every leg in turn (the order rotating round by round): a block of sequential
 * calls (latency samples, microseconds) and a window with a fixed number of calls in flight
 * (calls/s). Figures per leg are medians over the rounds, with CPU time per call by process.
 *
 * Standalone: `node dist/bench/modern-latency.js [--quick]` or `npm run bench -- --only modern`.
 * Loopback only; every loop bounded in count and time; every process killed at the end.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { isEntryPoint } from './calls.js';
import {
  ROOT,
  childEnv,
  installCleanup,
  makeHome,
  readCpuMs,
  runBench,
  startDaemon,
  track,
  writePhaseResults,
  type DaemonProc,
} from './procs.js';
import { median, round, summarize } from './stats.js';

const SERVER = join(ROOT, 'dist', 'bench', 'modern-echo-server.js');
const MODERN = '2026-07-28';
const WATCHDOG_MS = 6 * 60_000;
/** The bound on one block of sequential calls (warm-up included), besides its count. */
const BLOCK_MAX_MS = 60_000;

export interface ModernPlan {
  warmupCalls: number;
  /** Sequential calls per leg, over all rounds. */
  sequentialCalls: number;
  rounds: number;
  inflight: number;
  /** One throughput window per leg and round. */
  throughputMs: number;
  throughputWarmupMs: number;
  /** Bounds besides the counts: no round begins past this (ms from the start), and calls per throughput window. */
  sequentialMaxMs: number;
  throughputMaxCalls: number;
}

export const MODERN_FULL: ModernPlan = {
  warmupCalls: 200,
  sequentialCalls: 2_000,
  rounds: 5,
  inflight: 16,
  throughputMs: 1_000,
  throughputWarmupMs: 500,
  sequentialMaxMs: 180_000,
  throughputMaxCalls: 100_000,
};

export const MODERN_QUICK: ModernPlan = {
  ...MODERN_FULL,
  warmupCalls: 50,
  sequentialCalls: 500,
  throughputMs: 400,
  throughputWarmupMs: 200,
};

type LegName = 'sdk' | 'mcp' | 'mcpOne' | 'builtin';
const LEGS: readonly LegName[] = ['sdk', 'mcp', 'mcpOne', 'builtin'];
const LABELS: Record<LegName, string> = {
  sdk: 'A  SDK handler, direct',
  mcp: 'B  daemon /mcp -> SDK handler',
  mcpOne: "B' daemon /mcp/bench -> SDK handler",
  builtin: 'C  daemon /mcp, built-in version',
};

interface Leg {
  name: LegName;
  client: Client;
  tool: string;
  args: Record<string, unknown>;
  /** The processes besides this one that serve the leg, for CPU time per call. */
  pids: Record<string, number>;
}

export interface LegFigures {
  /** Medians over the rounds of each round's figure (microseconds, calls/s). */
  p50_us: number;
  p90_us: number;
  p99_us: number;
  calls_per_s: number;
  /** Over every sequential sample pooled. */
  pooled: ReturnType<typeof summarize>;
  rounds_p50_us: number[];
  rounds_calls_per_s: number[];
  /** CPU time per call in the throughput windows, by process (microseconds). */
  cpu_us_per_call: Record<string, number>;
}

export interface ModernResults {
  plan: ModernPlan;
  legs: Record<LegName, LegFigures>;
  /** B against A: p50 ratio (B / A) and calls/s ratio (B / A). */
  ratio_mcp_vs_sdk: { p50: number; calls_per_s: number };
  upstream_era: unknown;
  loadavg_before: number[];
  loadavg_after: number[];
}

function progress(line: string): void {
  process.stderr.write(`bench: modern: ${line}\n`);
}

/** Starts the echo server in its own process; resolves its `/mcp` URL and pid. */
async function startEchoServer(): Promise<{ url: string; pid: number }> {
  const proc = spawn(process.execPath, [SERVER], { env: childEnv(makeHome()), stdio: ['ignore', 'pipe', 'pipe'] });
  track(proc.pid);
  let err = '';
  proc.stderr?.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-4_096)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the echo server did not listen within 10 s: ${err}`)), 10_000);
    proc.once('exit', (code) => reject(new Error(`the echo server exited (${String(code)}): ${err}`)));
    let out = '';
    proc.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const match = /listening (\d+)/.exec(out);
      if (!match) return;
      clearTimeout(timer);
      resolve({ url: `http://127.0.0.1:${match[1]}/mcp`, pid: proc.pid ?? -1 });
    });
  });
}

/** The official v2 client pinned to 2026-07-28 over Streamable HTTP at `url`. */
async function modernClient(url: string, token?: string): Promise<Client> {
  const client = new Client(
    { name: 'exai-ws-bench-modern', version: '1.0.0' },
    { versionNegotiation: { mode: { pin: MODERN } }, capabilities: {} },
  );
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
  return client;
}

async function callOnce(leg: Leg): Promise<string> {
  const result = await leg.client.callTool({ name: leg.tool, arguments: leg.args });
  const content = result.content as { type: string; text?: string }[] | undefined;
  if (result.isError) throw new Error(`${leg.name}: ${leg.tool} failed: ${JSON.stringify(content)}`);
  return content?.[0]?.text ?? '';
}

async function sequential(leg: Leg, calls: number, deadline: number, into: number[] | null): Promise<void> {
  for (let i = 0; i < calls && performance.now() < deadline; i++) {
    const t0 = performance.now();
    await callOnce(leg);
    into?.push((performance.now() - t0) * 1000);
  }
}

/** Exactly `inflight` calls outstanding for `ms` (or `maxCalls`): calls made and the time taken. */
async function window(leg: Leg, inflight: number, ms: number, maxCalls: number): Promise<{ calls: number; ms: number }> {
  let calls = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (calls < maxCalls && performance.now() - t0 < ms) {
      await callOnce(leg);
      calls++;
    }
  };
  await Promise.all(Array.from({ length: inflight }, lane));
  return { calls, ms: performance.now() - t0 };
}

/** The era the daemon logged for a hosted server when it became ready (null before that). */
function loggedEra(daemon: DaemonProc, server: string): unknown {
  let text = '';
  try {
    text = readFileSync(join(daemon.home, 'logs', 'ws_daemon.log'), 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    if (!line.includes('server ready')) continue;
    const entry = JSON.parse(line) as { msg?: string; server?: string; era?: unknown };
    if (entry.msg === 'server ready' && entry.server === server) return entry.era;
  }
  return null;
}

/** Each leg answers as expected, and runs where it should, before anything is timed. */
async function checkLegs(legs: Leg[], daemon: DaemonProc): Promise<unknown> {
  for (const leg of legs) {
    const text = await callOnce(leg);
    const ok = leg.name === 'builtin' ? text.includes('"name":"exai-ws"') : text === 'echo: bench';
    if (!ok) throw new Error(`${leg.name}: unexpected answer ${text}`);
  }
  const era = loggedEra(daemon, 'bench');
  if (era !== 'modern') throw new Error(`the daemon speaks to the hosted SDK server in era ${String(era)}, not 2026-07-28`);
  return era;
}

interface Samples {
  seq: number[][];
  perS: number[];
  cpuMs: Record<string, number>;
  calls: number;
}

/** Runs every leg round by round, the order rotating; sequential blocks then throughput windows. */
async function measure(plan: ModernPlan, legs: Leg[]): Promise<Record<LegName, Samples>> {
  const samples = Object.fromEntries(legs.map((l) => [l.name, { seq: [], perS: [], cpuMs: {}, calls: 0 }])) as unknown as Record<
    LegName,
    Samples
  >;
  // A round begins only before this deadline, and then runs whole (each block bounded on its
  // own), so every leg gets as many samples as the others even on a slow machine.
  const deadline = performance.now() + plan.sequentialMaxMs;
  const blockBound = () => performance.now() + BLOCK_MAX_MS;
  for (const leg of legs) await sequential(leg, plan.warmupCalls, blockBound(), null);
  for (const leg of legs) await window(leg, plan.inflight, plan.throughputWarmupMs, plan.throughputMaxCalls);
  const block = Math.ceil(plan.sequentialCalls / plan.rounds);
  progress(`${plan.rounds} rounds: ${block} sequential calls and ${plan.throughputMs} ms with ${plan.inflight} in flight per leg`);
  for (let r = 0; r < plan.rounds && performance.now() < deadline; r++) {
    const order = legs.map((_, i) => legs[(i + r) % legs.length]!);
    for (const leg of order) {
      const into: number[] = [];
      await sequential(leg, block, blockBound(), into);
      samples[leg.name].seq.push(into);
    }
    for (const leg of order) {
      const s = samples[leg.name];
      const pids = Object.entries({ client: process.pid, ...leg.pids });
      const before = pids.map(([, pid]) => readCpuMs(pid));
      const w = await window(leg, plan.inflight, plan.throughputMs, plan.throughputMaxCalls);
      pids.forEach(([name, pid], i) => (s.cpuMs[name] = (s.cpuMs[name] ?? 0) + readCpuMs(pid) - before[i]!));
      s.perS.push(w.calls / (w.ms / 1000));
      s.calls += w.calls;
    }
  }
  return samples;
}

function figures(s: Samples): LegFigures {
  const perRound = s.seq.filter((r) => r.length > 0).map((r) => summarize(r));
  return {
    p50_us: median(perRound.map((r) => r.p50)),
    p90_us: median(perRound.map((r) => r.p90)),
    p99_us: median(perRound.map((r) => r.p99)),
    calls_per_s: median(s.perS),
    pooled: summarize(s.seq.flat()),
    rounds_p50_us: perRound.map((r) => round(r.p50, 0)),
    rounds_calls_per_s: s.perS.map((v) => round(v, 0)),
    cpu_us_per_call: Object.fromEntries(Object.entries(s.cpuMs).map(([k, ms]) => [k, round((ms * 1000) / s.calls, 0)])),
  };
}

export async function runModernLatency(plan: ModernPlan): Promise<ModernResults> {
  const loadBefore = loadavg();
  const server = await startEchoServer();
  const configHome = makeHome();
  const config = join(configHome, 'config.json');
  writeFileSync(config, JSON.stringify({ mcpServers: { bench: { url: server.url } } }));
  const daemon = await startDaemon({ EXAI_WS_CONFIG: config });
  const clients: Client[] = [];
  try {
    const connect = async (url: string, token?: string) => {
      const c = await modernClient(url, token);
      clients.push(c);
      return c;
    };
    const base = `http://127.0.0.1:${daemon.port}`;
    const echo = { text: 'bench' };
    const legs: Leg[] = [
      { name: 'sdk', client: await connect(server.url), tool: 'echo', args: echo, pids: { server: server.pid } },
      {
        name: 'mcp',
        client: await connect(`${base}/mcp`, daemon.token),
        tool: 'bench__echo',
        args: echo,
        pids: { daemon: daemon.pid, server: server.pid },
      },
      {
        name: 'mcpOne',
        client: await connect(`${base}/mcp/bench`, daemon.token),
        tool: 'echo',
        args: echo,
        pids: { daemon: daemon.pid, server: server.pid },
      },
      { name: 'builtin', client: await connect(`${base}/mcp`, daemon.token), tool: 'version', args: {}, pids: { daemon: daemon.pid } },
    ];
    const era = await checkLegs(legs, daemon);
    const samples = await measure(plan, legs);
    const legsOut = Object.fromEntries(LEGS.map((n) => [n, figures(samples[n])])) as Record<LegName, LegFigures>;
    return {
      plan,
      legs: legsOut,
      ratio_mcp_vs_sdk: {
        p50: legsOut.mcp.p50_us / legsOut.sdk.p50_us,
        calls_per_s: legsOut.mcp.calls_per_s / legsOut.sdk.calls_per_s,
      },
      upstream_era: era,
      loadavg_before: loadBefore,
      loadavg_after: loadavg(),
    };
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    await daemon.stop();
  }
}

function fmt(value: number, digits = 0): string {
  return Number.isFinite(value) ? round(value, digits).toFixed(digits) : '-';
}

export function modernLines(r: ModernResults): string[] {
  const rows = [
    ['leg', 'min us', 'p50 us', 'p90 us', 'p99 us', `calls/s (${r.plan.inflight} in flight)`, 'CPU us/call (client, daemon, server)'],
  ];
  for (const n of LEGS) {
    const l = r.legs[n];
    const cpu = ['client', 'daemon', 'server']
      .map((k) => (l.cpu_us_per_call[k] === undefined ? '-' : String(l.cpu_us_per_call[k])))
      .join(' / ');
    rows.push([LABELS[n], fmt(l.pooled.min), fmt(l.p50_us), fmt(l.p90_us), fmt(l.p99_us), fmt(l.calls_per_s), cpu]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const table = rows.map((row) => `  ${row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')}`);
  return [
    `2026-07-28 call (v2 SDK client pinned, Streamable HTTP): daemon /mcp against the SDK's own handler,`,
    `the same server process behind both (upstream era: ${String(r.upstream_era)}); medians of ${r.plan.rounds} alternated rounds,`,
    `${LEGS.map((n) => r.legs[n].pooled.n).join(' / ')} sequential calls per leg after ${r.plan.warmupCalls} warm-up`,
    ...table,
    `  B / A: p50 ${fmt(r.ratio_mcp_vs_sdk.p50, 2)}x, calls/s ${fmt(r.ratio_mcp_vs_sdk.calls_per_s, 2)}x`,
  ];
}

export async function mainModernLatency(quick: boolean): Promise<void> {
  installCleanup(WATCHDOG_MS);
  const startedAt = new Date();
  const results = await runModernLatency(quick ? MODERN_QUICK : MODERN_FULL);
  writePhaseResults('modern-latency', startedAt, quick, 'modern_latency', results, modernLines(results));
}

if (isEntryPoint(import.meta.url)) runBench(() => mainModernLatency(process.argv.includes('--quick')));
