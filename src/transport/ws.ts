/**
 * The WebSocket transport: one `ws` connection, text frames of one JSON value each. Writes of a
 * tick leave in one system call (see transport/cork.ts). Binary frames close the connection
 * with 1003; the hello, before a session exists, is the daemon server's business.
 */
import type { RawData, WebSocket } from 'ws';
import { CloseCode } from '../protocol/codes.js';
import { corkUntilTick, rawSocketOf } from './cork.js';
import type { RequestId } from '../protocol/jsonrpc.js';
import type { Transport } from './transport.js';

export class WsTransport implements Transport {
  readonly kind = 'ws' as const;
  onmessage: ((text: string) => void) | undefined;
  onclose: ((code: number) => void) | undefined;
  /** Bytes of every frame received, for the metrics. */
  onbytes: ((bytes: number) => void) | undefined;
  /** A binary frame arrived (the connection is being closed with 1003). */
  onbinary: (() => void) | undefined;
  private readonly ws: WebSocket;
  private ended = false;

  constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data: RawData, isBinary: boolean) => {
      const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      this.onbytes?.(bytes.length);
      if (isBinary) {
        this.onbinary?.();
        this.close(CloseCode.UNSUPPORTED_DATA, 'binary frames are not supported');
        return;
      }
      this.onmessage?.(bytes.toString('utf8'));
    });
    // `ws` emits 'close' once, after an error too (its 'error' is the owner's to hear: the
    // daemon's server logs it); the guard keeps the contract should that ever change.
    ws.on('close', (code: number) => {
      if (this.ended) return;
      this.ended = true;
      this.onclose?.(code);
    });
  }

  get open(): boolean {
    return this.ws.readyState === this.ws.OPEN;
  }

  get bufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  send(text: string, _related: RequestId | undefined, written?: (error?: Error | null) => void): void {
    corkUntilTick(rawSocketOf(this.ws));
    this.ws.send(text, written);
  }

  pauseInput(): void {
    this.ws.pause();
  }

  resumeInput(): void {
    this.ws.resume();
  }

  /** Starts the close handshake; `onclose` fires once it is done (or the socket is gone). Idempotent. */
  close(code: number, reason: string): void {
    this.ws.close(code, reason);
  }
}
