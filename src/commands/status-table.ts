/**
 * `exai-ws status` as text: the {@link StatusJson} shape laid out in sections and tables that
 * fit the terminal. Pure: the caller says how wide and whether to colour, and when "now" is.
 */
import type { StatusFile, StatusJson, StatusReload, StatusSession } from './status-view.js';
import { painter, printable, truncate, wrap, type Style } from './terminal.js';
import { INDENT, formatDuration, formatMs, naturalWidth, table, type Cell, type Column, type Paint } from './status-layout.js';
import { windowsSection } from './status-windows.js';
import { loginsSection } from './status-login.js';

export { formatDuration, formatMs } from './status-layout.js';

export interface RenderOptions {
  /** ANSI colours (see colorWanted in terminal.ts). */
  color: boolean;
  /** Columns available; long cells (paths, errors) are cut with `…` to fit. */
  width: number;
  /** "Now", for how long ago the last reload was (tests pass their own). */
  nowMs?: number;
}

/** Labels of the daemon's fields are padded to this; values start at column 12. */
const LABEL_WIDTH = 10;

/** Renders the whole report; ends with a newline. */
export function renderStatusTable(s: StatusJson, options: RenderOptions): string {
  const paint = painter(options.color);
  const width = Math.max(40, options.width);
  const now = options.nowMs ?? Date.now();
  const sections = s.limited
    ? [
        daemonSection(s, paint),
        wrap(`${printable(s.limited)}: sessions, servers and providers are not shown`, width).map((line) => paint(line, 'yellow')),
      ]
    : [
        daemonSection(s, paint),
        warningsSection(s, paint, width),
        sessionsSection(s, paint, width),
        windowsSection(s, paint, width),
        statelessSection(s, paint, width),
        serversSection(s, paint, width),
        loginsSection(s.servers, paint, width, now),
        providersSection(s, paint, width),
        configSection(s, paint, width, now),
        settingsSection(s, paint, width),
        filesSection(s, paint),
      ];
  return `${sections
    .filter((lines) => lines.length > 0)
    .map((lines) => lines.join('\n'))
    .join('\n\n')}\n`;
}

function daemonSection(s: StatusJson, paint: Paint): string[] {
  const d = s.daemon;
  const head = [
    `${paint(`${printable(d.name)} ${printable(d.version)}`, 'bold')}: ${paint(s.status, s.status === 'ok' ? 'green' : 'yellow')}`,
    field('pid', String(d.pid)),
    field('address', `${d.ws_url}  ${paint('(Streamable HTTP:', 'dim')} ${d.mcp_url}${paint(')', 'dim')}`),
    field('uptime', formatDuration(d.uptime_s)),
  ];
  if (s.limited) return head;
  const by = new Map<string, number>(['ws', 'http', 'stdio'].map((kind) => [kind, 0]));
  for (const session of s.sessions) by.set(session.transport, (by.get(session.transport) ?? 0) + 1);
  const attached = s.sessions.filter((x) => x.state === 'attached').length;
  const transports = [...by]
    .filter(([, n]) => n > 0)
    .map(([kind, n]) => `${n} ${kind}`)
    .join(', ');
  const started =
    d.auto_started === true
      ? `auto-started; ${d.idle_exit_ms !== null ? `exits after ${formatDuration(Math.round(d.idle_exit_ms / 1000))} with no session` : 'never exits when idle'}`
      : d.auto_started === false
        ? 'by hand or a service; never exits when idle'
        : '-';
  return [
    ...head,
    field('started', started),
    field(
      'sessions',
      `${s.sessions.length} (${attached} attached, ${s.sessions.length - attached} detached${transports ? `; ${transports}` : ''})`,
    ),
    field('in flight', String(d.inflight)),
    ...(d.idle_ended && d.idle_ended.idle + d.idle_ended.session_limit > 0
      ? [
          field(
            'idle',
            `${d.idle_ended.idle + d.idle_ended.session_limit} idle HTTP sessions ended (${d.idle_ended.idle} unused for the idle time, ${d.idle_ended.session_limit} to make room at the session limit)`,
          ),
        ]
      : []),
  ];
}

