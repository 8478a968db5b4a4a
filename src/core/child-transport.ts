/**
 * An MCP stdio transport to a child process the daemon hosts. Unlike the SDK's client
 * transport, the child runs in its own process group, so stopping it reaches the whole tree
 * (`npx` -> `sh` -> `node`), and the group is registered with the {@link Watchdog}, so even a
 * daemon killed with SIGKILL leaves no orphan behind.
 *
 * Stop sequence (close()): end the child's stdin, wait; SIGTERM the group, wait; SIGKILL it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { corkUntilTick } from '../protocol/cork.js';
import { LineSplitter } from '../protocol/ndjson.js';
import type { Watchdog } from './watchdog.js';

/** How long each stop step waits for the child to exit before the next, harsher one. */
export const STOP_STEP_MS = 2_000;
/** Longest stdout line accepted from a hosted server. */
export const CHILD_MAX_LINE_BYTES = 64 * 1024 * 1024;
/** Stderr kept for error reports, in characters. */
const STDERR_TAIL_CHARS = 2_000;

export interface ChildSpec {
  command: string;
  args: readonly string[];
  env: Readonly<Record<string, string>>;
  cwd?: string | undefined;
}

export class ChildTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  /** Each line the child writes to stderr (its log), for the daemon's log. */
  onstderr?: (line: string) => void;

  private readonly spec: ChildSpec;
  private readonly watchdog: Watchdog | undefined;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private closed = false;
  private stderrTail = '';
  /** Exit code or signal, once the child exited. */
  exitStatus: string | undefined;

  constructor(spec: ChildSpec, watchdog?: Watchdog) {
    this.spec = spec;
    this.watchdog = watchdog;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The end of what the child wrote to stderr, for error messages. */
  get stderr(): string {
    return this.stderrTail;
  }

  /** Spawns the child; rejects when it cannot be started (command not found, bad cwd). */
  start(): Promise<void> {
    if (this.child) throw new Error('ChildTransport already started');
    return new Promise((resolve, reject) => {
      const child = spawn(this.spec.command, [...this.spec.args], {
        env: { ...this.spec.env },
        cwd: this.spec.cwd,
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true, // its own process group: the stop sequence reaches grandchildren
        windowsHide: true,
      });
      this.child = child;
      this.exited = new Promise((done) => child.once('close', () => done()));
      const splitter = new LineSplitter(CHILD_MAX_LINE_BYTES, {
        onLine: (line) => this.receive(line),
        onOversize: (bytes) => this.onerror?.(new Error(`server wrote a ${bytes}-byte line; dropped`)),
      });
      child.stdout.on('data', (chunk: Buffer) => splitter.push(chunk));
      const errors = new LineSplitter(64 * 1024, {
        onLine: (line) => {
          this.stderrTail = (this.stderrTail + line + '\n').slice(-STDERR_TAIL_CHARS);
          this.onstderr?.(line);
        },
        onOversize: () => undefined,
      });
      child.stderr.on('data', (chunk: Buffer) => errors.push(chunk));
      child.stdin.on('error', (error) => this.onerror?.(error));
      child.once('error', (error) => {
        if (child.pid === undefined) reject(error);
        else this.onerror?.(error);
      });
      child.once('spawn', () => {
        if (child.pid !== undefined) this.watchdog?.watch(child.pid);
        resolve();
      });
      child.once('close', (code, signal) => {
        this.exitStatus = signal ?? String(code);
        if (child.pid !== undefined) this.watchdog?.unwatch(child.pid);
        this.finish();
      });
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.child?.stdin;
    if (!stdin || this.closed || !stdin.writable) return Promise.reject(new Error('server process is not running'));
    corkUntilTick(stdin);
    return new Promise((resolve, reject) => {
      stdin.write(`${JSON.stringify(message)}\n`, (error) => (error ? reject(error) : resolve()));
    });
  }

  /** Stops the child (stdin end, SIGTERM, SIGKILL, each after {@link STOP_STEP_MS}); resolves once it exited. */
  async close(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      this.finish();
      return;
    }
    child.stdin?.end();
    if (await this.waitExit(STOP_STEP_MS)) return;
    this.signalGroup('SIGTERM');
    if (await this.waitExit(STOP_STEP_MS)) return;
    this.signalGroup('SIGKILL');
    await this.waitExit(STOP_STEP_MS);
  }

  private signalGroup(signal: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      try {
        this.child?.kill(signal);
      } catch {
        // Already gone.
      }
    }
  }

  private async waitExit(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
    const done = await Promise.race([this.exited?.then(() => true as const) ?? Promise.resolve(true as const), timeout]);
    clearTimeout(timer);
    return done;
  }

  private receive(line: string): void {
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch {
      // A server printing non-JSON on stdout (a banner, a stray log line): report, keep going.
      this.onerror?.(new Error(`server wrote a line that is not JSON: ${line.slice(0, 200)}`));
      return;
    }
    this.onmessage?.(message as JSONRPCMessage);
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.onclose?.();
  }
}
