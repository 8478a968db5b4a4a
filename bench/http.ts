/**
 * Streamable HTTP figures (issue 12), all with the official SDK client in this process:
 *
 *   1. the daemon's `/mcp` against the official SDK's own Streamable HTTP server
 *      (sdk-http-server.ts, its own process, serving the same built-in `version` tool), with the
 *      shim path (shim + daemon), direct stdio (`exai-ws stdio`) and, as a diagnostic, the SDK's
 *      server answering plain JSON (`enableJsonResponse`) beside them: sequential
 *      p50 / p90 / p99 and calls/s with 32 in flight, modes alternated block by block and round
 *      by round in one run, CPU time per call by process;
 *   2. a hosted server (server-everything `echo`) through `/mcp`, through `/mcp/everything`
 *      (the one-server view) and through a shim, against the same server over direct stdio:
 *      sequential p50 / p99, alternated.
 *
 * Standalone: `npm run bench -- --only http` or `node dist/bench/http.js` (`--quick` for
 * smaller counts). Loopback only, every loop bounded in count and time, every process killed
 * at the end.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  daemonHealth,
  ROOT,
  EVERYTHING,
  childEnv,
  connectClient,
  connectStdio,
  installCleanup,
  makeHome,
  readCpuMs,
  runBench,
  startDaemon,
  track,
  untrack,
  waitExit,
  type CallPlan,
  type DaemonProc,
  writePhaseResults,
} from './procs.js';
import { VERSION_CALL, callOk, isEntryPoint, sequential, throughput } from './calls.js';
import { round, summarize, type Summary } from './stats.js';

const SDK_SERVER = join(ROOT, 'dist', 'bench', 'sdk-http-server.js');
const WATCHDOG_MS = 8 * 60_000;

export interface HttpPlan extends CallPlan {
  hostedCalls: number;
}

export const HTTP_FULL: HttpPlan = {
  warmupCalls: 300,
  sequentialCalls: 2_000,
  blockCalls: 250,
  sequentialMaxMs: 90_000,
  inflight: 32,
  throughputMs: 1_000,
  throughputRounds: 3,
  throughputWarmupMs: 500,
  throughputMaxCalls: 300_000,
  hostedCalls: 1_000,
};

export const HTTP_QUICK: HttpPlan = {
  ...HTTP_FULL,
  warmupCalls: 100,
  sequentialCalls: 400,
  blockCalls: 100,
  throughputRounds: 1,
  throughputWarmupMs: 250,
  hostedCalls: 300,
};

/**
 * Built-in `version`: the SDK's HTTP server (its default, an SSE stream per POST), the same with
 * `enableJsonResponse` (a diagnostic: what the SSE framing costs it), the daemon's /mcp, shim +
 * daemon, direct stdio.
 */
type Mode = 'sdk_http' | 'sdk_http_json' | 'daemon_http' | 'shim' | 'direct';
const MODES: readonly Mode[] = ['sdk_http', 'sdk_http_json', 'daemon_http', 'shim', 'direct'];
/** Hosted server-everything `echo`: direct stdio, /mcp, /mcp/everything, shim + daemon. */
type HostedMode = 'direct' | 'daemon_http' | 'daemon_http_one' | 'shim';
const HOSTED_MODES: readonly HostedMode[] = ['direct', 'daemon_http', 'daemon_http_one', 'shim'];

export interface ModeFigures {
  latencyUs: Summary;
  perS: number;
  roundsPerS: number[];
  /** CPU time per call of each process involved, in microseconds (32 in flight). */
  cpuUsPerCall: Record<string, number>;
}

export interface HttpResults {
  plan: HttpPlan;
  tool: string;
  modes: Record<Mode, ModeFigures>;
  /** daemon /mcp against the SDK's server: p50 and p99 ratios (lower is better), calls/s ratio (higher is better). */
  ratio: { p50: number; p99: number; throughput: number };
  hosted: {
    tool: string;
    latencyUs: Record<HostedMode, Summary>;
    /** CPU time per sequential call of each process involved, in microseconds. */
    cpuUsPerCall: Record<HostedMode, Record<string, number>>;
    ratio: { p50: number; p99: number };
  };
  loadavg_before: number[];
  loadavg_after: number[];
}

/** A connected SDK client of one mode; close() ends its session (and its process, if any). */
interface Caller {
  client: Client;
  close(): Promise<void>;
}

