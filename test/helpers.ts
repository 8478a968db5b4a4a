/**
 * Shared test helpers: real daemon processes on port 0 with their own EXAI_WS_HOME, real
 * shim processes, the official MCP SDK client, and raw WebSockets for protocol tests.
 * Every helper that starts something registers it with a {@link Cleanup}.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { Server as HttpServer } from 'node:http';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
// Types only: the SDK client is loaded when a test first connects one (connectShim), so that the
// files that use none of it do not pay its ~0.3 s of CPU at import.
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import WebSocket from 'ws';
import { fetchFullHealth } from '../src/local/health-client.js';
import { DAEMON_NODE_OPTIONS } from '../src/local/daemon-launch.js';
import { readAddressCard } from '../src/local/files.js';
import type { HealthReport } from '../src/local/health.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(ROOT, 'dist', 'src', 'cli.js');
/** The bundled shim: what client configs run (`exai-ws shim` loads the same file). */
export const SHIM = join(ROOT, 'dist', 'shim.cjs');
export const FIXTURE_DAEMON = join(ROOT, 'dist', 'test', 'fixtures', 'fixture-daemon.js');
/** What real clients send first, copied from the team's shared fixtures so a fresh clone has them. */
export const OPENINGS = join(ROOT, 'test', 'fixtures', 'client-openings');

/** Runs registered teardown steps in reverse order; use one per test file or test. */
export class Cleanup {
  private steps: (() => unknown)[] = [];
  add(step: () => unknown): void {
    this.steps.push(step);
  }
  async run(): Promise<void> {
    const steps = this.steps.reverse();
    this.steps = [];
    for (const step of steps) {
      try {
        await step();
      } catch {
        // teardown is best effort
      }
    }
  }
}

export function makeHome(cleanup: Cleanup): string {
  const home = mkdtempSync(join(tmpdir(), 'exai-ws-test-'));
  cleanup.add(() => rmSync(home, { recursive: true, force: true }));
  return home;
}

/**
 * Runs jobs one after another, in the order they were handed in; a job that fails does not stop
 * the ones after it. For tests that take turns on a shared daemon, or on a shared file.
 */
export function serially(): <T>(job: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(job: () => Promise<T>) => {
    const result = tail.then(job);
    tail = result.catch(() => undefined);
    return result;
  };
}

/** Runs `count` jobs, at most `limit` at a time. */
export async function pool<T>(count: number, limit: number, job: (n: number) => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const n = next++;
      results[n] = await job(n);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
  return results;
}

export async function waitFor<T>(probe: () => T | Promise<T>, what: string, timeoutMs = 10_000, intervalMs = 20): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Watches `probe` for `periodMs` (every 20 ms) and throws as soon as it is false: a property
 * that must hold for a while (a daemon that must not exit while a session is open), failing at
 * the first look that breaks it rather than after a fixed sleep.
 */
export async function holdsFor(probe: () => boolean | Promise<boolean>, what: string, periodMs: number): Promise<void> {
  const endMs = Date.now() + periodMs;
  for (;;) {
    if (!(await probe())) throw new Error(`${what} stopped holding ${periodMs - (endMs - Date.now())} ms into ${periodMs} ms`);
    if (Date.now() >= endMs) return;
    await new Promise((r) => setTimeout(r, Math.min(20, Math.max(1, endMs - Date.now()))));
  }
}

/** How long a daemon may take to write its address card: generous, for a loaded machine (a bound, not a wait). */
const DAEMON_START_MS = 30_000;

export interface DaemonHandle {
  home: string;
  port: number;
  pid: number;
  token: string;
  proc: ChildProcess;
  /** Environment for a shim or CLI command that should find this daemon. */
  clientEnv: Record<string, string>;
  stderr(): string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
  url(path?: string): string;
}

export interface StartDaemonOptions {
  /** Extra environment (limits such as EXAI_WS_BACKPRESSURE). */
  env?: Record<string, string>;
  /** Use an existing home (default: a new temp dir). */
  home?: string;
  /** The plain `exai-ws daemon` instead of the fixture daemon with test tools. */
  plain?: boolean;
  /**
   * A command the daemon runs under, which must exec it (same pid), e.g.
   * `['prlimit', '--nofile=256:256', '--']` for a descriptor limit.
   */
  wrap?: readonly string[];
}

/** A child process, its stderr so far, and its exit (code or signal). */
export interface Child {
  proc: ChildProcess;
  stderr: () => string;
  exited: Promise<number | string>;
}

