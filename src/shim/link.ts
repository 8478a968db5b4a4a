/**
 * The shim's connection to the daemon, as an explicit state machine (DESIGN.md, "When the
 * daemon goes away"):
 *
 *   connecting --hello_ack ok--> open --drop--> reconnecting --hello_ack ok--> open
 *   connecting --refused, or nothing answers--> closed
 *   open --close() (stdin ended) / 4010 superseded--> closed
 *   reconnecting --a refusal, or the deadline--> closed
 *
 * Each transition is one method (`toOpen`, `toReconnecting`, `toClosed`) and every side effect
 * of a transition happens there. Within `connecting` and `reconnecting` an attempt is one
 * socket and its own steps ({@link AttemptStep}):
 *
 *   upgrading --open: send the challenge--> proving --a valid proof: send the hello--> greeting
 *   greeting --hello_ack ok--> (the link is open)
 *
 * No token, hello or client frame leaves before the listener proved that it holds this home's
 * token for the address connected to (proof.ts, DESIGN.md "Security model"): a listener that
 * does not (another program, another user's daemon, a relay) fails the attempt and is told
 * nothing but a nonce. An attempt that fails before the ack is retried with capped, jittered
 * backoff while reconnecting, after asking `ensure` (auto-start) once per spell of failures.
 * The address and token are read again for every attempt, so a restarted daemon on another
 * port, or a new token, is found.
 *
 * The link knows nothing of MCP: it carries text frames; the ones it received are counted for
 * the resume and acked by its {@link AckCounter} (acks.ts, issue 10's contract); the handshake's
 * frames and words are built in handshake.ts, and `ensure` is asked through an EnsureSpell. The
 * socket comes from a factory, so tests drive it with an in-memory socket and fake timers. Loads
 * no heavy module: the shim starts with it (budget: 80 ms to the first initialize result).
 */
import { CloseCode } from '../protocol/codes.js';
import type { DaemonAddress } from '../local/files.js';
import { newNonce } from '../local/proof.js';
import { AckCounter } from './acks.js';
import { EnsureSpell } from './ensure-spell.js';
import * as handshake from './handshake.js';
import type { LinkSocket } from './link-socket.js';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_RECONNECT_MS,
  backoffDelayMs,
  type AttemptStep,
  type EnsureResult,
  type LinkHandlers,
  type LinkOptions,
  type LinkOutcome,
  type LinkState,
  type OkAck,
} from './link-options.js';

export * from './link-socket.js';
export { ACK_DELAY_MS, ACK_EVERY_BYTES, ACK_EVERY_FRAMES } from './acks.js';
export * from './link-options.js';

export class Link {
  private current: LinkState = 'connecting';
  private readonly options: LinkOptions;
  private readonly handlers: LinkHandlers;
  private readonly reconnectMs: number;
  private readonly timeoutMs: number;

  /** The socket of the attempt in progress or of the open connection; null between attempts. */
  private socket: LinkSocket | null = null;
  private address: DaemonAddress | null = null;
  /** Where the current socket's attempt stands. */
  private step: AttemptStep = 'upgrading';
  /** The nonce of the current attempt's challenge. */
  private clientNonce = '';
  /** Frames may have gone out on the current attempt before its ack (first session only). */
  private pipelined = false;
  /** Why the current attempt's socket failed, from its `error` event. */
  private attemptError: string | undefined;
  /** Set when the current attempt met a listener that did not prove itself: what the user is told. */
  private unproven: string | undefined;
  private attemptTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private retries = 0;
  private readonly ensure: EnsureSpell;
  private lastError = '';
  private paused = false;

  private sessionIdValue: string | undefined;
  /** Frames received in this session and the acks owed for them. */
  private readonly acks = new AckCounter((frame) => this.current === 'open' && this.send(frame));

  constructor(options: LinkOptions) {
    this.options = options;
    this.handlers = options.handlers;
    this.reconnectMs = options.reconnectMs ?? DEFAULT_RECONNECT_MS;
    this.timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.ensure = new EnsureSpell(options.ensure);
  }

  get state(): LinkState {
    return this.current;
  }

  /** The session this shim holds (from the last ok hello_ack). */
  get sessionId(): string | undefined {
    return this.sessionIdValue;
  }

  /** Frames received in the current session (what a resume's hello says as `received`). */
  get received(): number {
    return this.acks.received;
  }

  get bufferedAmount(): number {
    return this.socket?.bufferedAmount ?? 0;
  }

  /** Makes the first attempt. Call once. */
  start(): void {
    this.attempt();
  }

  /** True while {@link send} sends: open, or between `writable` and the ack of a first session. */
  get canSend(): boolean {
    return this.socket !== null && (this.current === 'open' || this.pipelined);
  }

  /**
   * Sends one frame of the session; only while {@link canSend} (returns false otherwise, and
   * nothing is sent). `done` runs once the frame was written.
   */
  send(text: string, done?: () => void): boolean {
    if (!this.canSend || !this.socket) return false;
    this.socket.send(text, done);
    return true;
  }

