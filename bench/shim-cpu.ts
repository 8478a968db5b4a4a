/**
 * The shim's CPU per relayed call (issue 23's budget: <= 8 us, the sum over a call's two
 * messages): a real daemon on port 0 in its own temp home, one real shim process
 * (dist/shim.cjs), and this process as its client writing NDJSON straight to the shim's stdin,
 * 16 calls of the built-in `version` tool in flight. The shim's utime + stime
 * (`/proc/<pid>/stat`, clock ticks) is read before and after each round of a bounded number of
 * calls; the daemon's too, for scale.
 *
 * A benchmark, not a test: it asserts nothing. Usage: `node dist/bench/shim-cpu.js
 * [--calls N] [--rounds N] [--inflight N]` (defaults 20000, 5, 16). Prints one line per round
 * and the median.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { SHIM, childEnv, installCleanup, readCpuMs, startDaemon, track, untrack, waitExit } from './procs.js';
import { median } from './stats.js';

const WARMUP_CALLS = 3_000;

/** One shim process and the answers it writes, matched to their requests by id. */
class RawClient {
  private readonly waiting = new Map<number, () => void>();
  private buffered = '';
  private nextId = 1;

  constructor(readonly proc: ChildProcess) {
    proc.stdout?.setEncoding('utf8');
    proc.stdout?.on('data', (chunk: string) => this.onData(chunk));
  }

  /** Sends one request and resolves with its answer's line. */
  request(method: string, params: Record<string, unknown>): Promise<void> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.proc.stdin?.write(`${JSON.stringify({ jsonrpc: '2.0', id, method, params })}\n`);
    });
  }

  notify(method: string): void {
    this.proc.stdin?.write(`${JSON.stringify({ jsonrpc: '2.0', method })}\n`);
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) !== -1) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      const message = JSON.parse(line) as { id?: unknown; error?: unknown };
      if (message.error !== undefined) throw new Error(`the shim answered an error: ${line}`);
      const done = typeof message.id === 'number' ? this.waiting.get(message.id) : undefined;
      if (done) {
        this.waiting.delete(message.id as number);
        done();
      }
    }
  }
}

/** Read and write system calls the process made so far (`/proc/<pid>/io`). */
function syscalls(pid: number): { reads: number; writes: number } {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? NaN);
  return { reads: field('syscr'), writes: field('syscw') };
}

/** Makes `calls` version calls with exactly `inflight` outstanding. */
async function drive(client: RawClient, calls: number, inflight: number): Promise<void> {
  let started = 0;
  const lane = async () => {
    while (started < calls) {
      started++;
      await client.request('tools/call', { name: 'version', arguments: {} });
    }
  };
  await Promise.all(Array.from({ length: inflight }, lane));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      calls: { type: 'string', default: '20000' },
      rounds: { type: 'string', default: '5' },
      inflight: { type: 'string', default: '16' },
      // Node options for the shim, e.g. --node-option=--cpu-prof to see where its time goes.
      'node-option': { type: 'string', multiple: true, default: [] },
    },
  });
  const calls = Number(values.calls);
  const rounds = Number(values.rounds);
  const inflight = Number(values.inflight);
  installCleanup(10 * 60_000);
  const daemon = await startDaemon();
  const proc = spawn(process.execPath, [...(values['node-option'] ?? []), process.env.SHIM_CPU_SHIM ?? SHIM], {
    env: childEnv(daemon.home),
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  track(proc.pid);
  const pid = proc.pid as number;
  const client = new RawClient(proc);
  await client.request('initialize', {
    protocolVersion: '2025-06-18',
    capabilities: {},
    clientInfo: { name: 'shim-cpu', version: '1' },
  });
  client.notify('notifications/initialized');
  await drive(client, WARMUP_CALLS, inflight);

  const shimUs: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    const shimBefore = readCpuMs(pid);
    const daemonBefore = readCpuMs(daemon.pid);
    const ioBefore = syscalls(pid);
    const t0 = performance.now();
    await drive(client, calls, inflight);
    const ms = performance.now() - t0;
    const shimPerCall = ((readCpuMs(pid) - shimBefore) * 1000) / calls;
    const daemonPerCall = ((readCpuMs(daemon.pid) - daemonBefore) * 1000) / calls;
    const io = syscalls(pid);
    shimUs.push(shimPerCall);
    process.stdout.write(
      `round ${round}: ${calls} calls, ${inflight} in flight, ${Math.round(calls / (ms / 1000))} calls/s; ` +
        `shim ${shimPerCall.toFixed(2)} us/call (${((io.reads - ioBefore.reads) / calls).toFixed(2)} reads, ` +
        `${((io.writes - ioBefore.writes) / calls).toFixed(2)} writes per call), daemon ${daemonPerCall.toFixed(2)} us/call\n`,
    );
  }
  process.stdout.write(`shim CPU per call, median of ${rounds}: ${median(shimUs).toFixed(2)} us (budget 8 us)\n`);
  proc.stdin?.end();
  await waitExit(proc, 5_000);
  untrack(pid);
  await daemon.stop();
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`shim-cpu: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
