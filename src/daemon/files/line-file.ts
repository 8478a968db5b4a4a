/**
 * A best-effort, size-rotated JSONL file: the sink behind the daemon's log and metrics files.
 *
 * Why not sonic-boom (pino's own destination) or pino-roll / rotating-file-stream: on a write
 * error sonic-boom emits 'error', which pino re-throws when it is not EPIPE, and its
 * `flushSync()` (run by pino's exit hook) retries every other error forever, sleeping 100 ms
 * each time; a full disk thus turned into an uncaught exception whose exit hook never ended,
 * leaving a daemon that held its port and pid file and answered nothing. pino-roll is built
 * on sonic-boom; rotating-file-stream is a Writable that is finished after its first error.
 * None of them drops, counts and resumes, which is what a log must do so that it can never
 * stop the process it serves.
 *
 * Contract: `write()` never throws and never blocks on a retry (only `open()` throws). Lines
 * are batched and written synchronously once per event-loop turn (off the request path; the
 * daemon logs per session, not per request). A failed write drops its batch and every line for {@link RETRY_MS}, then
 * the next line tries again; dropped lines are counted. Before a write would take the file
 * past `maxBytes` it is rotated: `NAME` becomes `NAME.1`, `NAME.1` becomes `NAME.2`, ..., and
 * only `files` rotated generations are kept, so the disk holds at most `(files + 1) * maxBytes`.
 * A line longer than `maxBytes` is dropped (and counted) rather than break that bound.
 */
import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { FileHealth } from '../../local/health.js';

/** How long a failed file is left alone before the next line tries again. */
export const RETRY_MS = 1_000;
/** Lines waiting for the next write, in bytes; past it new lines are dropped. */
export const MAX_PENDING_BYTES = 1024 * 1024;

export interface LineFileOptions {
  path: string;
  /** Largest size of one file, in bytes. */
  maxBytes: number;
  /** Rotated generations kept beside the current file (`NAME.1` ... `NAME.<files>`). */
  files: number;
  /** Fired when writing starts failing (once per failure spell). Must not throw. */
  onfail?: (error: NodeJS.ErrnoException) => void;
  /** Fired when a write succeeds after a failure spell, with the lines dropped meanwhile. Must not throw. */
  onresume?: (droppedLines: number) => void;
}

/** What `/health` shows of one file. */
export type LineFileStats = FileHealth;

const openFiles = new Set<LineFile>();
let exitHooked = false;

export class LineFile {
  readonly path: string;
  private readonly maxBytes: number;
  private readonly files: number;
  private readonly onfail: LineFileOptions['onfail'];
  private readonly onresume: LineFileOptions['onresume'];
  private fd = -1;
  /** Our idea of the file's size: where the next appended byte lands. */
  private size = 0;
  /** Size at the end of the last whole line: a torn line (a partial write) is cut back to it. */
  private wholeSize = 0;
  private pending: string[] = [];
  private pendingBytes = 0;
  private scheduled: NodeJS.Immediate | undefined;
  private failedUntilMs = 0;
  private failing = false;
  private droppedInSpell = 0;
  private closed = false;
  private written = 0;
  private dropped = 0;
  private rotations = 0;
  private lastError: LineFileStats['last_error'] = null;

  constructor(options: LineFileOptions) {
    this.path = options.path;
    this.maxBytes = options.maxBytes;
    this.files = options.files;
    this.onfail = options.onfail;
    this.onresume = options.onresume;
    openFiles.add(this);
    if (!exitHooked) {
      exitHooked = true;
      // Lines still batched when the process exits (a crash, process.exit) get one try.
      process.once('exit', () => {
        for (const file of openFiles) file.flushSync();
      });
    }
  }

  /** Queues one line (a trailing newline is added when missing). Never throws. */
  write(line: string): void {
    if (this.closed) return;
    const text = line.endsWith('\n') ? line : `${line}\n`;
    const bytes = Buffer.byteLength(text);
    if (Date.now() < this.failedUntilMs || bytes > this.maxBytes || this.pendingBytes + bytes > MAX_PENDING_BYTES) {
      this.drop(1);
      return;
    }
    this.pending.push(text);
    this.pendingBytes += bytes;
    if (this.scheduled === undefined) {
      this.scheduled = setImmediate(() => {
        this.scheduled = undefined;
        this.flushSync();
      });
      this.scheduled.unref();
    }
  }

  /**
   * Opens the file now rather than at the first write, and throws what the open threw: for a
   * caller that wants an unusable path refused at start. The only method that throws.
   */
  open(): void {
    this.ensureOpen();
  }