function sessionsSection(s: StatusJson, paint: Paint, width: number): string[] {
  if (s.sessions.length === 0) return [heading('sessions', paint), `${INDENT}${paint('none', 'dim')}`];
  const era = hasEra(s.sessions);
  const columns: Column[] = [
    { header: 'CLIENT', shrink: 'end' },
    { header: 'SESSION' },
    { header: 'VIA' },
    { header: 'STATE' },
    ...(era ? [{ header: 'ERA' }] : []),
    { header: 'AGE', align: 'right' },
    { header: 'IN FLIGHT', align: 'right' },
    { header: 'P99', align: 'right' },
    { header: 'CWD', shrink: 'start' },
  ];
  const rows = s.sessions.map((x): Cell[] => [
    { text: clientLabel(x) },
    // Enough of the id to tell sessions apart and to pass to `exai-ws logs --session`.
    { text: x.id.slice(0, 8), style: 'dim' },
    { text: x.transport },
    { text: x.state, style: x.state === 'attached' ? undefined : 'yellow' },
    ...(era ? [eraCell(x.era)] : []),
    { text: formatDuration(x.age_s) },
    { text: String(x.inflight) },
    { text: formatMs(x.p99_ms) },
    { text: x.cwd ?? '-', style: x.cwd === null ? 'dim' : undefined },
  ]);
  return [heading('sessions by client', paint), ...table(columns, rows, paint, width)];
}

/** 2026-07-28 clients over HTTP with no session (one per request), by name; nothing when none. */
function statelessSection(s: StatusJson, paint: Paint, width: number): string[] {
  if (s.stateless_clients.length === 0) return [];
  const columns: Column[] = [
    { header: 'CLIENT', shrink: 'end' },
    { header: 'ERA' },
    { header: 'REQUESTS', align: 'right' },
    { header: 'LAST SEEN', align: 'right' },
  ];
  const rows = s.stateless_clients.map((x): Cell[] => [
    { text: x.client },
    eraCell(x.era),
    { text: String(x.requests) },
    { text: `${formatDuration(x.last_seen_s)} ago` },
  ]);
  return [heading('stateless clients (a session per request)', paint), ...table(columns, rows, paint, width)];
}

/** An era as its revision's date; `-` while it is not known. */
function eraCell(era: string | null): Cell {
  return era === null ? { text: '-', style: 'dim' } : { text: era };
}

/** Whether a table has an ERA column: when some row has an era (a daemon that does not report eras has none). */
function hasEra(rows: readonly { era: string | null }[]): boolean {
  return rows.some((x) => x.era !== null);
}

function clientLabel(x: StatusSession): string {
  const version = x.client_version && x.client_version !== 'unknown' ? ` ${x.client_version}` : '';
  return `${x.client}${version}`;
}

const SERVER_STYLE: Record<string, Style> = {
  ready: 'green',
  starting: 'yellow',
  restarting: 'yellow',
  failed: 'red',
  stopped: 'dim',
  closed: 'dim',
};

/**
 * The hosted servers. A server's last error is why it does not run (`uvx: command not found`,
 * `ENOTFOUND host`): it is never cut. It stays in its column while the whole table fits the
 * width; else each error goes on its own lines under its server's row, wrapped.
 */