/** The official SDK client over Streamable HTTP, with the bearer token on every request. */
async function connectHttp(url: string, token: string): Promise<Caller> {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const client = new Client({ name: 'exai-ws-bench-http', version: '1.0.0' }, { capabilities: {} });
  await client.connect(transport);
  return {
    client,
    close: async () => {
      await transport.terminateSession().catch(() => undefined);
      await client.close().catch(() => undefined);
    },
  };
}

interface SdkServer {
  pid: number;
  port: number;
  token: string;
  stop(): Promise<void>;
}

/** Starts sdk-http-server.js in its own process (`jsonResponse`: enableJsonResponse) and waits for its port. */
async function startSdkServer(jsonResponse: boolean, timeoutMs = 15_000): Promise<SdkServer> {
  const token = randomBytes(32).toString('base64url');
  const proc = spawn(process.execPath, [SDK_SERVER], {
    env: childEnv(makeHome(), { BENCH_TOKEN: token, BENCH_JSON_RESPONSE: jsonResponse ? '1' : '0' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(proc.pid);
  let out = '';
  let err = '';
  proc.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-4_096)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the SDK server did not listen within ${timeoutMs} ms: ${err}`)), timeoutMs);
    proc.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const match = /listening (\d+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the SDK server exited (${code}) during start: ${err}`));
    });
  });
  return {
    pid: proc.pid ?? -1,
    port,
    token,
    stop: async () => {
      proc.kill('SIGKILL');
      await waitExit(proc, 2_000);
      untrack(proc.pid);
    },
  };
}

/** Runs `work` and adds the CPU milliseconds each named process spent meanwhile to `into`. */
async function withCpu<T>(processes: Record<string, number>, into: Record<string, number>, work: () => Promise<T>): Promise<T> {
  const names = Object.entries(processes);
  const before = names.map(([, pid]) => readCpuMs(pid));
  const result = await work();
  names.forEach(([name, pid], i) => (into[name] = (into[name] ?? 0) + readCpuMs(pid) - before[i]!));
  return result;
}

async function measureBuiltin(
  plan: HttpPlan,
  daemon: DaemonProc,
  sdk: SdkServer,
  sdkJson: SdkServer,
  progress: (line: string) => void,
): Promise<Record<Mode, ModeFigures>> {
  const callers: Partial<Record<Mode, Caller>> = {};
  try {
    callers.sdk_http = await connectHttp(`http://127.0.0.1:${sdk.port}/mcp`, sdk.token);
    callers.sdk_http_json = await connectHttp(`http://127.0.0.1:${sdkJson.port}/mcp`, sdkJson.token);
    callers.daemon_http = await connectHttp(`http://127.0.0.1:${daemon.port}/mcp`, daemon.token);
    const shim = await connectClient('shim', daemon.home);
    callers.shim = shim;
    const direct = await connectClient('direct', makeHome());
    callers.direct = direct;
    const clients = Object.fromEntries(MODES.map((m) => [m, callers[m]!.client])) as Record<Mode, Client>;

    // Each call must run where the mode says: the SDK's server process, the daemon, or the stdio server.
    const where: Record<Mode, number> = {
      sdk_http: sdk.pid,
      sdk_http_json: sdkJson.pid,
      daemon_http: daemon.pid,
      shim: daemon.pid,
      direct: direct.pid,
    };
    for (const m of MODES) {
      const pid = (await callOk(clients[m], VERSION_CALL)).pid;
      if (pid !== where[m]) throw new Error(`${m}: version ran in pid ${String(pid)}, expected ${where[m]}`);
    }
    const processes: Record<Mode, Record<string, number>> = {
      sdk_http: { client: process.pid, server: sdk.pid },
      sdk_http_json: { client: process.pid, server: sdkJson.pid },
      daemon_http: { client: process.pid, server: daemon.pid },
      shim: { client: process.pid, shim: shim.pid, server: daemon.pid },
      direct: { client: process.pid, server: direct.pid },
    };

    const samples: Record<Mode, number[]> = { sdk_http: [], sdk_http_json: [], daemon_http: [], shim: [], direct: [] };
    const deadline = performance.now() + plan.sequentialMaxMs;
    for (const m of MODES) await sequential(clients[m], VERSION_CALL, plan.warmupCalls, deadline, null);
    progress(`http: ${plan.sequentialCalls} sequential calls per mode (${MODES.join(', ')}) in blocks of ${plan.blockCalls}`);
    for (let done = 0; done < plan.sequentialCalls && performance.now() < deadline; done += plan.blockCalls) {
      const block = Math.min(plan.blockCalls, plan.sequentialCalls - done);
      for (const m of MODES) await sequential(clients[m], VERSION_CALL, block, deadline, samples[m]);
    }

    progress(`http: ${plan.inflight} in flight, ${plan.throughputRounds} x ${plan.throughputMs} ms per mode, alternating`);
    for (const m of MODES) await throughput(clients[m], VERSION_CALL, plan.inflight, plan.throughputWarmupMs, plan.throughputMaxCalls);
    const totals = Object.fromEntries(MODES.map((m) => [m, { calls: 0, ms: 0, rounds: [] as number[], cpuMs: {} }])) as Record<
      Mode,
      { calls: number; ms: number; rounds: number[]; cpuMs: Record<string, number> }
    >;
    for (let r = 0; r < plan.throughputRounds; r++) {
      // Alternate the order, so neither HTTP server always follows the other.
      const order = r % 2 === 0 ? MODES : [...MODES].reverse();
      for (const m of order) {
        const t = totals[m];
        const got = await withCpu(processes[m], t.cpuMs, () =>
          throughput(clients[m], VERSION_CALL, plan.inflight, plan.throughputMs, plan.throughputMaxCalls),
        );
        t.calls += got.calls;
        t.ms += got.ms;
        t.rounds.push(round(got.calls / (got.ms / 1000), 1));
      }
    }
    return Object.fromEntries(
      MODES.map((m) => {
        const t = totals[m];
        return [
          m,
          {
            latencyUs: summarize(samples[m]),
            perS: t.calls / (t.ms / 1000),
            roundsPerS: t.rounds,
            cpuUsPerCall: Object.fromEntries(Object.entries(t.cpuMs).map(([name, ms]) => [name, (ms * 1000) / t.calls])),
          },
        ];
      }),
    ) as Record<Mode, ModeFigures>;
  } finally {
    for (const m of MODES) await callers[m]?.close();
  }
}

