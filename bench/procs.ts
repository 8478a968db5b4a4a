/**
 * Process plumbing for the benchmark: every child it starts is tracked by pid and killed at
 * exit (also on error, SIGINT and SIGTERM); temp homes are removed. Daemons are real
 * `exai-ws daemon` processes on port 0 with their own EXAI_WS_HOME; clients are the official
 * SDK client over StdioClientTransport.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { fetchFullHealth } from '../src/local/health-client.js';
import { DAEMON_NODE_OPTIONS } from '../src/local/daemon-launch.js';
import { readAddressCard } from '../src/local/files.js';
import type { HealthReport } from '../src/local/health.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(ROOT, 'dist', 'src', 'cli.js');
/** The bundled shim, as client configs run it. */
export const SHIM = join(ROOT, 'dist', 'shim.cjs');

const pids = new Set<number>();
const homes = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Tracks a child so {@link killAll} ends it. */
export function track(pid: number | undefined): void {
  if (pid !== undefined && pid > 0) pids.add(pid);
}

export function untrack(pid: number | undefined): void {
  if (pid !== undefined) pids.delete(pid);
}

/** Synchronously SIGKILLs every tracked child that is still alive and removes the temp homes. */
export function killAll(): void {
  for (const pid of pids) {
    if (alive(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  pids.clear();
  for (const home of homes) rmSync(home, { recursive: true, force: true });
  homes.clear();
}

/** Installs the last-resort cleanup: exit, signals and a global watchdog of `limitMs`. */
export function installCleanup(limitMs: number): void {
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`bench: ${signal}, killing children\n`);
      killAll();
      process.exit(130);
    });
  }
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench: watchdog: still running after ${limitMs / 1000} s, giving up\n`);
    killAll();
    process.exit(1);
  }, limitMs);
  watchdog.unref();
}

export function makeHome(): string {
  const home = mkdtempSync(join(tmpdir(), 'exai-ws-bench-'));
  homes.add(home);
  return home;
}

/**
 * Variables removed from every child's environment besides exai-ws's own: Node 20 reads
 * NODE_EXTRA_CA_CERTS eagerly at start-up (tens of ms per process on a small machine), a cost
 * of the machine's setup, not of exai-ws. The start-up table shows it separately.
 */
export const STRIPPED_ENV = ['NODE_EXTRA_CA_CERTS', 'NODE_OPTIONS'] as const;

/** The environment children get: ours minus anything exai-ws reads, plus the given home. */
export function childEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('EXAI_WS_') && k !== 'LOG_LEVEL' && !(STRIPPED_ENV as readonly string[]).includes(k)) env[k] = v;
  }
  // A config path that does not exist: never host the user's own servers in a benchmark.
  return { ...env, EXAI_WS_HOME: home, EXAI_WS_CONFIG: join(home, 'config.json'), ...extra };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves true once `proc` exited, false after `timeoutMs`. */
export function waitExit(proc: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    proc.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export interface DaemonProc {
  home: string;
  port: number;
  pid: number;
  token: string;
  proc: ChildProcess;
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** The daemon's full `/health` report (it needs the token); null when none comes within `timeoutMs`. */
export function daemonHealth(daemon: Pick<DaemonProc, 'port' | 'token'>, timeoutMs = 5_000): Promise<HealthReport | null> {
  return fetchFullHealth('127.0.0.1', daemon.port, timeoutMs, daemon.token);
}

/**
 * Starts `exai-ws daemon` on port 0 in a new temp home, with the Node options `npm run daemon`
 * gives it unless `nodeOptions` says otherwise, and waits for its address card.
 */
export async function startDaemon(
  extraEnv: Record<string, string> = {},
  timeoutMs = 15_000,
  nodeOptions: readonly string[] = DAEMON_NODE_OPTIONS,
): Promise<DaemonProc> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build`);
  const home = makeHome();
  const proc = spawn(process.execPath, [...nodeOptions, CLI, 'daemon'], {
    // Other options than the daemon's own (V8's defaults, for comparison) are kept as given.
    env: childEnv(home, { EXAI_WS_PORT: '0', ...extraEnv }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(proc.pid);
  let out = '';
  const keep = (c: Buffer) => {
    out = (out + c.toString()).slice(-8_192);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`daemon exited during start: ${out}`);
    const card = readAddressCard(join(home, 'logs', 'ws_daemon.pid'));
    if (card && card.port > 0 && card.pid === proc.pid) {
      const token = readFileSync(join(home, 'token'), 'utf8').trim();
      return {
        home,
        port: card.port,
        pid: card.pid,
        token,
        proc,
        output: () => out,
        stop: async (graceMs = 10_000) => {
          if (proc.exitCode === null && proc.signalCode === null) {
            proc.kill('SIGTERM');
            if (!(await waitExit(proc, graceMs))) {
              proc.kill('SIGKILL');
              await waitExit(proc, 2_000);
            }
          }
          untrack(proc.pid);
        },
      };
    }
    if (Date.now() > deadline) throw new Error(`daemon did not publish its port within ${timeoutMs} ms: ${out}`);
    await sleep(20);
  }
}

export type Mode = 'direct' | 'shim';

export interface McpClient {
  client: Client;
  pid: number;
  stderr(): string;
  close(): Promise<void>;
}

/**
 * Connects the official SDK client to `exai-ws stdio` (direct) or to `exai-ws shim` (which
 * finds the daemon through `home`), and completes initialize.
 */
export async function connectClient(mode: Mode, home: string): Promise<McpClient> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: mode === 'direct' ? [CLI, 'stdio'] : [SHIM],
    env: childEnv(home),
    stderr: 'pipe',
  });
  let err = '';
  transport.stderr?.on('data', (c: Buffer) => {
    err = (err + c.toString()).slice(-8_192);
  });
  const client = new Client({ name: 'exai-ws-bench', version: '1.0.0' }, { capabilities: {} });
  try {
    await client.connect(transport);
  } catch (error) {
    track(transport.pid ?? undefined);
    throw new Error(`${mode} client failed to connect: ${error instanceof Error ? error.message : String(error)}; stderr: ${err}`);
  }
  const pid = transport.pid ?? -1;
  track(pid);
  return {
    client,
    pid,
    stderr: () => err,
    close: async () => {
      await client.close().catch(() => undefined);
      untrack(pid);
    },
  };
}

