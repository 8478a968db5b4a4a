/**
 * Small files that other processes read while they may be written (the token, the address
 * card): each is written whole to a temp file beside it, fsynced, then moved into place, so a
 * reader never sees it half written and a crash or a full disk never leaves it empty.
 * Both functions throw the file system's error; callers turn it into their own.
 *
 * On Windows a name can refuse a new file for a moment: the old file was deleted while another
 * process still had it open (its name stays until that handle closes), or a virus scanner or
 * indexer holds it. Those errors (EPERM, EACCES, EBUSY) are retried there for up to
 * {@link BUSY_RETRY_MS}, as every careful Windows program does.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';

/** How long a Windows move or create refused as busy is retried. */
export const BUSY_RETRY_MS = 2_000;
const BUSY = new Set(['EPERM', 'EACCES', 'EBUSY']);

/** Errors of a file system that has no hard links. */
const NO_LINKS = new Set(['EPERM', 'ENOTSUP', 'ENOSYS', 'EOPNOTSUPP']);

/**
 * Creates `path` with `text` only if nothing is there yet; false when something is. The
 * temp file is hard-linked into place (an exclusive, whole create). Where the file system has
 * no hard links, it falls back to an exclusive create written right after, which a reader may
 * briefly see empty.
 */
export function createWhole(path: string, text: string, mode: number): boolean {
  return withTemp(path, text, mode, (tmp) => {
    try {
      linkSync(tmp, path);
      return true;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return false;
      if (code === undefined || !NO_LINKS.has(code)) throw error;
    }
    try {
      writeFileSync(path, text, { flag: 'wx', mode });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
  });
}

/** Writes `text` over whatever is at `path` (a rename of the temp file: atomic). */
export function replaceWhole(path: string, text: string, mode: number): void {
  withTemp(path, text, mode, (tmp) => renameSync(tmp, path));
}

function withTemp<T>(path: string, text: string, mode: number, place: (tmp: string) => T): T {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fd = openSync(tmp, 'wx', mode);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    return retryBusy(() => place(tmp));
  } finally {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // Left behind in a directory we cannot write to; harmless.
    }
  }
}

/** Runs `step`, again and again for up to {@link BUSY_RETRY_MS} while Windows says the name is busy. */
export function retryBusy<T>(step: () => T, platform: NodeJS.Platform = process.platform, retryMs = BUSY_RETRY_MS): T {
  const deadline = Date.now() + retryMs;
  for (let wait = 10; ; wait = Math.min(wait * 2, 200)) {
    try {
      return step();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (platform !== 'win32' || code === undefined || !BUSY.has(code) || Date.now() >= deadline) throw error;
    }
    // Synchronous like the callers: these files are written at start, at stop and on a rotation.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, wait);
  }
}
