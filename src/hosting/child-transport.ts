/**
 * An MCP stdio transport to a child process the daemon hosts. Unlike the SDK's client
 * transport, the child's whole process tree is kept (see {@link ProcessTree}): on POSIX its own
 * process group, on Windows a Job Object (or taskkill), and whenever the server stops, for
 * whatever reason, the whole tree is ended: what the server started goes with it. The tree is
 * watched (the {@link Watchdog}; on Windows the job itself) until it is empty, so even a daemon
 * killed with SIGKILL leaves no orphan behind.
 *
 * Stop sequence (close()): end the child's stdin and wait up to {@link STOP_STEP_MS} for the
 * leader to exit; then (or as soon as the leader exits, on its own or killed) end the tree:
 * SIGTERM the group, SIGKILL it after its grace; on Windows TerminateJobObject at once. The
 * transport closes (onclose) when the leader has exited and its output is read: a grandchild
 * that inherited the pipes cannot hold it open.
 *
 * A child that cannot be started, however Node says so (a throw from spawn() for E2BIG, an
 * 'error' event on the next tick for ENOENT, EACCES or EMFILE, in which case Node makes no
 * pipes at all), rejects start() with a {@link SpawnError} and never throws elsewhere.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { JSONRPCMessage, Transport } from '@modelcontextprotocol/client';
import type { LocalErrorCode } from '../local/errors.js';
import { corkUntilTick } from '../transport/cork.js';
import { LineSplitter } from '../transport/ndjson.js';
import type { LineTransport } from './line-transport.js';
import { ProcessGroup, type ProcessTree } from './process-group.js';
import { Watchdog } from './watchdog.js';

/** How long a stopped server gets to exit on stdin EOF before its group is signalled. */
export const STOP_STEP_MS = 2_000;
/**
 * How long output written just before the leader exited may take to arrive. Past it, pipes
 * still held open by a grandchild are destroyed and the transport closes anyway.
 */
export const EXIT_DRAIN_MS = 200;
/** Longest stdout line accepted from a hosted server. */
export const CHILD_MAX_LINE_BYTES = 64 * 1024 * 1024;
/** Stderr kept for error reports, in characters. */
const STDERR_TAIL_CHARS = 2_000;

/** Words for the codes a spawn fails with, after Node's own message. */
const SPAWN_HINTS: Readonly<Record<string, string>> = {
  EMFILE: 'the daemon has too many files open',
  ENFILE: 'the system has too many files open',
  E2BIG: 'its arguments and environment are too large',
  EACCES: 'permission denied: not an executable file, or a folder on its path may not be searched',
  EAGAIN: 'too many processes',
  ENOMEM: 'not enough memory',
};

/** Why a server process could not be started: the system's code (ENOENT, EMFILE, E2BIG...) and Node's words. */
export class SpawnError extends Error {
  override name = 'SpawnError';
  readonly code = 'ESPAWN' satisfies LocalErrorCode;
  /** The system's code (ENOENT, EMFILE, E2BIG...), or ours: EUNSAFE, ENOPIPE, EUNKNOWN. */
  readonly systemCode: string;

  constructor(systemCode: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.systemCode = systemCode;
  }

  /** A SpawnError for what spawn() threw or emitted; its message gains a hint for the known codes. */
  static from(error: unknown): SpawnError {
    if (error instanceof SpawnError) return error;
    const code = (error as NodeJS.ErrnoException | undefined)?.code ?? 'EUNKNOWN';
    const message = error instanceof Error ? error.message : String(error);
    const hint = SPAWN_HINTS[code];
    return new SpawnError(code, hint ? `${message} (${hint})` : message, { cause: error });
  }
}

export interface ChildSpec {
  command: string;
  args: readonly string[];
  env: Readonly<Record<string, string>>;
  cwd?: string | undefined;
  /** Arguments go to the process as written, unquoted (win32 `windowsVerbatimArguments`: cmd.exe's line, quoted by windows-command.ts). */
  verbatim?: boolean;
  /** Values in args or env that came from a client (a workspace folder): never handed to cmd.exe where it would read them as syntax. */
  clientValues?: readonly string[];
}