function serversSection(s: StatusJson, paint: Paint, width: number): string[] {
  const lines: string[] = [];
  if (s.servers.length > 0) {
    const era = hasEra(s.servers);
    const columns: Column[] = [
      { header: 'NAME', shrink: 'end' },
      { header: 'STATE' },
      ...(era ? [{ header: 'ERA' }] : []),
      { header: 'PID', align: 'right' },
      { header: 'SCOPE', shrink: 'start' },
      { header: 'RESTARTS', align: 'right' },
      { header: 'SESSIONS', align: 'right' },
    ];
    const rows = s.servers.map((x): Cell[] => [
      { text: x.name },
      { text: x.state, style: SERVER_STYLE[x.state] },
      ...(era ? [eraCell(x.era)] : []),
      { text: x.pid === null ? '-' : String(x.pid) },
      { text: x.scope === null ? '-' : x.scope_key ? `${x.scope} ${x.scope_key}` : x.scope },
      { text: x.restarts === null ? '-' : String(x.restarts), style: (x.restarts ?? 0) > 0 ? 'yellow' : undefined },
      { text: x.sessions === null ? '-' : String(x.sessions) },
    ]);
    const errors = s.servers.map((x): Cell => ({ text: x.last_error ?? '-', style: x.last_error === null ? 'dim' : 'red' }));
    const withErrors = [...columns, { header: 'LAST ERROR' }];
    const rowsWithErrors = rows.map((row, i) => [...row, errors[i] as Cell]);
    if (naturalWidth(withErrors, rowsWithErrors) <= width) {
      lines.push(heading('servers', paint), ...table(withErrors, rowsWithErrors, paint, width));
    } else {
      const [head, ...body] = table(columns, rows, paint, width);
      const hang = `${INDENT}${INDENT}`;
      lines.push(heading('servers', paint), head as string);
      body.forEach((line, i) => {
        lines.push(line);
        const error = s.servers[i]?.last_error;
        if (error) lines.push(...wrap(printable(error), width - hang.length).map((part) => `${hang}${paint(part, 'red')}`));
      });
    }
  }
  if (s.config.problems.length > 0) {
    if (lines.length > 0) lines.push('');
    lines.push(`${heading('config problems', paint)}${s.config.path ? ` (${printable(s.config.path)})` : ''}`);
    for (const p of s.config.problems) {
      lines.push(
        fit(`${INDENT}${INDENT}${printable(p.server)}: ${p.key ? `${printable(p.key)}: ` : ''}${printable(p.reason)}`, width, paint, 'red'),
      );
    }
  }
  return lines;
}

const PROVIDER_STYLE: Record<string, Style> = {
  ok: 'green',
  unknown: 'dim',
  not_configured: 'dim',
  rate_limited: 'yellow',
  unreachable: 'red',
  unauthorized: 'red',
  error: 'red',
};

function providersSection(s: StatusJson, paint: Paint, width: number): string[] {
  if (s.providers.length === 0) return [];
  const columns: Column[] = [
    { header: 'PROVIDER', shrink: 'end' },
    { header: 'CONFIGURED' },
    { header: 'STATE' },
    { header: 'IN FLIGHT', align: 'right' },
    { header: 'QUEUED', align: 'right' },
    { header: '429S', align: 'right' },
    { header: 'LAST ERROR', shrink: 'end' },
  ];
  const rows = s.providers.map((p): Cell[] => [
    { text: p.id },
    { text: p.configured === null ? '-' : p.configured ? 'yes' : 'no', style: p.configured === false ? 'dim' : undefined },
    { text: p.state ?? '-', style: p.state === null ? 'dim' : PROVIDER_STYLE[p.state] },
    { text: `${p.inflight ?? '-'}/${p.max_inflight ?? '-'}` },
    { text: p.queued === null ? '-' : String(p.queued) },
    { text: p.rate_limited === null ? '-' : String(p.rate_limited), style: (p.rate_limited ?? 0) > 0 ? 'yellow' : undefined },
    { text: p.last_error ?? '-', style: p.last_error === null ? 'dim' : 'red' },
  ]);
  return [heading('providers', paint), ...table(columns, rows, paint, width)];
}

function configSection(s: StatusJson, paint: Paint, width: number, nowMs: number): string[] {
  const c = s.config;
  if (c.path === null) return [];
  let where = printable(c.path);
  if (c.exists === false) where += ` (not there: no hosted servers${c.watching ? `; watching ${printable(c.watching)} for it` : ''})`;
  else if (c.watching === null) where += ' (not watched: use exai-ws reload after an edit)';
  const lines = [`${heading('config', paint)}${' '.repeat(INDENT.length + LABEL_WIDTH - 'config'.length)}${where}`];
  // The file could not be used at start (a failed reload says so in its own lines below).
  const reloadFailed = c.last_reload !== null && !c.last_reload.ok;
  if (c.error !== null && !reloadFailed) {
    const hang = `${INDENT}${INDENT}`;
    const next = c.watching === null ? 'then run exai-ws reload' : 'it is applied as soon as it is saved';
    lines.push(
      ...wrap(`not applied: no hosted servers run from it until it is fixed; ${next}`, width - INDENT.length).map(
        (line) => `${INDENT}${paint(line, 'red')}`,
      ),
      ...wrap(printable(c.error), width - hang.length).map((line) => `${hang}${paint(line, 'red')}`),
    );
  }
  if (c.last_reload) lines.push(...reloadLines(c.last_reload, paint, width, nowMs));
  return lines;
}