/**
 * Spawns `command` and kills it with SIGKILL at cleanup if it still runs. Its stderr (and its
 * stdout too, with `stdoutToo`) is collected; stdio defaults to ignore/pipe/pipe.
 */
export function spawnChild(
  cleanup: Cleanup,
  command: string,
  args: readonly string[],
  options: SpawnOptions & { stdoutToo?: boolean } = {},
): Child {
  const { stdoutToo, ...spawnOptions } = options;
  const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...spawnOptions });
  let err = '';
  proc.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  if (stdoutToo) proc.stdout?.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  cleanup.add(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
  });
  return { proc, stderr: () => err, exited };
}

/** Spawns a daemon process and waits until its address card has a port. */
export function spawnDaemon(
  cleanup: Cleanup,
  options: StartDaemonOptions = {},
): { proc: ChildProcess; home: string; stderr: () => string; exited: Promise<number | string> } {
  const home = options.home ?? makeHome(cleanup);
  // With the daemon's own Node options, as auto-start, restart and the service give them.
  const args = [...DAEMON_NODE_OPTIONS, ...(options.plain ? [CLI, 'daemon'] : [FIXTURE_DAEMON])];
  const [command, ...wrapArgs] = [...(options.wrap ?? []), process.execPath];
  const child = spawnChild(cleanup, command ?? process.execPath, [...wrapArgs, ...args], {
    env: { ...baseEnv(), EXAI_WS_HOME: home, EXAI_WS_PORT: '0', EXAI_WS_CONFIG: join(home, 'config.json'), ...options.env },
    stdoutToo: true,
  });
  return { ...child, home };
}

export async function startDaemon(cleanup: Cleanup, options: StartDaemonOptions = {}): Promise<DaemonHandle> {
  const { proc, home, stderr, exited } = spawnDaemon(cleanup, options);
  let dead = false;
  void exited.then(() => (dead = true));
  const card = await waitFor(
    () => {
      if (dead) throw new Error(`daemon exited during start: ${stderr()}`);
      const c = readAddressCard(join(home, 'logs', 'ws_daemon.pid'));
      return c && c.port > 0 && c.pid === proc.pid ? c : null;
    },
    'the daemon address card',
    DAEMON_START_MS,
  );
  const token = readFileSync(join(home, 'token'), 'utf8').trim();
  return {
    home,
    port: card.port,
    pid: card.pid,
    token,
    proc,
    clientEnv: { EXAI_WS_HOME: home },
    stderr,
    exited,
    url: (path = '/ws') => `ws://127.0.0.1:${card.port}${path}`,
  };
}

/** Variables exai-ws reads: a developer's real keys or limits must never leak into a test. */
const OWN_ENV = /^(EXAI_WS_|EXAI_OPENAI_|KIMI_|MOONSHOT_|GLM_|ZHIPUAI_|LOG_LEVEL$)/;

/** The environment children get: the test's own minus anything exai-ws reads. */
export function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !OWN_ENV.test(k)) env[k] = v;
  }
  // Never the developer's own hosted-servers config or settings.
  env.EXAI_WS_CONFIG = join(tmpdir(), 'exai-ws-test-no-config.json');
  // Under a file, so that it can be neither read nor written: a test that meant to write settings
  // and forgot to name its own file fails instead of leaving them to every later test.
  env.EXAI_WS_SETTINGS =
    process.platform === 'win32' ? join(tmpdir(), 'exai-ws-test-no-settings.env') : '/dev/null/exai-ws-test-no-settings.env';
  // A shim must not start a daemon of its own unless the test asks for it: a test's daemon is
  // the one it started, and one that outlived the test would be left running.
  env.EXAI_WS_AUTOSTART = '0';
  return env;
}

export interface ShimClient {
  client: Client;
  transport: StdioClientTransport;
  /** The shim process id. */
  pid: number;
  stderr(): string;
}

/** Starts a real shim process under the official SDK client and completes initialize. */
export async function connectShim(
  cleanup: Cleanup,
  daemon: Pick<DaemonHandle, 'clientEnv'>,
  options: { name?: string; capabilities?: Record<string, unknown>; env?: Record<string, string>; args?: string[] } = {},
): Promise<ShimClient> {
  const [{ Client }, { StdioClientTransport }] = await Promise.all([
    import('@modelcontextprotocol/sdk/client/index.js'),
    import('@modelcontextprotocol/sdk/client/stdio.js'),
  ]);
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [SHIM, ...(options.args ?? [])],
    env: { ...baseEnv(), ...daemon.clientEnv, ...options.env },
    stderr: 'pipe',
  });
  let err = '';
  transport.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const client = new Client({ name: options.name ?? 'exai-ws-test', version: '1.0.0' }, { capabilities: options.capabilities ?? {} });
  cleanup.add(() => client.close());
  await client.connect(transport);
  return { client, transport, pid: transport.pid ?? -1, stderr: () => err };
}

