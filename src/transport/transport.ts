/**
 * The one contract between a session and the connection that carries its messages. The
 * WebSocket, Streamable HTTP, stdio and in-memory transports all satisfy it, so a session never
 * sees a socket: it sends text, is told when input must stop, and closes.
 *
 * Inbound messages and the end of the connection go to the handlers the owner sets
 * (`onmessage`, `onclose`): the daemon's server while a hello is pending, the session after.
 *
 * The close contract, kept by every transport (test/transports.test.ts checks each):
 * - `onclose` fires exactly once per transport, however the connection ends: close() called
 *   (once or many times), the peer hanging up, or an error on the connection;
 * - close() fires it too: at once (HTTP, stdio) or once the connection is down (WebSocket, after
 *   its close handshake; in-memory, on a later microtask); calling close() again does nothing;
 * - once closed, `open` is false, and no `onmessage` follows `onclose`.
 */
import type { RequestId } from '../protocol/jsonrpc.js';

export type TransportKind = 'ws' | 'http' | 'stdio';

export interface Transport {
  readonly kind: TransportKind;
  /** False once the connection is closing or closed: what the session sends then is held. */
  readonly open: boolean;
  /** Bytes accepted by send() and not yet written out: the session's output backpressure. */
  readonly bufferedBytes: number;
  /**
   * Queues one JSON-RPC message. `related` is the client request it belongs to (its response,
   * its progress, a server request it caused): a transport with one stream per request (HTTP)
   * sends it there; the others ignore it. `written` fires once the bytes are out (or failed).
   */
  send(text: string, related: RequestId | undefined, written?: (error?: Error | null) => void): void;
  /** Stops reading the client's input until {@link resumeInput} (the client is not reading ours). */
  pauseInput(): void;
  resumeInput(): void;
  /**
   * Ends the connection; `code` and `reason` are the WebSocket close code and text. Idempotent:
   * the first call fires {@link onclose} (now or once the connection is down), later calls do
   * nothing.
   */
  close(code: number, reason: string): void;
  /** One inbound message (text, not yet parsed). Never called after {@link onclose}. */
  onmessage: ((text: string) => void) | undefined;
  /**
   * The connection ended, with its close code (1000: the client said goodbye, or the code given
   * to close()). Fired exactly once, whoever ended it: close(), the peer, or an error.
   */
  onclose: ((code: number) => void) | undefined;
}
