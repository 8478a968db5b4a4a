/**
 * Hosted-server figures (issue: host the user's stdio MCP servers once):
 *  1. a hosted server's tool through shim+daemon against the same server over direct stdio
 *     (sequential p50/p99 and calls/s with 32 in flight);
 *  2. total PSS of 4 clients x 3 servers launched with npx: each client starting its own
 *     three server trees, against one daemon hosting the three once with 4 shims.
 * Loopback only, every loop bounded in count and time, every process killed at the end.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  ROOT,
  SHIM,
  EVERYTHING,
  childEnv,
  connectStdio,
  makeHome,
  readMemory,
  sleep,
  startDaemon,
  type DaemonProc,
  type StdioConnection,
} from './procs.js';
import { summarize, type Summary } from './stats.js';

export interface HostedPlan {
  warmupCalls: number;
  sequentialCalls: number;
  throughputMs: number;
  inflight: number;
  clients: number;
}

export interface HostedResults {
  tool: string;
  latency_us: { direct: Summary; shim_daemon: Summary };
  latency_ratio: { p50: number; p99: number };
  throughput_per_s: { direct: number; shim_daemon: number; ratio: number };
  pss_4x3_npx_mb: { direct: number; daemon: number; ratio: number; direct_processes: number; daemon_processes: number };
}

async function sequential(client: Client, tool: string, plan: HostedPlan): Promise<Summary> {
  const args = { message: 'bench' };
  for (let i = 0; i < plan.warmupCalls; i++) await client.callTool({ name: tool, arguments: args });
  const samples: number[] = [];
  const deadline = Date.now() + 60_000;
  for (let i = 0; i < plan.sequentialCalls && Date.now() < deadline; i++) {
    const t0 = performance.now();
    await client.callTool({ name: tool, arguments: args });
    samples.push((performance.now() - t0) * 1000);
  }
  return summarize(samples);
}

async function throughput(client: Client, tool: string, plan: HostedPlan): Promise<number> {
  const args = { message: 'bench' };
  const endAt = performance.now() + plan.throughputMs;
  let done = 0;
  const lane = async () => {
    while (performance.now() < endAt && done < 1_000_000) {
      await client.callTool({ name: tool, arguments: args });
      done++;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: plan.inflight }, lane));
  return (done * 1000) / (performance.now() - t0);
}

/** Every process below `pid` (children, their children, ...), from /proc. */
export function descendantsOf(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirProc()) {
    const ppid = parentOf(entry);
    if (ppid === undefined) continue;
    const list = children.get(ppid) ?? [];
    list.push(entry);
    children.set(ppid, list);
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

function readdirProc(): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number);
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

function pssMb(pids: number[]): number {
  let kb = 0;
  for (const pid of pids) {
    try {
      kb += readMemory(pid).pss;
    } catch {
      // exited meanwhile
    }
  }
  return Math.round((kb / 1024) * 10) / 10;
}

/** The three servers, as a user launches them with npx (resolved from this project's node_modules, no network). */
function npxServers(dir: string): Record<string, { command: string; args: string[]; env?: Record<string, string> }> {
  return {
    memory: { command: 'npx', args: ['--no-install', 'mcp-server-memory'], env: { MEMORY_FILE_PATH: join(dir, 'memory.jsonl') } },
    everything: { command: 'npx', args: ['--no-install', 'mcp-server-everything', 'stdio'] },
    filesystem: { command: 'npx', args: ['--no-install', 'mcp-server-filesystem', dir] },
  };
}

export async function runHosted(plan: HostedPlan, progress: (line: string) => void): Promise<HostedResults> {
  // 1. One hosted tool, direct against through the daemon.
  progress('hosted: server-everything echo, direct stdio against shim+daemon');
  const home = makeHome();
  const config = join(home, 'hosted-config.json');
  writeFileSync(
    config,
    JSON.stringify({ mcpServers: { everything: { command: process.execPath, args: [EVERYTHING, 'stdio'], start: 'eager' } } }),
  );
  const direct = await connectStdio(process.execPath, [EVERYTHING, 'stdio'], childEnv(home));
  const daemon = await startDaemon({ EXAI_WS_CONFIG: config });
  const viaDaemon = await connectStdio(process.execPath, [SHIM], childEnv(daemon.home));
  const directSeq = await sequential(direct.client, 'echo', plan);
  const daemonSeq = await sequential(viaDaemon.client, 'everything__echo', plan);
  const directTput = await throughput(direct.client, 'echo', plan);
  const daemonTput = await throughput(viaDaemon.client, 'everything__echo', plan);
  await direct.close();
  await viaDaemon.close();
  await daemon.stop();

  // 2. 4 clients x 3 servers with npx.
  progress(`hosted: PSS of ${plan.clients} clients x 3 servers launched with npx, direct against the daemon`);
  const dir = makeHome();
  const servers = npxServers(dir);
  const env = childEnv(dir);
  const directClients: StdioConnection[] = [];
  for (let i = 0; i < plan.clients; i++) {
    for (const spec of Object.values(servers)) {
      directClients.push(await connectStdio(spec.command, spec.args, { ...env, ...spec.env }, { cwd: ROOT }));
    }
  }
  await sleep(1_000);
  const directPids = directClients.flatMap((c) => [c.pid, ...descendantsOf(c.pid)]);
  const directPss = pssMb(directPids);
  for (const c of directClients) await c.close();

  const npxConfig = join(dir, 'npx-config.json');
  writeFileSync(
    npxConfig,
    JSON.stringify({ mcpServers: Object.fromEntries(Object.entries(servers).map(([n, s]) => [n, { ...s, cwd: ROOT }])) }),
  );
  const hosting: DaemonProc = await startDaemon({ EXAI_WS_CONFIG: npxConfig });
  const shims: StdioConnection[] = [];
  for (let i = 0; i < plan.clients; i++) {
    const shim = await connectStdio(process.execPath, [SHIM], childEnv(hosting.home));
    await shim.client.listTools(); // starts the three servers (lazy) on the first list
    shims.push(shim);
  }
  await sleep(1_000);
  const daemonPids = [hosting.pid, ...descendantsOf(hosting.pid), ...shims.map((s) => s.pid)];
  const daemonPss = pssMb(daemonPids);
  for (const s of shims) await s.close();
  await hosting.stop();

  return {
    tool: 'server-everything echo',
    latency_us: { direct: directSeq, shim_daemon: daemonSeq },
    latency_ratio: { p50: daemonSeq.p50 / directSeq.p50, p99: daemonSeq.p99 / directSeq.p99 },
    throughput_per_s: { direct: directTput, shim_daemon: daemonTput, ratio: daemonTput / directTput },
    pss_4x3_npx_mb: {
      direct: directPss,
      daemon: daemonPss,
      ratio: daemonPss / directPss,
      direct_processes: directPids.length,
      daemon_processes: daemonPids.length,
    },
  };
}
