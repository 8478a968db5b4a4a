/**
 * One session's latest request latencies, for the p99 that `/health` and `exai-ws status`
 * show per session.
 *
 * Memory is what decides the shape: a daemon holds many idle sessions (budgeted at about
 * 20 KB each, and every session answers at least its `initialize`), so nothing is allocated
 * before the first answered request, the store starts at {@link FIRST_CAPACITY} samples and
 * doubles as they come (a session of a few calls keeps under 100 bytes; a busy one 4 KB for
 * the default 1000), and the samples are 32-bit floats (milliseconds with ~7 significant
 * digits, ample for a latency). Adding a sample is a store and an increment (a copy on each
 * doubling); the sort happens only when a report asks, and its result is kept until the next
 * sample, so a `/health` poll over idle sessions sorts nothing.
 */

/** Samples kept per session: the p99 covers the last this many answered requests. */
export const SESSION_LATENCY_SAMPLES = 1000;
/** The store's first size; it doubles up to the capacity. */
const FIRST_CAPACITY = 16;

export class LatencyRing {
  private samples: Float32Array | undefined;
  private count = 0;
  private cachedP99: number | null = null;
  private stale = false;
  private readonly capacity: number;

  constructor(capacity = SESSION_LATENCY_SAMPLES) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new TypeError(`capacity must be a positive integer, got ${capacity}`);
    this.capacity = capacity;
  }

  /** Samples added since the start (not only those kept). */
  get total(): number {
    return this.count;
  }

  /** Records one latency in milliseconds; the oldest kept sample makes room past the capacity. */
  add(ms: number): void {
    let samples = this.samples;
    if (samples === undefined) {
      samples = this.samples = new Float32Array(Math.min(FIRST_CAPACITY, this.capacity));
    } else if (this.count === samples.length && samples.length < this.capacity) {
      // Not wrapped yet: every sample so far sits in order at the start.
      const grown = new Float32Array(Math.min(samples.length * 2, this.capacity));
      grown.set(samples);
      samples = this.samples = grown;
    }
    samples[this.count % this.capacity] = ms;
    this.count++;
    this.stale = true;
  }

  /**
   * The 99th percentile (nearest rank) of the kept samples, in milliseconds rounded to 3
   * decimals; null before any sample.
   */
  p99(): number | null {
    if (!this.stale) return this.cachedP99;
    this.stale = false;
    const samples = this.samples;
    if (samples === undefined) return null;
    const kept = samples.subarray(0, Math.min(this.count, this.capacity)).slice().sort();
    const rank = Math.max(0, Math.ceil(0.99 * kept.length) - 1);
    this.cachedP99 = Math.round((kept[rank] ?? 0) * 1000) / 1000;
    return this.cachedP99;
  }
}
