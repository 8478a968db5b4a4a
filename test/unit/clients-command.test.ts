/**
 * `exai-ws clients` and `clients revoke NAME` (src/commands/clients.ts) against the answers the
 * daemon's `/control/clients*` routes give, with the proven request replaced by a fake: what the
 * user sees, the exit code, what is asked. And the order `exai-ws config CLIENT` prints its
 * entries in (client-setup-blocks.ts): the URL alone first, with no token, then the header form.
 * No daemon, no port.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ExitCode } from '../../src/commands/exit-codes.js';
import { clientsAction, runClientsCommand, type ClientsAskFn, type ClientsOptions, type ClientsPath } from '../../src/commands/clients.js';
import { renderBlocks, setupBlocks, type Block, type Endpoint, type SetupClient } from '../../src/commands/client-setup-blocks.js';
import type { ProvenReply } from '../../src/local/health-client.js';

const dir = mkdtempSync(join(tmpdir(), 'exai-ws-clients-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const SETTINGS = join(dir, 'daemon.env');
writeFileSync(SETTINGS, 'EXAI_WS_PORT=41998\n', { mode: 0o600 });
const TOKEN = 'daemon-token-for-the-proof';
const NOW = Date.parse('2026-12-07T12:00:00.000Z');

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { EXAI_WS_HOME: join(dir, 'home'), EXAI_WS_SETTINGS: SETTINGS, EXAI_WS_TOKEN: TOKEN, NO_COLOR: '1', ...extra };
}

function reply(status: number, body: unknown): ProvenReply {
  return { ok: true, status, body };
}

const VSCODE = {
  client_id: 'c-4f1a',
  client_name: 'Visual Studio Code',
  kind: 'registered',
  grants: 2,
  first_approved_at: '2026-12-05T12:00:00.000Z',
  last_used_at: '2026-12-07T11:55:00.000Z',
};
const CLAUDE = {
  client_id: 'https://claude.ai/oauth/mcp-client-metadata',
  client_name: 'Claude Code',
  kind: 'metadata_document',
  grants: 1,
  first_approved_at: '2026-12-07T09:00:00.000Z',
  last_used_at: '2026-12-07T10:00:00.000Z',
};

async function clients(options: Partial<ClientsOptions>, answer: ProvenReply | null, extraEnv: Record<string, string> = {}) {
  let out = '';
  let err = '';
  const asked: { path: ClientsPath; body: unknown; token: string | null }[] = [];
  const ask: ClientsAskFn = (target, path, body) => {
    asked.push({ path, body, token: target.token });
    if (answer === null) throw new Error('the fake daemon was not meant to be asked');
    return Promise.resolve(answer);
  };
  const code = await runClientsCommand(
    { action: 'list', json: false, ...options },
    { stdout: { write: (t: string) => (out += t) }, stderr: { write: (t: string) => (err += t) }, env: env(extraEnv) },
    { ask, nowMs: NOW },
  );
  return { code, out, err, asked };
}

test('clients: a table of the clients that hold tokens, each with its id, approvals, first approved and last used', async () => {
  const run = await clients({}, reply(200, { clients: [VSCODE, CLAUDE] }));
  assert.equal(run.code, ExitCode.OK);
  assert.equal(run.err, '');
  const lines = run.out.trimEnd().split('\n');
  assert.equal(lines.length, 3, run.out);
  assert.match(lines[0] as string, /^ {2}NAME +CLIENT ID +APPROVALS +FIRST APPROVED +LAST USED$/);
  assert.match(lines[1] as string, /^ {2}Visual Studio Code +c-4f1a +2 +2d 0h 0m ago +5m 0s ago$/);
  assert.match(lines[2] as string, /^ {2}Claude Code +https:\/\/claude\.ai\/oauth\/mcp-client-metadata +1 +3h 0m 0s ago +2h 0m 0s ago$/);
  assert.deepEqual(run.asked, [{ path: '/control/clients', body: {}, token: TOKEN }]);
});

test('clients with none: one line saying where clients log in', async () => {
  const run = await clients({}, reply(200, { clients: [] }));
  assert.equal(run.code, ExitCode.OK);
  assert.equal(run.out, 'no client holds a token; clients that speak MCP authorization log in at http://127.0.0.1:41998/mcp\n');
});

test('clients --json: the daemon’s answer as JSON', async () => {
  const run = await clients({ json: true }, reply(200, { clients: [VSCODE] }));
  assert.equal(run.code, ExitCode.OK);
  assert.deepEqual(JSON.parse(run.out), { clients: [VSCODE] });
});

test('clients revoke NAME: one line per client revoked, exit 0', async () => {
  const run = await clients({ action: 'revoke', name: 'visual studio code' }, reply(200, { revoked: [VSCODE] }));
  assert.equal(run.code, ExitCode.OK);
  assert.equal(run.out, 'revoked Visual Studio Code (client id c-4f1a)\n');
  assert.deepEqual(run.asked, [{ path: '/control/clients-revoke', body: { name: 'visual studio code' }, token: TOKEN }]);
});

test('clients revoke of a name none holds: exit 1, naming the clients that do', async () => {
  const run = await clients(
    { action: 'revoke', name: 'cursor' },
    reply(404, { error: 'no client named cursor holds a token', clients: [VSCODE, CLAUDE] }),
  );
  assert.equal(run.code, ExitCode.FAILURE);
  assert.equal(run.out, '');
  assert.equal(
    run.err,
    'exai-ws clients: no client named cursor holds a token; the clients that do: Visual Studio Code (c-4f1a), Claude Code (https://claude.ai/oauth/mcp-client-metadata)\n',
  );
  const none = await clients({ action: 'revoke', name: 'cursor' }, reply(404, { error: 'x', clients: [] }));
  assert.equal(none.err, 'exai-ws clients: no client named cursor holds a token; no client holds one\n');
});

test('clients with no daemon, an older daemon, or no token: one line, exit 1', async () => {
  const down = await clients({}, { ok: false, failure: 'unreachable', detail: 'ECONNREFUSED' });
  assert.equal(down.code, ExitCode.FAILURE);
  assert.equal(down.out, '');
  assert.equal(down.err, 'exai-ws clients: no daemon answers on 127.0.0.1:41998 (start one with `exai-ws daemon`)\n');
  const old = await clients({ action: 'revoke', name: 'x' }, reply(404, { error: 'not found', hint: 'WebSocket on / or /ws' }));
  assert.equal(old.code, ExitCode.FAILURE);
  assert.match(old.err, /the daemon is older than this exai-ws .*run `exai-ws restart`/);
  const noToken = await clients({}, null, { EXAI_WS_TOKEN: '' });
  assert.equal(noToken.code, ExitCode.FAILURE);
  assert.equal(noToken.asked.length, 0);
  assert.match(noToken.err, /^exai-ws clients: no token \(no valid token file at .*\): is the daemon running\?\n$/);
});

test('a client name with control characters is printed as one safe line', async () => {
  const run = await clients({}, reply(200, { clients: [{ ...VSCODE, client_name: 'evil\u001b[2J\nname' }] }));
  assert.ok(!run.out.includes('\u001b'), run.out);
  assert.match(run.out, /evil\?\[2J name/);
});

test('the arguments: none lists, `revoke NAME` revokes, anything else is a usage error', () => {
  assert.deepEqual(clientsAction([]), { action: 'list' });
  assert.deepEqual(clientsAction(['revoke', 'Cursor']), { action: 'revoke', name: 'Cursor' });
  assert.match(clientsAction(['revoke']) as string, /revoke takes the name/);
  assert.match(clientsAction(['list']) as string, /unknown action 'list'/);
});

const SECRET = 'tok-0123456789abcdefghijklmnop';
const ENDPOINT: Endpoint = { url: 'http://127.0.0.1:4567/mcp', port: 4567, portNote: '', token: SECRET, tokenNote: '', notes: [] };
const entryText = (block: Block) => ('json' in block ? JSON.stringify(block.json) : 'command' in block ? block.command.join(' ') : null);

test('config for a client that speaks MCP authorization: the URL alone first, its note, then the header form, then the shim', () => {
  const clientsWithLogin: SetupClient[] = ['vscode', 'cursor', 'claude-code', 'gemini'];
  for (const client of clientsWithLogin) {
    const blocks = setupBlocks(client, ENDPOINT, { EXAI_WS_HOME: join(dir, 'home') }, 'linux');
    const entries = blocks.map(entryText);
    const first = entries.findIndex((e) => e !== null);
    const firstEntry = entries[first] as string;
    assert.ok(firstEntry.includes(ENDPOINT.url), `${client}: ${firstEntry}`);
    assert.ok(!/authorization|bearer/i.test(firstEntry) && !firstEntry.includes(SECRET), `${client}: the first entry holds no token`);
    const text = renderBlocks(blocks);
    const note = text.indexOf('The URL alone holds no secret');
    const header = text.indexOf('Alternative, for clients or scripts without MCP authorization');
    const token = text.indexOf(`Bearer ${SECRET}`);
    const shim = text.indexOf('Alternative, the shim');
    assert.ok(note > text.indexOf(ENDPOINT.url), `${client}: the note follows the token-free entry`);
    assert.ok(note < header && header < token && token < shim, `${client}: token-free, then the header form, then the shim\n${text}`);
    assert.match(text, /exai-ws open --print/);
    assert.match(text, /`exai-ws clients` lists the clients you allowed; `exai-ws clients revoke NAME` revokes one/);
    assert.match(text, /holds the daemon token, a secret/);
  }
});

test('config for VS Code, Claude Code, Cursor and Gemini: the token-free entries as each client takes them', () => {
  const blocks = (client: SetupClient) =>
    setupBlocks(client, ENDPOINT, {}, 'linux')
      .map(entryText)
      .filter((e) => e !== null);
  const url = ENDPOINT.url;
  assert.equal(blocks('vscode')[0], JSON.stringify({ servers: { 'exai-ws': { type: 'http', url } } }));
  assert.equal(blocks('cursor')[0], JSON.stringify({ mcpServers: { 'exai-ws': { url } } }));
  assert.equal(blocks('claude-code')[0], `claude mcp add --scope user --transport http exai-ws ${url}`);
  assert.deepEqual(blocks('gemini').slice(0, 2), [
    `gemini mcp add --scope user --transport http exai-ws ${url}`,
    JSON.stringify({ mcpServers: { 'exai-ws': { httpUrl: url } } }),
  ]);
});

test('config for Codex and Claude Desktop is as before: the bearer variable, the shim', () => {
  const codex = renderBlocks(setupBlocks('codex', ENDPOINT, {}, 'linux'));
  assert.ok(codex.includes(`export CODEX_EXAI_WS_TOKEN=${SECRET}`));
  assert.doesNotMatch(codex, /holds no secret: the first time/);
  const desktop = renderBlocks(setupBlocks('claude-desktop', ENDPOINT, {}, 'linux'));
  assert.ok(!desktop.includes(ENDPOINT.url) && !desktop.includes(SECRET));
});
