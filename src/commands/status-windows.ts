/**
 * What `exai-ws status` says of each window's tools (issue 25), in a section of its own under
 * the sessions (the sessions table already fills a piped terminal's 100 columns): its profile,
 * how many tools its last list had, what that list weighs and the most its client takes, and a
 * warning for each window whose list is longer than that. A daemon that does not report these
 * (an older one) gets no such section.
 */
import type { StatusJson, StatusSession } from './status-view.js';
import { printable, wrap } from './terminal.js';
import { INDENT, table, type Cell, type Column, type Paint } from './status-layout.js';

/** What to do about a window over its client's cap. */
const OVER_CAP_ADVICE = 'give this window a profile (exai-ws shim --profile NAME or /mcp?profile=NAME) or use tool search';

/** The windows' tools, in the sessions' order; nothing when no window reports them. */
export function windowsSection(s: StatusJson, paint: Paint, width: number): string[] {
  const windows = s.sessions.filter((x) => x.tools !== null || x.profile !== null);
  if (windows.length === 0) return [];
  const columns: Column[] = [
    { header: 'CLIENT', shrink: 'end' },
    { header: 'SESSION' },
    { header: 'PROFILE', shrink: 'end' },
    { header: 'TOOLS', align: 'right' },
    { header: 'LIST', align: 'right' },
    { header: 'CAP', align: 'right' },
  ];
  const rows = windows.map((x): Cell[] => [
    { text: x.client },
    { text: x.id.slice(0, 8), style: 'dim' },
    profileCell(x),
    x.tools === null ? { text: '-', style: 'dim' } : { text: String(x.tools), style: x.over_cap === true ? 'yellow' : undefined },
    x.tools_bytes === null ? { text: '-', style: 'dim' } : { text: formatBytes(x.tools_bytes) },
    x.tool_cap === null ? { text: '-', style: 'dim' } : { text: String(x.tool_cap) },
  ]);
  return [paint("windows' tools", 'bold'), ...table(columns, rows, paint, width), ...overCapLines(windows, paint, width)];
}

/** `name`; `name (gone)` in red for a profile the config no longer has; `-` for none. */
function profileCell(x: StatusSession): Cell {
  if (x.profile === null) return { text: '-', style: 'dim' };
  return x.profile_missing === true ? { text: `${x.profile} (gone)`, style: 'red' } : { text: x.profile };
}

/** One warning for each window over its client's cap, wrapped, never cut (it says what to do). */
function overCapLines(windows: readonly StatusSession[], paint: Paint, width: number): string[] {
  const hang = `${INDENT}  `;
  return windows
    .filter((x) => x.over_cap === true)
    .flatMap((x) => {
      const cap = x.tool_cap === null ? 'its cap' : `its cap of ${x.tool_cap}`;
      const profile = x.profile === null ? '' : ` (profile ${x.profile})`;
      const text = `${x.client} (session ${x.id.slice(0, 8)})${profile} was sent ${x.tools ?? '?'} tools, more than its client takes (${cap}): ${OVER_CAP_ADVICE}`;
      return wrap(printable(text), width - hang.length).map((line, i) => paint(`${i === 0 ? `${INDENT}! ` : hang}${line}`, 'yellow'));
    });
}

/** `812 B`, `9.8 KB`, `1.4 MB` (powers of 1024). */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}
