/**
 * The link's contract with its owner (link.ts): its states, options and handlers, and the
 * timing constants of its attempts. Types and constants only, so that tests and the shim can
 * name them without the link's machinery.
 */
import type { DaemonAddress } from '../local/files.js';
import type { Hello, HelloAck } from '../protocol/hello.js';
import type { SocketFactory } from './link-socket.js';

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
/**
 * The delay before retry number `attempt` (0 = the first retry), in ms: "equal jitter" over a
 * ceiling that doubles from {@link BACKOFF_FIRST_MS} to `capMs` ({@link BACKOFF_CAP_MS}), so the
 * delay lies in [ceiling / 2, ceiling] and shims dropped at the same moment spread out.
 */
export function backoffDelayMs(attempt: number, random: () => number = Math.random, capMs: number = BACKOFF_CAP_MS): number {
  const ceiling = Math.min(capMs, BACKOFF_FIRST_MS * 2 ** Math.min(attempt, 16));
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
  hello: Pick<Hello, 'client' | 'cwd' | 'server' | 'profile'>;
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
  /** The longest wait between attempts, in ms ({@link BACKOFF_CAP_MS} when unset). */
  backoffCapMs?: number | undefined;
  /** The challenge's nonces (proof.ts `newNonce`); tests pass their own. */
  nonce?: () => string;
  handlers: LinkHandlers;
}
