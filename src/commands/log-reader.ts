/**
 * Reading the daemon's JSONL log the way `exai-ws logs` needs: the last lines without loading
 * the file (it may be many megabytes), older lines from the rotated generations that
 * {@link LineFile} leaves beside it (`NAME.1` newest ... `NAME.<files>` oldest), and following
 * the file across rotation.
 *
 * Lines are split on `\n` as bytes, so a UTF-8 character is never cut; empty lines are
 * skipped. A final line with no newline yet is a line still being written: the tail reports
 * it, the follower waits for its end.
 */
import { closeSync, existsSync, fstatSync, openSync, readSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

/** Bytes read per system call, backward or forward. */
const CHUNK_BYTES = 64 * 1024;
/** Rotated generations looked for at most (LineFile keeps `EXAI_WS_LOG_FILES`, 5 by default). */
const MAX_GENERATIONS = 1000;
/** How often a follower looks at the file when no change event came (some file systems send none). */
export const FOLLOW_POLL_MS = 250;

/** The rotated generations that exist, newest first: `NAME.1`, `NAME.2`, ... up to the first gap. */
export function generations(path: string): string[] {
  const found: string[] = [];
  for (let i = 1; i <= MAX_GENERATIONS && existsSync(`${path}.${i}`); i++) found.push(`${path}.${i}`);
  return found;
}

/** Yields the lines of the first `endByte` bytes of an open file, last line first. */
export function* linesBackward(fd: number, endByte: number): Generator<string> {
  let position = endByte;
  let carry: Buffer = Buffer.alloc(0);
  while (position > 0) {
    const size = Math.min(CHUNK_BYTES, position);
    position -= size;
    const chunk = Buffer.allocUnsafe(size);
    const read = readFully(fd, chunk, position);
    const data: Buffer = carry.length > 0 ? Buffer.concat([chunk.subarray(0, read), carry]) : chunk.subarray(0, read);
    let end = data.length;
    for (let i = data.length - 1; i >= 0; i--) {
      if (data[i] !== 0x0a) continue;
      if (end > i + 1) yield data.toString('utf8', i + 1, end);
      end = i;
    }
    carry = data.subarray(0, end);
  }
  if (carry.length > 0) yield carry.toString('utf8');
}

/** Yields the lines of the first `endByte` bytes of an open file, first line first. */
export function* linesForward(fd: number, endByte: number): Generator<string> {
  let position = 0;
  let carry: Buffer = Buffer.alloc(0);
  while (position < endByte) {
    const chunk = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, endByte - position));
    const read = readFully(fd, chunk, position);
    if (read === 0) break;
    position += read;
    const split = splitLines(carry, chunk.subarray(0, read));
    carry = split.rest;
    yield* split.lines;
  }
  if (carry.length > 0) yield carry.toString('utf8');
}

/** Runs `use` with the file open for reading, its size at that moment and its inode; null when it cannot be opened. */
export function withFile<T>(path: string, use: (fd: number, size: number, ino: number) => T): T | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null;
  }
  try {
    const stat = fstatSync(fd);
    return use(fd, stat.size, stat.ino);
  } finally {
    closeSync(fd);
  }
}

export interface FollowOptions {
  /** The file to follow; it may be rotated (renamed away and created again) or truncated meanwhile. */
  path: string;
  /** Where to start: bytes of the current file already shown. */
  fromByte: number;
  /** The inode those bytes were read from: a different file there now was rotated in meanwhile, and is read from its start. */
  ino?: number;
  /** Each whole new line, in order. Must not throw. */
  online: (line: string) => void;
  pollMs?: number;
}

/**
 * Follows a log file: new whole lines are passed to `online` as they are written. When the
 * file is rotated, the rest of the old one is read first, then the new one from its start; a
 * truncated file is read again from its start. Change events (fs.watch on the directory) make
 * it prompt; a poll every {@link FOLLOW_POLL_MS} makes it sure.
 */
