/**
 * The process tree of one hosted server on Windows, which has no process groups to signal.
 *
 * {@link JobTree}: the server is put in a Job Object of its own right after it spawned (before
 * a Node server has even loaded its code, so before it can start anything); every process it
 * starts joins the job. end() is TerminateJobObject: the whole tree at once, with no grace
 * (Windows has no SIGTERM a console-less server could catch; the stdin EOF before it was the
 * polite request). The job is created with KILL_ON_JOB_CLOSE and its handle is held by the
 * daemon alone, so a daemon that dies however it dies (crash, TerminateProcess, a killed Wine
 * process) takes every tree with it: the system closes the handles. That is the watchdog's job
 * done the Windows way; nothing is spawned for it.
 *
 * {@link TaskkillTree}: when koffi cannot load or a job call fails, `taskkill /PID <pid> /T /F`
 * (the tree is walked from the server's process: what a server that already exited had started
 * is out of its reach), and the server alone by TerminateProcess when taskkill refuses (Wine's
 * has no /T).
 *
 * {@link WindowsTrees} picks one per server and logs once which is used, and why a job failed.
 */
import { execFile } from 'node:child_process';
import { loadKernel32, type Handle, type Kernel32 } from './job-object.js';
import type { ProcessTree } from './process-group.js';

/** How often a tree being ended is probed for members. */
export const TREE_POLL_MS = 50;
/** How long the members may take to vanish once terminated; past it the tree is given up. */
export const TREE_WAIT_MS = 2_000;
/** Bounds one taskkill run. */
export const TASKKILL_TIMEOUT_MS = 10_000;
/** The exit code a terminated member gets (what `process.kill` gives on Windows). */
const TERMINATED_EXIT_CODE = 1;

/** The daemon's log, as the core writes it. */
export type TreeLog = (event: string, details: Record<string, unknown>, level?: 'debug' | 'warn') => void;

/** Runs `taskkill` with these arguments; resolves with its exit status and what it printed. Never rejects. */
export type TaskkillRunner = (args: readonly string[]) => Promise<{ status: number | null; output: string }>;

/** What a tree needs from the system besides kernel32; each has a default for real processes. */
export interface TreeSystem {
  runner: TaskkillRunner;
  /** True while a process with this id exists (default: `process.kill(pid, 0)`). */
  isAlive: (pid: number) => boolean;
  /** Ends one process (default: `process.kill`, which is TerminateProcess on Windows). */
  killProcess: (pid: number) => void;
  pollMs: number;
  waitMs: number;
}

export interface WindowsTreesOptions extends Partial<TreeSystem> {
  /** Binds kernel32 (default: koffi, on win32 only); when it throws, every tree uses taskkill. */
  load?: () => Kernel32;
  log?: TreeLog;
}

/** The default runner: taskkill from the system folder, hidden, bounded. */
export const runTaskkill: TaskkillRunner = (args) =>
  new Promise((resolve) => {
    execFile('taskkill.exe', [...args], { windowsHide: true, timeout: TASKKILL_TIMEOUT_MS }, (error, stdout, stderr) => {
      const status = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ status, output: `${stdout}${stderr}`.trim() });
    });
  });

/** Polls `done` until it holds or `ms` passed; resolves whether it held. */
async function until(done: () => boolean, ms: number, pollMs: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!done()) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, left)));
  }
  return true;
}

function defaultSystem(options: Partial<TreeSystem>): TreeSystem {
  return {
    runner: options.runner ?? runTaskkill,
    isAlive:
      options.isAlive ??
      ((pid) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch (error) {
          return (error as NodeJS.ErrnoException).code === 'EPERM';
        }
      }),
    killProcess: options.killProcess ?? ((pid) => process.kill(pid)),
    pollMs: options.pollMs ?? TREE_POLL_MS,
    waitMs: options.waitMs ?? TREE_WAIT_MS,
  };
}

/** A server's tree ended by `taskkill /T /F`, then TerminateProcess of the server alone if that failed. */
export class TaskkillTree implements ProcessTree {
  readonly pid: number;
  private readonly system: TreeSystem;
  private readonly onFailure: (details: Record<string, unknown>) => void;
  private ending: Promise<void> | undefined;

  constructor(pid: number, system: Partial<TreeSystem> = {}, onFailure: (details: Record<string, unknown>) => void = () => undefined) {
    this.pid = pid;
    this.system = defaultSystem(system);
    this.onFailure = onFailure;
  }

  /** True while the server's own process exists (taskkill cannot see the rest once it is gone). */
  get alive(): boolean {
    return this.system.isAlive(this.pid);
  }

  /** Ends the tree; the same promise for every call; never rejects. */
  end(): Promise<void> {
    this.ending ??= this.run();
    return this.ending;
  }

  private async run(): Promise<void> {
    if (!this.alive) return;
    const result = await this.system.runner(['/PID', String(this.pid), '/T', '/F']);
    if (result.status !== 0 && this.alive) {
      this.onFailure({ pid: this.pid, status: result.status, output: result.output });
      try {
        this.system.killProcess(this.pid);
      } catch {
        // gone meanwhile
      }
    }
    await until(() => !this.alive, this.system.waitMs, this.system.pollMs);
  }
}

/** Why a job could not be made for a server: the call that failed and GetLastError(). */
export interface JobFailure {
  call: string;
  error: number | string;
  /** The server had already exited (AssignProcessToJobObject then fails with access denied): no tree to keep. */
  exited?: boolean;
}

/** A server's tree held in a Job Object with KILL_ON_JOB_CLOSE (see the file's header). */
export class JobTree implements ProcessTree {
  readonly pid: number;
  private readonly api: Kernel32;
  private readonly job: Handle;
  /** The server's process, held so its id is never reused while the fallback may name it. */
  private readonly process: Handle;
  private readonly system: TreeSystem;
  private readonly onFailure: (details: Record<string, unknown>) => void;
  private ending: Promise<void> | undefined;
  private closed = false;