export class ChildTransport implements Transport, LineTransport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  /** Each line the child writes to stderr (its log), for the daemon's log. */
  onstderr?: (line: string) => void;
  /** See {@link LineTransport.online}: the server link relays plain responses as text. */
  online: ((line: string) => boolean) | undefined = undefined;

  private readonly spec: ChildSpec;
  private readonly watchdog: Watchdog | undefined;
  private child: ChildProcess | undefined;
  private tree: ProcessTree | undefined;
  /** Resolves once the leader has exited (its 'exit' event). */
  private leaderExited: Promise<void> | undefined;
  /** Resolves once the transport is closed: the leader exited and its output was read. */
  private drained: Promise<void> | undefined;
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

  /**
   * Spawns the child; rejects with a {@link SpawnError} when it cannot be started (command not
   * found, bad cwd, EMFILE, E2BIG...).
   */
  start(): Promise<void> {
    if (this.child) throw new Error('ChildTransport already started');
    // Before the server runs: on Windows its job must be ready the moment it spawns.
    keeperOf(this.watchdog)?.prepare();
    return new Promise((resolve, reject) => {
      const fail = (error: unknown) => reject(SpawnError.from(error));
      let child: ChildProcess;
      try {
        child = spawn(this.spec.command, [...this.spec.args], {
          env: { ...this.spec.env },
          cwd: this.spec.cwd,
          stdio: ['pipe', 'pipe', 'pipe'],
          detached: true, // its own process group: stopping it reaches grandchildren
          windowsHide: true,
          windowsVerbatimArguments: this.spec.verbatim === true,
        });
      } catch (error) {
        // E2BIG, EINVAL, an argument Node refuses: thrown at once, no process, nothing to close.
        fail(error);
        return;
      }
      this.child = child;
      // The tree at once, in the same turn as the spawn: a server that starts a child before its
      // Windows job exists leaves that child out of it, and the 'spawn' event comes only after
      // whatever else runs in this turn (under Wine, other servers' spawns took long enough for
      // cmd.exe to start its script first). A pid means the process exists.
      if (child.pid !== undefined) this.tree = keeperOf(this.watchdog)?.adopt(child.pid) ?? new ProcessGroup(child.pid);
      // Listened to before anything else: ENOENT, EACCES and EMFILE come as an 'error' on the
      // next tick, and an 'error' nobody hears ends the daemon.
      child.once('error', (error) => {
        if (child.pid === undefined) fail(error);
        else this.onerror?.(error);
      });
      child.once('close', () => this.finish());
      const { stdin, stdout, stderr } = child;
      if (!stdin || !stdout || !stderr) {
        // EMFILE or ENFILE: Node gave up before making the pipes, and its 'error' (above) is
        // on its way. Nothing else should leave them out; if it does, the start fails all the same.
        setImmediate(() => fail(new SpawnError('ENOPIPE', 'the server process has no stdio pipes')));
        return;
      }
      this.leaderExited = new Promise((done) => child.once('exit', () => done()));
      this.drained = new Promise((done) => child.once('close', () => done()));
      const splitter = new LineSplitter(CHILD_MAX_LINE_BYTES, {
        onLine: (line) => this.receive(line),
        onOversize: (bytes) => this.onerror?.(new Error(`server wrote a ${bytes}-byte line; dropped`)),
      });
      stdout.on('data', (chunk: Buffer) => splitter.push(chunk));
      const errors = new LineSplitter(64 * 1024, {
        onLine: (line) => {
          this.stderrTail = (this.stderrTail + line + '\n').slice(-STDERR_TAIL_CHARS);
          this.onstderr?.(line);
        },
        onOversize: () => undefined,
      });
      stderr.on('data', (chunk: Buffer) => errors.push(chunk));
      stdin.on('error', (error) => this.onerror?.(error));
      child.once('spawn', () => resolve());
      child.once('exit', (code, signal) => {
        this.exitStatus = signal ?? String(code);
        // However the leader went (crash, kill -9, clean exit, our stop), what it started goes too.
        void this.tree?.end();
        const drain = setTimeout(() => destroyPipes(child), EXIT_DRAIN_MS);
        child.once('close', () => clearTimeout(drain));
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

  /** See {@link LineTransport.sendText}. */
  sendText(text: string, failed: (error: Error) => void): void {
    const stdin = this.child?.stdin;
    if (!stdin || this.closed || !stdin.writable) {
      failed(new Error('server process is not running'));
      return;
    }
    corkUntilTick(stdin);
    stdin.write(`${text}\n`, (error) => {
      if (error) failed(error);
    });
  }

  /**
   * Stops the server: stdin EOF, then its whole process tree is ended (SIGTERM, SIGKILL; on
   * Windows TerminateJobObject). Resolves once the tree is empty (or given up) and the
   * transport is closed.
   */
  async close(): Promise<void> {
    const child = this.child;
    if (!child) {
      this.finish();
      return;
    }
    if (child.exitCode === null && child.signalCode === null) {
      child.stdin?.end();
      if (!(await within(this.leaderExited, STOP_STEP_MS))) {
        if (this.tree) await this.tree.end();
        else stopLeader(child);
        await within(this.leaderExited, STOP_STEP_MS);
      }
    }
    await this.tree?.end();
    // A leader that outlived SIGKILL (stuck in the kernel): stop reading it all the same.
    if (!(await within(this.drained, EXIT_DRAIN_MS))) destroyPipes(child);
    this.finish();
  }

  private receive(line: string): void {
    if (this.online?.(line) === true) return;
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

/** Resolves true when `promise` settled within `ms`, false otherwise. */
async function within(promise: Promise<void> | undefined, ms: number): Promise<boolean> {
  if (!promise) return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const done = await Promise.race([promise.then(() => true as const), timeout]);
  clearTimeout(timer);
  return done;
}

/** Stops reading a child whose pipes a grandchild may hold open; its 'close' follows. */
function destroyPipes(child: ChildProcess): void {
  for (const stream of [child.stdin, child.stdout, child.stderr]) stream?.destroy();
}

/** The keeper of Windows trees for transports made without a watchdog (tests). */
let standalone: Watchdog | undefined;

/**
 * Who makes a server's tree: its watchdog. Without one (tests), a POSIX group is made but not
 * watched, and Windows trees come from one watchdog of their own.
 */
function keeperOf(watchdog: Watchdog | undefined): Watchdog | undefined {
  if (watchdog || process.platform !== 'win32') return watchdog;
  standalone ??= new Watchdog();
  return standalone;
}

/** Without a tree (no pid known): SIGTERM, then SIGKILL, to the leader alone. */
function stopLeader(child: ChildProcess): void {
  child.kill('SIGTERM');
  setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }, STOP_STEP_MS).unref();
}