/** The pid /health reports for a hosted server. */
async function hostedPid(daemon: DaemonProc, name: string): Promise<number> {
  const pid = (await daemonHealth(daemon))?.servers?.find((s) => s.name === name)?.pid;
  if (typeof pid !== 'number') throw new Error(`/health reports no pid for ${name}`);
  return pid;
}

async function measureHosted(
  plan: HttpPlan,
  daemon: DaemonProc,
  progress: (line: string) => void,
): Promise<{ latencyUs: Record<HostedMode, Summary>; cpuUsPerCall: Record<HostedMode, Record<string, number>> }> {
  const callers: Partial<Record<HostedMode, Caller>> = {};
  try {
    const direct = await connectStdio(process.execPath, [EVERYTHING, 'stdio'], childEnv(makeHome()));
    callers.direct = direct;
    callers.daemon_http = await connectHttp(`http://127.0.0.1:${daemon.port}/mcp`, daemon.token);
    callers.daemon_http_one = await connectHttp(`http://127.0.0.1:${daemon.port}/mcp/everything`, daemon.token);
    const shim = await connectClient('shim', daemon.home);
    callers.shim = shim;
    const tools: Record<HostedMode, { name: string; arguments: Record<string, unknown> }> = {
      direct: { name: 'echo', arguments: { message: 'bench' } },
      daemon_http: { name: 'everything__echo', arguments: { message: 'bench' } },
      daemon_http_one: { name: 'echo', arguments: { message: 'bench' } },
      shim: { name: 'everything__echo', arguments: { message: 'bench' } },
    };
    const samples: Record<HostedMode, number[]> = { direct: [], daemon_http: [], daemon_http_one: [], shim: [] };
    const deadline = performance.now() + plan.sequentialMaxMs;
    for (const m of HOSTED_MODES) await sequential(callers[m]!.client, tools[m], plan.warmupCalls, deadline, null);
    const upstream = await hostedPid(daemon, 'everything');
    const processes: Record<HostedMode, Record<string, number>> = {
      direct: { client: process.pid, upstream: direct.pid },
      daemon_http: { client: process.pid, daemon: daemon.pid, upstream },
      daemon_http_one: { client: process.pid, daemon: daemon.pid, upstream },
      shim: { client: process.pid, shim: shim.pid, daemon: daemon.pid, upstream },
    };
    const cpuMs: Record<HostedMode, Record<string, number>> = { direct: {}, daemon_http: {}, daemon_http_one: {}, shim: {} };
    progress(`http: hosted server-everything echo, ${plan.hostedCalls} sequential calls per mode (${HOSTED_MODES.join(', ')})`);
    for (let done = 0; done < plan.hostedCalls && performance.now() < deadline; done += plan.blockCalls) {
      const block = Math.min(plan.blockCalls, plan.hostedCalls - done);
      for (const m of HOSTED_MODES) {
        await withCpu(processes[m], cpuMs[m], () => sequential(callers[m]!.client, tools[m], block, deadline, samples[m]));
      }
    }
    const perCall = (m: HostedMode) =>
      Object.fromEntries(Object.entries(cpuMs[m]).map(([name, ms]) => [name, (ms * 1000) / samples[m].length]));
    return {
      latencyUs: Object.fromEntries(HOSTED_MODES.map((m) => [m, summarize(samples[m])])) as Record<HostedMode, Summary>,
      cpuUsPerCall: Object.fromEntries(HOSTED_MODES.map((m) => [m, perCall(m)])) as Record<HostedMode, Record<string, number>>,
    };
  } finally {
    for (const m of HOSTED_MODES) await callers[m]?.close();
  }
}

