/**
 * Newline-delimited JSON framing for stdio: one message per line. Lines longer than
 * `maxLineBytes` are dropped whole (reported once), so one oversize line costs only itself
 * and memory stays bounded.
 */
const NEWLINE = 0x0a;

export interface LineSplitterOptions {
  onLine(line: string): void;
  /** Called once per dropped line, with how many bytes it had when it was given up. */
  onOversize(bytes: number): void;
}

export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private skipping = false;
  private readonly options: LineSplitterOptions;
  /** Longest line accepted, in bytes; may be changed between chunks. */
  maxLineBytes: number;

  constructor(maxLineBytes: number, options: LineSplitterOptions) {
    this.maxLineBytes = maxLineBytes;
    this.options = options;
  }

  /** Feeds one chunk; complete lines are delivered synchronously, in order. */
  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(NEWLINE, start);
      const end = nl === -1 ? chunk.length : nl;
      if (!this.skipping) {
        const piece = chunk.subarray(start, end);
        if (this.size + piece.length > this.maxLineBytes) {
          this.options.onOversize(this.size + piece.length);
          this.parts = [];
          this.size = 0;
          this.skipping = true;
        } else if (piece.length > 0) {
          this.parts.push(piece);
          this.size += piece.length;
        }
      }
      if (nl === -1) break;
      if (this.skipping) this.skipping = false;
      else this.emit();
      start = nl + 1;
    }
  }

  /** Delivers a last line that had no newline. */
  end(): void {
    if (!this.skipping) this.emit();
    this.skipping = false;
  }

  private emit(): void {
    if (this.size === 0 && this.parts.length === 0) return;
    const line = (this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts)).toString('utf8');
    this.parts = [];
    this.size = 0;
    const trimmed = line.endsWith('\r') ? line.slice(0, -1) : line;
    if (trimmed.trim().length > 0) this.options.onLine(trimmed);
  }
}
