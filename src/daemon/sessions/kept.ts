/**
 * The frames a session wrote to a client that sends acks and has not acked yet, so that a
 * resume can write again what the lost connection never delivered. Frames carry consecutive
 * sequence numbers; the buffer always holds the newest ones, up to the last frame written.
 *
 * A queue with a moving head instead of `Array#shift`, compacted once the dead part is the
 * larger: dropping N acked frames costs O(N), not O(N x kept).
 */

/** Dead slots below the head tolerated before compaction. */
const COMPACT_MIN = 256;

export class KeptFrames {
  private texts: string[] = [];
  private sizes: number[] = [];
  private head = 0;
  /** Sequence number of `texts[head]`. */
  private firstSeq: number;
  private totalBytes = 0;

  /** `nextSeq`: the sequence number the first pushed frame will carry. */
  constructor(nextSeq: number) {
    this.firstSeq = nextSeq;
  }

  get count(): number {
    return this.texts.length - this.head;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  /** Sequence number of the oldest kept frame; with none kept, of the next frame to come. */
  get oldestSeq(): number {
    return this.firstSeq;
  }

  /** Keeps one frame just written; its sequence number is `oldestSeq + count`. */
  push(text: string, bytes: number): void {
    this.texts.push(text);
    this.sizes.push(bytes);
    this.totalBytes += bytes;
  }

  /** Drops every frame with a sequence number <= `seq` (the client has them). */
  dropThrough(seq: number): void {
    const n = Math.min(seq - this.firstSeq + 1, this.count);
    if (n > 0) this.dropOldest(n);
  }

  /** Drops the oldest frames until at most `maxBytes` are kept; returns how many went. */
  trimTo(maxBytes: number): number {
    let n = 0;
    let bytes = this.totalBytes;
    while (bytes > maxBytes && n < this.count) bytes -= this.sizes[this.head + n++] ?? 0;
    if (n > 0) this.dropOldest(n);
    return n;
  }

  /** The frames with a sequence number > `seq`, oldest first. */
  *after(seq: number): Generator<string> {
    for (let i = this.head + Math.max(0, seq - this.firstSeq + 1); i < this.texts.length; i++) yield this.texts[i] as string;
  }

  private dropOldest(n: number): void {
    for (let i = this.head; i < this.head + n; i++) {
      this.totalBytes -= this.sizes[i] ?? 0;
      this.texts[i] = ''; // the text goes now, not at the next compaction
    }
    this.head += n;
    this.firstSeq += n;
    if (this.head === this.texts.length) {
      this.texts = [];
      this.sizes = [];
      this.head = 0;
    } else if (this.head >= COMPACT_MIN && this.head * 2 >= this.texts.length) {
      this.texts = this.texts.slice(this.head);
      this.sizes = this.sizes.slice(this.head);
      this.head = 0;
    }
  }
}