  /** Stops reading frames until {@link resume}, on this and any later connection. */
  pause(): void {
    this.paused = true;
    this.socket?.pause();
  }

  resume(): void {
    this.paused = false;
    this.socket?.resume();
  }

  /** A normal close (the client's stdin ended): the daemon ends the session at once. Idempotent. */
  close(): void {
    this.toClosed({ kind: 'ended' });
  }

  // ---- transitions -------------------------------------------------------------------------

  private enter(to: LinkState): void {
    const from = this.current;
    this.current = to;
    this.handlers.transition?.(from, to);
  }

  /** connecting | reconnecting -> open. */
  private toOpen(ack: OkAck): void {
    const reconnected = this.current === 'reconnecting';
    clearTimeout(this.attemptTimer);
    clearTimeout(this.retryTimer);
    clearTimeout(this.deadlineTimer);
    this.retries = 0;
    this.ensure.reset();
    this.step = 'acked';
    this.pipelined = false;
    this.acks.opened(ack.resumed, ack.acks === true);
    this.sessionIdValue = ack.session_id;
    this.enter('open');
    this.handlers.opened(ack, { resumed: ack.resumed, reconnected });
  }

  /** open -> reconnecting: the client's stdio stays open; frames wait until a connection is. */
  private toReconnecting(why: string): void {
    this.lastError = why;
    this.acks.stop();
    this.retries = 0;
    this.enter('reconnecting');
    this.deadlineTimer = setTimeout(() => this.giveUp(), this.reconnectMs);
    this.handlers.note?.(`${why}; reconnecting (for up to ${Math.round(this.reconnectMs / 1000)} s)`);
    this.handlers.dropped(why);
    if (this.current === 'reconnecting') this.scheduleRetry();
  }

  /** any -> closed, once: timers stop, the socket closes (normally when the owner ended it). */
  private toClosed(outcome: LinkOutcome): void {
    if (this.current === 'closed') return;
    clearTimeout(this.attemptTimer);
    clearTimeout(this.retryTimer);
    clearTimeout(this.deadlineTimer);
    this.acks.stop();
    const socket = this.detach();
    if (socket) {
      if (outcome.kind === 'ended') socket.close(CloseCode.NORMAL, 'client closed stdin');
      else socket.terminate();
    }
    this.enter('closed');
    this.handlers.closed(outcome);
  }

  // ---- attempts ----------------------------------------------------------------------------

  private attempt(): void {
    this.retryTimer = undefined;
    if (this.current === 'closed' || this.current === 'open') return;
    const address = this.options.discover();
    this.address = address;
    if (this.current === 'reconnecting' && address.source !== 'pidfile') {
      // No address card: no daemon runs for this home (or it is still binding its port). The
      // default port may belong to another home's daemon, which would only fail the proof.
      this.failed('no exai-ws daemon runs (it has published no address card); start it with: exai-ws daemon');
      return;
    }
    this.step = 'upgrading';
    this.attemptError = undefined;
    this.unproven = undefined;
    const token = address.token;
    if (token === null) {
      // Without the token no proof can be checked, so nothing is sent; auto-start may make one.
      const hint = this.options.noTokenHint ? `: ${this.options.noTokenHint}` : '';
      this.failed(`no token to check the exai-ws daemon's proof with${hint}`);
      return;
    }
    const mine = (): boolean => this.socket === socket;
    const socket: LinkSocket = this.options.connect(
      address,
      {
        open: () => {
          if (!mine()) return;
          // A socket cannot be paused before it is open.
          if (this.paused) socket.pause();
          this.sendChallenge(socket);
        },
        message: (text, bytes) => {
          if (!mine()) return;
          if (this.step === 'proving') this.onProof(socket, text, token);
          else this.onFrame(text, bytes);
        },
        rejected: (status) => {
          if (!mine()) return;
          // Nothing of value went with the upgrade: whoever answered it so is not the daemon.
          this.detach()?.terminate();
          this.failedWith(handshake.rejectedWhy(address, status));
        },
        error: (code) => {
          if (mine()) this.attemptError ??= code;
        },
        close: (code, reason) => {
          if (mine()) this.onClose(code, reason);
        },
      },
      this.timeoutMs,
    );
    this.socket = socket;
    if (this.paused) socket.pause();
    this.attemptTimer = setTimeout(() => {
      if (!mine() || this.step === 'acked') return;
      const failure = handshake.silentWhy(this.step === 'greeting', address, this.timeoutMs);
      this.detach()?.terminate();
      this.failedWith(failure);
    }, this.timeoutMs);
  }

  /** upgrading -> proving: only a nonce goes out until the listener has proven itself. */
  private sendChallenge(socket: LinkSocket): void {
    this.step = 'proving';
    this.clientNonce = (this.options.nonce ?? newNonce)();
    socket.send(handshake.challengeFrame(this.clientNonce));
  }

