/**
 * One call to a hosted server as the daemon makes it (its options and its outcome), and the
 * options of the link that makes it. Apart from server-link.ts (which re-exports them) so that the era's helpers (modern-link.ts,
 * handshake.ts) can name them without importing the link.
 */
import type { Answer, RequestId } from '../protocol/jsonrpc.js';
import type { Cancellation } from './cancellation.js';
import type { ProtocolSetting } from './modern.js';

/** The outcome of one call: a result, an error, or null when the caller cancelled it. */
export type CallOutcome = Answer | null;

export interface CallOptions {
  /** Deadline in milliseconds; past it the server is told to cancel and the caller gets -32001. */
  timeoutMs: number;
  /** Cancelling it cancels the call at the server; the call then resolves to null. */
  cancel?: Cancellation;
  /** Receives `notifications/progress` params for this call (token already link-local). */
  onProgress?: (params: Record<string, unknown>) => void;
  /** The session the call is made for: server-to-client requests it causes are routed back to it. */
  origin?: string;
  /**
   * The session's own id of the request this call serves (where the session sends what it
   * causes). The id sent to the server has its type: a string, or a number.
   */
  related?: RequestId;
}

export interface ServerLinkOptions {
  /** Capabilities the daemon declares to the server as a client. */
  capabilities?: Record<string, unknown>;
  /**
   * Says whether a transport error means the connection is lost (an HTTP server gone): the
   * link then closes, so calls in flight fail with -32011 instead of waiting for their deadline.
   */
  isFatal?: (error: Error) => boolean;
  /**
   * For HTTP servers: the link-local id of the call whose response stream carried the server
   * request with this id (see http-streams.ts), undefined when it came on no call's stream.
   */
  streamOf?: (serverRequestId: string | number) => string | number | undefined;
  /**
   * The era to speak (the entry's `protocol`, see handshake.ts; the config chooses each entry's
   * default). Default: 2025-11-25.
   */
  protocol?: ProtocolSetting;
  /** How long an `auto` probe waits for `server/discover` to be answered; default {@link PROBE_TIMEOUT_MS}. */
  probeTimeoutMs?: number;
}

/** How long an `auto` probe waits for an answer before the server is taken for a 2025 one. */
export const PROBE_TIMEOUT_MS = 10_000;
