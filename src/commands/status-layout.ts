/**
 * How `exai-ws status` lays out its tables and numbers (status-table.ts): columns as wide as
 * their cells, shrunk to fit the terminal, colour applied after padding.
 */
import { printable, truncate, visibleLength, type Style } from './terminal.js';

export type Paint = (text: string, style?: Style) => string;

export interface Column {
  header: string;
  align?: 'right';
  /** May be cut to fit the width, from its end or (paths) from its start. */
  shrink?: 'start' | 'end';
}

export interface Cell {
  text: string;
  style?: Style;
}

export const INDENT = '  ';
const GAP = '  ';
/** A shrinkable column is never cut below this (or its header). */
const MIN_SHRUNK = 10;
/** How wide a table is with no cell cut. */
export function naturalWidth(columns: Column[], rows: Cell[][]): number {
  const widths = columns.map((c, i) =>
    Math.max(visibleLength(c.header), ...rows.map((row) => visibleLength(printable(row[i]?.text ?? '')))),
  );
  return INDENT.length + widths.reduce((a, b) => a + b, 0) + GAP.length * (columns.length - 1);
}

/**
 * Lays out a table: each column as wide as its widest cell, unless the line would pass
 * `width`; then the shrinkable columns (paths, errors, names) give up room, rightmost first, each
 * down to {@link MIN_SHRUNK}, and their cells are cut with `…`. Colour is applied after padding, so
 * ANSI codes never count toward a width.
 */
export function table(columns: Column[], rows: Cell[][], paint: Paint, width: number): string[] {
  const cells = rows.map((row) => row.map((cell) => ({ ...cell, text: printable(cell.text) })));
  const widths = columns.map((c, i) => Math.max(visibleLength(c.header), ...cells.map((row) => visibleLength(row[i]?.text ?? ''))));
  const total = () => INDENT.length + widths.reduce((a, b) => a + b, 0) + GAP.length * (columns.length - 1);
  // The rightmost shrinkable column (the least telling: a path, an error) gives up room first.
  for (let i = columns.length - 1; i >= 0 && total() > width; i--) {
    const column = columns[i] as Column;
    if (!column.shrink) continue;
    const floor = Math.max(MIN_SHRUNK, visibleLength(column.header));
    widths[i] = Math.max(Math.min(widths[i] as number, floor), (widths[i] as number) - (total() - width));
  }
  const line = (row: Cell[], header: boolean) =>
    INDENT +
    row
      .map((cell, i) => {
        const column = columns[i] as Column;
        const w = widths[i] as number;
        const text = truncate(cell.text, w, column.shrink === 'start' ? 'start' : 'end');
        const pad = ' '.repeat(Math.max(0, w - visibleLength(text)));
        const last = i === row.length - 1;
        const padded = column.align === 'right' ? pad + paint(text, cell.style) : paint(text, cell.style) + (last ? '' : pad);
        return header ? paint(padded, 'dim') : padded;
      })
      .join(GAP);
  return [
    line(
      columns.map((c) => ({ text: c.header })),
      true,
    ),
    ...cells.map((row) => line(row, false)),
  ];
}

/** `4.2 ms`, `37 ms`, `1.25 s`; `-` for none. */
export function formatMs(ms: number | null): string {
  if (ms === null) return '-';
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** `45s`, `3m 5s`, `2h 0m 7s`, `3d 4h 10m`. */
export function formatDuration(totalSeconds: number): string {
  const t = Math.max(0, Math.round(totalSeconds));
  const d = Math.floor(t / 86400);
  const h = Math.floor((t % 86400) / 3600);
  const m = Math.floor((t % 3600) / 60);
  const s = t % 60;
  if (d > 0) return `${d}d ${h}h ${m}m`;
  if (h > 0) return `${h}h ${m}m ${s}s`;
  if (m > 0) return `${m}m ${s}s`;
  return `${s}s`;
}
