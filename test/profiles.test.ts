/**
 * Profiles (issue 25): with server-everything, server-memory (`exclude_tools: ["delete_*"]`) and
 * server-filesystem hosted, each window sees what its profile shows: a `--profile` through the
 * real shim, `/mcp?profile=` over Streamable HTTP, the profile a client's name picks, and an
 * unknown profile refused (never everything). Windows are the official SDK client.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { Cleanup, ROOT, connectShim, makeHome, readUntilResponse, spawnShim, startDaemon, waitFor, type DaemonHandle } from './helpers.js';
import { everythingEntry, memoryEntry, waitReady } from './fixtures/hosted-servers.js';
import { connectWs } from './fixtures/ws-client.js';

const FILESYSTEM = join(ROOT, 'node_modules', '@modelcontextprotocol', 'server-filesystem', 'dist', 'index.js');
const PICKED = ['everything__echo'];

const cleanup = new Cleanup();
after(() => cleanup.run());

let daemon: DaemonHandle;
let configFile: string;
let home: string;

function config(profiles: Record<string, unknown>): string {
  const files = join(home, 'files');
  mkdirSync(files, { recursive: true });
  return JSON.stringify(
    {
      mcpServers: {
        everything: everythingEntry({ start: 'eager' }),
        memory: memoryEntry(home, { exclude_tools: ['delete_*'], start: 'eager' }),
        fs: { command: process.execPath, args: [FILESYSTEM, files], start: 'eager' },
      },
      profiles,
    },
    null,
    2,
  );
}

const PROFILES = {
  mem: { servers: ['memory'] },
  picked: { tools: ['fs__read_*', ...PICKED] },
  bots: { servers: ['exai-ws'], clients: ['profile-bot*'] },
};

async function toolNames(client: Client): Promise<string[]> {
  return (await client.listTools()).tools.map((t) => t.name).sort();
}

async function httpClient(path: string, name = 'http-window'): Promise<Client> {
  const transport = new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${daemon.port}${path}`), {
    requestInit: { headers: { authorization: `Bearer ${daemon.token}` } },
  });
  const client = new Client({ name, version: '1.0.0' });
  cleanup.add(() => client.close());
  await client.connect(transport);
  return client;
}

describe('profiles', { concurrency: true }, () => {
  before(async () => {
    home = makeHome(cleanup);
    configFile = join(home, 'config.json');
    writeFileSync(configFile, config(PROFILES));
    daemon = await startDaemon(cleanup, { home, env: { EXAI_WS_LIST_WAIT_MS: '0' } });
    for (const name of ['everything', 'memory', 'fs']) await waitReady(daemon, name, 30_000);
  });

  test('the full window has no memory__delete_* and cannot call one', async () => {
    const window = await connectWs(cleanup, daemon, { name: 'full-window' });
    const names = await toolNames(window.client);
    assert.ok(names.includes('memory__create_entities'), 'memory is listed');
    assert.ok(names.includes('fs__read_text_file') && names.includes('everything__echo'), 'the others are listed');
    assert.deepEqual(
      names.filter((n) => n.startsWith('memory__delete_')),
      [],
      'no excluded tool is listed',
    );
    await assert.rejects(
      window.client.callTool({ name: 'memory__delete_entities', arguments: { entityNames: ['x'] } }),
      /Unknown tool: memory__delete_entities/,
    );
  });

  test('shim --profile with servers: ["memory"] lists only memory tools', async () => {
    const shim = await connectShim(cleanup, daemon, { args: ['--profile', 'mem'] });
    const names = await toolNames(shim.client);
    assert.ok(names.length > 0);
    assert.deepEqual(
      names.filter((n) => !n.startsWith('memory__')),
      [],
      'nothing but memory',
    );
    assert.ok(names.includes('memory__read_graph'));
    assert.ok(!names.includes('memory__delete_entities'), 'the entry filter holds in a profile too');
    await assert.rejects(shim.client.callTool({ name: 'everything__echo', arguments: { message: 'hi' } }), /Unknown tool/);
  });

  test('/mcp?profile= with tool globs lists exactly those tools', async () => {
    const full = await toolNames((await connectWs(cleanup, daemon, { name: 'full-2' })).client);
    const expected = full.filter((n) => n.startsWith('fs__read_') || PICKED.includes(n)).sort();
    assert.ok(expected.length >= 3, `fs has read tools: ${expected.join(', ')}`);
    const client = await httpClient('/mcp?profile=picked');
    assert.deepEqual(await toolNames(client), expected);
    const echoed = await client.callTool({ name: 'everything__echo', arguments: { message: 'through a profile' } });
    assert.match(JSON.stringify(echoed.content), /through a profile/);
    await assert.rejects(client.callTool({ name: 'fs__write_file', arguments: { path: 'x', content: 'y' } }), /Unknown tool/);
  });

  test('a client whose name matches a profile gets it without asking', async () => {
    const bot = await connectShim(cleanup, daemon, { name: 'profile-bot-7' });
    const seen = await toolNames(bot.client);
    assert.ok(seen.includes('version') && seen.includes('chat'), 'the built-in tools');
    assert.deepEqual(
      seen.filter((n) => n.includes('__')),
      [],
      'no hosted server: the profile shows the built-in one alone',
    );
    const other = await connectShim(cleanup, daemon, { name: 'some-editor' });
    assert.ok((await toolNames(other.client)).length > 20, 'another client sees everything');
  });

  test('an unknown profile is an error, never everything', async () => {
    const shim = spawnShim(cleanup, daemon.clientEnv, ['--profile', 'nope']);
    shim.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {} } }));
    const { response } = await readUntilResponse(shim, 1, 15_000);
    assert.equal(response.result, undefined, 'no session with everything in it');
    assert.match(JSON.stringify(response.error), /no profile named 'nope'/);
    const said = shim
      .stderr()
      .split('\n')
      .filter((line) => line.includes('nope'));
    assert.equal(said.length, 1, `one line on stderr: ${shim.stderr()}`);
    const refused = await fetch(`http://127.0.0.1:${daemon.port}/mcp?profile=nope`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${daemon.token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
      }),
    });
    assert.equal(refused.status, 404);
    const body = (await refused.json()) as { error?: { message?: string } };
    assert.match(body.error?.message ?? '', /no profile named 'nope'/);
  });
});

describe('profiles on reload', () => {
  test('a changed profile applies live: the window gets list_changed and its new list', async () => {
    const own = makeHome(cleanup);
    const file = join(own, 'config.json');
    writeFileSync(file, JSON.stringify({ mcpServers: {}, profiles: { p: { tools: ['version'] } } }));
    const d = await startDaemon(cleanup, { home: own });
    const window = await connectWs(cleanup, d, { name: 'reloading', hello: { profile: 'p' } });
    assert.deepEqual(await toolNames(window.client), ['version']);
    let changed = 0;
    window.client.setNotificationHandler(ToolListChangedNotificationSchema, () => void changed++);
    writeFileSync(file, JSON.stringify({ mcpServers: {}, profiles: { p: { tools: ['chat', 'listmodels'] } } }));
    await waitFor(() => changed > 0, 'tools/list_changed after the reload', 15_000);
    assert.deepEqual(await toolNames(window.client), ['chat', 'listmodels']);
    writeFileSync(file, JSON.stringify({ mcpServers: {}, profiles: {} }));
    await waitFor(() => changed > 1, 'list_changed when the profile is gone', 15_000);
    await assert.rejects(window.client.listTools(), /no longer in the config/);
    await assert.rejects(window.client.callTool({ name: 'version', arguments: {} }), /Unknown tool/);
    const plain = await connectWs(cleanup, d, { name: 'no-profile' });
    assert.ok((await toolNames(plain.client)).includes('version'), 'a window without a profile still sees everything');
    await assert.rejects(window.client.callTool({ name: 'version', arguments: {} }), /Unknown tool/, 'nor after a full list was built');
  });
});
