/**
 * The socket the shim's link (link.ts) talks to the daemon through: its events and the few
 * operations it uses. A `ws` WebSocket satisfies it through ws-socket.ts; tests pass an
 * in-memory one. Types and one helper only: no `ws` here, so the link does not load it.
 */
import { urlHost, type DaemonAddress } from '../local/files.js';

/** Events of one socket. A factory never fires them synchronously inside its own call. */
export interface SocketEvents {
  /** Connected and upgraded: the hello may be sent. */
  open(): void;
  /** One text frame (binary frames are not passed on); `bytes` is its size on the wire. */
  message(text: string, bytes: number): void;
  /** The upgrade was answered with an HTTP status instead (whoever answered so is no daemon for this client). */
  rejected(status: number): void;
  /** Why the socket failed (`ECONNREFUSED`...); `close` follows. */
  error(code: string): void;
  /** The socket is closed; fired once, last. */
  close(code: number, reason: string): void;
}

/** The few socket operations the link uses (a `ws` WebSocket behind ws-socket.ts). */
export interface LinkSocket {
  /** Bytes accepted by `send` and not yet written to the network. */
  readonly bufferedAmount: number;
  /** Sends one text frame; `done` runs once it was written (or failed). */
  send(text: string, done?: () => void): void;
  close(code: number, reason: string): void;
  /** Drops the connection at once. */
  terminate(): void;
  /** Stops reading frames (the client reads slowly), until `resume`. */
  pause(): void;
  resume(): void;
}

/** Opens a socket to the daemon's `/ws` endpoint; no credential goes on the upgrade (see link.ts). */
export type SocketFactory = (address: DaemonAddress, events: SocketEvents, timeoutMs: number) => LinkSocket;

/** The daemon's WebSocket endpoint at an address (IPv6 literals in brackets). */
export function wsUrl(address: Pick<DaemonAddress, 'host' | 'port'>): string {
  return `ws://${urlHost(address.host)}:${address.port}/ws`;
}
