/**
 * `exai-ws import`: real client config files in, the daemon's config file and the shim entry
 * out, through the real CLI process with EXAI_WS_CONFIG (and HOME) in a temp dir.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { parseUpstreams } from '../src/core/upstream-config.js';
import { CLI, Cleanup, SHIM, baseEnv, makeHome, startDaemon } from './helpers.js';

const run = promisify(execFile);
const cleanup = new Cleanup();
after(() => cleanup.run());

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

interface Sandbox {
  dir: string;
  home: string;
  config: string;
  import(args: string[], options?: { cwd?: string; env?: Record<string, string> }): Promise<Outcome>;
  readConfig(): { mcpServers: Record<string, Record<string, unknown>> } & Record<string, unknown>;
}

/** A temp dir with its own HOME and EXAI_WS_CONFIG, so no real client or daemon file is touched. */
function sandbox(): Sandbox {
  const dir = makeHome(cleanup);
  const home = join(dir, 'home');
  mkdirSync(home);
  const config = join(dir, 'xdg', 'exai-ws', 'config.json');
  const env: Record<string, string> = { ...baseEnv(), HOME: home, EXAI_WS_CONFIG: config };
  delete env.XDG_CONFIG_HOME;
  delete env.APPDATA;
  return {
    dir,
    home,
    config,
    async import(args, options = {}) {
      try {
        const out = await run(process.execPath, [CLI, 'import', ...args], {
          cwd: options.cwd ?? dir,
          env: { ...env, ...options.env },
          timeout: 20_000,
        });
        return { code: 0, stdout: out.stdout, stderr: out.stderr };
      } catch (error) {
        const e = error as { code: number; stdout: string; stderr: string };
        return { code: e.code, stdout: e.stdout, stderr: e.stderr };
      }
    },
    readConfig: () => JSON.parse(readFileSync(config, 'utf8')) as ReturnType<Sandbox['readConfig']>,
  };
}

function write(path: string, text: string): string {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, text);
  return path;
}

/** A VS Code mcp.json as users write it: comments, trailing commas, inputs, URLs with '//'. */
const VSCODE_JSONC = `// Workspace MCP servers
{
  "inputs": [
    { "type": "promptString", "id": "api-key", "description": "Remote API key", "password": true },
  ],
  "servers": {
    /* the memory server,
       started with npx */
    "memory": {
      "type": "stdio",
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-memory", "--note=http://example.com//a/*b*/"], // inline
      "env": { "MEMORY_FILE_PATH": "/tmp/memory.json", "RETRIES": 3, },
    },
    "remote": {
      "type": "http",
      "url": "http://127.0.0.1:9000/mcp",
      "headers": { "Authorization": "Bearer \${input:api-key}" },
    },
    "with-envfile": { "type": "stdio", "command": "node", "args": ["server.js"], "cwd": "/srv", "envFile": "/srv/.env" },
    "legacy": { "type": "sse", "url": "https://mcp.example.com/sse" },
  },
}
`;

test('a VS Code JSONC file is converted, with a warning for each entry it cannot carry over exactly', async () => {
  const box = sandbox();
  const source = write(join(box.dir, 'mcp.json'), VSCODE_JSONC);
  const out = await box.import(['--from', 'vscode', source]);
  assert.equal(out.code, 0, out.stderr);

  const config = box.readConfig();
  assert.deepEqual(config.mcpServers, {
    memory: {
      command: 'npx',
      args: ['-y', '@modelcontextprotocol/server-memory', '--note=http://example.com//a/*b*/'],
      env: { MEMORY_FILE_PATH: '/tmp/memory.json', RETRIES: '3' },
    },
    remote: { url: 'http://127.0.0.1:9000/mcp', headers: { Authorization: 'Bearer ${input:api-key}' } },
    'with-envfile': { command: 'node', args: ['server.js'], cwd: '/srv' },
    legacy: { url: 'https://mcp.example.com/sse' },
  });
  assert.deepEqual(parseUpstreams(config).problems, [], 'the daemon accepts every imported entry');
  assert.equal(statSync(box.config).mode & 0o777, 0o600, 'env and headers may hold secrets');

  assert.match(out.stderr, /warning: server 'remote': uses \$\{input:api-key\} \("Remote API key"\)/);
  assert.match(out.stderr, /warning: server 'with-envfile': "envFile" \/srv\/\.env is not carried over/);
  assert.match(out.stderr, /warning: server 'legacy': uses the legacy SSE transport/);
  assert.doesNotMatch(out.stderr, /server 'memory'/, 'a faithful entry gets no warning');
  assert.ok(out.stderr.includes(`wrote 4 servers (memory, remote, with-envfile, legacy) to ${box.config}`), out.stderr);
  assert.ok(out.stderr.includes(source), 'the hint names the client file whose entries to replace');

  const shim = JSON.parse(out.stdout) as { servers: Record<string, { type: string; command: string; args: string[] }> };
  assert.deepEqual(shim, { servers: { 'exai-ws': { type: 'stdio', command: process.execPath, args: [SHIM] } } });
});

