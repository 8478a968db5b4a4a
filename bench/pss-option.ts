/**
 * The daemon's Node options against Node's defaults (issue 20): total daemon PSS with 10 windows
 * and 3 hosted servers, once with DAEMON_NODE_OPTIONS (`--max-semi-space-size=4`, what
 * auto-start, `restart`, the service and `npm run daemon` give) and once with none (a bare
 * `exai-ws daemon`), several runs each, the order alternated run by run.
 *
 * Each run: a fresh daemon in its own home hosting server-memory, server-everything and
 * server-filesystem from this project's node_modules, run with `node` directly (no npx); 10 real
 * shims under the official SDK client, each listing the tools and calling the built-in `version`
 * and a tool of each hosted server `callsPerTool` times; then, after `settleMs`, PSS and USS
 * from /proc/<pid>/smaps_rollup of the daemon process, and of the daemon with everything it
 * started (hosted servers, the watchdog). The shims are read too, but they are the windows' cost,
 * not the daemon's, and the option does not reach them.
 *
 * Alone: `npm run bench -- --only pss-option` or `node dist/bench/pss-option.js` (`--quick`: 2
 * runs each, `--runs N`). Written to bench-results/pss-option-<timestamp>.json. Linux only.
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { DAEMON_NODE_OPTIONS } from '../src/local/daemon-launch.js';
import { isEntryPoint } from './calls.js';
import { descendantsOf } from './hosted.js';
import {
  ROOT,
  SHIM,
  EVERYTHING,
  childEnv,
  connectStdio,
  installCleanup,
  makeHome,
  readMemory,
  runBench,
  sleep,
  startDaemon,
  type StdioConnection,
  writePhaseResults,
} from './procs.js';
import { median } from './stats.js';

const MEMORY_SERVER = join(ROOT, 'node_modules', '@modelcontextprotocol', 'server-memory', 'dist', 'index.js');
const FILESYSTEM_SERVER = join(ROOT, 'node_modules', '@modelcontextprotocol', 'server-filesystem', 'dist', 'index.js');
const WATCHDOG_MS = 15 * 60_000;

export interface PssPlan {
  runs: number;
  windows: number;
  /** Calls of each tool (built-in `version` and one per hosted server) per window. */
  callsPerTool: number;
  /** Quiet time after the last call before memory is read. */
  settleMs: number;
}

export const PSS_FULL: PssPlan = { runs: 5, windows: 10, callsPerTool: 20, settleMs: 3_000 };
export const PSS_QUICK: PssPlan = { runs: 2, windows: 10, callsPerTool: 5, settleMs: 2_000 };

type Variant = 'options' | 'defaults';

/** One run's reading, in kB. */
interface Reading {
  variant: Variant;
  run: number;
  daemon_pss_kb: number;
  daemon_uss_kb: number;
  /** The daemon and every process it started (hosted servers, the watchdog). */
  tree_pss_kb: number;
  tree_processes: number;
  shims_pss_kb: number;
}

export interface PssResults {
  node_options: readonly string[];
  plan: PssPlan;
  readings: Reading[];
  /** Medians per variant, in MB. */
  median_mb: Record<Variant, { daemon_pss: number; daemon_uss: number; tree_pss: number; shims_pss: number }>;
  /** Which variant had the smaller median daemon PSS, and by how much (MB). */
  smaller: { variant: Variant; by_mb: number };
  loadavg_before: number[];
  loadavg_after: number[];
}

/** The three servers, each run with `node` straight from node_modules. */
function hostedServers(home: string): Record<string, unknown> {
  return {
    memory: { command: process.execPath, args: [MEMORY_SERVER], env: { MEMORY_FILE_PATH: join(home, 'memory.jsonl') } },
    everything: { command: process.execPath, args: [EVERYTHING, 'stdio'] },
    filesystem: { command: process.execPath, args: [FILESYSTEM_SERVER, home] },
  };
}

/** What one window does: list, then call each tool `calls` times (each call must succeed). */
async function useWindow(window: StdioConnection, calls: number, home: string): Promise<void> {
  const tools = await window.client.listTools();
  const names = new Set(tools.tools.map((t) => t.name));
  const wanted = [
    { name: 'version', arguments: {} },
    { name: 'memory__read_graph', arguments: {} },
    { name: 'everything__echo', arguments: { message: 'pss' } },
    { name: 'filesystem__list_directory', arguments: { path: home } },
  ];
  for (const call of wanted) {
    if (!names.has(call.name)) throw new Error(`tools/list lacks ${call.name}: ${[...names].join(', ')}`);
    for (let i = 0; i < calls; i++) {
      const result = await window.client.callTool(call);
      if (result.isError) throw new Error(`${call.name} failed: ${JSON.stringify(result.content)}`);
    }
  }
}

function pssOf(pids: number[]): { pss: number; processes: number } {
  let pss = 0;
  let processes = 0;
  for (const pid of pids) {
    try {
      pss += readMemory(pid).pss;
      processes++;
    } catch {
      // exited meanwhile
    }
  }
  return { pss, processes };
}

