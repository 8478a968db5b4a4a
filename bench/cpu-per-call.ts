/**
 * CPU time per call with 16 in flight (issue 23, "the hot path made lean"): what each process
 * spends on one `tools/call`, summed over the call's messages, read from `/proc/<pid>/stat`
 * (utime + stime, every thread of the process, 10 ms ticks) around windows of calls kept 16
 * outstanding by the official SDK client in this process. Four modes, alternated round by round:
 *
 *   shim-hosted    client -> shim -> daemon -> a hosted SDK server (`bench__echo`, echo-server.ts)
 *   shim-builtin   client -> shim -> daemon's built-in `version`
 *   stdio-builtin  client -> `exai-ws stdio` (the same `version`, in one process)
 *   direct-hosted  client -> the same server over stdio (`echo`), no exai-ws at all
 *
 * The figures: the shim's CPU per call (both shim modes), the daemon's per hosted call (the
 * daemon process only: on top of the server's own work) and per built-in call against the
 * stdio process's, a direct call's client + server, and the shim path's calls/s against direct
 * (measured, and as the ratio of total CPU per call, which is what bounds calls/s on 2 cores).
 *
 * Alone: `npm run bench -- --only cpu` or `node dist/bench/cpu-per-call.js` (`--quick`,
 * `--modes a,b`, `--rounds N`, `--round-ms MS`, `--prof DIR`: the daemon and the shims run
 * under `node --cpu-prof --cpu-prof-dir DIR`, for reading where the time goes). Loopback only,
 * a daemon on port 0 in its own EXAI_WS_HOME, every loop bounded in count and time, every
 * process killed at the end.
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { DAEMON_NODE_OPTIONS } from '../src/local/daemon-launch.js';
import {
  CLI,
  ROOT,
  SHIM,
  childEnv,
  connectStdio,
  daemonHealth,
  installCleanup,
  makeHome,
  readCpuMs,
  runBench,
  sleep,
  startDaemon,
  writePhaseResults,
  type DaemonProc,
  type StdioConnection,
} from './procs.js';
import { VERSION_CALL, isEntryPoint, throughput, type ToolCall } from './calls.js';
import { median, round } from './stats.js';

const WATCHDOG_MS = 5 * 60_000;
/**
 * The hosted server: a minimal SDK server (no file or network work per call, unlike
 * server-memory, whose every call reads its graph file: the server then sets the pace and the
 * daemon sees its messages one at a time, which measures the server rather than the relay).
 */
const ECHO_SERVER = join(ROOT, 'dist', 'bench', 'echo-server.js');
const HOSTED_NAME = 'bench';
const HOSTED_TOOL: ToolCall = { name: 'echo', arguments: { message: 'bench' } };

/** The budgets, in microseconds of CPU per call. */
export const SHIM_BUDGET_US = 8;
export const DAEMON_HOSTED_BUDGET_US = 15;

export interface CpuPlan {
  inflight: number;
  /** Per mode, before the first round (JIT, caches). */
  warmupMs: number;
  /** One measured window per mode per round; modes alternate, the order rotating by round. */
  roundMs: number;
  rounds: number;
  /** A bound on each window besides its time. */
  maxCallsPerRound: number;
}

export const CPU_FULL: CpuPlan = { inflight: 16, warmupMs: 1_000, roundMs: 1_500, rounds: 5, maxCallsPerRound: 200_000 };
export const CPU_QUICK: CpuPlan = { ...CPU_FULL, warmupMs: 400, roundMs: 1_000, rounds: 2 };

export type CpuMode = 'shim-hosted' | 'shim-builtin' | 'stdio-builtin' | 'direct-hosted';
export const CPU_MODES: readonly CpuMode[] = ['shim-hosted', 'shim-builtin', 'stdio-builtin', 'direct-hosted'];

/** A process's role in a mode: whose CPU a column shows. */
type Role = 'client' | 'shim' | 'daemon' | 'server' | 'stdio';

