/**
 * What serialising a tool that asks the client back costs (issue 11): one daemon hosts
 * server-everything twice, `marked` (`"asks_client"` naming the tools below) and `plain` (the
 * same entry without it), so the two differ only in the marking. Calls to a marked tool from
 * different windows run one window at a time; calls from one window, and every call to `plain`,
 * run concurrently. Two tools: `echo` (answers at once: the gate's own overhead) and
 * `trigger-long-running-operation` held 100 ms at the server (a tool that waits, as one asking
 * the client does: what taking turns costs). Measured, in alternating rounds so that drift on
 * the machine hits every mode alike:
 *
 *   - two windows (two shims, each an SDK client) with `inflightPerWindow` calls in flight each;
 *   - one window with both windows' calls in flight (the same total), which is never held.
 *
 * Standalone: `npm run bench -- --only asks-client` or `node dist/bench/asks-client.js`
 * (`--quick` for one round). Loopback only, every loop bounded in count and time, every
 * process killed at the end.
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  daemonHealth,
  SHIM,
  EVERYTHING,
  childEnv,
  connectStdio,
  installCleanup,
  makeHome,
  runBench,
  sleep,
  startDaemon,
  type DaemonProc,
  type StdioConnection,
  writePhaseResults,
} from './procs.js';
import { isEntryPoint } from './calls.js';
import { round, summarize, type Summary } from './stats.js';

/** The tools measured: each is declared `asks_client` on `marked`, under its own name. */
const TOOLS = {
  echo: { name: 'echo', arguments: { message: 'bench' } },
  wait_100ms: { name: 'trigger-long-running-operation', arguments: { duration: 0.1, steps: 1 } },
} as const;
type Tool = keyof typeof TOOLS;
const TOOL_KEYS = Object.keys(TOOLS) as Tool[];
const WATCHDOG_MS = 5 * 60_000;
/** Often enough to catch both windows' calls at the server, rarely enough not to load the daemon. */
const HEALTH_SAMPLE_MS = 50;

export interface AsksClientPlan {
  /** Calls each of the two windows keeps outstanding; the one-window mode keeps twice this. */
  inflightPerWindow: number;
  roundMs: number;
  rounds: number;
  warmupMs: number;
  /** Per mode and round: a bound on the count besides the time. */
  maxCallsPerRound: number;
}

export const ASKS_CLIENT_FULL: AsksClientPlan = {
  inflightPerWindow: 16,
  roundMs: 1_000,
  rounds: 3,
  warmupMs: 500,
  maxCallsPerRound: 200_000,
};
export const ASKS_CLIENT_QUICK: AsksClientPlan = { ...ASKS_CLIENT_FULL, rounds: 1, warmupMs: 250 };

type Entry = 'marked' | 'plain';
type Windows = 'two_windows' | 'one_window';
const ENTRIES: readonly Entry[] = ['marked', 'plain'];
const WINDOWS: readonly Windows[] = ['two_windows', 'one_window'];

export interface ModeFigures {
  perS: number;
  calls: number;
  ms: number;
  roundsPerS: number[];
  /** Each call from the moment it is sent to its result, waiting at the gate included, in microseconds. */
  latencyUs: Summary;
  /** Calls done by each window; one entry in the one-window mode. */
  callsPerWindow: number[];
  /**
   * Calls the daemon had sent to the server and not yet had answered (`/health` servers[].inflight),
   * sampled every {@link HEALTH_SAMPLE_MS} during the rounds: with two windows, a serialised tool
   * never has more than one window's calls at the server.
   */
  serverInflight: { max: number; mean: number; samples: number };
}

export interface ToolFigures {
  /** The server's tool name and the arguments of every call. */
  tool: string;
  arguments: Record<string, unknown>;
  /** `marked` and `plain`, each for two windows and one window. */
  modes: Record<Entry, Record<Windows, ModeFigures>>;
  /** marked / plain calls per second. */
  ratio: Record<Windows, number>;
}

export interface AsksClientResults {
  server: string;
  plan: AsksClientPlan;
  inflight_total: number;
  tools: Record<Tool, ToolFigures>;
  /** What the daemon's /health reported as asking the client after the runs, per entry. */
  asks_client_reported: Record<Entry, string[] | null>;
  loadavg_before: number[];
  loadavg_after: number[];
}

/** A window: one shim under the official SDK client, offering no capabilities (see connectStdio). */
function openWindow(home: string): Promise<StdioConnection> {
  return connectStdio(process.execPath, [SHIM], childEnv(home), { name: 'exai-ws-bench-asks-client' });
}

interface RoundResult {
  calls: number;
  ms: number;
  latencyUs: number[];
  callsPerWindow: number[];
  /** The entry's calls at the server, one per /health sample. */
  serverInflight: number[];
}

async function serverInflight(daemon: DaemonProc, entry: Entry): Promise<number | undefined> {
  const report = await daemonHealth(daemon, 2_000);
  return report?.servers?.find((s) => s.name === entry)?.inflight;
}