test('without a path, VS Code means the workspace .vscode/mcp.json, and ${workspaceFolder} becomes that folder', async () => {
  const box = sandbox();
  const workspace = join(box.dir, 'project');
  write(
    join(workspace, '.vscode', 'mcp.json'),
    JSON.stringify({
      servers: { fs: { type: 'stdio', command: 'node', args: ['${workspaceFolder}/server.js'], cwd: '${workspaceFolder}' } },
    }),
  );
  // A user-level file exists too: the workspace file comes first.
  write(join(box.home, '.config', 'Code', 'User', 'mcp.json'), JSON.stringify({ servers: { other: { command: 'other' } } }));
  const out = await box.import(['--from', 'vscode'], { cwd: workspace });
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual(box.readConfig().mcpServers, { fs: { command: 'node', args: [join(workspace, 'server.js')], cwd: workspace } });
  assert.doesNotMatch(out.stderr, /warning/);
});

test('a user-level VS Code file keeps ${workspaceFolder} verbatim and says why', async () => {
  const box = sandbox();
  write(
    join(box.home, '.config', 'Code', 'User', 'mcp.json'),
    JSON.stringify({ servers: { fs: { type: 'stdio', command: 'node', args: ['${workspaceFolder}/server.js'] } } }),
  );
  const out = await box.import(['--from', 'vscode']);
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual(box.readConfig().mcpServers.fs, { command: 'node', args: ['${workspaceFolder}/server.js'] });
  assert.match(out.stderr, /warning: server 'fs': uses \$\{workspaceFolder\}, which has no single value/);
});

test('a Claude Desktop file imports as it is and gets an mcpServers shim entry', async () => {
  const box = sandbox();
  const source = write(
    join(box.dir, 'claude_desktop_config.json'),
    JSON.stringify({
      globalShortcut: 'Ctrl+Space',
      mcpServers: {
        memory: { command: 'npx', args: ['-y', '@modelcontextprotocol/server-memory'], env: {} },
        github: { command: 'docker', args: ['run', '-i', '--rm', 'ghcr.io/github/github-mcp-server'], env: { GITHUB_TOKEN: 'ghp_x' } },
      },
    }),
  );
  const out = await box.import(['--from', 'claude', source]);
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual(box.readConfig(), {
    mcpServers: {
      memory: { command: 'npx', args: ['-y', '@modelcontextprotocol/server-memory'], env: {} },
      github: { command: 'docker', args: ['run', '-i', '--rm', 'ghcr.io/github/github-mcp-server'], env: { GITHUB_TOKEN: 'ghp_x' } },
    },
  });
  assert.doesNotMatch(out.stderr, /warning/);
  const shim = JSON.parse(out.stdout) as { mcpServers: Record<string, unknown> };
  assert.deepEqual(shim, { mcpServers: { 'exai-ws': { command: process.execPath, args: [SHIM] } } });
});