/** The text of a tool result's first content item. */
export function textOf(result: unknown): string {
  const content = (result as { content?: { type: string; text?: string }[] }).content;
  return content?.[0]?.text ?? '';
}

/** The daemon's full `/health` (with its token), through the same client `status` uses; throws when it gives none. */
export async function getHealth(daemon: Pick<DaemonHandle, 'port' | 'token'>): Promise<HealthReport> {
  const report = await fetchFullHealth('127.0.0.1', daemon.port, 5_000, daemon.token);
  if (!report) throw new Error(`no health report from 127.0.0.1:${daemon.port}/health`);
  return report;
}

/** Opens a raw WebSocket to the daemon, by default with the right bearer token. */
export function openSocket(
  cleanup: Cleanup,
  daemon: Pick<DaemonHandle, 'url' | 'token'>,
  options: { token?: string | null; headers?: Record<string, string>; path?: string; maxPayload?: number } = {},
): Promise<WebSocket> {
  const token = options.token === undefined ? daemon.token : options.token;
  const headers: Record<string, string> = { ...options.headers };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const ws = new WebSocket(daemon.url(options.path), { headers, maxPayload: options.maxPayload ?? 0 });
  cleanup.add(() => ws.terminate());
  const inbox = new MessageInbox(ws);
  inboxes.set(ws, inbox);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

/** Buffers every text frame so tests can await them in order. */
class MessageInbox {
  private queue: string[] = [];
  private waiters: ((text: string) => void)[] = [];
  constructor(ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const text = data.toString('utf8');
      const waiter = this.waiters.shift();
      if (waiter) waiter(text);
      else this.queue.push(text);
    });
  }
  next(timeoutMs: number): Promise<string> {
    const ready = this.queue.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no message within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (text: string) => {
        clearTimeout(timer);
        resolve(text);
      };
      this.waiters.push(waiter);
    });
  }
}

const inboxes = new WeakMap<WebSocket, MessageInbox>();

/** The next text frame from a socket opened with {@link openSocket}, parsed as JSON. */
export async function nextJson(ws: WebSocket, timeoutMs = 5_000): Promise<Record<string, unknown>> {
  const inbox = inboxes.get(ws);
  if (!inbox) throw new Error('socket was not opened with openSocket');
  return JSON.parse(await inbox.next(timeoutMs)) as Record<string, unknown>;
}