  private constructor(pid: number, api: Kernel32, job: Handle, process: Handle, system: TreeSystem, onFailure: JobTree['onFailure']) {
    this.pid = pid;
    this.api = api;
    this.job = job;
    this.process = process;
    this.system = system;
    this.onFailure = onFailure;
  }

  /**
   * Puts the process `pid` (spawned a moment ago, and not reaped yet: Node holds its handle) in
   * a new kill-on-close job. Returns the failure instead, every handle it opened closed.
   */
  static open(
    pid: number,
    api: Kernel32,
    system: Partial<TreeSystem> = {},
    onFailure: (details: Record<string, unknown>) => void = () => undefined,
  ): JobTree | JobFailure {
    let job = 0n;
    let process = 0n;
    const fail = (call: string, error: number | string): JobFailure => {
      try {
        if (process !== 0n) api.closeHandle(process);
        if (job !== 0n) api.closeHandle(job);
      } catch {
        // nothing more to undo
      }
      return { call, error };
    };
    try {
      job = api.createJobObject();
      if (job === 0n) return fail('CreateJobObjectW', api.lastError());
      if (!api.setKillOnClose(job)) return fail('SetInformationJobObject', api.lastError());
      process = api.openProcess(pid);
      if (process === 0n) return fail('OpenProcess', api.lastError());
      if (!api.assignProcessToJobObject(job, process)) {
        const error = api.lastError();
        // A server that exited at once (a bad argument, a missing module) cannot join a job.
        const exited = api.hasExited(process);
        return { ...fail('AssignProcessToJobObject', error), ...(exited ? { exited } : {}) };
      }
    } catch (error) {
      // koffi throws for a call it could not make at all (a binding that does not fit this system).
      return fail('a kernel32 call', (error as Error).message);
    }
    return new JobTree(pid, api, job, process, defaultSystem(system), onFailure);
  }

  /** True while the job has a member (the server or anything it started). */
  get alive(): boolean {
    if (this.closed) return false;
    // A failed query says nothing: counted as members, so end() still terminates.
    return (this.api.activeProcesses(this.job) ?? 1) > 0;
  }

  /** TerminateJobObject; false (reported) when it failed. */
  private terminate(): boolean {
    let error: number | string;
    try {
      if (this.api.terminateJobObject(this.job, TERMINATED_EXIT_CODE)) return true;
      error = this.api.lastError();
    } catch (thrown) {
      error = (thrown as Error).message;
    }
    this.onFailure({ pid: this.pid, call: 'TerminateJobObject', error });
    return false;
  }

  /** Ends every process of the job at once; the same promise for every call; never rejects. */
  end(): Promise<void> {
    this.ending ??= this.run();
    return this.ending;
  }

  private async run(): Promise<void> {
    if (!this.terminate()) {
      await new TaskkillTree(this.pid, this.system).end();
    }
    await until(() => !this.alive, this.system.waitMs, this.system.pollMs);
    // Closing the last handle of a kill-on-close job ends whatever is still in it.
    this.closed = true;
    this.api.closeHandle(this.process);
    this.api.closeHandle(this.job);
  }
}

/** The tree of a server that exited before it could be given one: nothing to end. */
const GONE: ProcessTree = { alive: false, end: () => Promise.resolve() };

/** One per daemon: binds kernel32 once, makes each server's tree, logs the mechanism once. */
export class WindowsTrees {
  private readonly load: () => Kernel32;
  private readonly log: TreeLog;
  private readonly system: Partial<TreeSystem>;
  private api: Kernel32 | null | undefined;
  private readonly logged = new Set<string>();

  constructor(options: WindowsTreesOptions = {}) {
    this.load = options.load ?? (() => loadKernel32());
    this.log = options.log ?? (() => undefined);
    this.system = options;
  }

  /**
   * Binds kernel32 now if it is not yet (koffi takes a moment to load: under Wine 0.3 to 0.5 s),
   * so that it happens before a server runs, not between its spawn and its job. Never throws.
   */
  prepare(): void {
    this.kernel32();
  }

  /** The tree of a server process spawned a moment ago: a job when it can be made, else taskkill. */
  adopt(pid: number): ProcessTree {
    const api = this.kernel32();
    if (api) {
      const job = JobTree.open(pid, api, this.system, (details) => this.once('job call failed', details, 'warn'));
      if (job instanceof JobTree) {
        this.once('process trees', { mechanism: 'job object' });
        return job;
      }
      // Nothing of it is left to end, and nothing is wrong with jobs: the exit is reported as such.
      if (job.exited) return GONE;
      this.once('process trees', { mechanism: 'taskkill', reason: `${job.call} failed with error ${job.error}` }, 'warn');
    }
    return new TaskkillTree(pid, this.system, (details) => this.once('taskkill failed', details, 'warn'));
  }

  private kernel32(): Kernel32 | null {
    if (this.api === undefined) {
      try {
        this.api = this.load();
      } catch (error) {
        this.api = null;
        this.once('process trees', { mechanism: 'taskkill', reason: `koffi could not be loaded: ${(error as Error).message}` }, 'warn');
      }
    }
    return this.api;
  }

  /** Logs an event the first time it comes with these words; later ones at debug. */
  private once(event: string, details: Record<string, unknown>, level?: 'warn'): void {
    const key = `${event} ${String(details.mechanism ?? details.call ?? '')}`;
    const first = !this.logged.has(key);
    this.logged.add(key);
    this.log(event, details, first ? level : 'debug');
  }
}