export class LogFollower {
  private readonly options: FollowOptions;
  private fd = -1;
  private ino = -1;
  private position: number;
  private carry: Buffer = Buffer.alloc(0);
  private timer: NodeJS.Timeout | undefined;
  private watcher: FSWatcher | undefined;
  private closed = false;

  constructor(options: FollowOptions) {
    this.options = options;
    this.position = options.fromByte;
  }

  start(): void {
    this.open(this.options.fromByte);
    this.timer = setInterval(() => this.tick(), this.options.pollMs ?? FOLLOW_POLL_MS);
    const name = basename(this.options.path);
    try {
      this.watcher = watch(dirname(this.options.path), (_event, file) => {
        if (file === null || file.startsWith(name)) this.tick();
      });
      this.watcher.on('error', () => this.watcher?.close());
    } catch {
      // No watch (inotify limits, an unusual file system): the poll still sees every change.
    }
    this.tick();
  }

  /** Stops following and closes the file. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.watcher?.close();
    this.closeFd();
  }

  private open(fromByte: number): void {
    try {
      this.fd = openSync(this.options.path, 'r');
      const stat = fstatSync(this.fd);
      const rotated = this.options.ino !== undefined && stat.ino !== this.options.ino;
      this.ino = stat.ino;
      this.position = rotated ? 0 : Math.min(fromByte, stat.size);
    } catch {
      // Between a rotation's rename and the next line nothing is there: the next tick tries again.
      this.fd = -1;
    }
  }

  private tick(): void {
    if (this.closed) return;
    if (this.fd < 0) {
      // Only the first open starts past the start (the file shown already); later ones are new files.
      this.open(0);
      if (this.fd < 0) return;
    }
    this.readNew();
    let current: { ino: number; size: number } | null = null;
    try {
      current = statSync(this.options.path);
    } catch {
      // Renamed away and not yet created again.
    }
    if (current === null) return;
    if (current.ino !== this.ino) {
      // Rotated: what was written to the old file before the rename has just been read.
      this.flushCarry();
      this.closeFd();
      this.open(0);
      this.readNew();
    } else if (current.size < this.position) {
      // Truncated in place (a log kept with no rotated generations).
      this.carry = Buffer.alloc(0);
      this.position = 0;
      this.readNew();
    }
  }

  private readNew(): void {
    if (this.fd < 0) return;
    const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    for (;;) {
      let read: number;
      try {
        read = readSync(this.fd, chunk, 0, chunk.length, this.position);
      } catch {
        return;
      }
      if (read === 0) return;
      this.position += read;
      const split = splitLines(this.carry, chunk.subarray(0, read));
      // The chunk buffer is reused: keep a copy of the unfinished line.
      this.carry = Buffer.from(split.rest);
      for (const line of split.lines) this.options.online(line);
    }
  }

  private flushCarry(): void {
    if (this.carry.length > 0) this.options.online(this.carry.toString('utf8'));
    this.carry = Buffer.alloc(0);
  }

  private closeFd(): void {
    if (this.fd >= 0) {
      try {
        closeSync(this.fd);
      } catch {
        // Nothing to do about a descriptor that will not close.
      }
    }
    this.fd = -1;
  }
}

/** Splits `carry + data` into whole non-empty lines and the unfinished rest. */
function splitLines(carry: Buffer, data: Buffer): { lines: string[]; rest: Buffer } {
  const lines: string[] = [];
  let start = 0;
  let head = carry;
  for (let i = 0; i < data.length; i++) {
    if (data[i] !== 0x0a) continue;
    const line = head.length > 0 ? Buffer.concat([head, data.subarray(start, i)]) : data.subarray(start, i);
    if (line.length > 0) lines.push(line.toString('utf8'));
    head = Buffer.alloc(0);
    start = i + 1;
  }
  const rest = head.length > 0 ? Buffer.concat([head, data.subarray(start)]) : data.subarray(start);
  return { lines, rest };
}

function readFully(fd: number, buffer: Buffer, position: number): number {
  let done = 0;
  while (done < buffer.length) {
    const n = readSync(fd, buffer, done, buffer.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}
