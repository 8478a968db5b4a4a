/**
 * The daemon's structured log: JSONL to `logs/ws_daemon.log` (size-rotated, see
 * {@link LineFile}), warnings and worse also to stderr. Never stdout: `exai-ws stdio` shares
 * this code and stdout is its protocol.
 *
 * Logging can never stop the daemon: a log call never throws into its caller (an object that
 * cannot be serialised costs only its own line), a file that cannot be written (ENOSPC, EPERM,
 * EIO) drops lines and counts them until it can be written again, and a broken stderr (EPIPE,
 * closed, a pipe nobody reads) drops its copies.
 */
import { writeSync } from 'node:fs';
import pino, { type Logger } from 'pino';

import { LineFile } from './line-file.js';
import type { CoreLog } from '../../hosting/core-log.js';
import type { LogHealth } from '../../local/health.js';

export type { Logger };

/** Default size of one log file before it is rotated (`EXAI_WS_LOG_MAX_BYTES`). */
export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;
/** Default rotated log generations kept (`EXAI_WS_LOG_FILES`). */
export const DEFAULT_LOG_FILES = 5;
/** Objects nested deeper or wider than this are cut when logged (pino's defaults, made explicit). */
const DEPTH_LIMIT = 5;
const EDGE_LIMIT = 100;

/** What `/health` shows of the log under `log`. */
export type LogStats = LogHealth;

export interface DaemonLogger {
  logger: Logger;
  /** Writes batched lines to disk, one attempt; never throws or waits. Call before exit. */
  flush: () => void;
  /** Flushes and closes the log file. Idempotent. */
  close: () => void;
  stats: () => LogStats;
}

export interface LogFileOptions {
  path: string;
  maxBytes: number;
  files: number;
}

/**
 * Creates the daemon logger. `file` null logs to stderr only (stdio mode). `stderrFd` is the
 * descriptor warnings are copied to (tests pass their own); null copies no lines, for a daemon
 * whose stderr is the log file itself (an auto-started one): only a failing log file is still
 * told on fd 2. Throws only when the log file
 * cannot be opened now (a wrong path, no permission): from then on, nothing it does throws.
 */
export function createLogger(file: LogFileOptions | null, level: string, stderrFd: number | null = 2): DaemonLogger {
  guardProcessStderr();
  if (file === null && stderrFd === null) throw new TypeError('a logger needs a file or stderr');
  const stderr = new FdSink(stderrFd ?? 2);
  let unserializable = 0;
  const base = {
    level,
    base: { pid: process.pid },
    depthLimit: DEPTH_LIMIT,
    edgeLimit: EDGE_LIMIT,
    hooks: {
      logMethod(this: Logger, args: Parameters<Logger['info']>, method: (...a: unknown[]) => void) {
        try {
          method.apply(this, args);
        } catch (error) {
          // A getter or toJSON that throws, a BigInt in a custom serializer: the caller goes on.
          unserializable++;
          const msg = typeof args[1] === 'string' ? args[1] : typeof args[0] === 'string' ? args[0] : 'log call failed';
          try {
            method.call(this, { log_error: error instanceof Error ? error.message : String(error) }, msg);
          } catch {
            // Even the stand-in line failed; the count above is what remains.
          }
        }
      },
    },
  };
  if (file === null) {
    const logger = pino(base, stderr);
    return {
      logger,
      flush: () => undefined,
      close: () => undefined,
      stats: () => ({ ...emptyFileStats(), unserializable_calls: unserializable, stderr_dropped_lines: stderr.dropped }),
    };
  }
  // Failures are told on stderr (the file is what fails) and recoveries in the file itself.
  const sink = new LineFile({
    path: file.path,
    maxBytes: file.maxBytes,
    files: file.files,
    onfail: (error) =>
      stderr.write(
        `${JSON.stringify({ level: 40, time: new Date().toISOString(), pid: process.pid, file: file.path, err: error.message, msg: 'log file write failed; dropping log lines until it can be written again' })}\n`,
      ),
    onresume: (dropped) => logger.warn({ dropped_lines: dropped }, 'log file writable again; lines were dropped meanwhile'),
  });
  sink.open();
  const logger: Logger = pino(
    { ...base, timestamp: pino.stdTimeFunctions.isoTime },
    pino.multistream(
      stderrFd === null
        ? [{ stream: sink, level }]
        : [
            { stream: sink, level },
            { stream: stderr, level: 'warn' },
          ],
    ),
  );
  return {
    logger,
    flush: () => sink.flushSync(),
    close: () => sink.close(),
    stats: () => {
      // LogHealth has no path: the log's place is fixed (logs/ws_daemon.log in the home).
      const { path: _path, ...file } = sink.stats();
      return { ...file, unserializable_calls: unserializable, stderr_dropped_lines: stderr.dropped };
    },
  };
}

let stderrGuarded = false;

/**
 * The few plain lines the daemon prints (`daemon listening ...`) go through `process.stderr`;
 * a write error there (EPIPE: the terminal or parent went away) is an 'error' event, which
 * would end the process if nobody listened.
 */
function guardProcessStderr(): void {
  if (stderrGuarded) return;
  stderrGuarded = true;
  process.stderr.on('error', () => undefined);
}

function emptyFileStats(): Omit<LogStats, 'unserializable_calls' | 'stderr_dropped_lines'> {
  return { dropped_lines: 0, written_lines: 0, rotations: 0, last_error: null, failing: false, max_bytes: 0, files: 0 };
}

/**
 * Synchronous best-effort writes to a descriptor (stderr). A pipe nobody drains (EAGAIN), a
 * reader gone (EPIPE) or a closed descriptor (EBADF) drops the line instead of waiting or
 * throwing; after EPIPE or EBADF the descriptor is given up for good.
 */
class FdSink {
  dropped = 0;
  private broken = false;
  private readonly fd: number;

  constructor(fd: number) {
    this.fd = fd;
  }

  write(text: string): void {
    if (this.broken) {
      this.dropped++;
      return;
    }
    try {
      const buffer = Buffer.from(text);
      let offset = 0;
      while (offset < buffer.length) {
        const n = writeSync(this.fd, buffer, offset, buffer.length - offset);
        if (n <= 0) throw Object.assign(new Error('write wrote nothing'), { code: 'EAGAIN' });
        offset += n;
      }
    } catch (error) {
      this.dropped++;
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EPIPE' || code === 'EBADF') this.broken = true;
    }
  }
}

/** Writes the core's events (hosted servers' lifecycle, refusals) to a daemon logger. */
export function coreLog(logger: Logger): CoreLog {
  return (event, details, level) => logger[level ?? 'info'](details, event);
}
