/**
 * What a server link may use of a transport that reads and writes lines of JSON (a child
 * process's stdio, child-transport.ts) besides the SDK's `Transport`: it writes requests it
 * serialised itself, without a promise per message, and sees each line before it is parsed, to
 * relay a plain response as text (protocol/relay.ts).
 */
import type { Transport } from '@modelcontextprotocol/client';

export interface LineTransport {
  /**
   * Sees each line before it is parsed: true when it took the line, false to have it parsed and
   * delivered to `onmessage` (or reported as not JSON) as usual.
   */
  online: ((line: string) => boolean) | undefined;
  /**
   * Writes one message already serialised (one line of JSON, without its newline): `failed` is
   * called, at once or later, with what `send` would reject with.
   */
  sendText(text: string, failed: (error: Error) => void): void;
}

export function isLineTransport(transport: Transport): transport is Transport & LineTransport {
  return typeof (transport as Partial<LineTransport>).sendText === 'function' && 'online' in transport;
}
