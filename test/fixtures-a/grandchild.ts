/**
 * test/fixtures/hosted-grandchild.ts without the SDK: the same server for the process-group
 * tests (same environment, same tools, same grandchildren), in raw NDJSON. What those tests
 * prove is about processes and signals, not the server's MCP library, and each of them starts
 * this server once or more (a crash loop four times): the SDK's load was most of a start's CPU.
 *
 * It starts grandchildren in its own process group (not detached), as servers that shell out
 * do: `loose` has no stdio at all; `holder` (unless HOLD_PIPES=0) inherits its stdout and
 * stderr, so the pipes to the daemon stay open after this process exits. Both are `sleep 600`,
 * and neither keeps this process alive: stdin EOF ends it like any well-behaved server.
 *
 * Environment: PIDS_FILE (append this pid at start), EXIT_AFTER_MS (exit with status 1 that
 * long after `notifications/initialized`: a crash loop), STUBBORN=1 (the grandchildren ignore
 * SIGTERM), HOLD_PIPES=0. Tools: `pids` ({pid, grandchild, holder: pid or null}), `exit`
 * (answers, exits with status 0). Prints nothing but MCP.
 */
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { initializeResult, writeMessage } from '../fixtures/raw-server.js';

// An ignored signal stays ignored across exec: `sleep` inherits the shell's trap.
const script = process.env.STUBBORN === '1' ? "trap '' TERM; exec sleep 600" : 'exec sleep 600';
const holder = process.env.HOLD_PIPES === '0' ? undefined : spawn('/bin/sh', ['-c', script], { stdio: ['ignore', 'inherit', 'inherit'] });
const loose = spawn('/bin/sh', ['-c', script], { stdio: 'ignore' });
holder?.unref();
loose.unref();
if (process.env.PIDS_FILE) appendFileSync(process.env.PIDS_FILE, `${process.pid}\n`);
const exitAfterMs = Number(process.env.EXIT_AFTER_MS ?? 0);

const unused = { type: 'object', properties: { unused: { type: 'string' } } };
const TOOLS = [
  { name: 'pids', description: 'This process and its grandchildren.', inputSchema: unused },
  { name: 'exit', description: 'Exits (status 0) right after answering.', inputSchema: unused },
];

function call(id: unknown, name: unknown): void {
  if (name === 'pids') {
    const text = JSON.stringify({ pid: process.pid, grandchild: loose.pid, holder: holder?.pid ?? null });
    writeMessage({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text }] } });
  } else if (name === 'exit') {
    writeMessage({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: 'bye' }] } });
    setTimeout(() => process.exit(0), 50);
  } else {
    writeMessage({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: `unknown tool ${String(name)}` }], isError: true } });
  }
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  let message: { id?: unknown; method?: string; params?: { name?: unknown } };
  try {
    message = JSON.parse(line) as typeof message;
  } catch {
    return;
  }
  const { id, method } = message;
  // Counted from the handshake, not from start: a run that dies before it is ready is a failed
  // start (retried only at the next use), and a loaded machine would turn the loop into that.
  if (method === 'notifications/initialized' && exitAfterMs > 0) setTimeout(() => process.exit(1), exitAfterMs);
  if (id === undefined || method === undefined) return;
  if (method === 'initialize') writeMessage({ jsonrpc: '2.0', id, result: initializeResult('grandchild') });
  else if (method === 'ping') writeMessage({ jsonrpc: '2.0', id, result: {} });
  else if (method === 'tools/list') writeMessage({ jsonrpc: '2.0', id, result: { tools: TOOLS } });
  else if (method === 'tools/call') call(id, message.params?.name);
  else writeMessage({ jsonrpc: '2.0', id, error: { code: -32601, message: `Method not found: ${method}` } });
});
// stdin EOF ends it, as the SDK's stdio server did (the grandchildren are unref'd).
lines.on('close', () => process.exit(0));
