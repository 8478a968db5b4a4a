/**
 * What the shim process is doing, as an explicit state machine (the link's own states are in
 * link.ts):
 *
 *   running --the daemon cannot be used (refused, or not back in time)--> refusing
 *   running --the link ended (stdin ended), or stdin or stdout failed--> finished (exit 0)
 *   refusing --stdin ended, or the linger (REFUSED_LINGER_MS) passed--> finished (exit 1)
 *   refusing --stdin or stdout failed--> finished (exit 0)
 *
 * - running: lines go to the daemon (outbound.ts);
 * - refusing: every request read is answered with the reason at once: the client's initialize
 *   may still be in the pipe, and a client is better told why than left waiting;
 * - finished: stdin is no longer read, and the exit code waits until stdout took what was
 *   written (runShim's `finished` hook).
 *
 * Each transition is one method and its side effects are the owner's hooks. Timers are
 * injectable, so tests drive it with fake ones.
 */
import { GLOBAL_TIMERS, type Timers } from '../protocol/pending.js';

/**
 * Once the daemon cannot be used, how long the shim keeps reading stdin to answer what the
 * client still sends (its initialize may not have been read yet) before it exits.
 */
export const REFUSED_LINGER_MS = 2_000;

export type ShimState = 'running' | 'refusing' | 'finished';

/** Exit codes: 0 after stdin EOF; 1 when the daemon could not be used or did not come back in time. */
export type ShimExit = 0 | 1;

export interface LifecycleHooks {
  /** running -> refusing: answer what the client already sent with `why`. */
  refusing(why: string): void;
  /** -> finished, once: stop reading stdin and exit with `code` once stdout took everything. */
  finished(code: ShimExit): void;
  /** Every transition, for tests. */
  transition?(from: ShimState, to: ShimState): void;
}

export class ShimLifecycle {
  private current: ShimState = 'running';
  private why: string | undefined;
  private inputEnded = false;
  private lingerTimer: unknown;

  /**
   * @param timers the linger's timer (unref'd by default: it never holds the process alone).
   * @param lingerMs how long refusing lasts before finished, in ms.
   */
  constructor(
    private readonly hooks: LifecycleHooks,
    private readonly timers: Timers = GLOBAL_TIMERS,
    private readonly lingerMs: number = REFUSED_LINGER_MS,
  ) {}

  get state(): ShimState {
    return this.current;
  }

  /** Why the daemon cannot be used, once refusing (and after); undefined while running. */
  get refusedWith(): string | undefined {
    return this.why;
  }

  /** The client's stdin ended. */
  get stdinEnded(): boolean {
    return this.inputEnded;
  }

  /** running -> refusing (then finished at once if stdin already ended); ignored in any other state. */
  refuse(why: string): void {
    if (this.current !== 'running') return;
    this.why = why;
    this.enter('refusing');
    this.hooks.refusing(why);
    if (this.inputEnded) this.finish(1);
    else if (this.state === 'refusing') this.lingerTimer = this.timers.setTimeout(() => this.finish(1), this.lingerMs);
  }

  /**
   * stdin ended. True when that ends the shim (refusing -> finished with 1); false while
   * running, where what happens next is the owner's (answer what waits, close the link).
   */
  endInput(): boolean {
    this.inputEnded = true;
    if (this.current !== 'refusing') return this.current === 'finished';
    this.finish(1);
    return true;
  }

  /** running | refusing -> finished, once. */
  finish(code: ShimExit): void {
    if (this.current === 'finished') return;
    if (this.lingerTimer !== undefined) this.timers.clearTimeout(this.lingerTimer);
    this.enter('finished');
    this.hooks.finished(code);
  }

  private enter(to: ShimState): void {
    const from = this.current;
    this.current = to;
    this.hooks.transition?.(from, to);
  }
}