export interface ModeFigures {
  calls: number;
  ms: number;
  perS: number;
  /** CPU per call by role over all rounds (total CPU / total calls), microseconds. */
  cpuUsPerCall: Partial<Record<Role, number>>;
  /** The same, round by round: the spread. */
  roundsUsPerCall: Partial<Record<Role, number[]>>;
}

export interface CpuResults {
  plan: CpuPlan;
  loadavg_before: number[];
  loadavg_after: number[];
  hosted_tool: string;
  modes: Partial<Record<CpuMode, ModeFigures>>;
  /** The headline figures (microseconds of CPU per call; ratios of calls/s). */
  figures: {
    shim_us: number;
    daemon_hosted_us: number;
    daemon_builtin_us: number;
    stdio_builtin_us: number;
    direct_hosted_client_server_us: number;
    direct_builtin_client_server_us: number;
    ratio_hosted_measured: number;
    ratio_hosted_cpu: number;
    ratio_builtin_measured: number;
    ratio_builtin_cpu: number;
  };
}

interface Lane {
  client: Client;
  call: ToolCall;
  pids: Partial<Record<Role, number>>;
}

export interface CpuOptions {
  modes?: readonly CpuMode[];
  /** Run the daemon and the shims under `--cpu-prof` into this directory. */
  profDir?: string;
}

function profArgs(dir: string | undefined, name: string): string[] {
  return dir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', join(dir, name)];
}

/** The hosted server's pid from `/health`, once the daemon reports it ready. */
async function hostedPid(daemon: DaemonProc): Promise<number> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const server = (await daemonHealth(daemon))?.servers?.find((s) => s.name === HOSTED_NAME);
    if (server?.state === 'ready' && server.pid !== null) return server.pid;
    await sleep(50);
  }
  throw new Error(`the daemon did not report ${HOSTED_NAME} ready within 15 s`);
}

/** Starts what `modes` need; every connection is closed by the returned closer. */
async function openLanes(
  modes: readonly CpuMode[],
  options: CpuOptions,
): Promise<{ lanes: Partial<Record<CpuMode, Lane>>; close: () => Promise<void> }> {
  const closers: (() => Promise<void>)[] = [];
  const lanes: Partial<Record<CpuMode, Lane>> = {};
  const client = process.pid;
  try {
    const home = makeHome();
    const hostedEntry = { command: process.execPath, args: [ECHO_SERVER] };
    if (modes.some((m) => m.startsWith('shim-'))) {
      const config = join(home, 'config.json');
      writeFileSync(config, JSON.stringify({ mcpServers: { [HOSTED_NAME]: { ...hostedEntry, start: 'eager' } } }));
      const daemon = await startDaemon({ EXAI_WS_CONFIG: config }, undefined, [
        ...DAEMON_NODE_OPTIONS,
        ...profArgs(options.profDir, 'daemon'),
      ]);
      closers.push(() => daemon.stop());
      const server = await hostedPid(daemon);
      for (const [mode, call] of [
        ['shim-hosted', { ...HOSTED_TOOL, name: `${HOSTED_NAME}__${HOSTED_TOOL.name}` }],
        ['shim-builtin', VERSION_CALL],
      ] as const) {
        if (!modes.includes(mode)) continue;
        const shim = await connectStdio(process.execPath, [...profArgs(options.profDir, 'shim'), SHIM], childEnv(daemon.home));
        closers.push(() => shim.close());
        // As clients do before calling: the daemon then resolves names from the merged list.
        await shim.client.listTools();
        const pids =
          mode === 'shim-hosted' ? { client, shim: shim.pid, daemon: daemon.pid, server } : { client, shim: shim.pid, daemon: daemon.pid };
        lanes[mode] = { client: shim.client, call, pids };
      }
    }
    if (modes.includes('stdio-builtin')) {
      const stdio: StdioConnection = await connectStdio(process.execPath, [CLI, 'stdio'], childEnv(makeHome()));
      closers.push(() => stdio.close());
      lanes['stdio-builtin'] = { client: stdio.client, call: VERSION_CALL, pids: { client, stdio: stdio.pid } };
    }
    if (modes.includes('direct-hosted')) {
      const direct = await connectStdio(process.execPath, hostedEntry.args, childEnv(home));
      closers.push(() => direct.close());
      lanes['direct-hosted'] = { client: direct.client, call: HOSTED_TOOL, pids: { client, server: direct.pid } };
    }
  } catch (error) {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    throw error;
  }
  return {
    lanes,
    close: async () => {
      for (const close of closers.reverse()) await close().catch(() => undefined);
    },
  };
}

