/**
 * exai-ws on Windows, end to end, under Wine with Node.js for Windows (scripts/windows-e2e.sh;
 * not part of `npm test`). One home for the whole file, as one user's machine: a window (the
 * official SDK client under Windows Node) launches the shim from the entry `exai-ws config
 * claude-desktop` printed there, which auto-starts the daemon; then the commands a user runs
 * (reload, restart, stop) and the ends a hosted server's process tree must share with it
 * (removal, crash, the daemon killed). Tests run in order and build on each other.
 *
 * What Wine cannot show (logon triggers, ACLs, `taskkill /T`) is tested by unit tests on every
 * platform and listed in the README.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, textOf, waitFor } from '../helpers.js';
import { WINDOWS_NODE, processLives, processesWith, runWineNode, wineNode, winPath, type WineProcess } from './wine.js';

const skip = WINDOWS_NODE ? false : 'EXAI_WS_WINDOWS_NODE is not set: run scripts/windows-e2e.sh';
const CLI = winPath(join(ROOT, 'dist', 'src', 'cli.js'));
const WINDOW = winPath(join(ROOT, 'dist', 'test', 'windows', 'window.js'));
const TREE = winPath(join(ROOT, 'dist', 'test', 'windows', 'tree-server.js'));
const MEMORY = winPath(join(ROOT, 'node_modules', '@modelcontextprotocol', 'server-memory', 'dist', 'index.js'));
/** Node.js 20 refuses to start on the Windows version Wine reports without it; servers get only their entry's variables. */
const WINE_ENV = { NODE_SKIP_PLATFORM_CHECK: '1' };
/** Wine starts each Windows process in a second or more: waits are generous. */
const SLOW_MS = 60_000;

let dir = '';
let env: Record<string, string> = {};
let marker = '';
const windows: WineProcess[] = [];

/** What a window's control port answers: a tool list, a call's result, or an error. */
interface Answer {
  tools?: { name: string }[];
  content?: { text?: string }[];
  isError?: boolean;
  error?: string;
}

interface Ready {
  port: number;
  connect_ms: number;
  pid: number;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function writeConfig(servers: Record<string, unknown>): void {
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ mcpServers: servers }, null, 2));
}

function servers(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    memory: {
      command: WINDOWS_NODE ? winNode() : 'node',
      args: [MEMORY],
      env: { ...WINE_ENV, MEMORY_FILE_PATH: winPath(join(dir, 'memory.jsonl')) },
    },
    // A .cmd file, as npx is on Windows (npx.cmd): started through cmd.exe, its arguments intact.
    viacmd: { command: winPath(join(dir, 'tree server.cmd')), args: [`${marker}-viacmd`, 'two words', 'a&b'], env: WINE_ENV },
    tree: { command: winNode(), args: [TREE, `${marker}-tree`], env: WINE_ENV },
    ...extra,
  };
}

function winNode(): string {
  return winPath(WINDOWS_NODE ?? '');
}

/** `exai-ws ARGS` under Windows Node. */
function cli(args: string[], name: string) {
  return runWineNode([CLI, ...args], { env, dir, name, timeoutMs: SLOW_MS });
}

/** Opens a window (a client under Windows Node through the shim entry) and waits for its control port. */
async function openWindow(name: string): Promise<{ ready: Ready; ask: (body: unknown) => Promise<Answer> }> {
  const readyFile = join(dir, `${name}.ready`);
  const proc = wineNode([WINDOW, winPath(join(dir, 'entry.json')), winPath(readyFile)], { env, dir, name });
  windows.push(proc);
  const ready = await waitFor(
    () => {
      if (proc.child.exitCode !== null) throw new Error(`window ${name} exited: ${proc.stderr()}`);
      return existsSync(readyFile) && readFileSync(readyFile, 'utf8').length > 0
        ? (JSON.parse(readFileSync(readyFile, 'utf8')) as Ready)
        : null;
    },
    `window ${name} to connect`,
    SLOW_MS,
    100,
  );
  const ask = async (body: unknown) => {
    const res = await fetch(`http://127.0.0.1:${ready.port}/`, { method: 'POST', body: JSON.stringify(body) });
    return (await res.json()) as Answer;
  };
  return { ready, ask };
}

