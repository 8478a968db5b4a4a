/**
 * The shim's side of the ack sub-protocol (issue 10): it counts the session's frames it has
 * received, over all the session's connections, and tells the daemon how far it got, so the
 * daemon can forget what it holds for a resume. The count is what a resuming hello says as
 * `received`.
 *
 * Cadence: an ack goes out after {@link ACK_EVERY_FRAMES} frames or {@link ACK_EVERY_BYTES}
 * bytes not yet acked, else {@link ACK_DELAY_MS} after the first unacked frame. Only to a
 * daemon whose hello_ack said it takes acks (an older one would answer each with -32600).
 * No I/O of its own: the link hands it a `send` and, for tests, timers.
 */
import type { AckFrame } from '../protocol/hello.js';
import type { Timers } from '../protocol/pending.js';

/** Ack cadence: after this many frames or bytes, else this long after the first unacked frame. */
export const ACK_EVERY_FRAMES = 64;
export const ACK_EVERY_BYTES = 256 * 1024;
export const ACK_DELAY_MS = 200;

/** The process's timers, ref'd like the link's own. */
export const NODE_TIMERS: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export class AckCounter {
  /** JSON-RPC frames received in this session, over all its connections. */
  private receivedCount = 0;
  private ackedCount = 0;
  private unackedBytes = 0;
  /** The daemon takes ack frames on this connection (its hello_ack said so). */
  private daemonAcks = false;
  private timer: unknown;

  /**
   * @param send sends one ack frame on the open connection; false when none is open (the ack
   *   is then not counted as sent).
   */
  constructor(
    private readonly send: (frame: string) => boolean,
    private readonly timers: Timers = NODE_TIMERS,
  ) {}

  /** Frames received in the current session (what a resume's hello says as `received`). */
  get received(): number {
    return this.receivedCount;
  }

  /**
   * A connection opened. A new session counts from 0; a resumed one goes on from what the
   * hello said. `daemonAcks`: the hello_ack says the daemon takes acks.
   */
  opened(resumed: boolean, daemonAcks: boolean): void {
    if (!resumed) this.receivedCount = 0;
    this.ackedCount = this.receivedCount;
    this.unackedBytes = 0;
    this.daemonAcks = daemonAcks;
  }

  /** One frame of the session arrived (`bytes` on the wire); may send an ack now or arm the delay. */
  count(bytes: number): void {
    this.receivedCount++;
    if (!this.daemonAcks) return;
    this.unackedBytes += bytes;
    if (this.receivedCount - this.ackedCount >= ACK_EVERY_FRAMES || this.unackedBytes >= ACK_EVERY_BYTES) this.flush();
    else if (this.timer === undefined) this.timer = this.timers.setTimeout(() => this.flush(), ACK_DELAY_MS);
  }

  /** The connection is gone: no ack is due on it. The count stays, for the resume. */
  stop(): void {
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private flush(): void {
    this.stop();
    if (this.receivedCount === this.ackedCount) return;
    const frame: AckFrame = { type: 'ack', received: this.receivedCount };
    if (!this.send(JSON.stringify(frame))) return;
    this.ackedCount = this.receivedCount;
    this.unackedBytes = 0;
  }
}