/** Memory of one process from /proc/<pid>/smaps_rollup, in kB. */
export interface MemoryKb {
  pss: number;
  rss: number;
  /** Private_Clean + Private_Dirty: what the process alone costs (USS). */
  uss: number;
}

export function readMemory(pid: number): MemoryKb {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    if (!match?.[1]) throw new Error(`no ${name} in /proc/${pid}/smaps_rollup`);
    return Number(match[1]);
  };
  return { pss: field('Pss'), rss: field('Rss'), uss: field('Private_Clean') + field('Private_Dirty') };
}

/**
 * Spawns `node <args>` with `env`, writes `line` to its stdin at once and resolves with the
 * milliseconds from just before spawn to the first complete stdout line (and that line), and
 * the CPU time the child had used by then (10 ms resolution; less sensitive to other load
 * on the machine than the wall time). The process is then told EOF and killed if it does not
 * exit within a second.
 */
export async function timeToFirstLine(
  args: string[],
  env: Record<string, string>,
  line: string,
  timeoutMs = 10_000,
): Promise<{ ms: number; cpuMs: number; line: string }> {
  const t0 = performance.now();
  const proc = spawn(process.execPath, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  track(proc.pid);
  proc.stdin.on('error', () => undefined);
  let err = '';
  proc.stderr.on('data', (c: Buffer) => {
    err = (err + c.toString()).slice(-4_096);
  });
  proc.stdin.write(`${line}\n`);
  try {
    return await new Promise<{ ms: number; cpuMs: number; line: string }>((resolve, reject) => {
      let buffered = '';
      const timer = setTimeout(() => reject(new Error(`no stdout line within ${timeoutMs} ms; stderr: ${err}`)), timeoutMs);
      proc.stdout.on('data', (c: Buffer) => {
        const ms = performance.now() - t0;
        buffered += c.toString('utf8');
        const nl = buffered.indexOf('\n');
        if (nl >= 0) {
          clearTimeout(timer);
          let cpuMs = NaN;
          try {
            cpuMs = readCpuMs(proc.pid ?? -1);
          } catch {
            // exited already
          }
          resolve({ ms, cpuMs, line: buffered.slice(0, nl) });
        }
      });
      proc.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`exited (${code ?? signal}) before writing a line; stderr: ${err}`));
      });
    });
  } finally {
    proc.stdin.end();
    if (!(await waitExit(proc, 1_000))) {
      proc.kill('SIGKILL');
      await waitExit(proc, 2_000);
    }
    untrack(proc.pid);
  }
}

