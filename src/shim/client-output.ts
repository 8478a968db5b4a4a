/**
 * The client's stdout: one MCP message per line and nothing else (diagnostics go to stderr).
 * Lines written in one tick leave in one write (cork.ts). When the client reads slowly, the
 * link stops reading the socket until stdout drains: backpressure reaches the daemon, whose
 * queue for this session is bounded.
 */
import type { Writable } from 'node:stream';
import { corkUntilTick } from '../transport/cork.js';
import type { Pausable } from './outbound.js';

export class ClientOutput {
  private paused = false;

  /** @param source what feeds stdout (the link): paused while stdout is full. */
  constructor(
    private readonly output: Writable,
    private readonly source: Pausable,
  ) {}

  /** Writes one line; `text` must hold no line break. */
  write(text: string): void {
    corkUntilTick(this.output);
    if (!this.output.write(`${text}\n`) && !this.paused) {
      this.paused = true;
      this.source.pause();
      this.output.once('drain', () => {
        this.paused = false;
        this.source.resume();
      });
    }
  }

  /** Writes each message as one line. */
  writeAll(messages: readonly object[]): void {
    for (const message of messages) this.write(JSON.stringify(message));
  }

  /** Runs `done` once stdout has taken everything written so far. */
  settled(done: () => void): void {
    this.output.write('', done);
  }
}
