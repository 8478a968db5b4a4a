/**
 * When the link asks `ensure` (auto-start, autostart.ts) to make a daemon answer: once per spell
 * of failed attempts, and, after an ensure that said ok, not before one more attempt failed (so
 * a daemon that starts but cannot be used never makes a tight loop). A connection that opens
 * ends the spell.
 *
 *   armed --an attempt failed: ask--> running --ok--> cooling --an attempt failed--> armed
 *   running --not ok--> spent (until the next connection opens)
 */
import type { EnsureResult } from './link-options.js';

type EnsureStep = 'armed' | 'running' | 'cooling' | 'spent';

export class EnsureSpell {
  private step: EnsureStep = 'armed';

  constructor(private readonly ensure: (() => Promise<EnsureResult>) | undefined) {}

  /** A connection opened: the next failure starts a new spell. */
  reset(): void {
    this.step = 'armed';
  }

  /**
   * An attempt failed. True when `ensure` was asked now: `settled` follows once with its answer
   * (a rejection becomes `ok: false`), unless {@link reset} came first. False: go on without it.
   */
  ask(settled: (result: EnsureResult) => void): boolean {
    if (this.ensure === undefined || this.step !== 'armed') {
      if (this.step === 'cooling') this.step = 'armed';
      return false;
    }
    this.step = 'running';
    const settle = (result: EnsureResult) => {
      if (this.step !== 'running') return;
      this.step = result.ok ? 'cooling' : 'spent';
      settled(result);
    };
    this.ensure().then(settle, (error: unknown) => settle({ ok: false, message: error instanceof Error ? error.message : String(error) }));
    return true;
  }
}