test('without a path, Cursor means ~/.cursor/mcp.json; stdio and url entries both import', async () => {
  const box = sandbox();
  write(
    join(box.home, '.cursor', 'mcp.json'),
    JSON.stringify({
      mcpServers: {
        time: { command: 'uvx', args: ['mcp-server-time'] },
        docs: { url: 'https://docs.example.com/mcp', headers: { 'X-Team': 'a' } },
      },
    }),
  );
  const out = await box.import(['--from', 'cursor']);
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual(box.readConfig().mcpServers, {
    time: { command: 'uvx', args: ['mcp-server-time'] },
    docs: { url: 'https://docs.example.com/mcp', headers: { 'X-Team': 'a' } },
  });
  assert.ok(out.stderr.includes(join(box.home, '.cursor', 'mcp.json')), out.stderr);
  assert.equal(
    (JSON.parse(out.stdout) as { mcpServers: Record<string, { command: string }> }).mcpServers['exai-ws']?.command,
    process.execPath,
  );
});

test('merging keeps other servers and keys, replaces a same-named server and reports it', async () => {
  const box = sandbox();
  write(
    box.config,
    JSON.stringify({
      mcpServers: {
        mine: { command: 'my-server', args: [] },
        memory: { command: 'old-memory', args: [], start: 'eager', prefix: false },
      },
      note: 'kept',
    }),
  );
  const source = write(
    join(box.dir, 'cursor.json'),
    JSON.stringify({ mcpServers: { memory: { command: 'npx', args: ['-y', 'server-memory'] } } }),
  );
  const out = await box.import(['--from', 'cursor', source]);
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual(box.readConfig(), {
    mcpServers: {
      mine: { command: 'my-server', args: [] },
      memory: { command: 'npx', args: ['-y', 'server-memory'], start: 'eager', prefix: false },
    },
    note: 'kept',
  });
  assert.match(out.stderr, /replaced the existing 'memory' .*kept its start, prefix/);
});

test('importing again after following the hint does not import the shim itself', async () => {
  const box = sandbox();
  const source = write(
    join(box.dir, 'mcp.json'),
    JSON.stringify({ servers: { memory: { type: 'stdio', command: 'npx', args: ['server-memory'] } } }),
  );
  const first = await box.import(['--from', 'vscode', source]);
  assert.equal(first.code, 0, first.stderr);
  // The user replaces the client's entries with the printed one, then also keeps a new server.
  const shim = JSON.parse(first.stdout) as { servers: Record<string, unknown> };
  const viaBin = { type: 'stdio', command: 'exai-ws', args: ['shim', '--server', 'memory'] };
  const viaShimBin = { type: 'stdio', command: 'exai-ws-shim', args: ['--server', 'memory'] };
  const viaCli = { type: 'stdio', command: process.execPath, args: [CLI, 'shim'] };
  writeFileSync(
    source,
    JSON.stringify({
      servers: {
        ...shim.servers,
        'exai-ws-memory': viaBin,
        'shim-bin': viaShimBin,
        'via-cli': viaCli,
        added: { type: 'stdio', command: 'added' },
      },
    }),
  );

  const second = await box.import(['--from', 'vscode', source]);
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(Object.keys(box.readConfig().mcpServers).sort(), ['added', 'memory']);
  assert.match(second.stderr, /skipped 'exai-ws': it is the exai-ws shim itself/);
  assert.match(second.stderr, /skipped 'exai-ws-memory': it is the exai-ws shim itself/);
  assert.match(second.stderr, /skipped 'shim-bin': it is the exai-ws shim itself/);
  assert.match(second.stderr, /skipped 'via-cli': it is the exai-ws shim itself/);
});

test('a missing or broken source file fails with one line and leaves the config alone', async () => {
  const box = sandbox();
  const missing = await box.import(['--from', 'claude', join(box.dir, 'nope.json')]);
  assert.equal(missing.code, 1);
  assert.equal(missing.stdout, '');
  assert.match(missing.stderr, /nope\.json does not exist/);
  assert.equal(missing.stderr.trim().split('\n').length, 1);

  const noDefault = await box.import(['--from', 'cursor']);
  assert.equal(noDefault.code, 1);
  assert.match(noDefault.stderr, /no Cursor MCP config found at .*\.cursor\/mcp\.json/);

  const broken = write(join(box.dir, 'broken.json'), '{"mcpServers": {"a": {"command": "x"}');
  const bad = await box.import(['--from', 'cursor', broken]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /broken\.json: not valid JSON/);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
  assert.equal(existsSync(box.config), false, 'nothing was written');
});