/** One window of `lane` at `plan.inflight` outstanding: calls, milliseconds and CPU ms by role. */
async function measureWindow(lane: Lane, plan: CpuPlan): Promise<{ calls: number; ms: number; cpuMs: Partial<Record<Role, number>> }> {
  const roles = Object.entries(lane.pids) as [Role, number][];
  const before = roles.map(([, pid]) => readCpuMs(pid));
  const r = await throughput(lane.client, lane.call, plan.inflight, plan.roundMs, plan.maxCallsPerRound);
  const cpuMs: Partial<Record<Role, number>> = {};
  roles.forEach(([role, pid], i) => (cpuMs[role] = readCpuMs(pid) - before[i]!));
  return { calls: r.calls, ms: r.ms, cpuMs };
}

function sumOf(values: readonly (number | undefined)[]): number {
  return values.reduce<number>((a, b) => a + (b ?? 0), 0);
}

/** CPU per call in microseconds, pooled over the modes given (total CPU / total calls). */
function pooled(modes: (ModeFigures | undefined)[], role: Role): number {
  const present = modes.filter((m): m is ModeFigures => m?.cpuUsPerCall[role] !== undefined);
  const calls = sumOf(present.map((m) => m.calls));
  return calls === 0 ? NaN : sumOf(present.map((m) => m.cpuUsPerCall[role]! * m.calls)) / calls;
}

function headline(m: Partial<Record<CpuMode, ModeFigures>>): CpuResults['figures'] {
  const total = (mode: CpuMode) => sumOf(Object.values(m[mode]?.cpuUsPerCall ?? {}));
  const directHosted = total('direct-hosted');
  const directBuiltin = total('stdio-builtin');
  return {
    shim_us: pooled([m['shim-hosted'], m['shim-builtin']], 'shim'),
    daemon_hosted_us: m['shim-hosted']?.cpuUsPerCall.daemon ?? NaN,
    daemon_builtin_us: m['shim-builtin']?.cpuUsPerCall.daemon ?? NaN,
    stdio_builtin_us: m['stdio-builtin']?.cpuUsPerCall.stdio ?? NaN,
    direct_hosted_client_server_us: directHosted || NaN,
    direct_builtin_client_server_us: directBuiltin || NaN,
    ratio_hosted_measured: (m['shim-hosted']?.perS ?? NaN) / (m['direct-hosted']?.perS ?? NaN),
    ratio_hosted_cpu: directHosted / total('shim-hosted'),
    ratio_builtin_measured: (m['shim-builtin']?.perS ?? NaN) / (m['stdio-builtin']?.perS ?? NaN),
    ratio_builtin_cpu: directBuiltin / total('shim-builtin'),
  };
}

