/**
 * The daemon's structured log: JSONL to `logs/ws_daemon.log`, warnings and worse also to
 * stderr. Never stdout: `exai-ws stdio` shares this code and stdout is its protocol.
 */
import { mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import pino, { type Logger } from 'pino';

export type { Logger };

export interface DaemonLogger {
  logger: Logger;
  /** Flushes buffered lines to disk; call before exit. */
  flush(): void;
}

/** Creates the daemon logger. `file` null logs to stderr only (stdio mode). */
export function createLogger(file: string | null, level: string): DaemonLogger {
  const stderr = pino.destination({ fd: 2, sync: true });
  if (file === null) {
    const logger = pino({ level, base: { pid: process.pid } }, stderr);
    return { logger, flush: () => undefined };
  }
  // Opened synchronously: with an async open, a process that exits before the open finished
  // (a second daemon refused at start) crashes in pino's exit hook ('sonic boom is not ready').
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const fileDest = pino.destination({ fd: openSync(file, 'a'), sync: false });
  const logger = pino(
    { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.multistream([
      { stream: fileDest, level: level },
      { stream: stderr, level: 'warn' },
    ]),
  );
  return {
    logger,
    flush: () => {
      try {
        fileDest.flushSync();
      } catch {
        // Not yet open (nothing logged); nothing to flush.
      }
    },
  };
}
