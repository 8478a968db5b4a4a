/**
 * The idle exit of an auto-started daemon: once it has had no session and no connection for
 * `idleMs`, it is told to go (`onidle`). A daemon started by hand never is (the daemon only
 * makes one of these when `EXAI_WS_AUTOSTARTED=1`).
 *
 * The daemon is looked at on a short interval rather than told of every session: a session
 * that opened and closed between two looks still counts, through the count of sessions ever
 * opened (`opened`), so it resets the wait as one seen open would.
 */

/** Shortest and longest interval between looks. */
const MIN_CHECK_MS = 50;
const MAX_CHECK_MS = 1_000;

export interface IdleExitOptions {
  /** No session for this long ends the daemon; must be > 0. */
  idleMs: number;
  /** True while any session (attached or detached) or connection exists. */
  busy: () => boolean;
  /** Sessions opened since start: any change counts as activity. */
  opened: () => number;
  /** Called once, when the daemon has been idle for `idleMs`. */
  onidle: () => void;
  /** The clock, in ms; defaults to `Date.now` (tests pass their own). */
  now?: () => number;
}

export class IdleExit {
  private timer: NodeJS.Timeout | undefined;
  private lastBusyMs: number;
  private lastOpened: number;
  private done = false;
  private readonly now: () => number;

  /** The time with no session counts from here. */
  constructor(private readonly options: IdleExitOptions) {
    if (!(options.idleMs > 0)) throw new TypeError('idleMs must be > 0');
    this.now = options.now ?? Date.now;
    this.lastBusyMs = this.now();
    this.lastOpened = options.opened();
  }

  /** Starts looking at the daemon on an interval. */
  start(): void {
    if (this.timer || this.done) return;
    const everyMs = Math.min(MAX_CHECK_MS, Math.max(MIN_CHECK_MS, Math.floor(this.options.idleMs / 10)));
    this.timer = setInterval(() => this.check(), everyMs);
    // The daemon's server keeps the process alive, never this timer.
    this.timer.unref();
  }

  /** Stops looking; `onidle` is not called any more. Idempotent. */
  close(): void {
    this.done = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One look (the interval calls it; tests too): calls `onidle` once the idle time has passed. */
  check(): void {
    if (this.done) return;
    const now = this.now();
    const opened = this.options.opened();
    if (this.options.busy() || opened !== this.lastOpened) {
      this.lastOpened = opened;
      this.lastBusyMs = now;
      return;
    }
    if (now - this.lastBusyMs < this.options.idleMs) return;
    this.close();
    this.options.onidle();
  }
}