/** Runs the modes, alternated round by round with the order rotating, and sums what they cost. */
export async function runCpuPerCall(plan: CpuPlan, progress: (line: string) => void, options: CpuOptions = {}): Promise<CpuResults> {
  const modes = options.modes ?? CPU_MODES;
  const loadBefore = loadavg();
  progress(`cpu per call: ${modes.join(', ')}; ${plan.inflight} in flight, ${plan.rounds} x ${plan.roundMs} ms per mode, alternating`);
  const { lanes, close } = await openLanes(modes, options);
  const totals = new Map<
    CpuMode,
    { calls: number; ms: number; cpuMs: Partial<Record<Role, number>>; rounds: Partial<Record<Role, number[]>> }
  >();
  try {
    for (const mode of modes) {
      const lane = lanes[mode]!;
      await throughput(lane.client, lane.call, plan.inflight, plan.warmupMs, plan.maxCallsPerRound);
      totals.set(mode, { calls: 0, ms: 0, cpuMs: {}, rounds: {} });
    }
    for (let round = 0; round < plan.rounds; round++) {
      for (let k = 0; k < modes.length; k++) {
        const mode = modes[(round + k) % modes.length]!;
        const w = await measureWindow(lanes[mode]!, plan);
        const t = totals.get(mode)!;
        t.calls += w.calls;
        t.ms += w.ms;
        for (const [role, ms] of Object.entries(w.cpuMs) as [Role, number][]) {
          t.cpuMs[role] = (t.cpuMs[role] ?? 0) + ms;
          (t.rounds[role] ??= []).push(w.calls > 0 ? (ms * 1000) / w.calls : NaN);
        }
      }
    }
  } finally {
    await close();
  }
  const results: Partial<Record<CpuMode, ModeFigures>> = {};
  for (const [mode, t] of totals) {
    const cpuUsPerCall = Object.fromEntries(Object.entries(t.cpuMs).map(([role, ms]) => [role, (ms * 1000) / t.calls]));
    results[mode] = { calls: t.calls, ms: t.ms, perS: t.calls / (t.ms / 1000), cpuUsPerCall, roundsUsPerCall: t.rounds };
  }
  return {
    plan,
    loadavg_before: loadBefore,
    loadavg_after: loadavg(),
    hosted_tool: `SDK echo server (bench/echo-server.ts) ${HOSTED_TOOL.name}`,
    modes: results,
    figures: headline(results),
  };
}

/** The budgets this phase checks, for the bench's budget table. */
export function cpuBudgets(r: CpuResults): { figure: string; value: number; kind: 'max' | 'min'; limit: number; unit: string }[] {
  return [
    { figure: `shim CPU per call, ${r.plan.inflight} in flight`, value: r.figures.shim_us, kind: 'max', limit: SHIM_BUDGET_US, unit: 'us' },
    {
      figure: `daemon CPU per hosted call, ${r.plan.inflight} in flight`,
      value: r.figures.daemon_hosted_us,
      kind: 'max',
      limit: DAEMON_HOSTED_BUDGET_US,
      unit: 'us',
    },
  ];
}

function fmt(value: number | undefined, digits = 1): string {
  return value !== undefined && Number.isFinite(value) ? round(value, digits).toFixed(digits) : '-';
}

/** "min-max" over rounds of one role in one mode (pooled modes: every round of each). */
function spread(r: CpuResults, modes: CpuMode[], role: Role): string {
  const values = modes.flatMap((m) => r.modes[m]?.roundsUsPerCall[role] ?? []).filter((v) => Number.isFinite(v));
  return values.length === 0 ? '-' : `${fmt(Math.min(...values))}-${fmt(Math.max(...values))} (med ${fmt(median(values))})`;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  return rows.map((row) =>
    `  ${row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')}`.trimEnd(),
  );
}