test('a daemon config that is not JSON is never overwritten', async () => {
  const box = sandbox();
  write(box.config, '{"mcpServers": {oops}}');
  const source = write(join(box.dir, 'cursor.json'), JSON.stringify({ mcpServers: { a: { command: 'a' } } }));
  const out = await box.import(['--from', 'cursor', source]);
  assert.equal(out.code, 1);
  assert.match(out.stderr, /config\.json: not valid JSON.*nothing was changed/);
  assert.equal(readFileSync(box.config, 'utf8'), '{"mcpServers": {oops}}');
});

test('--dry-run prints the resulting config and writes nothing', async () => {
  const box = sandbox();
  const source = write(join(box.dir, 'mcp.json'), VSCODE_JSONC);
  const fresh = await box.import(['--from', 'vscode', source, '--dry-run']);
  assert.equal(fresh.code, 0, fresh.stderr);
  assert.equal(existsSync(box.config), false);
  assert.deepEqual(Object.keys((JSON.parse(fresh.stdout) as { mcpServers: object }).mcpServers), [
    'memory',
    'remote',
    'with-envfile',
    'legacy',
  ]);

  const before = JSON.stringify({ mcpServers: { mine: { command: 'mine' } } });
  write(box.config, before);
  const merged = await box.import(['--dry-run', '--from=vscode', source]);
  assert.equal(merged.code, 0, merged.stderr);
  assert.equal(readFileSync(box.config, 'utf8'), before);
  assert.deepEqual(Object.keys((JSON.parse(merged.stdout) as { mcpServers: object }).mcpServers), [
    'mine',
    'memory',
    'remote',
    'with-envfile',
    'legacy',
  ]);
  assert.match(merged.stderr, /nothing was written/);
});

test('bad usage exits 2 with the usage line', async () => {
  const box = sandbox();
  for (const args of [['--from', 'emacs'], [], ['--from', 'cursor', 'a.json', 'b.json'], ['--from', 'cursor', '--force']]) {
    const out = await box.import(args);
    assert.equal(out.code, 2, `${args.join(' ')}: ${out.stderr}`);
    assert.equal(out.stdout, '');
    assert.match(out.stderr, /usage: exai-ws import --from vscode\|claude\|cursor/);
  }
  assert.match((await box.import(['--from', 'emacs'])).stderr, /unknown client 'emacs'/);
});

test('the printed shim entry, run exactly as a client would, reaches the daemon', async () => {
  const box = sandbox();
  const daemon = await startDaemon(cleanup);
  const source = write(join(box.dir, 'cursor.json'), JSON.stringify({ mcpServers: { a: { command: 'a' } } }));
  const out = await box.import(['--from', 'cursor', source], { env: { EXAI_WS_HOME: daemon.home } });
  assert.equal(out.code, 0, out.stderr);
  const entry = (
    JSON.parse(out.stdout) as { mcpServers: Record<string, { command: string; args: string[]; env?: Record<string, string> }> }
  ).mcpServers['exai-ws'];
  assert.ok(entry);
  assert.deepEqual(entry.env, { EXAI_WS_HOME: daemon.home }, 'a non-default home is passed on to the shim');
  const transport = new StdioClientTransport({
    command: entry.command,
    args: entry.args,
    env: { ...baseEnv(), ...entry.env },
    stderr: 'pipe',
  });
  const client = new Client({ name: 'import-test', version: '1' });
  cleanup.add(() => client.close());
  await client.connect(transport);
  assert.equal(client.getServerVersion()?.name, 'exai-ws');
  await client.ping();
  const tools = await client.listTools();
  assert.ok(tools.tools.some((t) => t.name === 'version'));
});