/**
 * The last reload: what it changed, or its error in full (wrapped, never cut: it is what the
 * user needs to fix the file, and a failed reload is not visible anywhere else but the log).
 */
function reloadLines(r: StatusReload, paint: Paint, width: number, nowMs: number): string[] {
  const ageMs = nowMs - Date.parse(r.at);
  const when = Number.isFinite(ageMs) ? `${r.at} (${formatDuration(Math.max(0, Math.round(ageMs / 1000)))} ago)` : r.at;
  if (r.ok) {
    const names = (list: string[]) => (list.length > 0 ? list.map(printable).join(', ') : '-');
    const removedFile = r.file_removed ? ' (the file was removed)' : '';
    const text = `last reload ${when} ${paint('ok', 'green')}: added ${names(r.added)}; removed ${names(r.removed)}; restarted ${names(r.restarted)}${removedFile}`;
    return [`${INDENT}${text}`];
  }
  const hang = `${INDENT}${INDENT}`;
  return [
    `${INDENT}last reload ${when} ${paint('failed', 'red')}: the running servers stay as they were`,
    ...wrap(printable(r.error), width - hang.length).map((line) => `${hang}${paint(line, 'red')}`),
  ];
}

/** What the user should act on, each in full (wrapped, never cut): it says what to run. */
function warningsSection(s: StatusJson, paint: Paint, width: number): string[] {
  if (s.warnings.length === 0) return [];
  const hang = `${INDENT}  `;
  return [
    heading('warnings', paint),
    ...s.warnings.flatMap((w) =>
      wrap(printable(w), width - hang.length).map((line, i) => paint(`${i === 0 ? `${INDENT}! ` : hang}${line}`, 'yellow')),
    ),
  ];
}

/** The settings file, and each setting in force with where it came from (keys arrive masked). */
function settingsSection(s: StatusJson, paint: Paint, width: number): string[] {
  const t = s.settings;
  if (t === null) return [];
  const where = `${printable(t.path)}${t.exists ? '' : ' (none: defaults)'}`;
  const lines = [`${heading('settings', paint)}${' '.repeat(INDENT.length + LABEL_WIDTH - 'settings'.length)}${where}`];
  const from: Record<string, string> = { file: 'daemon.env', env: "the daemon's environment" };
  for (const v of t.values) lines.push(fit(`${INDENT}${v.name}=${printable(v.value)}  (${from[v.source] ?? v.source})`, width, paint));
  for (const p of t.problems)
    lines.push(
      ...wrap(`line ${p.line} not taken: ${printable(p.message)}`, width - INDENT.length).map((l) => paint(`${INDENT}${l}`, 'yellow')),
    );
  return lines;
}

function filesSection(s: StatusJson, paint: Paint): string[] {
  const lines = [fileLine('log', s.files.log, paint), fileLine('metrics', s.files.metrics, paint)].filter((l) => l !== null);
  return lines.length > 0 ? [heading('files', paint), ...lines] : [];
}

/** `log  ok: 0 lines dropped`, or why lines are being lost: a full disk must not go unnoticed. */
function fileLine(label: string, file: StatusFile | null, paint: Paint): string | null {
  if (file === null) return null;
  if (file.dropped_lines === 0 && !file.failing) return field(label, `${paint('ok', 'green')}: 0 lines dropped`);
  const error = file.last_error ? ` (last error ${file.last_error.code} at ${file.last_error.at})` : '';
  const state = file.failing ? paint('not writable, retried every second', 'red') : paint('writable again', 'yellow');
  return field(label, `${state}: ${file.dropped_lines} lines dropped${error}`);
}

function heading(text: string, paint: Paint): string {
  return paint(text, 'bold');
}

function field(label: string, value: string): string {
  return `${INDENT}${label.padEnd(LABEL_WIDTH)}${value}`;
}

/** One line cut to `width` (the text must hold no ANSI codes yet). */
function fit(line: string, width: number, paint: Paint, style?: Style): string {
  return paint(truncate(line, width), style);
}