function daemonProcesses(): number[] {
  // Windows daemons only (node.exe): a Linux daemon running elsewhere on the machine is not ours.
  return processesWith('cli.js').filter((pid) => {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('daemon') && /node\.exe/i.test(cmdline);
  });
}

function logText(): string {
  try {
    return readFileSync(join(dir, 'home', 'logs', 'ws_daemon.log'), 'utf8');
  } catch {
    return '';
  }
}

let windowA: Awaited<ReturnType<typeof openWindow>>;

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'exai-win-'));
  marker = `exai-win-${process.pid}-${Date.now()}`;
  writeFileSync(join(dir, 'daemon.env'), '');
  writeFileSync(join(dir, 'tree server.cmd'), `@echo off\r\n"${winNode()}" "${TREE}" %*\r\n`);
  writeConfig(servers());
  env = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('EXAI_WS_')) env[k] = v;
  Object.assign(env, {
    EXAI_WS_HOME: winPath(join(dir, 'home')),
    EXAI_WS_CONFIG: winPath(join(dir, 'config.json')),
    EXAI_WS_SETTINGS: winPath(join(dir, 'daemon.env')),
    EXAI_WS_TEST_DEFAULT_PORT: String(await freePort()),
    // Wine starts a process in a second or two, many more on a busy machine.
    EXAI_WS_AUTOSTART_TIMEOUT_MS: '60000',
  });
});

