/**
 * `exai-ws config vscode|cursor|claude-code|gemini|codex|claude-desktop`: the real CLI prints
 * entries whose JSON parses, with the running daemon's port (else the settings file's, else the
 * one state.json remembers, else the default) and the home's token; the clients that speak MCP
 * authorization get the URL alone first (no token in it), then the URL with the token; pasted
 * as printed, the shim entry serves an SDK client, the URL entries with the token open
 * Streamable HTTP sessions, and the one without is sent to log in (401 with resource_metadata).
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { runClientSetupCommand } from '../src/commands/client-setup.js';
import { memoryEntry, startHostingDaemon } from './fixtures/hosted-servers.js';
import { Cleanup, SHIM, baseEnv, makeHome, startDaemon, textOf, runCli, type CliRun, type DaemonHandle } from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

/** The real CLI, `exai-ws config ARGS`, as a user runs it: argv, stdout, stderr and exit code. */
function config(args: string[], env: Record<string, string>): Promise<CliRun> {
  return runCli(['config', ...args], env);
}

/**
 * The same command in this process (the function the CLI calls, with the test environment plus
 * `env`): what it prints, for the many outputs checked here, without a process each (about 0.35 s
 * of CPU a run). The tests still run the real CLI for exit 0, exit 2 with usage, and every entry pasted.
 */
async function configHere(args: string[], env: Record<string, string>): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const code = await runClientSetupCommand(args, {
    env: { ...baseEnv(), ...env },
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
  });
  return { code, stdout, stderr };
}

let plain: Promise<DaemonHandle> | undefined;
/**
 * One plain daemon for the tests that only read its port, token and pid and open sessions of their
 * own on it: none stops, restarts or reconfigures it, so a fresh one each would prove nothing more.
 */
function plainDaemon(): Promise<DaemonHandle> {
  plain ??= startDaemon(cleanup, { plain: true });
  return plain;
}

type Json = Record<string, unknown>;
type Entry = {
  type?: string;
  url?: string;
  headers?: Record<string, string>;
  command?: string;
  args?: string[];
  env?: Record<string, string>;
};

/** The JSON blocks of the output (each a line `{` to a line `}`), parsed: a block that is not JSON fails here. */
function jsonBlocks(stdout: string): Json[] {
  return stdout
    .split('\n\n')
    .filter((block) => block.startsWith('{'))
    .map((block) => JSON.parse(block) as Json);
}

function entryOf(block: Json | undefined, key: 'servers' | 'mcpServers', name = 'exai-ws'): Entry {
  const servers = block?.[key] as Record<string, Entry> | undefined;
  assert.ok(servers?.[name], `a "${key}.${name}" entry in ${JSON.stringify(block)}`);
  return servers[name];
}

function readState(home: string): { port?: number; url_port?: number } {
  return JSON.parse(readFileSync(join(home, 'state.json'), 'utf8')) as { port?: number; url_port?: number };
}