async function measureOnce(variant: Variant, run: number, plan: PssPlan): Promise<Reading> {
  const dir = makeHome();
  const config = join(dir, 'servers.json');
  writeFileSync(config, JSON.stringify({ mcpServers: hostedServers(dir) }));
  const daemon = await startDaemon({ EXAI_WS_CONFIG: config }, 15_000, variant === 'options' ? DAEMON_NODE_OPTIONS : []);
  const windows: StdioConnection[] = [];
  try {
    while (windows.length < plan.windows) windows.push(await connectStdio(process.execPath, [SHIM], childEnv(daemon.home)));
    await Promise.all(windows.map((w) => useWindow(w, plan.callsPerTool, dir)));
    await sleep(plan.settleMs);
    const own = readMemory(daemon.pid);
    const tree = pssOf([daemon.pid, ...descendantsOf(daemon.pid)]);
    const shims = pssOf(windows.map((w) => w.pid));
    return {
      variant,
      run,
      daemon_pss_kb: own.pss,
      daemon_uss_kb: own.uss,
      tree_pss_kb: tree.pss,
      tree_processes: tree.processes,
      shims_pss_kb: shims.pss,
    };
  } finally {
    for (const w of windows) await w.close();
    await daemon.stop();
  }
}

const mb = (kb: number) => Math.round((kb / 1024) * 10) / 10;

export async function runPssOption(plan: PssPlan, progress: (line: string) => void): Promise<PssResults> {
  const loadBefore = loadavg();
  const readings: Reading[] = [];
  for (let run = 1; run <= plan.runs; run++) {
    // Alternated, so that drift on the machine hits both alike.
    const order: Variant[] = run % 2 === 1 ? ['options', 'defaults'] : ['defaults', 'options'];
    for (const variant of order) {
      const reading = await measureOnce(variant, run, plan);
      progress(
        `pss-option: run ${run}/${plan.runs} ${variant}: daemon ${mb(reading.daemon_pss_kb)} MB PSS (${mb(reading.daemon_uss_kb)} USS), with its ${reading.tree_processes - 1} children ${mb(reading.tree_pss_kb)} MB`,
      );
      readings.push(reading);
    }
  }
  const medians = (variant: Variant) => {
    const of = (field: keyof Reading) => mb(median(readings.filter((r) => r.variant === variant).map((r) => r[field] as number)));
    return { daemon_pss: of('daemon_pss_kb'), daemon_uss: of('daemon_uss_kb'), tree_pss: of('tree_pss_kb'), shims_pss: of('shims_pss_kb') };
  };
  const median_mb = { options: medians('options'), defaults: medians('defaults') };
  const diff = median_mb.options.daemon_pss - median_mb.defaults.daemon_pss;
  return {
    node_options: DAEMON_NODE_OPTIONS,
    plan,
    readings,
    median_mb,
    smaller: { variant: diff <= 0 ? 'options' : 'defaults', by_mb: Math.round(Math.abs(diff) * 10) / 10 },
    loadavg_before: loadBefore,
    loadavg_after: loadavg(),
  };
}

export function pssOptionLines(r: PssResults): string[] {
  const rows = [
    ['', 'daemon PSS', 'daemon USS', 'daemon + servers PSS', '10 shims PSS'],
    ...(['options', 'defaults'] as const).map((v) => [
      v === 'options' ? DAEMON_NODE_OPTIONS.join(' ') : "Node's defaults",
      `${r.median_mb[v].daemon_pss} MB`,
      `${r.median_mb[v].daemon_uss} MB`,
      `${r.median_mb[v].tree_pss} MB`,
      `${r.median_mb[v].shims_pss} MB`,
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  return [
    `daemon memory, ${r.plan.windows} windows x 3 hosted servers, medians of ${r.plan.runs} runs each`,
    ...rows.map((row) => `  ${row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')}`),
    `smaller daemon PSS: ${r.smaller.variant === 'options' ? DAEMON_NODE_OPTIONS.join(' ') : "Node's defaults"} by ${r.smaller.by_mb} MB`,
  ];
}

/** Runs only this phase: prints its table, writes bench-results/pss-option-<timestamp>.json. */
export async function mainPssOption(quick: boolean, runs?: number): Promise<void> {
  if (process.platform !== 'linux') throw new Error('pss-option reads /proc: Linux only');
  installCleanup(WATCHDOG_MS);
  const startedAt = new Date();
  const progress = (line: string) => process.stderr.write(`bench: ${line}\n`);
  const plan = { ...(quick ? PSS_QUICK : PSS_FULL), ...(runs !== undefined ? { runs } : {}) };
  const results = await runPssOption(plan, progress);
  writePhaseResults('pss-option', startedAt, quick, 'pss_option', results, pssOptionLines(results));
}

/** `--runs N` from the command line, if given. */
function runsArg(args: readonly string[]): number | undefined {
  const at = args.indexOf('--runs');
  if (at < 0) return undefined;
  const n = Number(args[at + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--runs: expected a positive integer, got ${args[at + 1] ?? 'nothing'}`);
  return n;
}

if (isEntryPoint(import.meta.url)) runBench(() => mainPssOption(process.argv.includes('--quick'), runsArg(process.argv)));
