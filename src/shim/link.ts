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
 * The link knows nothing of MCP: it carries text frames, counts the ones it received for the
 * resume (`received`) and acks them (issue 10's contract). The socket comes from a factory,
 * so tests drive it with an in-memory socket and fake timers. Loads no heavy module: the shim
 * starts with it (budget: 80 ms to the first initialize result).
 */
import { CloseCode } from '../protocol/codes.js';
import type { DaemonAddress } from '../local/files.js';
import { PROTOCOL_VERSION, parseProofFrame, type AckFrame, type ChallengeFrame, type Hello, type HelloAck } from '../protocol/hello.js';
import { computeProof, newNonce, proofAddress, proofValid, strangerMessage } from '../local/proof.js';
import { wsUrl, type LinkSocket, type SocketFactory } from './link-socket.js';

export { wsUrl, type LinkSocket, type SocketEvents, type SocketFactory } from './link-socket.js';

export type LinkState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/**
 * Where the current attempt stands: the socket is connecting and upgrading; the challenge is
 * out and the listener must prove itself; the hello is out and awaits its ack; the ack said ok.
 */
export type AttemptStep = 'upgrading' | 'proving' | 'greeting' | 'acked';

/** How long the shim keeps trying after the connection dropped (`EXAI_WS_RECONNECT_MS`). */
export const DEFAULT_RECONNECT_MS = 120_000;
/** Longest one attempt (connect, upgrade, hello_ack) may take. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** The first retry waits 50-100 ms; each next one up to twice as long, never past the cap. */
export const BACKOFF_FIRST_MS = 100;
export const BACKOFF_CAP_MS = 2_000;
/** Ack cadence: after this many frames or bytes, else this long after the first unacked frame. */
export const ACK_EVERY_FRAMES = 64;
export const ACK_EVERY_BYTES = 256 * 1024;
export const ACK_DELAY_MS = 200;

/** Hello refusals that no retry can cure: the shim gives up at once, as at a cold start. */
const FATAL_REFUSALS: ReadonlySet<string> = new Set(['unauthorized', 'bad_hello', 'not_hello', 'unsupported_protocol']);

/**
 * The delay before retry number `attempt` (0 = the first retry), in ms: "equal jitter" over a
 * ceiling that doubles from {@link BACKOFF_FIRST_MS} to {@link BACKOFF_CAP_MS}, so the delay
 * lies in [ceiling / 2, ceiling] and shims dropped at the same moment spread out.
 */
export function backoffDelayMs(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** What `ensure` (auto-start, src/shim/autostart.ts) answers. */
export type EnsureResult = { ok: true; started: boolean } | { ok: false; message: string };

/** How the link ended: the owner closed it, or the daemon cannot be used (why, in words for the user). */
export type LinkOutcome = { kind: 'ended' } | { kind: 'failed'; why: string };

export type OkAck = Extract<HelloAck, { ok: true }>;

export interface LinkHandlers {
  /**
   * A hello_ack said ok: the link is open. `resumed` is the daemon's word that this is the same
   * session (frames it had not delivered follow, in order); `reconnected` is false only for the
   * first session of this shim.
   */
  opened(ack: OkAck, info: { resumed: boolean; reconnected: boolean }): void;
  /** One frame of the session after the hello_ack, in order. */
  frame(text: string): void;
  /** The open connection dropped; the link is reconnecting. */
  dropped(why: string): void;
  /**
   * First session only: the hello is sent and frames may follow it at once, before the ack (a
   * round trip sooner at start-up); the daemon runs them only once it accepted the hello.
   */
  writable?(): void;
  /**
   * The attempt that was {@link writable} failed before an ok hello_ack: the frames sent on it
   * were not run (the daemon runs nothing before it accepted the hello, and its ack precedes
   * every answer); the owner may send them again on the next attempt.
   */
  retracted?(): void;
  /** The link is closed, for good; called once. */
  closed(outcome: LinkOutcome): void;
  /** One line of diagnostics for stderr. */
  note?(line: string): void;
  /** Every transition, for tests and logs. */
  transition?(from: LinkState, to: LinkState): void;
}

export interface LinkOptions {
  connect: SocketFactory;
  /** Where the daemon is and the token to use; called again for every attempt. */
  discover: () => DaemonAddress;
  /** The hello's own fields; the link adds `protocol`, `acks`, `pid` and, on a resume, `session_id` and `received`. */
  hello: Pick<Hello, 'client' | 'cwd' | 'server'>;
  /** This process's id, sent in the hello so the daemon can tell when the shim died. */
  pid: number;
  /** Makes a daemon answer (auto-start); asked once per spell of failed attempts. Never rejects. */
  ensure?: (() => Promise<EnsureResult>) | undefined;
  /** How long to keep trying after a drop ({@link DEFAULT_RECONNECT_MS}). */
  reconnectMs?: number | undefined;
  connectTimeoutMs?: number | undefined;
  /** Added to the failure when the address has no token: where to find or set one. */
  noTokenHint?: string | undefined;
  /** For jitter; tests pass their own. */
  random?: () => number;
  /** The challenge's nonces (proof.ts `newNonce`); tests pass their own. */
  nonce?: () => string;
  handlers: LinkHandlers;
}

/** Where `ensure` stands in the current spell of failures. */
type EnsureStep = 'armed' | 'running' | 'cooling' | 'spent';

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
  private ensureStep: EnsureStep = 'armed';
  private lastError = '';
  private paused = false;

  private sessionIdValue: string | undefined;
  /** JSON-RPC frames received in this session, over all its connections. */
  private receivedCount = 0;
  private ackedCount = 0;
  /** The daemon takes ack frames on this connection (its hello_ack said so). */
  private daemonAcks = false;
  private unackedBytes = 0;
  private ackTimer: NodeJS.Timeout | undefined;

  constructor(options: LinkOptions) {
    this.options = options;
    this.handlers = options.handlers;
    this.reconnectMs = options.reconnectMs ?? DEFAULT_RECONNECT_MS;
    this.timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
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
    return this.receivedCount;
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
    this.ensureStep = 'armed';
    this.step = 'acked';
    this.pipelined = false;
    // A new session counts its frames from 0; a resumed one goes on from what the hello said.
    if (!ack.resumed) this.receivedCount = 0;
    this.ackedCount = this.receivedCount;
    this.unackedBytes = 0;
    this.daemonAcks = ack.acks === true;
    this.sessionIdValue = ack.session_id;
    this.enter('open');
    this.handlers.opened(ack, { resumed: ack.resumed, reconnected });
  }

  /** open -> reconnecting: the client's stdio stays open; frames wait until a connection is. */
  private toReconnecting(why: string): void {
    this.lastError = why;
    this.stopAcks();
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
    this.stopAcks();
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
          this.notProven(strangerWhy(address, `it answered the WebSocket upgrade with HTTP ${status}`));
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
      const step = this.step;
      this.detach()?.terminate();
      if (step === 'greeting') this.failed(`the exai-ws daemon at ${wsUrl(address)} did not answer the hello within ${this.timeoutMs} ms`);
      else this.notProven(strangerWhy(address, `it gave no proof within ${this.timeoutMs} ms`));
    }, this.timeoutMs);
  }

  /** upgrading -> proving: only a nonce goes out until the listener has proven itself. */
  private sendChallenge(socket: LinkSocket): void {
    this.step = 'proving';
    this.clientNonce = (this.options.nonce ?? newNonce)();
    const challenge: ChallengeFrame = { type: 'challenge', nonce: this.clientNonce };
    socket.send(JSON.stringify(challenge));
  }

  /**
   * proving -> greeting when `text` is the proof this home's token gives for the address
   * connected to; else the attempt fails and the socket is dropped, nothing sent.
   */
  private onProof(socket: LinkSocket, text: string, token: string): void {
    const address = this.address as DaemonAddress;
    const proof = parseProofFrame(text);
    const bound = proofAddress(address.host, address.port);
    if (proof && proofValid(proof.proof, 'daemon', token, bound, this.clientNonce, proof.nonce)) {
      this.step = 'greeting';
      this.sendHello(socket, computeProof('client', token, bound, this.clientNonce, proof.nonce));
      return;
    }
    this.detach()?.terminate();
    if (proof) {
      this.notProven(strangerWhy(address, `its proof does not match the token`));
      return;
    }
    // A daemon older than the challenge refuses it as a first frame that is not a hello.
    if (refusalCode(text) === 'not_hello') {
      this.failed(
        `the exai-ws daemon at ${wsUrl(address)} is older than this shim: it cannot prove that it holds this home's token, ` +
          `so nothing was sent to it; run \`exai-ws restart\` to run the new version`,
      );
      return;
    }
    this.notProven(strangerWhy(address, 'its answer to the challenge is no proof'));
  }

  /** proving -> greeting: the hello, with the client's proof and never the token. */
  private sendHello(socket: LinkSocket, clientProof: string): void {
    const hello: Hello = {
      type: 'hello',
      protocol: PROTOCOL_VERSION,
      ...this.options.hello,
      pid: this.options.pid,
      acks: true,
      auth_proof: clientProof,
    };
    if (this.sessionIdValue !== undefined) {
      hello.session_id = this.sessionIdValue;
      hello.received = this.receivedCount;
    }
    socket.send(JSON.stringify(hello));
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
    this.receivedCount++;
    if (!this.daemonAcks) {
      this.handlers.frame(text);
      return;
    }
    this.unackedBytes += bytes;
    if (this.receivedCount - this.ackedCount >= ACK_EVERY_FRAMES || this.unackedBytes >= ACK_EVERY_BYTES) this.sendAck();
    else this.ackTimer ??= setTimeout(() => this.sendAck(), ACK_DELAY_MS);
    this.handlers.frame(text);
  }

  private onHelloAck(text: string): void {
    let ack: HelloAck | undefined;
    try {
      ack = JSON.parse(text) as HelloAck;
    } catch {
      ack = undefined;
    }
    if (ack?.type !== 'hello_ack') {
      this.detach()?.terminate();
      this.failed('the exai-ws daemon answered the hello with something that is not a hello_ack');
      return;
    }
    if (ack.ok) {
      clearTimeout(this.attemptTimer);
      this.toOpen(ack);
      return;
    }
    const code = String(ack.error?.code);
    const why = `the exai-ws daemon refused the session (${code}: ${ack.error?.message})`;
    this.detach()?.close(CloseCode.NORMAL, 'refused');
    // A full daemon or one shutting down may take a later attempt; a wrong token or protocol never will.
    if (FATAL_REFUSALS.has(code)) this.refused(why);
    else this.failed(why);
  }

  private onClose(code: number, reason: string): void {
    const step = this.step;
    this.detach();
    if (step !== 'acked') {
      const address = this.address;
      const url = address ? wsUrl(address) : 'its address';
      if (this.attemptError !== undefined) {
        this.failed(`cannot reach the exai-ws daemon at ${url} (${this.attemptError}); start it with: exai-ws daemon`);
      } else if (step === 'greeting') {
        this.failed(`the exai-ws daemon closed the connection before the session started (${describeClose(code, reason)})`);
      } else if (address) {
        this.notProven(strangerWhy(address, `it closed the connection instead (${describeClose(code, reason)})`));
      }
      return;
    }
    if (code === CloseCode.SUPERSEDED) {
      this.toClosed({ kind: 'failed', why: `another connection took over this session (${describeClose(code, reason)})` });
      return;
    }
    this.toReconnecting(`the connection to the exai-ws daemon closed (${describeClose(code, reason)})`);
  }

  /** A refusal no retry cures (a wrong token, an unsupported protocol): closed, with the reason. */
  private refused(why: string): void {
    this.detach()?.terminate();
    this.retract();
    this.toClosed({ kind: 'failed', why });
  }

  /** The attempt met a listener that did not prove itself: a failed attempt, never a refusal. */
  private notProven(why: string): void {
    this.unproven = why;
    this.failed(why);
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
    if (this.options.ensure && this.ensureStep === 'armed') {
      this.runEnsure(this.options.ensure);
      return;
    }
    // After an ensure that said ok, one failed attempt passes before it may be asked again.
    if (this.ensureStep === 'cooling') this.ensureStep = 'armed';
    if (this.current === 'connecting') this.toClosed({ kind: 'failed', why });
    else this.scheduleRetry();
  }

  private runEnsure(ensure: () => Promise<EnsureResult>): void {
    this.ensureStep = 'running';
    const settle = (result: EnsureResult) => {
      if (this.ensureStep !== 'running' || this.current === 'closed' || this.current === 'open') return;
      if (result.ok) {
        this.ensureStep = 'cooling';
        this.attempt();
        return;
      }
      this.ensureStep = 'spent';
      // What the attempt met (the address and its error, or what holds the port) first, then why no daemon was started.
      const met =
        this.attemptError !== undefined && this.address
          ? `cannot reach the exai-ws daemon at ${wsUrl(this.address)} (${this.attemptError}); `
          : this.unproven !== undefined
            ? `${this.unproven}; `
            : '';
      this.lastError = `${met}${result.message}`;
      if (this.current === 'connecting') this.toClosed({ kind: 'failed', why: this.lastError });
      else this.scheduleRetry();
    };
    ensure().then(settle, (error: unknown) => settle({ ok: false, message: error instanceof Error ? error.message : String(error) }));
  }

  private scheduleRetry(): void {
    const delay = backoffDelayMs(this.retries++, this.options.random);
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

  // ---- acks --------------------------------------------------------------------------------

  private sendAck(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    if (this.current !== 'open' || !this.socket || this.receivedCount === this.ackedCount) return;
    const frame: AckFrame = { type: 'ack', received: this.receivedCount };
    this.socket.send(JSON.stringify(frame));
    this.ackedCount = this.receivedCount;
    this.unackedBytes = 0;
  }

  private stopAcks(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
  }
}

function strangerWhy(address: DaemonAddress, detail: string): string {
  return strangerMessage(address.host, address.port, detail);
}

/** The error code of a refused hello_ack; undefined when `text` is not one. */
function refusalCode(text: string): string | undefined {
  try {
    const ack = JSON.parse(text) as Partial<Extract<HelloAck, { ok: false }>> | null;
    return ack?.type === 'hello_ack' && ack.ok === false ? String(ack.error?.code) : undefined;
  } catch {
    return undefined;
  }
}

function describeClose(code: number, reason: string): string {
  return `code ${code}${reason.length > 0 ? `: ${reason}` : ''}`;
}
