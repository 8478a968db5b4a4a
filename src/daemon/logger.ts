/**
 * The daemon's structured log: JSONL to `logs/ws_daemon.log`, warnings and worse also to
 * stderr. Never stdout: `exai-ws stdio` shares this code and stdout is its protocol.
 */
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
  const fileDest = pino.destination({ dest: file, sync: false, mkdir: true });
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
