/**
 * What the client sends, on its way to the daemon (runShim's outbound queue):
 *
 * - **sent** at once while the link can send and nothing waits before it; the conversation is
 *   told (`sending`) as each one goes, and may drop an answer meant for a session that is gone;
 * - **waiting**, in order, while no connection is open (connecting or reconnecting), bounded by
 *   {@link MAX_QUEUED_MESSAGES} and {@link MAX_QUEUED_BYTES}: past either bound a request is
 *   answered -32000 at once; {@link Outbound.flush} sends them once a connection is open;
 * - **in transit**: sent right after the first hello, before its ack. They are not in flight
 *   until the ack says ok ({@link Outbound.opened}); when that attempt fails instead they were
 *   never run, and wait again, first in line ({@link Outbound.retract});
 * - **backpressure**: past {@link SOCKET_HIGH_WATER_BYTES} queued on the socket, stdin is
 *   paused until the socket drained below {@link SOCKET_LOW_WATER_BYTES}.
 *
 * No I/O of its own: the link, stdin's pause and resume, and the client's stdout are given.
 */
import type { RpcFailure } from '../protocol/jsonrpc.js';
import type { Conversation, Note } from './conversation.js';
import type { LinkState } from './link-options.js';

/** Bytes queued on the socket before the shim stops reading stdin. */
export const SOCKET_HIGH_WATER_BYTES = 4 * 1024 * 1024;
export const SOCKET_LOW_WATER_BYTES = 1024 * 1024;
/**
 * What the client may send while no connection is open (connecting or reconnecting): it waits
 * and goes out once one is. Past either bound a request is answered with -32000 at once.
 */
export const MAX_QUEUED_MESSAGES = 256;
export const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
/** A WebSocket frame's header from a client, mask included, is at most this long. */
const FRAME_HEADER_MAX_BYTES = 14;

/** What the queue needs of the link (link.ts). */
export interface OutboundLink {
  readonly state: LinkState;
  readonly canSend: boolean;
  readonly bufferedAmount: number;
  send(text: string, done?: () => void): boolean;
}

/** What the queue needs of the client's stdin: it stops reading while the socket is full. */
export interface Pausable {
  pause(): void;
  resume(): void;
}

interface Queued {
  line: string;
  note: Note;
  bytes: number;
}

export class Outbound {
  private readonly queue: Queued[] = [];
  private queuedBytes = 0;
  /** Sent right after the first hello, before its ack: not in flight until the ack says ok. */
  private inTransit: Queued[] = [];
  private inputPaused = false;
  /** Bound once, so that a frame's write callback allocates nothing. */
  private readonly drained = () => this.resumeInputIfDrained();

  /**
   * @param answer writes a message to the client (a request refused here).
   */
  constructor(
    private readonly link: OutboundLink,
    private readonly conversation: Conversation,
    private readonly input: Pausable,
    private readonly answer: (message: RpcFailure) => void,
  ) {}

  /** Messages waiting for a connection. */
  get waiting(): number {
    return this.queue.length;
  }

  /** Messages waiting, or sent before an ack that has not come yet. */
  get unconfirmed(): number {
    return this.queue.length + this.inTransit.length;
  }

  /** One line the client wrote (`note`: what the conversation made of it): sent now, or it waits. */
  offer(line: string, note: Note): void {
    if (this.link.canSend && this.queue.length === 0) this.send(line, note);
    else this.enqueue(line, note);
  }

  /** Sends what waited, in order, while the link can send (a connection is open, or the first hello is out). */
  flush(): void {
    while (this.queue.length > 0 && this.link.canSend) {
      const next = this.queue.shift() as Queued;
      this.queuedBytes -= next.bytes;
      this.send(next.line, next.note);
    }
  }

  /** The first hello_ack said ok: what went out right after the hello is in flight now. */
  opened(): void {
    for (const item of this.inTransit) this.conversation.sending(item.note);
    this.inTransit = [];
  }

  /** The attempt that carried the in-transit lines failed before its ack: they were never run, and wait again, first. */
  retract(): void {
    for (const item of this.inTransit) item.bytes = Buffer.byteLength(item.line);
    this.queue.unshift(...this.inTransit);
    this.queuedBytes += this.inTransit.reduce((sum, item) => sum + item.bytes, 0);
    this.inTransit = [];
  }

  /** Every waiting request is answered with `why` (they will never go out); returns the answers. */
  refuseWaiting(why: string): RpcFailure[] {
    const answers = this.queue.splice(0).flatMap((queued) => this.conversation.refuse(queued.note, why) ?? []);
    this.queuedBytes = 0;
    return answers;
  }

  /** The daemon cannot be used: forgets everything (the conversation answers what was owed). */
  clear(): void {
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.inTransit = [];
  }

  /** Resumes stdin once the socket took what it had (called as frames are written, and when a connection opens). */
  resumeInputIfDrained(): void {
    if (this.inputPaused && this.link.bufferedAmount < SOCKET_LOW_WATER_BYTES) {
      this.inputPaused = false;
      this.input.resume();
    }
  }

  private send(line: string, note: Note): void {
    if (this.link.state === 'connecting') this.inTransit.push({ line, note, bytes: 0 });
    else if (!this.conversation.sending(note)) return;
    const before = this.link.bufferedAmount;
    // A frame's bytes are at most three per UTF-16 unit plus its header. Only a frame that may
    // leave the socket holding more than the low-water mark can be the one stdin waits on, so
    // only such frames carry a write callback (the common small frame costs none).
    const mayFill = before + 3 * line.length + FRAME_HEADER_MAX_BYTES >= SOCKET_LOW_WATER_BYTES;
    this.link.send(line, mayFill ? this.drained : undefined);
    if (!this.inputPaused && this.link.bufferedAmount > SOCKET_HIGH_WATER_BYTES) {
      this.inputPaused = true;
      this.input.pause();
    }
  }

  private enqueue(line: string, note: Note): void {
    const bytes = Buffer.byteLength(line);
    // One message larger than the byte bound still waits when it is alone.
    if (this.queue.length >= MAX_QUEUED_MESSAGES || (this.queue.length > 0 && this.queuedBytes + bytes > MAX_QUEUED_BYTES)) {
      const why =
        `the exai-ws daemon is not connected and ${this.queue.length} messages already wait to be sent ` +
        `(limit ${MAX_QUEUED_MESSAGES} messages, ${MAX_QUEUED_BYTES} bytes); try again once it is back`;
      const answer = this.conversation.refuse(note, why);
      if (answer) this.answer(answer);
      return;
    }
    this.queue.push({ line, note, bytes });
    this.queuedBytes += bytes;
  }
}
