/**
 * `exai-ws status` and each window's tools (issue 25), from made-up reports: the profile, the
 * tool count and the list's size in the sessions table, a warning for each window over its
 * client's cap, and a report from a daemon that does not say (no such columns, no warning).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { statusJson } from '../../src/commands/status-view.js';
import { renderStatusTable } from '../../src/commands/status-table.js';
import { formatBytes } from '../../src/commands/status-windows.js';
import type { HealthReport, SessionEntry } from '../../src/local/health.js';
import { healthReport } from '../fixtures/health-report.js';

function session(id: string, client: string, extra: Partial<SessionEntry> = {}): SessionEntry {
  return {
    id,
    transport: 'ws',
    state: 'attached',
    client,
    client_version: '1.0',
    cwd: null,
    age_s: 10,
    inflight: 0,
    requests: 3,
    p99_ms: 2,
    ...extra,
  };
}

function report(list: SessionEntry[]): HealthReport {
  return healthReport({ sessions: { total: list.length, attached: list.length, detached: 0, list } });
}

const text = (r: HealthReport, width = 200) => renderStatusTable(statusJson(r), { color: false, width });

const WINDOWS = [
  session('aaaaaaaa-1', 'cursor-vscode', {
    profile: null,
    profile_missing: false,
    tools: 57,
    tools_bytes: 41_000,
    tool_cap: 40,
    over_cap: true,
  }),
  session('bbbbbbbb-2', 'claude-code', {
    profile: 'web',
    profile_missing: false,
    tools: 12,
    tools_bytes: 10_035,
    tool_cap: null,
    over_cap: false,
  }),
  session('cccccccc-3', 'Visual Studio Code', {
    profile: 'old',
    profile_missing: true,
    tools: null,
    tools_bytes: null,
    tool_cap: 128,
    over_cap: false,
  }),
];

test("the windows' tools: each window's profile, tool count, list size and its client's cap, under the sessions", () => {
  const out = text(report(WINDOWS));
  const sections = out.split('\n\n');
  const windows = sections.find((x) => x.startsWith("windows' tools")) ?? '';
  assert.ok(out.indexOf("windows' tools") > out.indexOf('sessions by client'), 'after the sessions');
  const rows = windows.split('\n');
  assert.match(rows[1] ?? '', /^ {2}CLIENT\s+SESSION\s+PROFILE\s+TOOLS\s+LIST\s+CAP$/);
  assert.match(rows.find((l) => l.includes('claude-code')) ?? '', /bbbbbbbb\s+web\s+12\s+9\.8 KB\s+-$/);
  assert.match(rows.find((l) => l.includes('cursor-vscode ')) ?? '', /aaaaaaaa\s+-\s+57\s+40\.0 KB\s+40$/, 'no profile: a dash');
  assert.match(rows.find((l) => l.includes('Visual Studio Code')) ?? '', /old \(gone\)\s+-\s+-\s+128$/, 'a profile gone, no list yet');
  const sessions = sections.find((x) => x.startsWith('sessions by client')) ?? '';
  assert.doesNotMatch(sessions, /PROFILE|TOOLS/, 'the sessions table keeps its columns (it fills 100 columns already)');
});

test('a warning line for each window over its cap, whole at any width, and none for the others', () => {
  const wide = text(report(WINDOWS));
  const warnings = wide.split('\n').filter((l) => l.trimStart().startsWith('!'));
  assert.deepEqual(warnings, [
    '  ! cursor-vscode (session aaaaaaaa) was sent 57 tools, more than its client takes (its cap of 40): give this window a profile (exai-ws shim --profile NAME or /mcp?profile=NAME) or use tool search',
  ]);
  const narrow = text(report(WINDOWS), 60);
  assert.match(narrow.replace(/\s+/g, ' '), /! cursor-vscode \(session aaaaaaaa\) was sent 57 tools, .* or use tool search/);
  for (const line of narrow.split('\n').filter((l) => l.includes('tool search') || l.includes('! cursor'))) {
    assert.ok(line.length <= 60, `wrapped to the width: ${line}`);
  }
  const coloured = renderStatusTable(statusJson(report(WINDOWS)), { color: true, width: 200 });
  assert.ok(coloured.includes('\u001b[33m  ! cursor-vscode'), 'in yellow');
});

test('--json: the window fields, null from a daemon that does not report them', () => {
  const json = statusJson(report(WINDOWS));
  const cursor = json.sessions.find((s) => s.client === 'cursor-vscode');
  assert.deepEqual(cursor && [cursor.profile, cursor.profile_missing, cursor.tools, cursor.tools_bytes, cursor.tool_cap, cursor.over_cap], [
    null,
    false,
    57,
    41_000,
    40,
    true,
  ]);
  const old = statusJson(report([session('dddddddd-4', 'cursor-vscode')])).sessions[0];
  assert.deepEqual(old && [old.profile, old.profile_missing, old.tools, old.tools_bytes, old.tool_cap, old.over_cap], [
    null,
    null,
    null,
    null,
    null,
    null,
  ]);
});

test("a report without the window fields (an older daemon): no windows' tools, no warning", () => {
  const out = text(report([session('dddddddd-4', 'cursor-vscode'), session('eeeeeeee-5', 'claude-code')]));
  assert.doesNotMatch(out, /windows' tools|PROFILE|TOOLS/);
  assert.doesNotMatch(out, /^\s*!/m);
  assert.match(out, /cursor-vscode 1\.0\s+dddddddd\s+ws\s+attached\s+10s/);
});

test('list sizes: bytes, then KB and MB in powers of 1024', () => {
  assert.deepEqual([0, 812, 1024, 10_035, 1_048_576, 1_500_000].map(formatBytes), ['0 B', '812 B', '1.0 KB', '9.8 KB', '1.0 MB', '1.4 MB']);
});
