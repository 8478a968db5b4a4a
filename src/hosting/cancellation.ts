/**
 * A request's cancellation, as the daemon's call path needs it: a flag, a reason, and whoever
 * waits on it. An AbortController does the same, but as an EventTarget it costs about a tenth of
 * the daemon's CPU per call under load (its creation and the garbage it leaves), and every
 * request gets one while almost none is ever cancelled.
 */
export class Cancellation {
  aborted = false;
  reason: string | undefined;
  private listeners: (() => void)[] | undefined;

  /** Marks it cancelled and calls every listener once; later calls change nothing. */
  abort(reason: string): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const listeners = this.listeners;
    this.listeners = undefined;
    for (const listener of listeners ?? []) listener();
  }

  /** Calls `listener` when it is cancelled (never if it already was); returns its removal. */
  onAbort(listener: () => void): () => void {
    if (this.aborted) return noop;
    (this.listeners ??= []).push(listener);
    return () => {
      const at = this.listeners?.indexOf(listener) ?? -1;
      if (at >= 0) this.listeners?.splice(at, 1);
    };
  }
}

function noop(): void {}