  /** Writes the batched lines now, one attempt. Never throws, never waits. */
  flushSync(): void {
    if (this.scheduled !== undefined) {
      clearImmediate(this.scheduled);
      this.scheduled = undefined;
    }
    const lines = this.pending;
    if (lines.length === 0) return;
    this.pending = [];
    this.pendingBytes = 0;
    let done = 0;
    try {
      this.ensureOpen();
      while (done < lines.length) {
        // Whole lines that fit below maxBytes go out in one write.
        let chunk = '';
        let chunkBytes = 0;
        let count = 0;
        for (let i = done; i < lines.length; i++) {
          const text = lines[i] as string;
          const bytes = Buffer.byteLength(text);
          if (this.size + chunkBytes + bytes > this.maxBytes) break;
          chunk += text;
          chunkBytes += bytes;
          count++;
        }
        if (count === 0) {
          if (this.size === 0) {
            // Longer than a whole file (write() refuses those; kept as a guard against a loop).
            this.drop(1);
            done++;
          } else {
            this.rotate();
          }
          continue;
        }
        this.append(chunk);
        done += count;
        this.written += count;
      }
      if (this.failing) {
        this.failing = false;
        const dropped = this.droppedInSpell;
        this.droppedInSpell = 0;
        try {
          this.onresume?.(dropped);
        } catch {
          // The callback must not throw; if it does, the sink still may not.
        }
      }
    } catch (error) {
      this.fail(error as NodeJS.ErrnoException);
      this.drop(lines.length - done);
    }
  }

  stats(): LineFileStats {
    return {
      path: this.path,
      written_lines: this.written,
      dropped_lines: this.dropped,
      rotations: this.rotations,
      last_error: this.lastError,
      failing: this.failing,
      max_bytes: this.maxBytes,
      files: this.files,
    };
  }

  /** Writes what is batched (one attempt) and closes the file. Idempotent, never throws. */
  close(): void {
    if (this.closed) return;
    this.flushSync();
    this.closed = true;
    openFiles.delete(this);
    this.closeFd();
  }

  private ensureOpen(): void {
    if (this.fd >= 0) {
      if (this.size !== this.wholeSize) this.repairTornLine();
      return;
    }
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    this.fd = openSync(this.path, 'a', 0o600);
    this.size = fstatSync(this.fd).size;
    this.wholeSize = this.size;
  }

  /**
   * A write that failed half-way left part of a line: cut it off so the file stays valid
   * JSONL, unless someone else appended meanwhile (then end the torn line instead).
   */
  private repairTornLine(): void {
    if (fstatSync(this.fd).size === this.size) {
      ftruncateSync(this.fd, this.wholeSize);
      this.size = this.wholeSize;
    } else {
      this.append('\n');
    }
  }

  private append(text: string): void {
    const buffer = Buffer.from(text);
    let offset = 0;
    while (offset < buffer.length) {
      const n = writeSync(this.fd, buffer, offset, buffer.length - offset);
      if (n <= 0) throw Object.assign(new Error('write wrote nothing'), { code: 'EIO' });
      offset += n;
      this.size += n;
    }
    this.wholeSize = this.size;
  }

  /** NAME -> NAME.1 -> ... -> NAME.<files>; the oldest is removed. */
  private rotate(): void {
    if (this.files === 0) {
      ftruncateSync(this.fd, 0);
    } else {
      rmSync(`${this.path}.${this.files}`, { force: true });
      for (let i = this.files - 1; i >= 1; i--) renameQuietly(`${this.path}.${i}`, `${this.path}.${i + 1}`);
      renameSync(this.path, `${this.path}.1`);
      const old = this.fd;
      this.fd = -1;
      closeQuietly(old);
      this.fd = openSync(this.path, 'a', 0o600);
    }
    this.size = 0;
    this.wholeSize = 0;
    this.rotations++;
  }

  private drop(lines: number): void {
    if (lines <= 0) return;
    this.dropped += lines;
    if (this.failing) this.droppedInSpell += lines;
  }

  private fail(error: NodeJS.ErrnoException): void {
    this.lastError = { code: error.code ?? 'EUNKNOWN', message: error.message, at: new Date().toISOString() };
    this.failedUntilMs = Date.now() + RETRY_MS;
    if (this.fd >= 0 && this.size === this.wholeSize && error.code !== 'ENOSPC' && error.code !== 'EDQUOT') {
      // EBADF, EIO, a file removed under us: reopen next time rather than keep a bad fd.
      this.closeFd();
    }
    if (!this.failing) {
      this.failing = true;
      this.droppedInSpell = 0;
      try {
        this.onfail?.(error);
      } catch {
        // The callback must not throw; if it does, the sink still may not.
      }
    }
  }

  private closeFd(): void {
    const fd = this.fd;
    this.fd = -1;
    if (fd >= 0) closeQuietly(fd);
  }
}

function renameQuietly(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch {
    // A missing generation is normal while the first rotations fill the set.
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Closing a descriptor that went bad still frees it.
  }
}
