/**
 * A session's way out to its client: writes frames to the attached transport with output
 * backpressure, holds them while detached, and, for a client that sends acks, numbers every
 * frame written (1, 2, ... over all the session's connections) and keeps it until acked, so
 * that a resume naming how many frames the client received writes again exactly the ones
 * the lost connection did not deliver. Kept and held frames share the hold limit; past it the
 * oldest kept ones go (a resume that needs them is then refused: {@link Outbox.resumable}),
 * and held ones alone past it end the session. A client without acks costs no copies.
 *
 * Held frames of every detached session together are bounded too (a shared {@link ByteBudget},
 * `EXAI_WS_HOLD_TOTAL_MAX_BYTES`): past it, the session holding the most ends as if it had
 * passed its own limit, so a thousand detached sessions each within their own cannot take the
 * daemon's memory together.
 */
import { ACK_PREFIX, parseAck } from '../../protocol/hello.js';
import { clip, type RequestId } from '../../protocol/jsonrpc.js';
import type { Transport } from '../../transport/transport.js';
import type { BudgetHolder, ByteBudget } from '../../transport/byte-budget.js';
import { KeptFrames } from './kept.js';
import type { Logger } from '../files/logger.js';
import type { Metrics } from '../files/metrics.js';

/** Outbound bytes buffered on a transport before the session stops reading from it. */
export const OUTPUT_HIGH_WATER_BYTES = 4 * 1024 * 1024;
export const OUTPUT_LOW_WATER_BYTES = 1024 * 1024;
/**
 * Outbound bytes buffered on a transport past which notifications to that client are dropped
 * (counted as `output_overflow`): a server flooding log or progress notifications at a client
 * that stopped reading must not grow the daemon without bound. Responses and requests still
 * go; they are bounded by the in-flight limits, and the client's input is paused meanwhile.
 */
export const NOTIFY_DROP_BYTES = 2 * OUTPUT_HIGH_WATER_BYTES;

/** How a connection attaches (from its hello). */
export interface AttachOptions {
  /** The connection sends ack frames: frames are kept until acked. */
  acks?: boolean;
  /**
   * Frames the client already received in this session: the kept ones after it are written
   * again before the held ones. Must have passed {@link Outbox.resumable}.
   */
  received?: number;
}

export interface OutboxDeps {
  /** Kept and held frames together, in bytes (`EXAI_WS_HOLD_MAX_BYTES`). */
  holdMaxBytes: number;
  metrics: Metrics;
  logger: Logger;
  /** For log lines. */
  sessionId: string;
  /** Held frames alone are past the hold limit: the owner ends the session. Called again for each frame that follows. */
  overflow(): void;
  /** Held frames of every detached session together (`EXAI_WS_HOLD_TOTAL_MAX_BYTES`); none: no shared bound. */
  holdBudget?: ByteBudget;
}

export class Outbox implements BudgetHolder {
  private readonly deps: OutboxDeps;
  private current: Transport | null = null;
  /** Frames held while detached, with the client request each belongs to. */
  private held: { text: string; related: RequestId | undefined }[] = [];
  private heldBytes = 0;
  private closed = false;
  private outputPaused = false;
  /** Notifications dropped since the client's transport filled up (see NOTIFY_DROP_BYTES). */
  private droppedNotifications = 0;
  /** The attached connection sends ack frames. */
  private acks = false;
  /** Sequence number of the last frame written to a transport. */
  private sentSeq = 0;
  /** Frames written and not acked, while the connection sends acks; null when none (idle memory). */
  private kept: KeptFrames | null = null;
  /** Kept frames dropped unacked to stay within the hold limit (logged once). */
  private trimmed = 0;

  constructor(deps: OutboxDeps) {
    this.deps = deps;
  }

  /** The attached transport, or null while detached. */
  get transport(): Transport | null {
    return this.current;
  }

  /** Frames written to the session's transports so far (the last sequence number). */
  get sentCount(): number {
    return this.sentSeq;
  }

  /**
   * True when a client that received `received` frames can be given every later one exactly
   * once: not more than were sent, and every frame after it still kept.
   */
  resumable(received: number): boolean {
    const oldest = this.kept?.oldestSeq ?? this.sentSeq + 1;
    return received <= this.sentSeq && received >= oldest - 1;
  }

  /**
   * Binds a transport: writes the kept frames after `received` again (see {@link resumable}),
   * then every held frame, in order. Returns how many kept frames were written again.
   */
  attach(transport: Transport, options: AttachOptions = {}): number {
    this.current = transport;
    let replayed = 0;
    if (options.received !== undefined && this.kept !== null) {
      for (const text of this.kept.after(options.received)) {
        this.write(transport, text, undefined, Buffer.byteLength(text));
        replayed++;
      }
    }
    this.acks = options.acks === true;
    if (!this.acks) this.kept = null; // nobody will ack them
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    this.deps.holdBudget?.release(this);
    for (const frame of held) this.send(frame.text, frame.related);
    return replayed;
  }

