/**
 * `exai-ws logs`: the daemon's JSONL log (`logs/ws_daemon.log` in the home) made readable,
 * filtered by session and level, its last lines or all of them, and followed with `-f`.
 *
 * Lines are formatted by pino-pretty (the pino project's own pretty printer, used through its
 * synchronous `prettyFactory`, one line at a time): the log is pino's, so its levels, times
 * and error objects print the way pino users know. Lines that are not JSON (a crash stack
 * written to an auto-started daemon's stderr, which is the log file) are printed as they are.
 */
import { closeSync, existsSync, fstatSync, openSync } from 'node:fs';
import { prettyFactory } from 'pino-pretty';
import { resolveHome } from '../local/files.js';
import { ExitCode } from './exit-codes.js';
import { generations, linesBackward, linesForward, LogFollower } from './log-reader.js';
import { colorWanted, type OutputStream } from './terminal.js';

/** Lines printed when `--lines` is not given. */
export const DEFAULT_LOG_LINES = 50;

/** pino's numeric levels: `--level warn` shows 40 and worse. */
export const LOG_LEVELS: Readonly<Record<string, number>> = Object.freeze({
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
});

export interface LogsOptions {
  /** Keep printing new lines (across rotation) until SIGINT or SIGTERM. */
  follow: boolean;
  /** Only lines of this session: its id, or the start of it as `exai-ws status` shows it. */
  session?: string;
  /** Only this level and worse (trace|debug|info|warn|error|fatal). */
  level?: string;
  /** The last N matching lines (default {@link DEFAULT_LOG_LINES}); 0: all, rotated files included. */
  lines?: number;
  /** Print the matching lines as the raw JSONL they are (lines that are not JSON are left out). */
  json?: boolean;
}

export interface LogsIo {
  env?: NodeJS.ProcessEnv;
  stdout?: NodeJS.WritableStream & OutputStream;
  stderr?: NodeJS.WritableStream;
  /** Ends `--follow` (default: SIGINT or SIGTERM). */
  signal?: AbortSignal;
}

/**
 * Prints the log; resolves to the exit code: 0; 1 when the home has no log file (the path is
 * named on stderr); 2 for a bad `--level` or `--lines`. Never reads more of the file than the
 * lines it prints need (it reads backward from the end), except for `--lines 0`.
 */
export async function runLogsCommand(options: LogsOptions, io: LogsIo = {}): Promise<number> {
  const env = io.env ?? process.env;
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const threshold = options.level === undefined ? undefined : LOG_LEVELS[options.level.toLowerCase()];
  if (options.level !== undefined && threshold === undefined) {
    stderr.write(`exai-ws logs: unknown level '${options.level}' (${Object.keys(LOG_LEVELS).join('|')})\n`);
    return ExitCode.USAGE;
  }
  const wanted = options.lines ?? DEFAULT_LOG_LINES;
  if (!Number.isInteger(wanted) || wanted < 0) {
    stderr.write(`exai-ws logs: --lines takes a whole number, 0 for all (got ${String(options.lines)})\n`);
    return ExitCode.USAGE;
  }
  const path = resolveHome(env).log;
  const older = generations(path);
  if (!existsSync(path) && older.length === 0) {
    stderr.write(`exai-ws logs: no log file at ${path}\n`);
    return ExitCode.FAILURE;
  }

  const out = new Output(stdout);
  const show = lineFilter({ session: options.session, threshold, json: options.json === true });
  const format = options.json === true ? (line: string) => `${line}\n` : prettyPrinter(colorWanted(stdout, env));
  const emit = (line: string): void => {
    if (show(line)) out.push(format(line));
  };

  const current = openForRead(path);
  try {
    if (wanted === 0) {
      for (const file of [...older].reverse()) {
        const old = openForRead(file);
        if (old === null) continue;
        try {
          for (const line of linesForward(old.fd, old.size)) {
            emit(line);
            if (out.full) await out.flush();
          }
        } finally {
          closeSync(old.fd);
        }
      }
      if (current !== null) {
        for (const line of linesForward(current.fd, current.size)) {
          emit(line);
          if (out.full) await out.flush();
        }
      }
    } else {
      for (const line of lastLines(current, older, wanted, show).reverse()) out.push(format(line));
    }
  } finally {
    if (current !== null) closeSync(current.fd);
  }
  await out.flush();
  if (!options.follow || out.broken) return ExitCode.OK;

  const stop = io.signal ?? stopOnSignals();
  const follower = new LogFollower({
    path,
    fromByte: current?.size ?? 0,
    ino: current?.ino,
    online: (line) => {
      emit(line);
      void out.flush();
    },
  });
  follower.start();
  await new Promise<void>((resolve) => {
    if (stop.aborted) resolve();
    stop.addEventListener('abort', () => resolve(), { once: true });
    out.onbroken = resolve;
  });
  follower.close();
  await out.flush();
  return ExitCode.OK;
}

