/**
 * Lets the calls of one session at a time through to a server instance: calls from the session
 * holding the gate run concurrently, calls from other sessions wait in arrival order. When the
 * holder's last call leaves, the first waiting session takes the gate with all its waiting calls.
 * A session that holds the gate while others wait queues its new calls behind them, so no
 * session can keep the gate for ever.
 */
import type { Cancellation } from '../hosting/cancellation.js';

export type GateEntry = 'entered' | 'cancelled' | 'timeout';

interface Waiter {
  session: string;
  go: () => void;
}

export class SessionGate {
  private holder: string | undefined;
  private running = 0;
  private waiting: Waiter[] = [];

  /** The session whose calls run now, if any. */
  get heldBy(): string | undefined {
    return this.holder;
  }

  get waitingCount(): number {
    return this.waiting.length;
  }

  /**
   * Enters for one call of `session`: at once, or once the gate is this session's. Resolves
   * `cancelled` or `timeout` (and never enters) when the call is cancelled or its deadline passes
   * while it waits. Every `entered` must be matched by one {@link leave}.
   */
  enter(session: string, cancel: Cancellation | undefined, timeoutMs: number): GateEntry | Promise<GateEntry> {
    if (this.holder === undefined || (this.holder === session && this.waiting.length === 0)) {
      this.holder = session;
      this.running++;
      return 'entered';
    }
    if (cancel?.aborted) return 'cancelled';
    return new Promise<GateEntry>((resolve) => {
      const waiter: Waiter = { session, go: () => settle('entered') };
      const timer = setTimeout(() => settle('timeout'), timeoutMs);
      const stopListening = cancel?.onAbort(() => settle('cancelled'));
      const settle = (outcome: GateEntry) => {
        clearTimeout(timer);
        stopListening?.();
        if (outcome !== 'entered') this.waiting = this.waiting.filter((w) => w !== waiter);
        resolve(outcome);
      };
      this.waiting.push(waiter);
    });
  }

  /** One entered call is done; the last one of the holder hands the gate on. */
  leave(): void {
    this.running = Math.max(0, this.running - 1);
    if (this.running > 0) return;
    this.holder = undefined;
    const next = this.waiting[0];
    if (!next) return;
    const admitted = this.waiting.filter((w) => w.session === next.session);
    this.waiting = this.waiting.filter((w) => w.session !== next.session);
    this.holder = next.session;
    this.running = admitted.length;
    for (const waiter of admitted) waiter.go();
  }
}