export function cpuLines(r: CpuResults): string[] {
  const f = r.figures;
  const m = r.modes;
  const verdict = (value: number, limit: number) =>
    Number.isFinite(value) ? (value <= limit ? `<= ${limit} ok` : `<= ${limit} MISSED`) : `<= ${limit}`;
  const directSpread = (mode: CpuMode) => {
    const rounds = m[mode]?.roundsUsPerCall ?? {};
    const roles = Object.values(rounds);
    const n = Math.min(...roles.map((v) => v.length));
    const totals = Array.from({ length: Number.isFinite(n) ? n : 0 }, (_, i) => sumOf(roles.map((v) => v[i])));
    return totals.length === 0 ? '-' : `${fmt(Math.min(...totals))}-${fmt(Math.max(...totals))} (med ${fmt(median(totals))})`;
  };
  const perS = (mode: CpuMode) => fmt(m[mode]?.perS, 0);
  return [
    `CPU time per call, ${r.plan.inflight} in flight (us, /proc utime+stime summed over the call's messages; ${r.plan.rounds} x ${r.plan.roundMs / 1000} s per mode, alternating; hosted: ${r.hosted_tool}; load ${fmt(r.loadavg_before[0], 2)} -> ${fmt(r.loadavg_after[0], 2)})`,
    ...table([
      ['', 'us/call', 'rounds min-max', 'budget'],
      [
        'shim, relaying a call (hosted and built-in)',
        fmt(f.shim_us),
        spread(r, ['shim-hosted', 'shim-builtin'], 'shim'),
        verdict(f.shim_us, SHIM_BUDGET_US),
      ],
      [
        'daemon, a hosted call (daemon process only)',
        fmt(f.daemon_hosted_us),
        spread(r, ['shim-hosted'], 'daemon'),
        verdict(f.daemon_hosted_us, DAEMON_HOSTED_BUDGET_US),
      ],
      ['daemon, built-in version', fmt(f.daemon_builtin_us), spread(r, ['shim-builtin'], 'daemon'), ''],
      ['exai-ws stdio, built-in version (its process)', fmt(f.stdio_builtin_us), spread(r, ['stdio-builtin'], 'stdio'), ''],
      ['hosted server, through the daemon', fmt(m['shim-hosted']?.cpuUsPerCall.server), spread(r, ['shim-hosted'], 'server'), ''],
      ['client, through the shim (hosted)', fmt(m['shim-hosted']?.cpuUsPerCall.client), spread(r, ['shim-hosted'], 'client'), ''],
      ['direct stdio hosted: client + server', fmt(f.direct_hosted_client_server_us), directSpread('direct-hosted'), ''],
      ['direct stdio built-in: client + stdio', fmt(f.direct_builtin_client_server_us), directSpread('stdio-builtin'), ''],
    ]),
    `  shim path / direct, calls/s measured (by CPU per call): hosted ${fmt(f.ratio_hosted_measured, 2)}x (${fmt(f.ratio_hosted_cpu, 2)}x), built-in ${fmt(f.ratio_builtin_measured, 2)}x (${fmt(f.ratio_builtin_cpu, 2)}x); calls/s: shim hosted ${perS('shim-hosted')}, direct hosted ${perS('direct-hosted')}, shim built-in ${perS('shim-builtin')}, stdio ${perS('stdio-builtin')}`,
  ];
}

function argValue(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

/** The phase alone: `--quick`, `--modes`, `--rounds`, `--round-ms`, `--prof DIR`. */
export async function mainCpuPerCall(quick: boolean, args: readonly string[] = process.argv.slice(2)): Promise<void> {
  installCleanup(WATCHDOG_MS);
  const startedAt = new Date();
  const plan: CpuPlan = { ...(quick ? CPU_QUICK : CPU_FULL) };
  const rounds = argValue(args, '--rounds');
  const roundMs = argValue(args, '--round-ms');
  if (rounds !== undefined) plan.rounds = Math.max(1, Math.min(100, Number(rounds)));
  if (roundMs !== undefined) plan.roundMs = Math.max(100, Math.min(30_000, Number(roundMs)));
  const modeList = argValue(args, '--modes')?.split(',') as CpuMode[] | undefined;
  const unknown = modeList?.filter((m) => !CPU_MODES.includes(m));
  if (unknown !== undefined && unknown.length > 0)
    throw new Error(`--modes: unknown ${unknown.join(', ')}; expected ${CPU_MODES.join(', ')}`);
  const progress = (line: string) => process.stderr.write(`bench: ${line}\n`);
  const results = await runCpuPerCall(plan, progress, { modes: modeList, profDir: argValue(args, '--prof') });
  writePhaseResults('cpu', startedAt, quick, 'cpu_per_call', results, cpuLines(results));
}

if (isEntryPoint(import.meta.url)) runBench(() => mainCpuPerCall(process.argv.includes('--quick')));
