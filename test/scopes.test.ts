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
import { connectWs } from './fixtures/ws-client.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const FILESYSTEM = join(ROOT, 'node_modules', '@modelcontextprotocol', 'server-filesystem', 'dist', 'index.js');

/** A shim started in `cwd`, as an editor window on that project would start it. */
async function shimIn(daemon: DaemonHandle, cwd: string): Promise<Client> {
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

/**
 * A window whose hello names `cwd` as a shim started there names it, over a direct WebSocket
 * (no shim process): for the windows beside the one real shim of a test, whose scope is the
 * daemon's doing.
 */
async function wsWindowIn(daemon: DaemonHandle, cwd: string): Promise<Client> {
  return (await connectWs(cleanup, daemon, { name: 'scope-test', hello: { cwd } })).client;
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
/**
 * One daemon for the two workspace tests, one after another: each opens its own windows, on
 * projects of its own. What one counts the other may have started (the first counts every ready
 * workspace instance, the second adds one to them), so they run in order. The session-scope test
 * has its own daemon beside them: every session there has an instance of its session server
 * listed, so it counts every session of its daemon.
 */
let shared: Promise<DaemonHandle> | undefined;
function scopesDaemon(): Promise<DaemonHandle> {
  return (shared ??= startHostingDaemon(cleanup, (home) => {
    for (const [dir, text] of [
      ['project-a', 'alpha'],
      ['project-b', 'beta'],
      ['project', 'from the roots'],
    ] as const) {
      mkdirSync(join(home, dir));
      writeFileSync(join(home, dir, 'readme.txt'), text);
    }
    return { fs: { command: process.execPath, args: [FILESYSTEM, '${workspaceFolder}'], scope: 'workspace' } };
  }));
}

describe('scopes', { concurrency: true }, () => {
  describe('workspace scope, on one daemon', { concurrency: 1 }, () => {
    test('workspace scope: one server-filesystem per project directory, each limited to its own', async () => {
      const daemon = await scopesDaemon();
      const [projectA, projectB] = [join(daemon.home, 'project-a'), join(daemon.home, 'project-b')];
      // a1 is a real shim started in project A (its working directory reaches the daemon in its
      // hello); a2 and b say theirs in the hello directly. All three open at once, and their first
      // reads run at once: the two windows on A still get one process between them.
      const [a1, a2, b] = await Promise.all([shimIn(daemon, projectA), wsWindowIn(daemon, projectA), wsWindowIn(daemon, projectB)]);
      const read = async (client: Client, path: string) =>
        (await client.callTool({ name: 'fs__read_text_file', arguments: { path } })) as { isError?: boolean; content: { text?: string }[] };

      const [readA1, readA2, readB] = await Promise.all([
        read(a1, join(projectA, 'readme.txt')),
        read(a2, join(projectA, 'readme.txt')),
        read(b, join(projectB, 'readme.txt')),
      ]);
      assert.equal(textOf(readA1), 'alpha');
      assert.equal(textOf(readA2), 'alpha');
      assert.equal(textOf(readB), 'beta');
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
      const daemon = await scopesDaemon();
      const project = join(daemon.home, 'project');
      // Opened in the daemon home (like an editor that starts servers in the user's home directory),
      // over a direct WebSocket: roots are asked and answered by the daemon and the client, the
      // shim only relays them (its cwd in the hello is shown by the first test).
      let moved = false;
      const { client } = await connectWs(cleanup, daemon, {
        name: 'roots-window',
        capabilities: { roots: { listChanged: true } },
        hello: { cwd: daemon.home },
        prepare: (c) => {
          c.setRequestHandler(ListRootsRequestSchema, () => ({ roots: [{ uri: pathToFileURL(project).href, name: 'project' }] }));
          c.setNotificationHandler(ToolListChangedNotificationSchema, () => void (moved = true));
        },
      });
      await waitFor(() => moved, 'the session to move to its roots workspace');
      const read = (await client.callTool({ name: 'fs__read_text_file', arguments: { path: join(project, 'readme.txt') } })) as {
        content: { text?: string }[];
      };
      assert.equal(textOf(read), 'from the roots');
      const running = (await instances(daemon, 'fs')).filter((s) => s.state === 'ready');
      // The first test's two instances (its windows are still open) and one more: for the project
      // named by the roots, none for the window's working directory.
      assert.deepEqual(
        running.map((s) => s.scope_key).sort(),
        [join(daemon.home, 'project-a'), join(daemon.home, 'project-b'), project].sort(),
        'one instance, for the project named by the roots',
      );
    });
  });

  test('session scope: one process per session, gone when the session closes', async () => {
    const daemon = await startHostingDaemon(cleanup, (home) => ({ scratch: memoryEntry(home, { scope: 'session' }) }));
    // Direct WebSocket windows: a session's server is the daemon's doing, whatever carries the session.
    const [one, two] = await Promise.all([wsWindowIn(daemon, daemon.home), wsWindowIn(daemon, daemon.home)]);
    await Promise.all([one, two].map((client) => client.callTool({ name: 'scratch__read_graph', arguments: {} })));
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
