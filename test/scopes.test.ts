/**
 * Scopes: a `workspace` server runs once per client working directory (server-filesystem
 * limited to that directory through the roots the daemon answers), a `session` server once per
 * session and only while it lives.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { ListRootsRequestSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { CLI, Cleanup, ROOT, baseEnv, getHealth, textOf, waitFor, type DaemonHandle } from './helpers.js';
import { memoryEntry, processGone, startHostingDaemon } from './fixtures/hosted-servers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const FILESYSTEM = join(ROOT, 'node_modules', '@modelcontextprotocol', 'server-filesystem', 'dist', 'index.js');

/** A shim started in `cwd`, as an editor window on that project would start it. */
async function windowIn(daemon: DaemonHandle, cwd: string): Promise<Client> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'shim'],
    env: { ...baseEnv(), ...daemon.clientEnv },
    cwd,
    stderr: 'pipe',
  });
  const client = new Client({ name: 'scope-test', version: '1' });
  cleanup.add(() => client.close());
  await client.connect(transport);
  return client;
}

interface Instance {
  name: string;
  scope: string;
  scope_key: string | null;
  state: string;
  pid: number | null;
}

async function instances(daemon: DaemonHandle, name: string): Promise<Instance[]> {
  return ((await getHealth(daemon)).servers as Instance[]).filter((s) => s.name === name);
}
// Each test has its own daemon, home and processes: they run side by side.
describe('scopes', { concurrency: true }, () => {
  test('workspace scope: one server-filesystem per project directory, each limited to its own', async () => {
    let projectA = '';
    let projectB = '';
    const daemon = await startHostingDaemon(cleanup, (home) => {
      projectA = join(home, 'project-a');
      projectB = join(home, 'project-b');
      for (const [dir, text] of [
        [projectA, 'alpha'],
        [projectB, 'beta'],
      ] as const) {
        mkdirSync(dir);
        writeFileSync(join(dir, 'readme.txt'), text);
      }
      return { fs: { command: process.execPath, args: [FILESYSTEM, '${workspaceFolder}'], scope: 'workspace' } };
    });
    const a1 = await windowIn(daemon, projectA);
    const a2 = await windowIn(daemon, projectA);
    const b = await windowIn(daemon, projectB);
    const read = async (client: Client, path: string) =>
      (await client.callTool({ name: 'fs__read_text_file', arguments: { path } })) as { isError?: boolean; content: { text?: string }[] };

    assert.equal(textOf(await read(a1, join(projectA, 'readme.txt'))), 'alpha');
    assert.equal(textOf(await read(a2, join(projectA, 'readme.txt'))), 'alpha');
    assert.equal(textOf(await read(b, join(projectB, 'readme.txt'))), 'beta');
    const outside = await read(a1, join(projectB, 'readme.txt'));
    assert.equal(outside.isError, true, 'project A may not read project B');
    assert.match(textOf(outside), /denied|outside|not allowed/i);
    const outsideB = await read(b, join(projectA, 'readme.txt'));
    assert.equal(outsideB.isError, true, 'project B may not read project A');

    const running = (await instances(daemon, 'fs')).filter((s) => s.state === 'ready');
    assert.equal(running.length, 2, 'two projects, two processes; the two windows on A share one');
    assert.deepEqual(running.map((s) => s.scope_key).sort(), [projectA, projectB].sort());
    assert.equal(new Set(running.map((s) => s.pid)).size, 2);
  });

  test("workspace scope: a client's roots say which project it has open, whatever its working directory", async () => {
    let project = '';
    const daemon = await startHostingDaemon(cleanup, (home) => {
      project = join(home, 'project');
      mkdirSync(project);
      writeFileSync(join(project, 'readme.txt'), 'from the roots');
      return { fs: { command: process.execPath, args: [FILESYSTEM, '${workspaceFolder}'], scope: 'workspace' } };
    });
    // Started in the daemon home (like an editor that starts servers in the user's home directory).
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, 'shim'],
      env: { ...baseEnv(), ...daemon.clientEnv },
      cwd: daemon.home,
      stderr: 'pipe',
    });
    const client = new Client({ name: 'roots-window', version: '1' }, { capabilities: { roots: { listChanged: true } } });
    client.setRequestHandler(ListRootsRequestSchema, () => ({ roots: [{ uri: pathToFileURL(project).href, name: 'project' }] }));
    let moved = false;
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => void (moved = true));
    cleanup.add(() => client.close());
    await client.connect(transport);
    await waitFor(() => moved, 'the session to move to its roots workspace');
    const read = (await client.callTool({ name: 'fs__read_text_file', arguments: { path: join(project, 'readme.txt') } })) as {
      content: { text?: string }[];
    };
    assert.equal(textOf(read), 'from the roots');
    const running = (await instances(daemon, 'fs')).filter((s) => s.state === 'ready');
    assert.deepEqual(
      running.map((s) => s.scope_key),
      [project],
      'one instance, for the project named by the roots',
    );
  });

  test('session scope: one process per session, gone when the session closes', async () => {
    const daemon = await startHostingDaemon(cleanup, (home) => ({ scratch: memoryEntry(home, { scope: 'session' }) }));
    const one = await windowIn(daemon, daemon.home);
    const two = await windowIn(daemon, daemon.home);
    for (const client of [one, two]) await client.callTool({ name: 'scratch__read_graph', arguments: {} });
    const running = await instances(daemon, 'scratch');
    assert.equal(running.length, 2);
    assert.equal(new Set(running.map((s) => s.scope_key)).size, 2, 'keyed by session');
    const pids = running.map((s) => s.pid).filter((p): p is number => typeof p === 'number');
    assert.equal(pids.length, 2);

    await one.close();
    await waitFor(async () => (await instances(daemon, 'scratch')).length === 1, 'the closed session to take its server along');
    const left = await instances(daemon, 'scratch');
    const gone = pids.filter((p) => p !== left[0]?.pid);
    assert.equal(gone.length, 1);
    await waitFor(() => processGone(gone[0] ?? -1), 'the process of the closed session to exit');
    assert.ok(!processGone(left[0]?.pid ?? -1), 'the other session keeps its own');
    assert.match(textOf(await two.callTool({ name: 'scratch__read_graph', arguments: {} })), /entities/);
  });
});
