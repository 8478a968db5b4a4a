/**
 * The stdio transport of `exai-ws stdio`: newline-delimited JSON on a pair of streams. A line
 * over `maxLineBytes` is reported to `onoversize` (the session answers it) and skipped; the
 * connection ends when input ends, closes or fails, or output fails (the client is gone), or
 * when close() is called; `onclose` fires once, whichever comes first.
 */
import type { Readable, Writable } from 'node:stream';
import { CloseCode } from '../protocol/codes.js';
import { corkUntilTick } from './cork.js';
import type { RequestId } from '../protocol/jsonrpc.js';
import { LineSplitter } from './ndjson.js';
import type { Transport } from './transport.js';

export interface StdioTransportOptions {
  input: Readable;
  output: Writable;
  maxLineBytes: number;
  /** A line longer than `maxLineBytes` was skipped (`bytes`: how much of it was seen). */
  onoversize: (bytes: number) => void;
}

export class StdioTransport implements Transport {
  readonly kind = 'stdio' as const;
  onmessage: ((text: string) => void) | undefined;
  onclose: ((code: number) => void) | undefined;
  private readonly input: Readable;
  private readonly output: Writable;
  private closed = false;

  constructor(options: StdioTransportOptions) {
    this.input = options.input;
    this.output = options.output;
    const splitter = new LineSplitter(options.maxLineBytes, {
      onLine: (line) => {
        if (!this.closed) this.onmessage?.(line);
      },
      onOversize: options.onoversize,
    });
    const ended = () => {
      splitter.end();
      this.ended(CloseCode.NORMAL);
    };
    this.input.on('data', (chunk: Buffer) => splitter.push(chunk));
    this.input.on('end', ended);
    this.input.on('close', ended);
    this.input.on('error', ended);
    // A closed stdout means the client is gone.
    this.output.on('error', () => this.input.destroy());
  }

  get open(): boolean {
    return !this.closed;
  }

  get bufferedBytes(): number {
    return this.output.writableLength;
  }

  send(text: string, _related: RequestId | undefined, written?: (error?: Error | null) => void): void {
    corkUntilTick(this.output);
    this.output.write(`${text}\n`, written);
  }

  pauseInput(): void {
    this.input.pause();
  }

  resumeInput(): void {
    this.input.resume();
  }

  /**
   * Stops taking input and fires `onclose` with `code` (at once, once). The streams are the
   * process's and stay open: what was sent before still goes out.
   */
  close(code: number = CloseCode.NORMAL, _reason?: string): void {
    this.ended(code);
  }

  private ended(code: number): void {
    if (this.closed) return;
    this.closed = true;
    this.onclose?.(code);
  }
}
