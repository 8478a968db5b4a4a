/**
 * The process group of one hosted server: its leader (spawned detached, so pgid = leader pid)
 * and everything the leader started without leaving the group. Ending the group sends SIGTERM to
 * every member, then SIGKILL after a grace period, and is registered with the {@link Watchdog}
 * until no member is left, so a daemon killed meanwhile still takes the group with it.
 *
 * A pgid is only ours while the group has a member: once it is empty, the kernel may hand the
 * number to an unrelated process that makes itself a group leader. So every signal is preceded
 * by `kill(-pgid, 0)` (it fails with ESRCH once the group is empty), the group is probed every
 * {@link GROUP_POLL_MS} meanwhile, and once it was seen empty it is never signalled again.
 * Everything runs on timers: the event loop never waits for a process.
 *
 * {@link ProcessTree} is what a hosted server's transport needs of any platform's tree: this
 * group on POSIX, a Job Object (or taskkill) on Windows (see windows-tree.ts).
 */

/** Everything one hosted server started, as one thing to end. */
/** What a group needs of the watchdog (watchdog.ts): that it knows which groups to end if the daemon dies. */
export interface GroupWatch {
  watch(pgid: number): void;
  unwatch(pgid: number): void;
}

export interface ProcessTree {
  /** True while the tree has a member (the server or anything it started that is still ours). */
  readonly alive: boolean;
  /**
   * Ends every member. Resolves once none is left, or given up after the last resort (a
   * member stuck in the kernel); never rejects. Every call returns the same promise.
   */
  end(): Promise<void>;
}

/** How long the group gets between SIGTERM and SIGKILL. */
export const GROUP_GRACE_MS = 2_000;
/** How often a group being ended is probed for members. */
export const GROUP_POLL_MS = 50;
/**
 * How long to wait for the members to vanish after SIGKILL. Only zombies nobody reaps or
 * processes stuck in the kernel outlive it; SIGKILL is pending for them, so the group is
 * given up (and unregistered) then.
 */
export const KILLED_WAIT_MS = 2_000;

/** A group's waits, in ms ({@link GROUP_GRACE_MS} and {@link KILLED_WAIT_MS} when unset). */
export interface GroupTiming {
  /** Between SIGTERM and SIGKILL. */
  readonly graceMs?: number;
  /** After SIGKILL, before the group is given up. */
  readonly killedWaitMs?: number;
}

export class ProcessGroup implements ProcessTree {
  /** The group id: the leader's process id. */
  readonly pgid: number;
  private readonly watchdog: GroupWatch | undefined;
  private readonly graceMs: number;
  private readonly killedWaitMs: number;
  private ending: Promise<void> | undefined;
  private empty = false;

  /** Registers the group with the watchdog; `pgid` must be the pid of a leader spawned detached. */
  constructor(pgid: number, watchdog?: GroupWatch, timing: GroupTiming = {}) {
    this.pgid = pgid;
    this.watchdog = watchdog;
    this.graceMs = timing.graceMs ?? GROUP_GRACE_MS;
    this.killedWaitMs = timing.killedWaitMs ?? KILLED_WAIT_MS;
    watchdog?.watch(pgid);
  }

  /** True while the group has a member (a zombie leader not yet reaped counts). */
  get alive(): boolean {
    if (this.empty) return false;
    try {
      process.kill(-this.pgid, 0);
      return true;
    } catch (error) {
      // EPERM: a member we may not signal (it changed its user id); the group still exists.
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') return true;
      this.empty = true;
      return false;
    }
  }

  /**
   * Ends the group: SIGTERM to every member, SIGKILL after the grace period to those left.
   * Resolves once the group is empty, or given up (see {@link GroupTiming.killedWaitMs}); never rejects.
   * Idempotent: every call returns the same promise, so a crash loop never stacks timers.
   */
  end(): Promise<void> {
    this.ending ??= this.run();
    return this.ending;
  }

  private async run(): Promise<void> {
    if (this.signal('SIGTERM') && !(await this.vanished(this.graceMs)) && this.signal('SIGKILL')) {
      await this.vanished(this.killedWaitMs);
    }
    this.watchdog?.unwatch(this.pgid);
  }

  /** Sends a signal to the whole group if it still has members; false when it has none. */
  private signal(signal: NodeJS.Signals): boolean {
    if (!this.alive) return false;
    try {
      process.kill(-this.pgid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') this.empty = true;
    }
    return !this.empty;
  }

  /** Resolves true as soon as the group is empty, false when `ms` passed first. */
  private async vanished(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (this.alive) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise((resolve) => setTimeout(resolve, Math.min(GROUP_POLL_MS, left)));
    }
    return true;
  }
}