after(() => {
  if (process.env.EXAI_WS_WINDOWS_KEEP) return; // left for a look at what failed
  for (const w of windows) w.child.kill('SIGKILL');
  for (const pid of [...daemonProcesses(), ...processesWith(marker)]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

test('config claude-desktop prints a Windows entry: node.exe and the shim by Windows paths', { skip }, async () => {
  const printed = await cli(['config', 'claude-desktop'], 'config');
  assert.equal(printed.code, 0, printed.stderr);
  const json = JSON.parse(printed.stdout.slice(printed.stdout.indexOf('{'), printed.stdout.lastIndexOf('}') + 1)) as {
    mcpServers: Record<string, { command: string; args: string[]; env?: Record<string, string> }>;
  };
  const entry = json.mcpServers['exai-ws'];
  assert.ok(entry, printed.stdout);
  assert.match(entry.command, /^[A-Z]:\\.*node\.exe$/i);
  assert.match(entry.args[0] ?? '', /^[A-Z]:\\.*\\dist\\shim\.cjs$/i);
  assert.match(
    printed.stdout,
    /AppData\\\\Roaming\\\\Claude\\\\claude_desktop_config\.json|AppData\\Roaming\\Claude\\claude_desktop_config\.json/,
  );
  writeFileSync(join(dir, 'entry.json'), JSON.stringify(entry));
});

test(
  'a window auto-starts the daemon through the shim, lists and calls built-in and hosted tools (a .cmd entry among them)',
  { skip },
  async (t) => {
    windowA = await openWindow('window-a');
    t.diagnostic(`cold auto-start under Wine (shim launch to initialize done): ${windowA.ready.connect_ms} ms`);
    writeFileSync(join(tmpdir(), 'exai-win-autostart-ms.txt'), String(windowA.ready.connect_ms));
    // Servers that take longer than EXAI_WS_LIST_WAIT_MS to start (Wine is slow) come with a later list.
    const wanted = ['version', 'listmodels', 'chat', 'memory__read_graph', 'viacmd__argv', 'tree__pids'];
    let names: string[] = [];
    await waitFor(
      async () => {
        names = ((await windowA.ask({ op: 'list' })).tools ?? []).map((tool) => tool.name);
        return wanted.every((name) => names.includes(name));
      },
      'every tool listed',
      SLOW_MS,
      500,
    ).catch(() => undefined);
    for (const name of wanted) assert.ok(names.includes(name), `${name} in ${names.join(' ')}`);
    assert.match(textOf(await windowA.ask({ op: 'call', name: 'version' })), /exai-ws/);
    const created = await windowA.ask({
      op: 'call',
      name: 'memory__create_entities',
      args: { entities: [{ name: 'wine', entityType: 'test', observations: ['ran'] }] },
    });
    assert.ok(!created.isError, JSON.stringify(created));
    assert.match(textOf(await windowA.ask({ op: 'call', name: 'memory__read_graph' })), /wine/);
    // The .cmd entry got its arguments through cmd.exe as they were written.
    assert.deepEqual(JSON.parse(textOf(await windowA.ask({ op: 'call', name: 'viacmd__argv' }))), [`${marker}-viacmd`, 'two words', 'a&b']);
    assert.equal(daemonProcesses().length, 1, 'one daemon');
  },
);

test(
  "a user's folders and commands: settings in %APPDATA%, state in %LOCALAPPDATA%, status, logs, open, import from VS Code",
  { skip },
  async () => {
    // Without the test's own paths: where a user's settings and state go by default.
    const own = Object.fromEntries(
      Object.entries(env).filter(([k]) => !['EXAI_WS_HOME', 'EXAI_WS_SETTINGS', 'EXAI_WS_CONFIG'].includes(k)),
    );
    const settings = await runWineNode([CLI, 'settings', 'list'], { env: own, dir, name: 'settings', timeoutMs: SLOW_MS });
    assert.match(settings.stdout, /^C:\\users\\[^\\]+\\AppData\\Roaming\\exai-ws\\daemon\.env/m, settings.stdout + settings.stderr);
    const state = await runWineNode([CLI, 'status'], { env: own, dir, name: 'status-default', timeoutMs: SLOW_MS });
    assert.match(state.stderr, /C:\\users\\[^\\]+\\AppData\\Local\\exai-ws\\logs\\ws_daemon\.pid/, state.stderr);

    const status = await cli(['status'], 'status');
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /memory/);
    const logs = await cli(['logs', '-n', '20'], 'logs');
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /daemon started/);
    const open = await cli(['open', '--print'], 'open');
    assert.equal(open.code, 0, open.stderr);
    assert.match(open.stdout, /http:\/\/127\.0\.0\.1:\d+\/\S*code=/);

    // VS Code keeps its user-level servers in %APPDATA%\Code\User\mcp.json.
    const appData = join(process.env.WINEPREFIX ?? '', 'drive_c', 'users', userInfo().username, 'AppData', 'Roaming', 'Code', 'User');
    mkdirSync(appData, { recursive: true });
    writeFileSync(join(appData, 'mcp.json'), JSON.stringify({ servers: { fromvscode: { command: 'node.exe', args: ['server.js'] } } }));
    try {
      const imported = await cli(['import', '--from', 'vscode', '--dry-run'], 'import');
      assert.equal(imported.code, 0, imported.stderr);
      assert.match(imported.stdout, /fromvscode/);
      // Found where VS Code keeps it on Windows: the only place the test put it.
    } finally {
      rmSync(join(appData, 'mcp.json'), { force: true });
    }
  },
);

test('exai-ws reload exits 0 and applies a change', { skip }, async () => {
  writeConfig(servers({ extra: { command: winNode(), args: [TREE, `${marker}-extra`], env: WINE_ENV } }));
  const reloaded = await cli(['reload'], 'reload');
  assert.equal(reloaded.code, 0, reloaded.stderr);
  assert.match(reloaded.stdout, /config reloaded/);
  await waitFor(
    async () => ((await windowA.ask({ op: 'list' })).tools ?? []).some((tool) => tool.name === 'extra__pids'),
    'extra__pids listed',
    SLOW_MS,
    200,
  );
});

test("a hosted server's tree ends with it: removed from the config, and after a crash", { skip }, async () => {
  assert.ok(!(await windowA.ask({ op: 'call', name: 'extra__pids' })).isError);
  await waitFor(() => processesWith(`${marker}-extra-grandchild`).length === 1, 'the grandchild of extra', SLOW_MS, 100);
  writeConfig(servers());
  const reloaded = await cli(['reload'], 'reload-remove');
  assert.equal(reloaded.code, 0, reloaded.stderr);
  await waitFor(() => processesWith(`${marker}-extra`).length === 0, 'extra and its grandchild gone after removal', SLOW_MS, 200);

  assert.ok(!(await windowA.ask({ op: 'call', name: 'tree__pids' })).isError);
  await waitFor(() => processesWith(`${marker}-tree-grandchild`).length === 1, 'the grandchild of tree', SLOW_MS, 100);
  await windowA.ask({ op: 'call', name: 'tree__crash' });
  await waitFor(() => processesWith(`${marker}-tree-grandchild`).length === 0, "tree's grandchild gone after tree crashed", SLOW_MS, 200);
});

test('exai-ws restart replaces the daemon while a window stays open; the window reconnects', { skip }, async () => {
  const before = daemonProcesses();
  const restarted = await cli(['restart'], 'restart');
  assert.equal(restarted.code, 0, restarted.stderr);
  assert.match(restarted.stdout, /daemon restarted: pid \d+ -> \d+/);
  await waitFor(() => before.every((pid) => !daemonProcesses().includes(pid)), 'the old daemon gone', SLOW_MS, 200);
  await waitFor(
    async () => textOf(await windowA.ask({ op: 'call', name: 'version' })).includes('exai-ws'),
    'the window answered by the new daemon',
    SLOW_MS,
    500,
  );
  assert.match(logText(), /daemon stopped/);
});

test('a daemon killed outright takes its hosted trees with it', { skip }, async () => {
  assert.ok(!(await windowA.ask({ op: 'call', name: 'tree__pids' })).isError);
  await waitFor(() => processesWith(`${marker}-tree-grandchild`).length === 1, 'the grandchild of tree', SLOW_MS, 100);
  // Lists come from memory since the restart: a call starts viacmd (a list no longer does).
  assert.ok(!(await windowA.ask({ op: 'call', name: 'viacmd__argv' })).isError);
  // The window's shim starts a new daemon at once, which starts servers of its own: the
  // processes of the killed daemon's trees are the ones that must go.
  await waitFor(() => processesWith(`${marker}-viacmd-grandchild`).length === 1, 'the grandchild of viacmd', SLOW_MS, 100);
  const trees = [...processesWith(`${marker}-tree`), ...processesWith(`${marker}-viacmd`)];
  assert.ok(trees.length >= 4, `two servers and their grandchildren: ${trees.join(' ')}`);
  const card = JSON.parse(readFileSync(join(dir, 'home', 'logs', 'ws_daemon.pid'), 'utf8')) as { pid: number };
  // TerminateProcess from another Windows process, as Task Manager's "End task" does.
  const killed = await runWineNode(['-e', `process.kill(${card.pid})`], { env, dir, name: 'kill', timeoutMs: SLOW_MS });
  assert.equal(killed.code, 0, killed.stderr);
  await waitFor(() => !trees.some(processLives), 'every hosted tree gone with the daemon', SLOW_MS, 200);
  // The window's shim starts a new daemon and goes on.
  await waitFor(
    async () => textOf(await windowA.ask({ op: 'call', name: 'version' })).includes('exai-ws'),
    'the window answered again',
    SLOW_MS,
    500,
  );
});

test('exai-ws stop shuts the daemon down gracefully: log lines, card removed, no hosted process left', { skip }, async () => {
  assert.ok(!(await windowA.ask({ op: 'call', name: 'tree__pids' })).isError);
  await waitFor(() => processesWith(`${marker}-tree-grandchild`).length === 1, 'the grandchild of tree', SLOW_MS, 100);
  // A window left open would start a new daemon once this one is gone.
  await windowA.ask({ op: 'close' });
  const stopped = await cli(['stop'], 'stop');
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.match(stopped.stdout, /daemon \d+ stopped/);
  const log = logText();
  assert.match(log, /"stop asked"/);
  assert.match(log, /daemon stopped/);
  assert.ok(!existsSync(join(dir, 'home', 'logs', 'ws_daemon.pid')), 'the address card is removed');
  await waitFor(() => processesWith(marker).length === 0, 'no hosted process left', SLOW_MS, 200);
  assert.equal(daemonProcesses().length, 0);
});