  /**
   * proving -> greeting when `text` is the proof this home's token gives for the address
   * connected to; else the attempt fails and the socket is dropped, nothing sent.
   */
  private onProof(socket: LinkSocket, text: string, token: string): void {
    const verdict = handshake.judgeProof(text, this.address as DaemonAddress, token, this.clientNonce);
    if (verdict.kind !== 'proven') {
      this.detach()?.terminate();
      this.failedWith(verdict);
      return;
    }
    this.step = 'greeting';
    const resume = this.sessionIdValue === undefined ? undefined : { sessionId: this.sessionIdValue, received: this.acks.received };
    socket.send(handshake.helloFrame(this.options.hello, this.options.pid, verdict.clientProof, resume));
    if (this.current === 'connecting' && this.sessionIdValue === undefined) {
      this.pipelined = true;
      this.handlers.writable?.();
    }
  }

  private onFrame(text: string, bytes: number): void {
    if (this.step !== 'acked') {
      this.onHelloAck(text);
      return;
    }
    this.acks.count(bytes);
    this.handlers.frame(text);
  }

  private onHelloAck(text: string): void {
    const verdict = handshake.judgeAck(text);
    if (verdict.kind === 'open') {
      clearTimeout(this.attemptTimer);
      this.toOpen(verdict.ack);
      return;
    }
    const socket = this.detach();
    if (verdict.kind === 'garbled') {
      socket?.terminate();
      this.failed(verdict.why);
      return;
    }
    socket?.close(CloseCode.NORMAL, 'refused');
    if (verdict.fatal) this.refused(verdict.why);
    else this.failed(verdict.why);
  }

  private onClose(code: number, reason: string): void {
    const step = this.step;
    this.detach();
    if (step !== 'acked') {
      // A socket exists only once an attempt read its address.
      const failure = handshake.closedBeforeAckWhy(step === 'greeting', this.address as DaemonAddress, this.attemptError, code, reason);
      this.failedWith(failure);
      return;
    }
    const close = handshake.describeClose(code, reason);
    if (code === CloseCode.SUPERSEDED) this.toClosed({ kind: 'failed', why: `another connection took over this session (${close})` });
    else this.toReconnecting(`the connection to the exai-ws daemon closed (${close})`);
  }

  /** A refusal no retry cures (a wrong token, an unsupported protocol): closed, with the reason. */
  private refused(why: string): void {
    this.detach()?.terminate();
    this.retract();
    this.toClosed({ kind: 'failed', why });
  }

  /** A failed attempt; one that met a listener that did not prove itself (a stranger) is never a refusal. */
  private failedWith(failure: handshake.Failure): void {
    if (failure.kind === 'stranger') this.unproven = failure.why;
    this.failed(failure.why);
  }

  /**
   * An attempt failed before its hello_ack. Asks `ensure` once per spell of failures; at a cold
   * start without it (or when it could not help) the shim gives up with the reason, as before
   * reconnecting existed; while reconnecting it backs off until the deadline.
   */
  private failed(why: string): void {
    if (this.current === 'closed' || this.current === 'open') return;
    this.lastError = why;
    this.retract();
    if (this.ensure.ask((result) => this.ensured(result))) return;
    if (this.current === 'connecting') this.toClosed({ kind: 'failed', why });
    else this.scheduleRetry();
  }

  /** What `ensure` answered: attempt again at once, or give up (cold start) or back off with why. */
  private ensured(result: EnsureResult): void {
    if (this.current === 'closed' || this.current === 'open') return;
    if (result.ok) {
      this.attempt();
      return;
    }
    // What the attempt met (the address and its error, or what holds the port) first, then why no daemon was started.
    const met = this.attemptError !== undefined && this.address ? handshake.unreachableWhy(this.address, this.attemptError) : this.unproven;
    this.lastError = met === undefined ? result.message : `${met}; ${result.message}`;
    if (this.current === 'connecting') this.toClosed({ kind: 'failed', why: this.lastError });
    else this.scheduleRetry();
  }

  private scheduleRetry(): void {
    const delay = backoffDelayMs(this.retries++, this.options.random, this.options.backoffCapMs);
    this.retryTimer = setTimeout(() => this.attempt(), delay);
  }

  private giveUp(): void {
    const seconds = Math.round(this.reconnectMs / 100) / 10;
    this.toClosed({
      kind: 'failed',
      why: `the connection to the exai-ws daemon was lost and could not be made again within ${seconds} s (last: ${this.lastError})`,
    });
  }

  private retract(): void {
    if (!this.pipelined) return;
    this.pipelined = false;
    this.handlers.retracted?.();
  }

  /** Forgets the current socket (its later events are ignored) and returns it. */
  private detach(): LinkSocket | null {
    const socket = this.socket;
    this.socket = null;
    clearTimeout(this.attemptTimer);
    return socket;
  }
}
