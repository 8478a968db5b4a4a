/**
 * A counting semaphore that serves waiters in arrival order. One per provider, shared by every
 * session, so the daemon (not each window) owns the provider's concurrency limit.
 */
import type { LocalErrorCode } from '../../local/errors.js';

export class AbortedError extends Error {
  override name = 'AbortedError';
  readonly code = 'EABORTED' satisfies LocalErrorCode;
}

export class Limiter {
  readonly max: number;
  private active = 0;
  private readonly waiters: (() => void)[] = [];

  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) throw new TypeError(`limiter max must be a positive integer, got ${max}`);
    this.max = max;
  }

  get inflight(): number {
    return this.active;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * Resolves with a release function once a slot is free. Rejects with {@link AbortedError} if
   * `signal` aborts while waiting (the waiter leaves the queue). Call release exactly once.
   */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(new AbortedError('cancelled while waiting for a provider slot'));
    if (this.active < this.max) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const at = this.waiters.indexOf(waiter);
        if (at >= 0) this.waiters.splice(at, 1);
        reject(new AbortedError('cancelled while waiting for a provider slot'));
      };
      const waiter = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve(this.releaser());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      // The slot passes straight to the next waiter, so `active` stays the same.
      if (next) next();
      else this.active--;
    };
  }
}