/** CPU time (user + system) a process has used so far, in milliseconds, from /proc/<pid>/stat. */
export function readCpuMs(pid: number): number {
  if (pid === process.pid) {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  }
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may itself hold spaces: state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
}

/** USER_HZ: 100 on every Linux the benchmark targets. */
const CLOCK_TICKS_PER_S = 100;

/** An SDK client connected to a process over stdio; the process is tracked until closed. */
export interface StdioConnection {
  client: Client;
  pid: number;
  close(): Promise<void>;
}

/** server-everything from the project's own dependencies. */
export const EVERYTHING = join(ROOT, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');

/** Starts `command` and connects the official SDK client to it over stdio (client name `name`). */
export async function connectStdio(
  command: string,
  args: string[],
  env: Record<string, string>,
  options: { cwd?: string; name?: string } = {},
): Promise<StdioConnection> {
  const transport = new StdioClientTransport({ command, args, env, cwd: options.cwd, stderr: 'ignore' });
  // No capabilities: the daemon then offers hosted servers none (a server that asks for roots
  // would otherwise have its calls run one window at a time).
  const client = new Client({ name: options.name ?? 'exai-ws-bench', version: '1.0.0' }, { capabilities: {} });
  try {
    await client.connect(transport);
  } finally {
    track(transport.pid ?? undefined);
  }
  const pid = transport.pid ?? -1;
  return {
    client,
    pid,
    close: async () => {
      await client.close().catch(() => undefined);
      untrack(pid);
    },
  };
}

/** Runs a bench entry point: every child killed at the end, exit 0, or 1 with the error on stderr. */
export function runBench(main: () => Promise<void>): void {
  main().then(
    () => {
      killAll();
      process.exit(0);
    },
    (error: unknown) => {
      process.stderr.write(`bench: failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      killAll();
      process.exit(1);
    },
  );
}

/** How many calls a latency-and-throughput phase makes, and for how long (bounded both ways). */
export interface CallPlan {
  warmupCalls: number;
  sequentialCalls: number;
  /** Sequential calls run in alternating blocks per mode, so drift hits every mode alike. */
  blockCalls: number;
  /** A bound on each sequential part besides the count. */
  sequentialMaxMs: number;
  inflight: number;
  /** One throughput window; modes alternate window by window, `throughputRounds` times. */
  throughputMs: number;
  throughputRounds: number;
  throughputWarmupMs: number;
  throughputMaxCalls: number;
}

/**
 * The end of a phase run alone: writes `bench-results/<phase>-<timestamp>.json` (the results
 * under `key`, with the time, Node and `quick`) and prints `lines` under a heading with the load
 * average before and after.
 */
export function writePhaseResults(
  phase: string,
  startedAt: Date,
  quick: boolean,
  key: string,
  results: { loadavg_before: number[]; loadavg_after: number[] },
  lines: readonly string[],
): void {
  const dir = join(ROOT, 'bench-results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${phase}-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify({ timestamp: startedAt.toISOString(), node: process.version, quick, [key]: results }, null, 2)}\n`);
  const load = `load ${results.loadavg_before[0]?.toFixed(2)} -> ${results.loadavg_after[0]?.toFixed(2)}`;
  process.stdout.write(`${[`exai-ws bench, ${phase} only (${load})`, '', ...lines, '', `written: ${file}`].join('\n')}\n`);
}