/** Samples `entry`'s calls at the server until `done` settles. */
async function sampleInflight(daemon: DaemonProc, entry: Entry, done: Promise<unknown>): Promise<number[]> {
  let finished = false;
  const stop = done.finally(() => (finished = true)).catch(() => undefined);
  const samples: number[] = [];
  while (!finished) {
    await Promise.race([stop, sleep(HEALTH_SAMPLE_MS)]);
    if (finished) break;
    const n = await serverInflight(daemon, entry);
    if (n !== undefined && !finished) samples.push(n);
  }
  return samples;
}

/**
 * Keeps `inflight` calls of `tool` outstanding from each of `windows` for `durationMs` (or
 * until `maxCalls` in all); every result is checked.
 */
async function load(
  windows: Client[],
  tool: { name: string; arguments: Record<string, unknown> },
  inflight: number,
  durationMs: number,
  maxCalls: number,
): Promise<RoundResult> {
  const result: RoundResult = { calls: 0, ms: 0, latencyUs: [], callsPerWindow: windows.map(() => 0), serverInflight: [] };
  let stop = false;
  const t0 = performance.now();
  const deadline = t0 + durationMs;
  const lane = async (client: Client, w: number) => {
    while (!stop) {
      const sent = performance.now();
      const reply = await client.callTool(tool);
      if (reply.isError) throw new Error(`${tool.name} failed: ${JSON.stringify(reply.content)}`);
      const now = performance.now();
      result.latencyUs.push((now - sent) * 1000);
      result.callsPerWindow[w]!++;
      if (++result.calls >= maxCalls || now >= deadline) stop = true;
    }
  };
  await Promise.all(windows.flatMap((client, w) => Array.from({ length: inflight }, () => lane(client, w))));
  result.ms = performance.now() - t0;
  return result;
}

async function reportedAsksClient(daemon: DaemonProc): Promise<Record<Entry, string[] | null>> {
  const out: Record<Entry, string[] | null> = { marked: null, plain: null };
  // No report: both stay null (unknown).
  const report = await daemonHealth(daemon);
  for (const s of report?.servers ?? []) if (s.name === 'marked' || s.name === 'plain') out[s.name] = s.asks_client;
  return out;
}

/** Runs the phase: one hosting daemon, two shim windows; everything it starts is stopped before it returns. */
export async function runAsksClient(plan: AsksClientPlan, progress: (line: string) => void): Promise<AsksClientResults> {
  const loadBefore = loadavg();
  const home = makeHome();
  const config = join(home, 'asks-client-config.json');
  const entry = { command: process.execPath, args: [EVERYTHING, 'stdio'], start: 'eager' };
  const marked = { ...entry, asks_client: TOOL_KEYS.map((t) => TOOLS[t].name) };
  writeFileSync(config, JSON.stringify({ mcpServers: { marked, plain: entry } }));
  const daemon = await startDaemon({ EXAI_WS_CONFIG: config });
  const windows: StdioConnection[] = [];
  try {
    windows.push(await openWindow(daemon.home), await openWindow(daemon.home));
    const clients = windows.map((w) => w.client);
    const inflightTotal = plan.inflightPerWindow * clients.length;
    const run = async (t: Tool, e: Entry, w: Windows, ms: number): Promise<RoundResult> => {
      const tool = { name: `${e}__${TOOLS[t].name}`, arguments: TOOLS[t].arguments };
      const loaded =
        w === 'two_windows'
          ? load(clients, tool, plan.inflightPerWindow, ms, plan.maxCallsPerRound)
          : load([clients[0]!], tool, inflightTotal, ms, plan.maxCallsPerRound);
      const [result, samples] = await Promise.all([loaded, sampleInflight(daemon, e, loaded)]);
      result.serverInflight = samples;
      return result;
    };

    progress(
      `asks-client: server-everything ${TOOL_KEYS.join(', ')}, marked (asks_client) against plain, ${plan.inflightPerWindow} in flight from each of 2 windows and ${inflightTotal} from one, ${plan.rounds} x ${plan.roundMs} ms per mode`,
    );
    for (const t of TOOL_KEYS) for (const e of ENTRIES) for (const w of WINDOWS) await run(t, e, w, plan.warmupMs);
    const empty = (): Record<Entry, Record<Windows, RoundResult[]>> => ({
      marked: { two_windows: [], one_window: [] },
      plain: { two_windows: [], one_window: [] },
    });
    const rounds: Record<Tool, Record<Entry, Record<Windows, RoundResult[]>>> = { echo: empty(), wait_100ms: empty() };
    for (let r = 0; r < plan.rounds; r++) {
      // Alternate which entry goes first, so neither always follows the other.
      const order = r % 2 === 0 ? ENTRIES : [...ENTRIES].reverse();
      for (const t of TOOL_KEYS) for (const w of WINDOWS) for (const e of order) rounds[t][e][w].push(await run(t, e, w, plan.roundMs));
    }
    const figures = (results: RoundResult[]): ModeFigures => {
      const calls = results.reduce((a, r) => a + r.calls, 0);
      const ms = results.reduce((a, r) => a + r.ms, 0);
      const inflight = results.flatMap((r) => r.serverInflight);
      const callsPerWindow = results[0]!.callsPerWindow.map((_, w) => results.reduce((a, r) => a + r.callsPerWindow[w]!, 0));
      return {
        perS: calls / (ms / 1000),
        calls,
        ms,
        roundsPerS: results.map((r) => round(r.calls / (r.ms / 1000), 1)),
        latencyUs: summarize(results.flatMap((r) => r.latencyUs)),
        callsPerWindow,
        serverInflight: {
          max: inflight.length > 0 ? Math.max(...inflight) : NaN,
          mean: inflight.length > 0 ? inflight.reduce((a, b) => a + b, 0) / inflight.length : NaN,
          samples: inflight.length,
        },
      };
    };
    const toolFigures = (t: Tool): ToolFigures => {
      const of = rounds[t];
      const modes = {
        marked: { two_windows: figures(of.marked.two_windows), one_window: figures(of.marked.one_window) },
        plain: { two_windows: figures(of.plain.two_windows), one_window: figures(of.plain.one_window) },
      };
      return {
        tool: TOOLS[t].name,
        arguments: TOOLS[t].arguments,
        modes,
        ratio: {
          two_windows: modes.marked.two_windows.perS / modes.plain.two_windows.perS,
          one_window: modes.marked.one_window.perS / modes.plain.one_window.perS,
        },
      };
    };
    return {
      server: 'server-everything',
      plan,
      inflight_total: inflightTotal,
      tools: { echo: toolFigures('echo'), wait_100ms: toolFigures('wait_100ms') },
      asks_client_reported: await reportedAsksClient(daemon),
      loadavg_before: loadBefore,
      loadavg_after: loadavg(),
    };
  } finally {
    for (const w of windows) await w.close();
    await daemon.stop();
  }
}