export function closed(ws: WebSocket, timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
  if (ws.readyState === ws.CLOSED) return Promise.resolve({ code: -1, reason: 'already closed' });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socket not closed within ${timeoutMs} ms`)), timeoutMs);
    ws.once('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ code, reason: reason.toString() });
    });
  });
}

/** Sends a hello and returns the ack. */
export async function sendHello(ws: WebSocket, extra: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  ws.send(JSON.stringify({ type: 'hello', protocol: 1, client: { name: 'raw-test', version: '1' }, ...extra }));
  return nextJson(ws);
}

/**
 * A raw WebSocket session: hello accepted (resuming or naming `sessionId` when given), then MCP
 * initialize answered, as the very next frame, and `notifications/initialized` sent.
 */
export async function openSession(
  cleanup: Cleanup,
  daemon: Pick<DaemonHandle, 'url' | 'token'>,
  options: { sessionId?: string; capabilities?: Record<string, unknown>; clientName?: string } = {},
): Promise<{ ws: WebSocket; ack: Record<string, unknown> }> {
  const ws = await openSocket(cleanup, daemon);
  const ack = await sendHello(ws, options.sessionId === undefined ? {} : { session_id: options.sessionId });
  if (ack.ok !== true) throw new Error(`hello refused: ${JSON.stringify(ack)}`);
  const clientInfo = { name: options.clientName ?? 'raw-test', version: '1' };
  const params = { protocolVersion: '2025-06-18', capabilities: options.capabilities ?? {}, clientInfo };
  ws.send(JSON.stringify({ jsonrpc: '2.0', id: 'init', method: 'initialize', params }));
  const init = await nextJson(ws);
  if (init.id !== 'init' || !init.result) throw new Error(`initialize failed: ${JSON.stringify(init)}`);
  ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
  return { ws, ack };
}

/** The text of a raw JSON-RPC `tools/call` reply's first content item; throws when the reply is an error. */
export function toolText(reply: Record<string, unknown>): string {
  if (!('result' in reply)) throw new Error(`expected a result, got ${JSON.stringify(reply).slice(0, 300)}`);
  return textOf(reply.result);
}

/** A loopback port nobody listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!address || typeof address !== 'object') throw new Error('no port was bound');
  return address.port;
}

/**
 * Listens with `server` on 127.0.0.1, port 0; at cleanup closes it and all its connections (a
 * browser's idle keep-alive ones too: closed, not waited for). Returns the port.
 */
export async function listenLoopback(cleanup: Cleanup, server: HttpServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.add(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  const address = server.address();
  if (!address || typeof address !== 'object') throw new Error('no port was bound');
  return address.port;
}

/** A raw process driven line by line (a shim, or `exai-ws stdio`), for framing and failure tests. */
export interface RawShim {
  proc: ChildProcess;
  send(line: string): void;
  nextLine(timeoutMs?: number): Promise<string>;
  stderr(): string;
  exited: Promise<number | string>;
}

export function spawnShim(cleanup: Cleanup, env: Record<string, string>, args: string[] = []): RawShim {
  return spawnLines(cleanup, [SHIM, ...args], env);
}

/** Runs `node ARGS` (with baseEnv() and `env`) as a RawShim; killed at cleanup. */
export function spawnLines(cleanup: Cleanup, args: string[], env: Record<string, string> = {}): RawShim {
  const { proc, stderr, exited } = spawnChild(cleanup, process.execPath, args, {
    env: { ...baseEnv(), ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const waiters: ((line: string) => void)[] = [];
  let partial = '';
  proc.stdout?.on('data', (c: Buffer) => {
    partial += c.toString('utf8');
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      const waiter = waiters.shift();
      if (waiter) waiter(line);
      else lines.push(line);
    }
  });
  proc.stdin?.on('error', () => undefined);
  return {
    proc,
    send: (line) => proc.stdin?.write(`${line}\n`),
    nextLine: (timeoutMs = 5_000) => {
      const ready = lines.shift();
      if (ready !== undefined) return Promise.resolve(ready);
      return new Promise((resolve, reject) => {
        const waiter = (line: string) => {
          clearTimeout(timer);
          resolve(line);
        };
        const timer = setTimeout(() => {
          const at = waiters.indexOf(waiter);
          if (at >= 0) waiters.splice(at, 1);
          reject(new Error(`no stdout line within ${timeoutMs} ms; stderr: ${stderr()}`));
        }, timeoutMs);
        waiters.push(waiter);
      });
    },
    stderr,
    exited,
  };
}

export function readJsonLines(path: string): Record<string, unknown>[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim().length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

export function logPath(home: string): string {
  return join(home, 'logs', 'ws_daemon.log');
}

export function metricsPath(home: string): string {
  return join(home, 'logs', 'metrics.jsonl');
}

/** Rejects when `promise` has not settled within `timeoutMs`. */
export function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A JSON-RPC message as the tests read it. */
export type Message = Record<string, unknown> & { id?: unknown; method?: string; params?: Record<string, unknown> };

/** Reads a raw shim's stdout until the response with this id; returns it and everything before it. */
export async function readUntilResponse(shim: RawShim, id: unknown, timeoutMs = 10_000): Promise<{ response: Message; before: Message[] }> {
  const before: Message[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const message = JSON.parse(await shim.nextLine(Math.max(1, deadline - Date.now()))) as Message;
    if (message.method === undefined && message.id === id) return { response: message, before };
    before.push(message);
  }
}

/** Runs a raw shim through initialize (id 'init') and notifications/initialized; throws when initialize fails. */
export async function initializeRaw(shim: RawShim, capabilities: Record<string, unknown> = {}): Promise<void> {
  shim.send(
    JSON.stringify({
      jsonrpc: '2.0',
      id: 'init',
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities, clientInfo: { name: 'raw-test', version: '1' } },
    }),
  );
  const reply = await readUntilResponse(shim, 'init', 15_000);
  if (!reply.response.result) throw new Error(`initialize failed: ${JSON.stringify(reply.response)}`);
  shim.send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
}

/** What a finished `exai-ws` command printed, and its exit code (null: ended by a signal). */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real CLI as a user would (`node dist/src/cli.js ARGS`, stdin closed), with the test
 * environment plus `env`; rejects when it has not ended within `timeoutMs` (it is killed).
 */
export function runCli(args: string[], env: Record<string, string>, timeoutMs = 20_000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...baseEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`exai-ws ${args.join(' ')} did not end within ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