/** Runs the phase: one daemon (hosting server-everything) and the SDK's server; both stopped before it returns. */
export async function runHttp(plan: HttpPlan, progress: (line: string) => void): Promise<HttpResults> {
  const loadBefore = loadavg();
  const home = makeHome();
  const config = join(home, 'http-config.json');
  writeFileSync(
    config,
    JSON.stringify({ mcpServers: { everything: { command: process.execPath, args: [EVERYTHING, 'stdio'], start: 'eager' } } }),
  );
  const daemon = await startDaemon({ EXAI_WS_CONFIG: config });
  let sdk: SdkServer | undefined;
  let sdkJson: SdkServer | undefined;
  try {
    sdk = await startSdkServer(false);
    sdkJson = await startSdkServer(true);
    progress(`http: daemon pid ${daemon.pid} (/mcp on port ${daemon.port}), SDK Streamable HTTP server pid ${sdk.pid} (port ${sdk.port})`);
    const modes = await measureBuiltin(plan, daemon, sdk, sdkJson, progress);
    const hosted = await measureHosted(plan, daemon, progress);
    return {
      plan,
      tool: 'version',
      modes,
      ratio: {
        p50: modes.daemon_http.latencyUs.p50 / modes.sdk_http.latencyUs.p50,
        p99: modes.daemon_http.latencyUs.p99 / modes.sdk_http.latencyUs.p99,
        throughput: modes.daemon_http.perS / modes.sdk_http.perS,
      },
      hosted: {
        tool: 'server-everything echo',
        latencyUs: hosted.latencyUs,
        cpuUsPerCall: hosted.cpuUsPerCall,
        ratio: {
          p50: hosted.latencyUs.daemon_http.p50 / hosted.latencyUs.direct.p50,
          p99: hosted.latencyUs.daemon_http.p99 / hosted.latencyUs.direct.p99,
        },
      },
      loadavg_before: loadBefore,
      loadavg_after: loadavg(),
    };
  } finally {
    await sdk?.stop();
    await sdkJson?.stop();
    await daemon.stop();
  }
}

/** The phase's budgets (DESIGN.md, "Performance budget", `/mcp`). */
export function httpBudgets(r: HttpResults): { figure: string; value: number; kind: 'max' | 'min'; limit: number; unit: string }[] {
  return [
    { figure: '/mcp tools/call p50 / SDK Streamable HTTP server', value: r.ratio.p50, kind: 'max', limit: 1, unit: 'x' },
    { figure: '/mcp calls/s 32 in flight / SDK Streamable HTTP server', value: r.ratio.throughput, kind: 'min', limit: 1, unit: 'x' },
    { figure: 'hosted server tools/call p50, /mcp / direct', value: r.hosted.ratio.p50, kind: 'max', limit: 2, unit: 'x' },
  ];
}

function fmt(value: number, digits = 0): string {
  return Number.isFinite(value) ? round(value, digits).toFixed(digits) : '-';
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  return rows.map((row) =>
    `  ${row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')}`.trimEnd(),
  );
}