/**
 * The last `wanted` lines that `show` accepts, newest first: read backward from the current
 * file's end, then from the rotated generations, newest first, until there are enough.
 */
function lastLines(current: OpenFile | null, older: string[], wanted: number, show: (line: string) => boolean): string[] {
  const found: string[] = [];
  const take = (file: OpenFile): void => {
    for (const line of linesBackward(file.fd, file.size)) {
      if (!show(line)) continue;
      found.push(line);
      if (found.length >= wanted) return;
    }
  };
  if (current !== null) take(current);
  for (const path of older) {
    if (found.length >= wanted) break;
    const file = openForRead(path);
    if (file === null) continue;
    try {
      take(file);
    } finally {
      closeSync(file.fd);
    }
  }
  return found;
}

interface OpenFile {
  fd: number;
  size: number;
  ino: number;
}

function openForRead(path: string): OpenFile | null {
  try {
    const fd = openSync(path, 'r');
    const stat = fstatSync(fd);
    return { fd, size: stat.size, ino: stat.ino };
  } catch {
    return null;
  }
}

/**
 * Which lines to print. A line that is not JSON has no session or level: it passes a level
 * filter (it is most likely a crash's stack, as bad as it gets) but not a session filter, and
 * `--json` leaves it out so that its output stays JSONL.
 */
export function lineFilter(filter: { session?: string; threshold?: number; json: boolean }): (line: string) => boolean {
  const { session, threshold, json } = filter;
  return (line) => {
    const entry = parseEntry(line);
    if (entry === null) return !json && session === undefined;
    if (threshold !== undefined && !(typeof entry.level === 'number' && entry.level >= threshold)) return false;
    if (session !== undefined && !(typeof entry.session_id === 'string' && entry.session_id.startsWith(session))) return false;
    return true;
  };
}

function parseEntry(line: string): Record<string, unknown> | null {
  if (!line.startsWith('{')) return null;
  try {
    const value: unknown = JSON.parse(line);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

// Control characters but tab and newline (stacks keep their lines): a logged client string
// must not drive the reader's terminal.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** Formats one log line for a person: pino-pretty for JSON, the line itself otherwise. */
export function prettyPrinter(color: boolean): (line: string) => string {
  const pretty = prettyFactory({
    colorize: color,
    translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
    ignore: 'pid,hostname',
    singleLine: true,
  });
  return (line) => {
    const entry = parseEntry(line);
    if (entry === null) return `${line.replace(CONTROL, '?')}\n`;
    // singleLine leaves a space before an error object printed on its own lines.
    const text = pretty(clean(entry, 0)).replace(/ +\n/g, '\n');
    return text.endsWith('\n') ? text : `${text}\n`;
  };
}

function clean(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return value.replace(CONTROL, '?');
  if (value === null || typeof value !== 'object' || depth > 8) return value;
  if (Array.isArray(value)) return value.map((v) => clean(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k.replace(CONTROL, '?')] = clean(v, depth + 1);
  return out;
}

/** An AbortSignal that fires on SIGINT or SIGTERM; the handlers are removed once it fired. */
function stopOnSignals(): AbortSignal {
  const controller = new AbortController();
  const stop = (): void => {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    controller.abort();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return controller.signal;
}

/** Buffered stdout with backpressure; a reader that went away (EPIPE: `logs | head`) ends the command quietly. */
class Output {
  broken = false;
  onbroken: (() => void) | undefined;
  private buffered: string[] = [];
  private bytes = 0;
  private readonly stream: NodeJS.WritableStream;

  constructor(stream: NodeJS.WritableStream) {
    this.stream = stream;
    stream.on('error', () => this.break());
  }

  /** True when enough is buffered that the caller should await {@link flush}. */
  get full(): boolean {
    return this.bytes >= 64 * 1024;
  }

  push(text: string): void {
    if (this.broken) return;
    this.buffered.push(text);
    this.bytes += text.length;
  }

  async flush(): Promise<void> {
    if (this.broken || this.buffered.length === 0) return;
    const text = this.buffered.join('');
    this.buffered = [];
    this.bytes = 0;
    if (this.stream.write(text)) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.stream.off('drain', done);
        this.stream.off('close', done);
        this.stream.off('error', done);
        resolve();
      };
      this.stream.on('drain', done);
      this.stream.on('close', done);
      this.stream.on('error', done);
    });
  }

  private break(): void {
    if (this.broken) return;
    this.broken = true;
    this.buffered = [];
    this.onbroken?.();
  }
}
