/**
 * Cold start as a new user meets it: a home where no daemon ever ran, an MCP client launches
 * the shim, the shim starts the daemon, and the client lists tools. Times spawn -> the first
 * `tools/list` answer, over several runs, each in a fresh temp home (HOME, XDG_* only), and
 * kills the daemon after each. Works against any built checkout (`--root DIR`, default this
 * one), so that two versions can be compared on the same machine:
 *
 *   node dist/bench/cold-start.js [--root DIR] [--runs N]
 *
 * The port is 0 both in the environment (versions that take it from the client) and in the
 * settings file (versions that read daemon.env), so no run binds 8765. Loopback only.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const { values } = parseArgs({ options: { root: { type: 'string' }, runs: { type: 'string' } } });
const root = resolve(values.root ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..'));
const runs = Math.min(50, Math.max(1, Number(values.runs ?? 7)));
const shim = join(root, 'dist', 'shim.cjs');

function killCardPid(home: string): void {
  try {
    const card = JSON.parse(readFileSync(join(home, 'logs', 'ws_daemon.pid'), 'utf8')) as { pid: number };
    process.kill(card.pid, 'SIGKILL');
  } catch {
    // No daemon, or gone.
  }
}

async function once(): Promise<number> {
  const user = mkdtempSync(join(tmpdir(), 'exai-ws-cold-'));
  const home = join(user, 'state', 'exai-ws');
  const settings = join(user, 'config', 'exai-ws', 'daemon.env');
  mkdirSync(dirname(settings), { recursive: true });
  writeFileSync(settings, 'EXAI_WS_PORT=0\nEXAI_WS_IDLE_EXIT_MS=60000\n', { mode: 0o600 });
  const env = {
    HOME: user,
    XDG_CONFIG_HOME: join(user, 'config'),
    XDG_STATE_HOME: join(user, 'state'),
    PATH: process.env.PATH ?? '',
    EXAI_WS_PORT: '0',
    EXAI_WS_IDLE_EXIT_MS: '60000',
  };
  const client = new Client({ name: 'cold-start-bench', version: '1' });
  const started = performance.now();
  try {
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [shim], env, stderr: 'ignore' }));
    const { tools } = await client.listTools();
    const ms = performance.now() - started;
    if (tools.length === 0) throw new Error('no tools listed');
    return ms;
  } finally {
    await client.close().catch(() => undefined);
    killCardPid(home);
    rmSync(user, { recursive: true, force: true });
  }
}

const times: number[] = [];
for (let i = 0; i < runs; i++) times.push(await once());
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)] as number;
process.stdout.write(
  `${JSON.stringify({ root, runs, median_ms: Math.round(median), min_ms: Math.round(times[0] as number), max_ms: Math.round(times.at(-1) as number), all_ms: times.map(Math.round) })}\n`,
);