/** A home with a token file and an address card whose daemon is long gone. */
function homeWithToken(token: string | null): string {
  const home = makeHome(cleanup);
  if (token !== null) writeFileSync(join(home, 'token'), `${token}\n`, { mode: 0o600 });
  mkdirSync(join(home, 'logs'), { recursive: true });
  // pid 2^22 + 1 is above Linux's pid_max: the card is stale.
  writeFileSync(
    join(home, 'logs', 'ws_daemon.pid'),
    JSON.stringify({ pid: 4194305, host: '127.0.0.1', port: 1, version: '0', started_at: '' }),
  );
  return home;
}
// Each test has its own home and processes (the plain daemon is shared, see plainDaemon): they run side by side.
describe('exai-ws config', { concurrency: 4 }, () => {
  test('every client gets entries that parse, with the running daemon port, the home token and absolute paths', async () => {
    const daemon = await plainDaemon();
    const env = { EXAI_WS_HOME: daemon.home };
    const url = `http://127.0.0.1:${daemon.port}/mcp`;
    const authorization = `Bearer ${daemon.token}`;
    const shimArgs = [SHIM];

    const vscode = await config(['vscode'], env);
    assert.equal(vscode.code, 0, vscode.stderr);
    const [vFree, vHttp, vShim] = jsonBlocks(vscode.stdout);
    assert.deepEqual(entryOf(vFree, 'servers'), { type: 'http', url }, 'first the URL alone');
    assert.deepEqual(entryOf(vHttp, 'servers'), { type: 'http', url, headers: { Authorization: authorization } });
    assert.deepEqual(entryOf(vShim, 'servers'), {
      type: 'stdio',
      command: process.execPath,
      args: shimArgs,
      env: { EXAI_WS_HOME: daemon.home },
    });
    assert.match(vscode.stdout, /holds the daemon token, a secret/);
    assert.match(vscode.stdout, /The URL alone holds no secret: the first time the client connects, it opens the daemon's consent page/);
    assert.match(vscode.stdout, /`exai-ws clients revoke NAME` revokes one/);
    assert.ok(
      vscode.stdout.indexOf('The URL alone holds no secret') < vscode.stdout.indexOf(daemon.token),
      'the token-free entry and its note come before any token',
    );
    assert.match(vscode.stdout, new RegExp(`port ${daemon.port}: the running daemon's \\(pid ${daemon.pid}`));

    const cursor = await configHere(['cursor'], env);
    const [cFree, cHttp, cShim] = jsonBlocks(cursor.stdout);
    assert.deepEqual(entryOf(cFree, 'mcpServers'), { url });
    assert.deepEqual(entryOf(cHttp, 'mcpServers'), { url, headers: { Authorization: authorization } });
    assert.deepEqual(entryOf(cShim, 'mcpServers'), { command: process.execPath, args: shimArgs, env: { EXAI_WS_HOME: daemon.home } });
    assert.match(cursor.stdout, /holds the daemon token, a secret/);

    const claudeCode = await configHere(['claude-code'], env);
    assert.ok(claudeCode.stdout.includes(`\nclaude mcp add --scope user --transport http exai-ws ${url}\n`), claudeCode.stdout);
    assert.ok(
      claudeCode.stdout.includes(
        `claude mcp add --scope user --transport http exai-ws ${url} --header 'Authorization: Bearer ${daemon.token}'`,
      ),
      claudeCode.stdout,
    );
    const [ccFree, ccJson] = jsonBlocks(claudeCode.stdout);
    assert.deepEqual(entryOf(ccFree, 'mcpServers'), { type: 'http', url });
    assert.deepEqual(entryOf(ccJson, 'mcpServers'), { type: 'http', url, headers: { Authorization: authorization } });
    // With a home to pass on, the shim form is `add-json` (its JSON parses too).
    const addJson = /^claude mcp add-json --scope user exai-ws '(.*)'$/m.exec(claudeCode.stdout);
    assert.ok(addJson, claudeCode.stdout);
    assert.deepEqual(JSON.parse(addJson[1] as string), {
      type: 'stdio',
      command: process.execPath,
      args: shimArgs,
      env: { EXAI_WS_HOME: daemon.home },
    });

    const gemini = await configHere(['gemini'], env);
    assert.equal(gemini.code, 0, gemini.stderr);
    assert.ok(gemini.stdout.includes(`\ngemini mcp add --scope user --transport http exai-ws ${url}\n`), gemini.stdout);
    assert.ok(
      gemini.stdout.includes(
        `gemini mcp add --scope user --transport http exai-ws ${url} --header 'Authorization: Bearer ${daemon.token}'`,
      ),
      gemini.stdout,
    );
    const [gFree, gHttp, gShim] = jsonBlocks(gemini.stdout);
    assert.deepEqual(entryOf(gFree, 'mcpServers'), { httpUrl: url });
    assert.deepEqual(entryOf(gHttp, 'mcpServers'), { httpUrl: url, headers: { Authorization: authorization } });
    assert.deepEqual(entryOf(gShim, 'mcpServers'), { command: process.execPath, args: shimArgs, env: { EXAI_WS_HOME: daemon.home } });

    const codex = await configHere(['codex'], env);
    assert.equal(codex.code, 0, codex.stderr);
    const codexLines = codex.stdout.split('\n');
    assert.ok(codexLines.includes(`export CODEX_EXAI_WS_TOKEN=${daemon.token}`), codex.stdout);
    assert.ok(codexLines.includes(`codex mcp add exai-ws --url ${url} --bearer-token-env-var CODEX_EXAI_WS_TOKEN`), codex.stdout);
    assert.ok(codex.stdout.includes(`[mcp_servers.exai-ws]\nurl = "${url}"\nbearer_token_env_var = "CODEX_EXAI_WS_TOKEN"\n`), codex.stdout);
    assert.ok(!codex.stdout.includes(`bearer_token = `), 'Codex takes no token in its config');
    assert.ok(codexLines.includes(`codex mcp add exai-ws --env EXAI_WS_HOME=${daemon.home} -- ${process.execPath} ${SHIM}`), codex.stdout);
    assert.ok(
      codex.stdout.includes(
        `[mcp_servers.exai-ws]\ncommand = ${JSON.stringify(process.execPath)}\nargs = [${JSON.stringify(SHIM)}]\nenv = { EXAI_WS_HOME = ${JSON.stringify(daemon.home)} }\n`,
      ),
      codex.stdout,
    );
    assert.equal(readState(daemon.home).url_port, daemon.port, 'the port the URL entries name is remembered');

    const desktop = await configHere(['claude-desktop'], env);
    const blocks = jsonBlocks(desktop.stdout);
    assert.equal(blocks.length, 1, 'Claude Desktop gets the shim form only');
    assert.deepEqual(entryOf(blocks[0], 'mcpServers'), { command: process.execPath, args: shimArgs, env: { EXAI_WS_HOME: daemon.home } });
    assert.ok(!desktop.stdout.includes(daemon.token), 'the shim form holds no token');
  });

  test('with no daemon running: the port from the settings file, else state.json, else the default; a shell EXAI_WS_PORT is a note; a stale card is ignored', async () => {
    const token = 'file-token-0123456789abcdefghij';
    const home = homeWithToken(token);
    const settings = join(home, 'daemon.env');
    const env = { EXAI_WS_HOME: home, EXAI_WS_SETTINGS: settings, EXAI_WS_TEST_DEFAULT_PORT: '4999' };

    const byDefault = await configHere(['cursor'], env);
    assert.equal(byDefault.code, 0, byDefault.stderr);
    assert.deepEqual(entryOf(jsonBlocks(byDefault.stdout)[1], 'mcpServers'), {
      url: 'http://127.0.0.1:4999/mcp',
      headers: { Authorization: `Bearer ${token}` },
    });
    assert.match(byDefault.stdout, /port 4999: the default \(no daemon runs now/);
    assert.equal(readState(home).url_port, 4999);

    writeFileSync(join(home, 'state.json'), JSON.stringify({ port: 23456, url_port: 4999 }));
    const remembered = await configHere(['vscode'], env);
    assert.equal(entryOf(jsonBlocks(remembered.stdout)[0], 'servers').url, 'http://127.0.0.1:23456/mcp');
    assert.match(remembered.stdout, /port 23456: the port this home's daemon last listened on/);
    assert.deepEqual(readState(home), { port: 23456, url_port: 23456 }, 'url_port follows what was printed');

    writeFileSync(settings, 'EXAI_WS_PORT=4567\nEXAI_WS_TOKEN=settings-token-0123456789abc\n', { mode: 0o600 });
    const fromSettings = await configHere(['vscode'], { ...env, EXAI_WS_PORT: '7777' });
    assert.equal(fromSettings.code, 0, fromSettings.stderr);
    assert.deepEqual(entryOf(jsonBlocks(fromSettings.stdout)[1], 'servers'), {
      type: 'http',
      url: 'http://127.0.0.1:4567/mcp',
      headers: { Authorization: 'Bearer settings-token-0123456789abc' },
    });
    assert.ok(fromSettings.stdout.includes(`port 4567: EXAI_WS_PORT in ${settings} (no daemon runs now)`), fromSettings.stdout);
    assert.ok(fromSettings.stdout.includes(`token: EXAI_WS_TOKEN in ${settings}`), fromSettings.stdout);
    assert.ok(
      fromSettings.stdout.includes(
        `EXAI_WS_PORT=7777 of this shell is not where a shim or exai-ws restart starts the daemon: that reads its settings from ${settings}`,
      ),
      fromSettings.stdout,
    );

    writeFileSync(settings, 'EXAI_WS_PORT=0\n', { mode: 0o600 });
    const anyPort = await configHere(['vscode'], env);
    assert.equal(entryOf(jsonBlocks(anyPort.stdout)[0], 'servers').url, 'http://127.0.0.1:23456/mcp');
    assert.match(anyPort.stdout, /port 23456 is a guess: EXAI_WS_PORT=0 in .* picks a new port at every start/);

    const fromEnv = await configHere(['cursor'], { ...env, EXAI_WS_TOKEN: 'env-token-0123456789abcdef' });
    assert.deepEqual(entryOf(jsonBlocks(fromEnv.stdout)[1], 'mcpServers').headers, { Authorization: 'Bearer env-token-0123456789abcdef' });
  });

  test('the shim form needs no env block: the default home is not passed on, another home is', async () => {
    const state = makeHome(cleanup);
    const home = join(state, 'exai-ws');
    for (const client of ['vscode', 'claude-desktop', 'gemini']) {
      const out = await configHere([client], { XDG_STATE_HOME: state, EXAI_WS_HOME: home });
      assert.equal(out.code, 0, out.stderr);
      const shim = jsonBlocks(out.stdout).at(-1);
      const entry = entryOf(shim, client === 'vscode' ? 'servers' : 'mcpServers');
      assert.equal(entry.env, undefined, `${client}: ${JSON.stringify(entry)}`);
      assert.deepEqual(entry.args, [SHIM]);
    }
    const claudeCode = await configHere(['claude-code'], { XDG_STATE_HOME: state, EXAI_WS_HOME: home });
    assert.ok(claudeCode.stdout.includes(`claude mcp add --scope user exai-ws -- ${process.execPath} ${SHIM}\n`), claudeCode.stdout);
    const codex = await configHere(['codex'], { XDG_STATE_HOME: state });
    assert.ok(codex.stdout.includes(`codex mcp add exai-ws -- ${process.execPath} ${SHIM}\n`), codex.stdout);
    const other = await configHere(['cursor'], { XDG_STATE_HOME: state, EXAI_WS_HOME: join(state, 'elsewhere') });
    assert.deepEqual(entryOf(jsonBlocks(other.stdout).at(-1), 'mcpServers').env, { EXAI_WS_HOME: join(state, 'elsewhere') });
  });

  test('before the daemon ever ran: a placeholder and a note, never a crash', async () => {
    const home = homeWithToken(null);
    const out = await configHere(['vscode'], { EXAI_WS_HOME: home });
    assert.equal(out.code, 0, out.stderr);
    assert.equal(entryOf(jsonBlocks(out.stdout)[1], 'servers').headers?.Authorization, 'Bearer <token>');
    assert.match(out.stdout, /token: none yet: the daemon creates .*token when it first starts/);
    const missingHome = await configHere(['claude-code'], { EXAI_WS_HOME: join(home, 'not', 'there') });
    assert.equal(missingHome.code, 0, missingHome.stderr);
    assert.match(missingHome.stdout, /--header 'Authorization: Bearer <token>'/);
  });

  test('--server NAME: the one-server URL and shim, named after the server; an unknown name is pointed out', async () => {
    const home = homeWithToken('file-token-0123456789abcdefghij');
    const configFile = join(home, 'servers.json');
    writeFileSync(configFile, JSON.stringify({ mcpServers: { memory: { command: 'node', args: ['x.js'] } } }));
    const env = { EXAI_WS_HOME: home, EXAI_WS_CONFIG: configFile };
    const out = await configHere(['vscode', '--server', 'memory'], env);
    assert.equal(out.code, 0, out.stderr);
    const [free, http, shim] = jsonBlocks(out.stdout);
    assert.deepEqual(entryOf(free, 'servers', 'memory'), { type: 'http', url: 'http://127.0.0.1:8765/mcp/memory' });
    assert.equal(entryOf(http, 'servers', 'memory').url, 'http://127.0.0.1:8765/mcp/memory');
    assert.deepEqual(entryOf(shim, 'servers', 'memory').args, [SHIM, '--server', 'memory']);
    assert.doesNotMatch(out.stdout, /is not in .*servers\.json/);
    const typo = await configHere(['cursor', '--server', 'memroy'], env);
    assert.match(typo.stdout, /the hosted server "memroy" is not in .*servers\.json/);
    const bad = await configHere(['cursor', '--server', 'a__b'], env);
    assert.equal(bad.code, 2);
    const unknown = await config(['emacs'], env);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /usage: exai-ws config vscode\|cursor\|claude-code\|gemini\|codex\|claude-desktop/);
  });

  test('--profile NAME: the URL with ?profile= and the shim with --profile; an unknown profile is pointed out', async () => {
    const home = homeWithToken('file-token-0123456789abcdefghij');
    const configFile = join(home, 'servers.json');
    writeFileSync(configFile, JSON.stringify({ mcpServers: {}, profiles: { notes: { servers: ['exai-ws'] } } }));
    const env = { EXAI_WS_HOME: home, EXAI_WS_CONFIG: configFile };
    const out = await configHere(['vscode', '--profile', 'notes'], env);
    assert.equal(out.code, 0, out.stderr);
    const [free, http, shim] = jsonBlocks(out.stdout);
    assert.deepEqual(entryOf(free, 'servers', 'exai-ws-notes'), { type: 'http', url: 'http://127.0.0.1:8765/mcp?profile=notes' });
    assert.equal(entryOf(http, 'servers', 'exai-ws-notes').url, 'http://127.0.0.1:8765/mcp?profile=notes');
    assert.deepEqual(entryOf(shim, 'servers', 'exai-ws-notes').args, [SHIM, '--profile', 'notes']);
    assert.doesNotMatch(out.stdout, /is not in /);
    const typo = await configHere(['cursor', '--profile', 'ntoes'], env);
    assert.match(typo.stdout, /the profile "ntoes" is not in .*servers\.json/);
    const both = await configHere(['cursor', '--profile', 'notes', '--server', 'x'], env);
    assert.equal(both.code, 2);
  });

  test('pasted as printed, the shim entry serves an MCP client', async () => {
    const daemon = await plainDaemon();
    const out = await config(['claude-desktop'], { EXAI_WS_HOME: daemon.home });
    const entry = entryOf(jsonBlocks(out.stdout)[0], 'mcpServers');
    const transport = new StdioClientTransport({
      command: entry.command as string,
      args: entry.args,
      env: { ...baseEnv(), ...entry.env },
      stderr: 'pipe',
    });
    const client = new Client({ name: 'pasted-shim', version: '1' });
    cleanup.add(() => client.close());
    await client.connect(transport);
    const tools = await client.listTools();
    assert.ok(tools.tools.some((t) => t.name === 'version'));
  });

  test('pasted as printed, the VS Code URL entry opens a Streamable HTTP session and serves the official SDK client', async () => {
    const daemon = await plainDaemon();
    const out = await config(['vscode'], { EXAI_WS_HOME: daemon.home });
    const [free, withToken] = jsonBlocks(out.stdout);
    // The entry without a token: the client is told where to log in, as MCP authorization says.
    const login = await fetch(entryOf(free, 'servers').url as string, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: {} }),
      signal: AbortSignal.timeout(10_000),
    });
    await login.arrayBuffer();
    assert.equal(login.status, 401);
    assert.match(
      login.headers.get('www-authenticate') ?? '',
      new RegExp(`^Bearer resource_metadata="http://127\\.0\\.0\\.1:${daemon.port}/\\.well-known/oauth-protected-resource/mcp"`),
    );
    const entry = entryOf(withToken, 'servers');
    const response = await fetch(entry.url as string, {
      method: 'POST',
      headers: { ...entry.headers, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'pasted-url', version: '1' } },
      }),
      signal: AbortSignal.timeout(10_000),
    });
    const body = await response.text();
    assert.equal(response.status, 200, body);
    assert.match(response.headers.get('mcp-session-id') ?? '', /\S/, 'a session id');
    assert.match(body, /"protocolVersion"/);

    const transport = new StreamableHTTPClientTransport(new URL(entry.url as string), { requestInit: { headers: entry.headers } });
    const client = new Client({ name: 'pasted-url-sdk', version: '1' });
    cleanup.add(() => client.close());
    await client.connect(transport);
    const info = JSON.parse(textOf(await client.callTool({ name: 'version', arguments: {} }))) as { pid: number };
    assert.equal(info.pid, daemon.pid, 'the daemon itself answered, with no shim in between');
  });

  test('pasted as printed, the Gemini CLI settings entry and the Codex table with its exported variable open sessions', async () => {
    const daemon = await plainDaemon();
    const gemini = await config(['gemini'], { EXAI_WS_HOME: daemon.home });
    const entry = entryOf(jsonBlocks(gemini.stdout)[1], 'mcpServers') as Entry & { httpUrl?: string };
    const codex = await config(['codex'], { EXAI_WS_HOME: daemon.home });
    const url = /^url = "(.*)"$/m.exec(codex.stdout)?.[1];
    const variable = /^bearer_token_env_var = "(.*)"$/m.exec(codex.stdout)?.[1];
    const exported = new RegExp(`^export ${variable}=(.*)$`, 'm').exec(codex.stdout)?.[1];
    assert.ok(url && exported, codex.stdout);
    for (const [name, target, headers] of [
      ['gemini', entry.httpUrl as string, entry.headers],
      ['codex', url, { Authorization: `Bearer ${exported}` }],
    ] as const) {
      const transport = new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers } });
      const client = new Client({ name: `pasted-${name}`, version: '1' });
      cleanup.add(() => client.close());
      await client.connect(transport);
      const info = JSON.parse(textOf(await client.callTool({ name: 'version', arguments: {} }))) as { pid: number };
      assert.equal(info.pid, daemon.pid, `${name}: the daemon answered`);
    }
  });

  test('pasted as printed, the Cursor --server entry gives that hosted server alone, under its own names', async () => {
    const daemon = await startHostingDaemon(cleanup, (home) => ({ memory: memoryEntry(home) }));
    const out = await config(['cursor', '--server', 'memory'], {
      EXAI_WS_HOME: daemon.home,
      EXAI_WS_CONFIG: join(daemon.home, 'config.json'),
    });
    assert.doesNotMatch(out.stdout, /not among the hosted servers/);
    const entry = entryOf(jsonBlocks(out.stdout)[1], 'mcpServers', 'memory');
    assert.equal(entry.url, `http://127.0.0.1:${daemon.port}/mcp/memory`);
    const transport = new StreamableHTTPClientTransport(new URL(entry.url), { requestInit: { headers: entry.headers } });
    const client = new Client({ name: 'pasted-server-url', version: '1' });
    cleanup.add(() => client.close());
    await client.connect(transport);
    const names = (await client.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('create_entities'), names.join(', '));
    assert.ok(!names.includes('version') && !names.some((n) => n.includes('__')), `only memory's own tools: ${names.join(', ')}`);
  });
});