/** The first table's columns, in order: a mode, or the /mcp / SDK ratio. */
const COLUMNS: readonly (readonly [Mode | 'ratio', string])[] = [
  ['sdk_http', 'SDK HTTP server'],
  ['daemon_http', 'daemon /mcp'],
  ['ratio', '/mcp / SDK'],
  ['shim', 'shim+daemon'],
  ['direct', 'direct stdio'],
  ['sdk_http_json', 'SDK server, JSON answers'],
];

/** The phase's tables, as lines (the same in the full bench and alone). */
export function httpLines(r: HttpResults): string[] {
  const m = r.modes;
  const cpu = (mode: Mode, name: string) => (m[mode].cpuUsPerCall[name] === undefined ? '-' : fmt(m[mode].cpuUsPerCall[name]));
  const h = r.hosted.latencyUs;
  const hostedCpu = (mode: HostedMode, name: string) => {
    const value = r.hosted.cpuUsPerCall[mode][name];
    return value === undefined ? '-' : fmt(value);
  };
  const budgetRows = httpBudgets(r).map((b) => [
    b.figure,
    `${fmt(b.value, 2)} ${b.unit}`,
    `${b.kind === 'max' ? '<=' : '>='} ${b.limit} ${b.unit}`,
    (b.kind === 'max' ? b.value <= b.limit : b.value >= b.limit) ? 'ok' : 'MISSED',
  ]);
  return [
    `Streamable HTTP: tools/call of built-in "version", official SDK client; the SDK's own Streamable HTTP server (own process, its default SSE answers) against the daemon's /mcp, with the shim path, direct stdio and (diagnostic) the SDK server with enableJsonResponse; ${m.sdk_http.latencyUs.n} sequential calls per mode, ${r.plan.inflight} in flight for ${r.plan.throughputRounds} x ${r.plan.throughputMs / 1000} s, alternating`,
    ...table([
      ['', ...COLUMNS.map(([, label]) => label)],
      ...(['p50', 'p90', 'p99'] as const).map((p) => [
        `${p} (us)`,
        ...COLUMNS.map(([mode]) =>
          mode === 'ratio' ? `${fmt(m.daemon_http.latencyUs[p] / m.sdk_http.latencyUs[p], 2)}x` : fmt(m[mode].latencyUs[p]),
        ),
      ]),
      [
        `calls/s, ${r.plan.inflight} in flight`,
        ...COLUMNS.map(([mode]) => (mode === 'ratio' ? `${fmt(r.ratio.throughput, 2)}x` : fmt(m[mode].perS))),
      ],
      ...(['client', 'shim', 'server'] as const).map((name) => [
        `CPU us/call in flight: ${name}`,
        ...COLUMNS.map(([mode]) => (mode === 'ratio' ? '' : cpu(mode, name))),
      ]),
    ]),
    '',
    `hosted server (${r.hosted.tool}), ${h.direct.n} sequential calls per mode, alternating`,
    ...table([
      ['', 'direct stdio', 'daemon /mcp', '/mcp / direct', '/mcp/everything', 'shim+daemon'],
      ...(['p50', 'p99'] as const).map((p) => [
        `${p} (us)`,
        fmt(h.direct[p]),
        fmt(h.daemon_http[p]),
        `${fmt(h.daemon_http[p] / h.direct[p], 2)}x`,
        fmt(h.daemon_http_one[p]),
        fmt(h.shim[p]),
      ]),
      ...(['client', 'shim', 'daemon', 'upstream'] as const).map((name) => [
        `CPU us/call: ${name}`,
        hostedCpu('direct', name),
        hostedCpu('daemon_http', name),
        '',
        hostedCpu('daemon_http_one', name),
        hostedCpu('shim', name),
      ]),
    ]),
    '',
    'budget (DESIGN.md, "Performance budget", /mcp)',
    ...table([['figure', 'measured', 'budget', ''], ...budgetRows]),
  ];
}

/** Runs only this phase: prints its tables, writes bench-results/http-<timestamp>.json. */
export async function mainHttp(quick: boolean): Promise<void> {
  installCleanup(WATCHDOG_MS);
  const startedAt = new Date();
  const progress = (line: string) => process.stderr.write(`bench: ${line}\n`);
  progress(
    `http only${quick ? ' (--quick)' : ''}; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const results = await runHttp(quick ? HTTP_QUICK : HTTP_FULL, progress);
  writePhaseResults('http', startedAt, quick, 'http', results, httpLines(results));
}

if (isEntryPoint(import.meta.url)) runBench(() => mainHttp(process.argv.includes('--quick')));
