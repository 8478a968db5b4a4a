/**
 * A window whose tools list is longer than its client takes (issue 25), through a real daemon:
 * `client_tool_caps` in the config gives a small cap to a client name; the window's `/health`
 * entry has its tool count, the list's size, the cap and `over_cap`; the log warns once for the
 * session however often it lists; `exai-ws status` shows the count and the warning. A window of
 * a client under its cap is not warned about.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type WebSocket from 'ws';
import {
  Cleanup,
  getHealth,
  logPath,
  makeHome,
  nextJson,
  openSession,
  readJsonLines,
  runCli,
  startDaemon,
  waitFor,
  type DaemonHandle,
} from './helpers.js';
import type { SessionEntry } from '../src/local/health.js';

const OVER_CAP_MESSAGE = "window's tools list is longer than its client takes";

/** Lists the window's tools (raw JSON-RPC on its WebSocket) and returns how many came. */
async function listTools(ws: WebSocket, id: string): Promise<number> {
  ws.send(JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/list' }));
  for (;;) {
    const message = await nextJson(ws);
    if (message.id !== id) continue;
    const tools = (message.result as { tools?: unknown[] } | undefined)?.tools;
    assert.ok(Array.isArray(tools), `a tools list: ${JSON.stringify(message).slice(0, 300)}`);
    return tools.length;
  }
}

async function entryOf(daemon: DaemonHandle, client: string): Promise<SessionEntry> {
  return waitFor(async () => {
    const list = (await getHealth(daemon)).sessions.list ?? [];
    const entry = list.find((s) => s.client === client);
    return entry?.tools !== undefined && entry.tools !== null ? entry : undefined;
  }, `the ${client} session with its tools list`);
}

describe('client tool caps', async () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());
  const home = makeHome(cleanup);
  const config = {
    client_tool_caps: { 'cap-test*': 2, 'roomy*': 10 },
    // The default profile of `profiled-*` clients: the built-in `version` tool alone.
    profiles: { one: { clients: ['profiled-*'], tools: ['version'] } },
  };
  writeFileSync(join(home, 'config.json'), JSON.stringify(config));
  // The plain daemon: its built-in server alone, three tools (version, listmodels, chat).
  const daemon = await startDaemon(cleanup, { home, plain: true });

  test('a window over its client cap: /health says so, the log warns once, exai-ws status shows it', async () => {
    const { ws } = await openSession(cleanup, daemon, { clientName: 'cap-test-client' });
    assert.equal(await listTools(ws, 'list-1'), 3);
    assert.equal(await listTools(ws, 'list-2'), 3);

    const entry = await entryOf(daemon, 'cap-test-client');
    assert.equal(entry.tools, 3);
    assert.ok((entry.tools_bytes ?? 0) > 0, `a list has a size: ${entry.tools_bytes}`);
    assert.equal(entry.tool_cap, 2);
    assert.equal(entry.over_cap, true);
    assert.equal(entry.profile, null);
    assert.equal(entry.profile_missing, false);

    const warnings = await waitFor(() => {
      const lines = readJsonLines(logPath(daemon.home)).filter((l) => l.msg === OVER_CAP_MESSAGE && l.session_id === entry.id);
      return lines.length > 0 ? lines : undefined;
    }, 'the over-cap warning in the log');
    assert.equal(warnings.length, 1, 'one warning for the session, not one per list');
    const warning = warnings[0] as Record<string, unknown>;
    assert.equal(warning.client, 'cap-test-client');
    assert.equal(warning.tools, 3);
    assert.equal(warning.tool_cap, 2);
    assert.equal(warning.tools_bytes, entry.tools_bytes);
    assert.match(String(warning.hint), /--profile NAME or \/mcp\?profile=NAME\) or use tool search/);

    const status = await runCli(['status'], daemon.clientEnv);
    assert.equal(status.code, 0, status.stderr);
    const text = status.stdout.replace(/\s+/g, ' ');
    assert.match(text, /windows' tools CLIENT SESSION PROFILE TOOLS LIST CAP /, status.stdout);
    assert.match(text, new RegExp(`cap-test-client ${entry.id.slice(0, 8)} - 3 \\d+(\\.\\d)? (B|KB) 2 `), status.stdout);
    assert.match(text, /! cap-test-client \(session [0-9a-f]{8}\) was sent 3 tools, more than its client takes \(its cap of 2\)/);
    assert.match(text, /give this window a profile \(exai-ws shim --profile NAME or \/mcp\?profile=NAME\) or use tool search/);

    const json = JSON.parse((await runCli(['status', '--json'], daemon.clientEnv)).stdout) as {
      sessions: { client: string; tools: number | null; tool_cap: number | null; over_cap: boolean | null }[];
    };
    const window = json.sessions.find((s) => s.client === 'cap-test-client');
    assert.deepEqual(window && { tools: window.tools, tool_cap: window.tool_cap, over_cap: window.over_cap }, {
      tools: 3,
      tool_cap: 2,
      over_cap: true,
    });
  });

  test('a window under its client cap is not warned about', async () => {
    const { ws } = await openSession(cleanup, daemon, { clientName: 'roomy-client' });
    assert.equal(await listTools(ws, 'list-1'), 3);
    const entry = await entryOf(daemon, 'roomy-client');
    assert.equal(entry.tool_cap, 10);
    assert.equal(entry.over_cap, false);
    const warnings = readJsonLines(logPath(daemon.home)).filter((l) => l.msg === OVER_CAP_MESSAGE && l.session_id === entry.id);
    assert.deepEqual(warnings, []);
    const status = await runCli(['status'], daemon.clientEnv);
    assert.doesNotMatch(status.stdout.replace(/\s+/g, ' '), /! roomy-client/);
  });

  test("a window's profile (its client's default, from the config the daemon started with) and its smaller list", async () => {
    const { ws } = await openSession(cleanup, daemon, { clientName: 'profiled-client' });
    assert.equal(await listTools(ws, 'list-1'), 1);
    const entry = await entryOf(daemon, 'profiled-client');
    assert.deepEqual(
      { profile: entry.profile, profile_missing: entry.profile_missing, tools: entry.tools, tool_cap: entry.tool_cap },
      { profile: 'one', profile_missing: false, tools: 1, tool_cap: null },
    );
    const status = await runCli(['status'], daemon.clientEnv);
    assert.match(
      status.stdout.replace(/\s+/g, ' '),
      new RegExp(`profiled-client ${entry.id.slice(0, 8)} one 1 \\d+(\\.\\d)? (B|KB) - `),
      status.stdout,
    );
  });
});
