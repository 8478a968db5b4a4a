/**
 * `exai-ws import`: real client config files in, the daemon's config file and the shim entry
 * out, through the real CLI process with EXAI_WS_CONFIG (and HOME) in a temp dir.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { runImportCommand } from '../src/commands/import.js';
import { parseUpstreams } from '../src/hosting/upstream-config.js';
import { CLI, Cleanup, SHIM, baseEnv, getHealth, makeHome, startDaemon } from './helpers.js';
import { MEMORY_SCRIPT } from './fixtures/hosted-servers.js';

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
  /** `exai-ws import ARGS` in this process: the function the CLI calls, with the sandbox's cwd, environment and HOME. */
  import(args: string[], options?: { cwd?: string; env?: Record<string, string> }): Promise<Outcome>;
  /** The real CLI process, as a user runs it: argv, exit code, stdout and stderr. */
  importCli(args: string[], options?: { cwd?: string; env?: Record<string, string> }): Promise<Outcome>;
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
    // Most outputs are checked in this process (a CLI process is about 0.35 s of CPU); each test
    // that is about the command as a whole (exit codes, usage, an entry pasted) runs the real CLI.
    import(args, options = {}) {
      let stdout = '';
      let stderr = '';
      // The command finds ~/.cursor and ~/.config through os.homedir(), which reads HOME: the
      // sandbox's for the length of this synchronous call, as the CLI process would have it.
      const ownHome = process.env.HOME;
      process.env.HOME = home;
      try {
        const code = runImportCommand(args, {
          cwd: options.cwd ?? dir,
          env: { ...env, ...options.env },
          stdout: { write: (text: string) => (stdout += text) },
          stderr: { write: (text: string) => (stderr += text) },
        });
        return Promise.resolve({ code, stdout, stderr });
      } finally {
        if (ownHome === undefined) delete process.env.HOME;
        else process.env.HOME = ownHome;
      }
    },
    async importCli(args, options = {}) {
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
// Each test has its own daemon, home and processes: they run side by side.
describe('exai-ws import', { concurrency: 4 }, () => {
  test('a VS Code JSONC file is converted, with a warning for each entry it cannot carry over exactly', async () => {
    const box = sandbox();
    const source = write(join(box.dir, 'mcp.json'), VSCODE_JSONC);
    const out = await box.importCli(['--from', 'vscode', source]);
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

  test('without a path, VS Code means the workspace .vscode/mcp.json; ${workspaceFolder} makes a workspace-scoped server, kept as written', async () => {
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
    // Each window's own folder, as VS Code gave it: not the folder this file happens to be in.
    assert.deepEqual(box.readConfig().mcpServers, {
      fs: { command: 'node', args: ['${workspaceFolder}/server.js'], cwd: '${workspaceFolder}', scope: 'workspace' },
    });
    assert.deepEqual(parseUpstreams(box.readConfig()).problems, [], 'the daemon accepts it');
    assert.doesNotMatch(out.stderr, /warning/);
  });

  test('${workspaceFolder} in env values or a relative cwd makes a workspace server too; a remote entry is pinned to its folder', async () => {
    const box = sandbox();
    const workspace = join(box.dir, 'project');
    const source = write(
      join(workspace, '.vscode', 'mcp.json'),
      JSON.stringify({
        servers: {
          env: {
            command: 'node',
            args: ['s.js'],
            env: { ROOT: '${workspaceFolder}', NAME: '${workspaceFolderBasename}', HOME_DIR: '${userHome}' },
          },
          rel: { command: 'node', args: ['${workspaceFolder}/s.js'], cwd: 'tools' },
          pinned: { command: 'node', args: ['s.js'], cwd: 'tools' },
          remote: { type: 'http', url: 'http://127.0.0.1:9000/mcp', headers: { 'X-Folder': '${workspaceFolder}' } },
        },
      }),
    );
    const out = await box.import(['--from', 'vscode', source]);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(box.readConfig().mcpServers, {
      env: {
        command: 'node',
        args: ['s.js'],
        env: { ROOT: '${workspaceFolder}', NAME: '${workspaceFolderBasename}', HOME_DIR: box.home },
        scope: 'workspace',
      },
      rel: { command: 'node', args: ['${workspaceFolder}/s.js'], cwd: '${workspaceFolder}/tools', scope: 'workspace' },
      pinned: { command: 'node', args: ['s.js'], cwd: join(workspace, 'tools') },
      remote: { url: 'http://127.0.0.1:9000/mcp', headers: { 'X-Folder': workspace } },
    });
    assert.deepEqual(parseUpstreams(box.readConfig()).problems, []);
    assert.doesNotMatch(out.stderr, /warning/);
  });

  test('a user-level VS Code file: ${workspaceFolder} makes a workspace server; a remote one keeps it verbatim and says why', async () => {
    const box = sandbox();
    write(
      join(box.home, '.config', 'Code', 'User', 'mcp.json'),
      JSON.stringify({
        servers: {
          fs: { type: 'stdio', command: 'node', args: ['${workspaceFolder}/server.js'] },
          remote: { type: 'http', url: 'http://127.0.0.1:9000/mcp', headers: { 'X-Folder': '${workspaceFolder}' } },
        },
      }),
    );
    const out = await box.import(['--from', 'vscode']);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(box.readConfig().mcpServers.fs, { command: 'node', args: ['${workspaceFolder}/server.js'], scope: 'workspace' });
    assert.doesNotMatch(out.stderr, /server 'fs'/);
    assert.match(out.stderr, /warning: server 'remote': uses \$\{workspaceFolder\}, which has no single value/);
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

  test('replacing an entry keeps what the source does not say (env entries, daemon-only and unknown keys); the source wins for the rest', async () => {
    const box = sandbox();
    write(
      box.config,
      JSON.stringify({
        mcpServers: {
          mine: { command: 'my-server', args: [] },
          memory: {
            command: 'old-memory',
            args: ['--old'],
            env: { MEMORY_FILE_PATH: '/old/memory.json', API_TOKEN: 'only-in-exai-ws' },
            cwd: '/srv/memory',
            start: 'eager',
            prefix: false,
            asks_client: ['ask'],
            x_note: 'a key exai-ws does not know',
          },
          site: { command: 'old-site', args: [], env: { A: 'a' }, idle_timeout_ms: 5000 },
        },
        note: 'kept',
      }),
    );
    const source = write(
      join(box.dir, 'cursor.json'),
      JSON.stringify({
        mcpServers: {
          memory: { command: 'npx', args: ['-y', 'server-memory'], env: { MEMORY_FILE_PATH: '/new/memory.json', DEBUG: '1' } },
          // Now a remote server: its stdio keys go, what is not about the kind stays.
          site: { url: 'http://127.0.0.1:9000/mcp' },
        },
      }),
    );
    const dry = await box.import(['--from', 'cursor', source, '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(
      dry.stderr,
      /would replace the existing 'memory' in .*\(would keep its env\.API_TOKEN, cwd, start, prefix, asks_client, x_note\)/,
    );
    assert.match(dry.stderr, /would replace the existing 'site' in .*\(would keep its idle_timeout_ms\)/);
    assert.match(dry.stderr, /would write 2 servers \(memory, site\)/);
    assert.doesNotMatch(dry.stderr, /\b(replaced|wrote|skipped|renamed|kept)\b/, 'a dry run speaks in the future tense');

    const out = await box.import(['--from', 'cursor', source]);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(box.readConfig(), {
      mcpServers: {
        mine: { command: 'my-server', args: [] },
        memory: {
          command: 'npx',
          args: ['-y', 'server-memory'],
          env: { MEMORY_FILE_PATH: '/new/memory.json', API_TOKEN: 'only-in-exai-ws', DEBUG: '1' },
          cwd: '/srv/memory',
          start: 'eager',
          prefix: false,
          asks_client: ['ask'],
          x_note: 'a key exai-ws does not know',
        },
        site: { url: 'http://127.0.0.1:9000/mcp', idle_timeout_ms: 5000 },
      },
      note: 'kept',
    });
    assert.deepEqual(parseUpstreams(box.readConfig()).problems, []);
    assert.match(out.stderr, /replaced the existing 'memory' .*\(kept its env\.API_TOKEN, cwd, start, prefix, asks_client, x_note\)/);
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
    const missing = await box.importCli(['--from', 'claude', join(box.dir, 'nope.json')]);
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

    // Every line of a dry run is about what would happen.
    const renamed = write(
      join(box.dir, 'odd.json'),
      JSON.stringify({ servers: { 'odd name': { command: 'x' }, 'exai-ws': { command: 'exai-ws', args: ['shim'] } } }),
    );
    const odd = await box.import(['--from', 'vscode', renamed, '--dry-run']);
    assert.equal(odd.code, 0, odd.stderr);
    assert.match(odd.stderr, /would skip 'exai-ws': it is the exai-ws shim itself/);
    assert.match(odd.stderr, /server 'odd-name': would be renamed from 'odd name'/);
    for (const line of odd.stderr.trim().split('\n')) assert.match(line, /\bwould\b/);
  });

  test('bad usage exits 2 with the usage line', async () => {
    const box = sandbox();
    for (const [i, args] of [
      ['--from', 'emacs'],
      [],
      ['--from', 'cursor', 'a.json', 'b.json'],
      ['--from', 'cursor', '--force'],
    ].entries()) {
      const out = i === 0 ? await box.importCli(args) : await box.import(args);
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
    const out = await box.importCli(['--from', 'cursor', source], { env: { EXAI_WS_HOME: daemon.home } });
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

  test('an imported ${workspaceFolder} server runs once per window folder, each started in and with its own folder', async () => {
    const box = sandbox();
    const daemonHome = makeHome(cleanup);
    const projects = [join(box.dir, 'project-a'), join(box.dir, 'project-b')];
    for (const project of projects) mkdirSync(project);
    // server-memory keeps its graph where MEMORY_FILE_PATH says: each window's in its own folder.
    const source = write(
      join(projects[0] ?? '', '.vscode', 'mcp.json'),
      JSON.stringify({
        servers: {
          notes: {
            type: 'stdio',
            command: process.execPath,
            args: [MEMORY_SCRIPT, '--folder=${workspaceFolder}'],
            env: { MEMORY_FILE_PATH: '${workspaceFolder}/memory.jsonl' },
            cwd: '${workspaceFolder}',
          },
        },
      }),
    );
    const out = await box.import(['--from', 'vscode', source], { env: { EXAI_WS_CONFIG: join(daemonHome, 'config.json') } });
    assert.equal(out.code, 0, out.stderr);
    const daemon = await startDaemon(cleanup, { home: daemonHome });

    for (const [i, project] of projects.entries()) {
      const transport = new StdioClientTransport({
        command: process.execPath,
        args: [CLI, 'shim'],
        env: { ...baseEnv(), ...daemon.clientEnv },
        cwd: project,
        stderr: 'pipe',
      });
      const client = new Client({ name: `window-${i}`, version: '1' });
      cleanup.add(() => client.close());
      await client.connect(transport);
      const created = (await client.callTool({
        name: 'notes__create_entities',
        arguments: { entities: [{ name: `entity-${i}`, entityType: 'note', observations: [] }] },
      })) as { isError?: boolean };
      assert.ok(!created.isError, JSON.stringify(created));
    }

    for (const [i, project] of projects.entries()) {
      const graph = readFileSync(join(project, 'memory.jsonl'), 'utf8');
      assert.match(graph, new RegExp(`entity-${i}`), `window ${i}'s notes are in its own folder`);
      assert.doesNotMatch(graph, new RegExp(`entity-${1 - i}`), 'and only its own');
    }
    const instances = ((await getHealth(daemon)).servers as { name: string; scope_key: string | null; pid: number | null }[]).filter(
      (s) => s.name === 'notes',
    );
    assert.deepEqual(instances.map((s) => s.scope_key).sort(), [...projects].sort());
    for (const instance of instances) {
      const pid = instance.pid ?? -1;
      assert.equal(realpathSync(`/proc/${pid}/cwd`), realpathSync(instance.scope_key ?? ''), 'started in its folder');
      assert.ok(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(`--folder=${instance.scope_key}`), 'its args name it');
    }
  });

  test('the daemon refuses a ${workspaceFolder} cwd in a server that is not workspace-scoped', () => {
    const { servers, problems } = parseUpstreams({
      mcpServers: {
        shared: { command: 'node', cwd: '${workspaceFolder}/x' },
        scoped: { command: 'node', cwd: '${workspaceFolder}/x', scope: 'workspace' },
      },
    });
    assert.deepEqual(
      servers.map((s) => s.name),
      ['scoped'],
    );
    assert.deepEqual(problems, [
      { server: 'shared', key: 'cwd', reason: '${workspaceFolder} has a value only in a server with "scope": "workspace"' },
    ]);
  });
});
