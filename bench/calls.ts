/**
 * The call loops every bench phase shares: one tool called sequentially (latency samples) or
 * with a fixed number outstanding (throughput), each bounded by count and time.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';

export interface ToolCall {
  name: string;
  arguments: Record<string, unknown>;
}

/** The built-in `version` tool: the trivial call the latency and throughput phases time. */
export const VERSION_CALL: ToolCall = { name: 'version', arguments: {} };

/** Calls a tool; a tool error is a bench failure. Resolves with its structured content. */
export async function callOk(client: Client, call: ToolCall): Promise<Record<string, unknown>> {
  const result = await client.callTool(call);
  if (result.isError) throw new Error(`${call.name} failed: ${JSON.stringify(result.content)}`);
  return (result.structuredContent ?? {}) as Record<string, unknown>;
}

/** `calls` sequential calls (stopping at `deadlineMs`); pushes each latency in microseconds into `into`. */
export async function sequential(client: Client, call: ToolCall, calls: number, deadlineMs: number, into: number[] | null): Promise<void> {
  for (let i = 0; i < calls && performance.now() < deadlineMs; i++) {
    const t0 = performance.now();
    await callOk(client, call);
    into?.push((performance.now() - t0) * 1000);
  }
}

/** Keeps exactly `inflight` calls outstanding for `durationMs` (or `maxCalls`); calls per second. */
export async function throughput(
  client: Client,
  call: ToolCall,
  inflight: number,
  durationMs: number,
  maxCalls: number,
): Promise<{ perS: number; calls: number; ms: number }> {
  let calls = 0;
  let stop = false;
  const t0 = performance.now();
  const deadline = t0 + durationMs;
  const lane = async () => {
    while (!stop) {
      await callOk(client, call);
      calls++;
      if (calls >= maxCalls || performance.now() >= deadline) stop = true;
    }
  };
  await Promise.all(Array.from({ length: inflight }, lane));
  const ms = performance.now() - t0;
  return { perS: calls / (ms / 1000), calls, ms };
}

/** True when the module at `moduleUrl` is the script node was started with (a phase run alone). */
export function isEntryPoint(moduleUrl: string): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}
