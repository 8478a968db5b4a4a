/** What the `/mcp` endpoint (both eras) needs of the sessions it opens. */
import type { Classified } from '../protocol/jsonrpc.js';
import type { Transport } from './transport.js';

/** What the endpoint needs of a session. */
export interface HttpSessionHost {
  readonly id: string;
  /** Requests of this session still running (an HTTP session with one is not idle). */
  readonly inflightCount: number;
  /** Takes one message from the client, already parsed. */
  take(message: Classified): void;
  /** Binds the session to its transport (once, before the first message). */
  attach(transport: Transport): unknown;
}

export type OpenSession = { ok: true; session: HttpSessionHost } | { ok: false; status: number; code: number; message: string };
