/**
 * One bound on bytes that many holders keep together: the SSE event stores of every HTTP
 * session (`EXAI_WS_HTTP_EVENTS_TOTAL_MAX_BYTES`), the messages held for every detached
 * session (`EXAI_WS_HOLD_TOTAL_MAX_BYTES`). Each holder also has a bound of its own; this one
 * stops a thousand holders, each within its own, from taking the daemon's memory together.
 *
 * Past the bound, the holder holding the most gives way first (a store drops its oldest
 * events, a detached session ends): whoever costs the most pays, and the many small holders
 * (ordinary windows) keep what they hold. The largest is found by a scan of the holders that
 * hold anything, which happens only while the total is past the bound.
 */

/** Something that keeps bytes under a {@link ByteBudget} and can give some up. */
export interface BudgetHolder {
  /**
   * Asked while the budget is `excessBytes` past its bound and this holder holds the most: give
   * up at least that much if it can (reporting it with {@link ByteBudget.change}), else what it can.
   */
  giveWay(excessBytes: number): void;
}

export class ByteBudget {
  readonly maxBytes: number;
  private total = 0;
  private readonly held = new Map<BudgetHolder, number>();
  private enforcing = false;

  constructor(maxBytes: number) {
    if (!Number.isInteger(maxBytes) || maxBytes < 0) throw new TypeError(`maxBytes must be a non-negative integer, not ${maxBytes}`);
    this.maxBytes = maxBytes;
  }

  /** Bytes held by every holder together. */
  get usedBytes(): number {
    return this.total;
  }

  /** Holders holding anything. */
  get holderCount(): number {
    return this.held.size;
  }

  /** Bytes `holder` holds, as reported. */
  heldBy(holder: BudgetHolder): number {
    return this.held.get(holder) ?? 0;
  }

  /** `holder` now holds `deltaBytes` more (negative: fewer). Does not enforce the bound: see {@link enforce}. */
  change(holder: BudgetHolder, deltaBytes: number): void {
    if (deltaBytes === 0) return;
    const now = (this.held.get(holder) ?? 0) + deltaBytes;
    if (now <= 0) this.held.delete(holder);
    else this.held.set(holder, now);
    this.total += deltaBytes;
  }

  /** Forgets everything `holder` holds (it is gone). */
  release(holder: BudgetHolder): void {
    const bytes = this.held.get(holder);
    if (bytes === undefined) return;
    this.held.delete(holder);
    this.total -= bytes;
  }

  /**
   * While past the bound, asks the holder holding the most to give way; stops when under it,
   * or when the one asked gave nothing up (so a holder that cannot never makes this spin).
   */
  enforce(): void {
    if (this.enforcing) return; // a holder giving way may report, and so call here again
    this.enforcing = true;
    try {
      while (this.total > this.maxBytes) {
        let largest: BudgetHolder | undefined;
        let most = 0;
        for (const [holder, bytes] of this.held) {
          if (bytes > most) {
            most = bytes;
            largest = holder;
          }
        }
        if (largest === undefined) return;
        const before = this.total;
        largest.giveWay(this.total - this.maxBytes);
        if (this.total >= before) return;
      }
    } finally {
      this.enforcing = false;
    }
  }
}
