/**
 * How the CLI's human output fits the terminal: whether to colour, how wide to be, and text
 * that came from elsewhere (client names, paths, error messages) made safe to print.
 */

/** Width assumed when stdout is not a terminal (a pipe, a file). */
export const DEFAULT_COLUMNS = 100;

export interface OutputStream {
  isTTY?: boolean;
  columns?: number;
}

/**
 * Where a command writes and the environment it reads: the process's own (what the CLI gives,
 * through commands/runners.ts), or a test's, which runs the command in its own process.
 */
export interface CommandIo {
  stdout: { write(text: string): unknown } & OutputStream;
  stderr: { write(text: string): unknown };
  env: NodeJS.ProcessEnv;
}

/**
 * True when output may carry ANSI colours: `FORCE_COLOR` decides when set (`0` or `false`
 * forbid, anything else forces); otherwise a non-empty `NO_COLOR` or `TERM=dumb` forbid; otherwise
 * only a terminal gets colour. The same precedence as Node's own `tty` colour detection.
 */
export function colorWanted(stream: OutputStream, env: NodeJS.ProcessEnv = process.env): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined) return force !== '0' && force !== 'false';
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.TERM === 'dumb') return false;
  return stream.isTTY === true;
}

/** The terminal's width in columns, or {@link DEFAULT_COLUMNS} when it is not a terminal. */
export function columnsOf(stream: OutputStream): number {
  return stream.isTTY === true && typeof stream.columns === 'number' && stream.columns > 0 ? stream.columns : DEFAULT_COLUMNS;
}

// C0 and C1 controls (ESC starts an ANSI sequence) and the bidirectional overrides that can
// make a line read differently from what it holds.
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Text from outside (a client's name, a path, an error message) as one printable line:
 * line breaks become spaces and control characters `?`, so no client can move the cursor,
 * recolour or clear the user's terminal through `status` or `logs`.
 */
export function printable(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').replace(UNPRINTABLE, '?');
}

/** Length in code points (what a cell's width is counted in; wide characters count as one). */
export function visibleLength(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * Cuts `text` to at most `width` code points, marking the cut with `…`: at the end, or at the
 * start for `from: 'start'` (a path, whose end is the part that tells).
 */
export function truncate(text: string, width: number, from: 'start' | 'end' = 'end'): string {
  const chars = Array.from(text);
  if (chars.length <= width) return text;
  if (width <= 1) return '…'.slice(0, Math.max(0, width));
  return from === 'start' ? `…${chars.slice(chars.length - (width - 1)).join('')}` : `${chars.slice(0, width - 1).join('')}…`;
}

/** Word-wraps one line to `width` columns; words longer than a line are split. */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    let rest = word;
    while (visibleLength(rest) > width) {
      if (line) lines.push(line);
      const chars = Array.from(rest);
      lines.push(chars.slice(0, width).join(''));
      rest = chars.slice(width).join('');
      line = '';
    }
    if (!line) line = rest;
    else if (visibleLength(line) + 1 + visibleLength(rest) <= width) line += ` ${rest}`;
    else {
      lines.push(line);
      line = rest;
    }
  }
  if (line || lines.length === 0) lines.push(line);
  return lines;
}

export type Style = 'red' | 'green' | 'yellow' | 'dim' | 'bold';

const SGR: Record<Style, [number, number]> = { red: [31, 39], green: [32, 39], yellow: [33, 39], dim: [2, 22], bold: [1, 22] };

/** A painter: wraps text in the style's ANSI codes, or returns it unchanged when colour is off. */
export function painter(color: boolean): (text: string, style?: Style) => string {
  return (text, style) => {
    if (!color || style === undefined || text === '') return text;
    const [on, off] = SGR[style];
    return `\u001b[${on}m${text}\u001b[${off}m`;
  };
}