  /** Unbinds the transport if it is the attached one; frames are held from now on. */
  detach(transport: Transport): boolean {
    if (this.current !== transport) return false;
    this.current = null;
    this.outputPaused = false;
    return true;
  }

  /**
   * Takes an ack frame: true when `text` was one (the kept frames it covers are dropped).
   * False for anything else, a malformed ack, or an ack on a connection that does not send
   * acks: the caller treats those as ordinary (invalid) messages. Acks come often, so they
   * are recognised by their first bytes and never parsed as JSON.
   */
  takeAck(text: string): boolean {
    if (!this.acks || !text.startsWith(ACK_PREFIX)) return false;
    const received = parseAck(text);
    if (received === undefined) return false;
    const kept = this.kept;
    if (kept !== null) {
      kept.dropThrough(Math.min(received, this.sentSeq));
      if (kept.count === 0) this.kept = null;
    }
    return true;
  }

  /**
   * False, counted (`output_overflow`) and logged once per spell, while the attached client
   * leaves more than {@link NOTIFY_DROP_BYTES} unread: the notification is to be dropped.
   */
  admitNotification(method: unknown): boolean {
    const transport = this.current;
    if (transport === null || transport.bufferedBytes <= NOTIFY_DROP_BYTES) {
      if (this.droppedNotifications > 0) {
        this.deps.logger.info(
          { session_id: this.deps.sessionId, dropped: this.droppedNotifications },
          'client reading again: notifications resume',
        );
        this.droppedNotifications = 0;
      }
      return true;
    }
    this.deps.metrics.reject('output_overflow');
    if (this.droppedNotifications++ === 0) {
      this.deps.logger.warn(
        {
          session_id: this.deps.sessionId,
          method: typeof method === 'string' ? clip(method, 100) : undefined,
          unread_bytes: transport.bufferedBytes,
        },
        'client not reading: notifications to it are dropped until it catches up',
      );
    }
    return false;
  }

  /** Writes one frame (the next sequence number, kept while the client acks), or holds it while detached. */
  send(text: string, related?: RequestId): void {
    if (this.closed) return;
    const transport = this.current;
    const bytes = Buffer.byteLength(text);
    if (transport === null || !transport.open) {
      this.held.push({ text, related });
      this.heldBytes += bytes;
      this.deps.holdBudget?.change(this, bytes);
      this.bound();
      this.deps.holdBudget?.enforce();
      return;
    }
    this.sentSeq++;
    if (this.acks) {
      this.kept ??= new KeptFrames(this.sentSeq);
      this.kept.push(text, bytes);
      this.bound();
    }
    this.write(transport, text, related, bytes);
  }

  /** Drops every held and kept frame and unbinds the transport, which it returns for the caller to close. Idempotent. */
  close(): Transport | null {
    this.closed = true;
    this.held = [];
    this.heldBytes = 0;
    this.deps.holdBudget?.release(this);
    this.kept = null;
    const transport = this.current;
    this.current = null;
    return transport;
  }

  /**
   * The held frames of all detached sessions are past their shared limit and this one holds
   * the most: the session ends, as it does past its own limit.
   */
  giveWay(): void {
    this.deps.logger.warn(
      {
        session_id: this.deps.sessionId,
        held_bytes: this.heldBytes,
        hold_total_max_bytes: this.deps.holdBudget?.maxBytes,
        held_total_bytes: this.deps.holdBudget?.usedBytes,
      },
      'messages held for detached sessions past their total limit: the session holding the most ends',
    );
    this.deps.overflow();
  }

  /**
   * Keeps kept and held frames within the hold limit together: the oldest kept frames go
   * first (a resume from before them is then refused, not answered with a gap); when the held
   * ones alone are past it, the session ends.
   */
  private bound(): void {
    const max = this.deps.holdMaxBytes;
    const kept = this.kept;
    if (kept !== null && kept.bytes + this.heldBytes > max) {
      const dropped = kept.trimTo(Math.max(0, max - this.heldBytes));
      if (kept.count === 0) this.kept = null;
      if (this.trimmed === 0) {
        this.deps.logger.info(
          { session_id: this.deps.sessionId, hold_max_bytes: max, oldest_kept_seq: this.kept?.oldestSeq ?? this.sentSeq + 1 },
          'unacked frames past the hold limit dropped: a resume from before them starts a new session',
        );
      }
      this.trimmed += dropped;
    }
    if (this.heldBytes > max) this.deps.overflow();
  }

  private write(transport: Transport, text: string, related: RequestId | undefined, bytes: number): void {
    this.deps.metrics.bytesOut += bytes;
    transport.send(text, related, () => {
      if (this.outputPaused && this.current === transport && transport.bufferedBytes < OUTPUT_LOW_WATER_BYTES) {
        this.outputPaused = false;
        transport.resumeInput();
      }
    });
    if (!this.outputPaused && transport.bufferedBytes > OUTPUT_HIGH_WATER_BYTES) {
      // The client is not reading; stop reading its requests until it catches up.
      this.outputPaused = true;
      transport.pauseInput();
    }
  }
}