function fmt(value: number, digits = 0): string {
  return Number.isFinite(value) ? round(value, digits).toFixed(digits) : '-';
}

/** The phase's table, as lines (the same in the full bench and alone). */
export function asksClientLines(r: AsksClientResults): string[] {
  const rows: string[][] = [['', 'marked', 'plain', 'marked/plain']];
  for (const t of TOOL_KEYS) {
    const f = r.tools[t];
    const m = f.modes;
    const label = (w: Windows) =>
      `${t} ${w === 'two_windows' ? `2 windows x ${r.plan.inflightPerWindow}` : `1 window x ${r.inflight_total}`}`;
    const latency = (w: Windows, p: 'p50' | 'p99') => [
      `${label(w)}: ${p} (us)`,
      fmt(m.marked[w].latencyUs[p]),
      fmt(m.plain[w].latencyUs[p]),
      `${fmt(m.marked[w].latencyUs[p] / m.plain[w].latencyUs[p], 2)}x`,
    ];
    for (const w of WINDOWS) {
      rows.push(
        [`${label(w)}: calls/s`, fmt(m.marked[w].perS), fmt(m.plain[w].perS), `${fmt(f.ratio[w], 2)}x`],
        latency(w, 'p50'),
        latency(w, 'p99'),
        [
          `${label(w)}: calls at the server, max (mean)`,
          `${fmt(m.marked[w].serverInflight.max)} (${fmt(m.marked[w].serverInflight.mean, 1)})`,
          `${fmt(m.plain[w].serverInflight.max)} (${fmt(m.plain[w].serverInflight.mean, 1)})`,
          '',
        ],
      );
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  const reported = (e: Entry) => (r.asks_client_reported[e] === null ? 'unknown' : JSON.stringify(r.asks_client_reported[e]));
  const tools = TOOL_KEYS.map((t) => `${t} = ${r.tools[t].tool} ${JSON.stringify(r.tools[t].arguments)}`).join(', ');
  return [
    `tools that ask the client (${r.server}; ${tools}): "marked" declares them in asks_client, "plain" is the same server without; ${r.plan.rounds} x ${r.plan.roundMs / 1000} s per mode, alternating`,
    ...rows.map((row) => `  ${row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')}`.trimEnd()),
    `  /health asks_client after the runs: marked ${reported('marked')}, plain ${reported('plain')}`,
  ];
}

/** Runs only this phase: prints its table, writes bench-results/asks-client-<timestamp>.json. */
export async function mainAsksClient(quick: boolean): Promise<void> {
  installCleanup(WATCHDOG_MS);
  const startedAt = new Date();
  const progress = (line: string) => process.stderr.write(`bench: ${line}\n`);
  progress(
    `asks-client only${quick ? ' (--quick)' : ''}; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const results = await runAsksClient(quick ? ASKS_CLIENT_QUICK : ASKS_CLIENT_FULL, progress);
  writePhaseResults('asks-client', startedAt, quick, 'asks_client', results, asksClientLines(results));
}

if (isEntryPoint(import.meta.url)) runBench(() => mainAsksClient(process.argv.includes('--quick')));
