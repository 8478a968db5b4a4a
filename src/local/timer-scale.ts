/**
 * `EXAI_WS_TIMER_SCALE` (for tests): a number from {@link MIN_TIMER_SCALE} to 1 that multiplies
 * the fixed waits that are no setting of their own, in the daemon (config.ts) and in the shim
 * (shim.ts), each of which reads it with its own other variables. Users keep 1, the defaults.
 */

/** The smallest scale taken: a 1 s wait still takes 10 ms. */
export const MIN_TIMER_SCALE = 0.01;

/** `ms` times `scale`, in whole ms and never below 1 ms (a timer of 0 would spin). */
export function scaledMs(ms: number, scale: number): number {
  return Math.max(1, Math.round(ms * scale));
}
