/**
 * Hosted servers end to end: the daemon runs the user's MCP servers from its `mcpServers`
 * config (the real server-memory and server-everything from npm) and shares one process of
 * each between sessions. Each session sees `<server>__<name>` tools and prompts, exactly what
 * the server itself answers over plain stdio; `exai-ws shim --server NAME` sees one server as
 * it is. Progress, cancellation and request ids stay with the session they belong to.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  Cleanup,
  connectShim,
  getHealth,
  makeHome,
  startDaemon,
  spawnShim,
  textOf,
  waitFor,
  within,
  runCli,
  type DaemonHandle,
} from './helpers.js';
import {
  cmdline,
  connectEverythingDirect,
  descendants,
  everythingEntry,
  memoryEntry,
  procStat,
  serverReport,
  startHostingDaemon,
  startTeedEverything,
  type ServerEntry,
  type ServerReport,
} from './fixtures/hosted-servers.js';
import { connectWs } from './fixtures/ws-client.js';
import { openRawWindow, readUntilReply } from './fixtures/raw-window.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const LONG_OP = 'everything__trigger-long-running-operation';

/**
 * A daemon hosting `servers`, whose lists wait for them however long their start takes on a
 * loaded machine (the tests compare full lists; the list wait is test/silent-server.test.ts's).
 */
function hostingDaemon(servers: (home: string) => Record<string, ServerEntry>): Promise<DaemonHandle> {
  return startHostingDaemon(cleanup, servers, { EXAI_WS_LIST_WAIT_MS: '0' });
}

let both: Promise<DaemonHandle> | undefined;
/**
 * One daemon hosting everything and memory, and two entries that cannot run (a command that is
 * not a string, one that does not exist), for the tests whose property is what their own
 * sessions get (ids, progress, the one-server view) and that assert nothing daemon-wide (no
 * session counts, restarts or server list), and for the test of the broken entries, which reads
 * only those entries' reports and memory's: a fresh daemon each would prove nothing more. Every
 * test on it works beside servers that failed, as a user's daemon often does.
 */
function sharedDaemon(): Promise<DaemonHandle> {
  both ??= hostingDaemon((home) => ({
    everything: everythingEntry(),
    memory: memoryEntry(home),
    broken: { command: 42 },
    nocmd: { command: 'no-such-command-xyz' },
  }));
  return both;
}

/** Items of one server in a merged list, with the `<server>__` prefix taken off. */
function ownItems<T extends { name: string }>(items: T[], server: string): T[] {
  const prefix = `${server}__`;
  return items.filter((i) => i.name.startsWith(prefix)).map((i) => ({ ...i, name: i.name.slice(prefix.length) }));
}

/** A deep copy with times of day (`7:21:55 AM`, `19:21:55`) replaced by a placeholder. */
function withoutClock<T>(value: T): T {
  return JSON.parse(JSON.stringify(value).replace(/\b\d{1,2}:\d{2}:\d{2}(\s?[AP]M)?/g, '<time>')) as T;
}
// Each test has its own daemon (but for those on sharedDaemon), home and processes: they run side by side.
describe('hosted servers', { concurrency: 3 }, () => {
  test('server-memory: two sessions share one process; an entity one session writes, the other reads', async () => {
    const daemon = await hostingDaemon((home) => ({ memory: memoryEntry(home) }));
    // Windows as shims open them (what the shim itself does is test/shim.test.ts's).
    const a = await connectWs(cleanup, daemon, { name: 'session-a' });
    const b = await connectWs(cleanup, daemon, { name: 'session-b' });

    const created = await a.client.callTool({
      name: 'memory__create_entities',
      arguments: { entities: [{ name: 'exai-ws-shared', entityType: 'project', observations: ['written by session A'] }] },
    });
    assert.notEqual(created.isError, true, textOf(created));

    const graph = JSON.parse(textOf(await b.client.callTool({ name: 'memory__read_graph', arguments: {} }))) as {
      entities: { name: string; observations: string[] }[];
    };
    assert.deepEqual(
      graph.entities.map((e) => [e.name, e.observations]),
      [['exai-ws-shared', ['written by session A']]],
    );
    const opened = JSON.parse(
      textOf(await b.client.callTool({ name: 'memory__open_nodes', arguments: { names: ['exai-ws-shared'] } })),
    ) as {
      entities: { name: string; entityType: string }[];
    };
    assert.deepEqual(
      opened.entities.map((e) => [e.name, e.entityType]),
      [['exai-ws-shared', 'project']],
    );

    const health = await getHealth(daemon);
    const servers = health.servers as ServerReport[];
    assert.deepEqual(
      servers.map((s) => s.name),
      ['memory'],
    );
    const memory = servers[0] as ServerReport;
    assert.equal(memory.state, 'ready');
    assert.equal(typeof memory.pid, 'number');
    assert.equal(memory.sessions, 2);
    const pid = memory.pid as number;
    assert.equal(procStat(pid)?.ppid, daemon.pid, 'the memory server is the daemon’s own child');
    // One process for both sessions: the daemon runs exactly one server-memory.
    const memoryProcs = descendants(daemon.pid).filter((p) => cmdline(p).includes('server-memory'));
    assert.deepEqual(memoryProcs, [pid]);
  });

  test('server-everything through two concurrent shims answers exactly what it answers over direct stdio', async () => {
    const daemon = await hostingDaemon(() => ({ everything: everythingEntry() }));
    const direct = await connectEverythingDirect(cleanup);
    const [one, two] = await Promise.all([
      connectShim(cleanup, daemon, { name: 'session-one' }),
      connectShim(cleanup, daemon, { name: 'session-two' }),
    ]);

    const directTools = (await direct.listTools()).tools;
    const directPrompts = (await direct.listPrompts()).prompts;
    const directResources = await direct.listResources();
    const directTemplates = (await direct.listResourceTemplates()).resourceTemplates;
    assert.ok(directTools.some((t) => t.name === 'echo') && directPrompts.length > 0 && directResources.resources.length > 0);
    const staticUri = directResources.resources[0]?.uri as string;
    const templateUri = 'demo://resource/dynamic/text/1';
    const directCalls = [
      await direct.callTool({ name: 'echo', arguments: { message: 'hello from a test' } }),
      await direct.callTool({ name: 'get-sum', arguments: { a: 19, b: 23 } }),
    ];
    const directPromptResults = [
      await direct.getPrompt({ name: 'simple-prompt' }),
      await direct.getPrompt({ name: 'args-prompt', arguments: { city: 'Lisbon', state: 'Lisboa' } }),
    ];
    // Dynamic resources say when they were made: compare them with the clock taken out.
    const directReads = withoutClock([await direct.readResource({ uri: staticUri }), await direct.readResource({ uri: templateUri })]);
    assert.match(textOf(directCalls[1]), /42/);

    const check = async (client: Client) => {
      assert.deepEqual(ownItems((await client.listTools()).tools, 'everything'), directTools);
      assert.deepEqual(ownItems((await client.listPrompts()).prompts, 'everything'), directPrompts);
      const resources = await client.listResources();
      // The built-in server lists no resources, so the merged first page is the server's own.
      assert.deepEqual(resources.resources.slice(0, directResources.resources.length), directResources.resources);
      if (directResources.nextCursor === undefined) assert.equal(resources.resources.length, directResources.resources.length);
      assert.deepEqual((await client.listResourceTemplates()).resourceTemplates, directTemplates);
      assert.deepEqual(
        [
          await client.callTool({ name: 'everything__echo', arguments: { message: 'hello from a test' } }),
          await client.callTool({ name: 'everything__get-sum', arguments: { a: 19, b: 23 } }),
        ],
        directCalls,
      );
      assert.deepEqual(
        [
          await client.getPrompt({ name: 'everything__simple-prompt' }),
          await client.getPrompt({ name: 'everything__args-prompt', arguments: { city: 'Lisbon', state: 'Lisboa' } }),
        ],
        directPromptResults,
      );
      assert.deepEqual(
        withoutClock([await client.readResource({ uri: staticUri }), await client.readResource({ uri: templateUri })]),
        directReads,
      );
    };
    await Promise.all([check(one.client), check(two.client)]);
    const report = await serverReport(daemon, 'everything');
    assert.equal(report.sessions, 2);
    assert.equal(report.restarts, 0);
  });

  test('progress reaches only the session whose call it belongs to, even when another uses the same id and token', async () => {
    const daemon = await sharedDaemon();
    // Raw sessions show the wire itself. (The SDK client can drop a last progress notification that
    // arrives in the same read as the result: it handles notifications a microtask late.)
    const [caller, busy, idle] = await Promise.all([1, 2, 3].map(() => openRawWindow(cleanup, daemon)));

    // Two sessions, one request id and one progress token: 7 with 4 steps, 7 with 2 steps.
    const longCall = (steps: number) => ({
      jsonrpc: '2.0',
      id: 7,
      method: 'tools/call',
      params: { name: LONG_OP, arguments: { duration: 1, steps }, _meta: { progressToken: 7 } },
    });
    caller!.send(longCall(4));
    busy!.send(longCall(2));
    const [callerReply, busyReply] = await Promise.all([readUntilReply(caller!, 7, 15_000), readUntilReply(busy!, 7, 15_000)]);

    assert.match(JSON.stringify(callerReply.response.result), /Steps: 4/);
    assert.deepEqual(
      callerReply.before.filter((m) => m.method === 'notifications/progress').map((m) => m.params),
      [1, 2, 3, 4].map((progress) => ({ progress, total: 4, progressToken: 7 })),
    );
    assert.match(JSON.stringify(busyReply.response.result), /Steps: 2/);
    assert.deepEqual(
      busyReply.before.filter((m) => m.method === 'notifications/progress').map((m) => m.params),
      [1, 2].map((progress) => ({ progress, total: 2, progressToken: 7 })),
    );

    // Whatever the idle session was sent sits before the answer to its ping: no progress.
    idle!.send({ jsonrpc: '2.0', id: 'idle-ping', method: 'ping' });
    const idleReply = await readUntilReply(idle!, 'idle-ping');
    assert.deepEqual(
      idleReply.before.filter((m) => m.method === 'notifications/progress'),
      [],
    );
  });

  test('cancelling a long-running call reaches the server; the session keeps working', async () => {
    // The tee passes everything through and keeps a copy of what the daemon sent the server.
    const { daemon, received } = await startTeedEverything(cleanup);
    const { client } = await connectWs(cleanup, daemon);

    // Cancelled while the (lazy) server is still starting: the request must never reach it.
    const early = new AbortController();
    const earlyCall = client.callTool({ name: 'everything__echo', arguments: { message: 'too late' } }, undefined, {
      signal: early.signal,
    });
    setTimeout(() => early.abort('changed my mind'), 20);
    await earlyCall.catch(() => undefined);

    const controller = new AbortController();
    let progressed = 0;
    const call = client.callTool({ name: LONG_OP, arguments: { duration: 30, steps: 30 } }, undefined, {
      signal: controller.signal,
      onprogress: () => progressed++,
    });
    // Mid-way: the server has started the work and reported a first step.
    await waitFor(() => progressed > 0, 'a first progress step', 15_000);
    assert.equal((await serverReport(daemon, 'everything')).inflight, 1);
    controller.abort('the user pressed stop');
    await assert.rejects(call);

    await waitFor(async () => (await serverReport(daemon, 'everything')).inflight === 0, 'no call in flight at the server', 5_000);
    await waitFor(async () => (await getHealth(daemon)).inflight === 0, 'no request in flight in the daemon', 5_000);
    const long = received().find((m) => m.method === 'tools/call' && m.params?.name === 'trigger-long-running-operation');
    assert.ok(long, 'the server got the long call');
    await waitFor(
      () => received().some((m) => m.method === 'notifications/cancelled' && m.params?.requestId === long.id),
      'notifications/cancelled for the long call at the server',
      5_000,
    );
    // Every cancellation the server hears names a request it was sent.
    const requestIds = new Set(
      received()
        .filter((m) => m.method !== undefined && m.id !== undefined)
        .map((m) => m.id),
    );
    for (const m of received().filter((m) => m.method === 'notifications/cancelled')) {
      assert.ok(requestIds.has(m.params?.requestId), `cancellation of a request the server never got: ${JSON.stringify(m)}`);
    }

    const echo = await client.callTool({ name: 'everything__echo', arguments: { message: 'still here' } });
    assert.equal(textOf(echo), 'Echo: still here');
  });

  test('two sessions using the same request ids at once each get only their own replies', async () => {
    const daemon = await sharedDaemon();
    const [left, right] = await Promise.all([openRawWindow(cleanup, daemon), openRawWindow(cleanup, daemon)]);
    const shims = { left, right };
    const ids: (number | string)[] = [];
    for (let i = 1; i <= 10; i++) ids.push(i, String(i));
    const message = (who: string, id: number | string) => `${who}:${typeof id}:${id}`;

    // Both sessions send all twenty requests (ids 1..10 as numbers and as strings) at once.
    for (const id of ids) {
      for (const [who, shim] of Object.entries(shims)) {
        shim.send({
          jsonrpc: '2.0',
          id,
          method: 'tools/call',
          params: { name: 'everything__echo', arguments: { message: message(who, id) } },
        });
      }
    }
    for (const [who, shim] of Object.entries(shims)) {
      const answers = new Map<string, string>();
      while (answers.size < ids.length) {
        const m = await shim.next(15_000);
        if (m.method !== undefined) continue; // a notification (list_changed)
        const key = `${typeof m.id}:${String(m.id)}`;
        assert.ok(!answers.has(key), `${who} got two replies for id ${key}`);
        answers.set(key, textOf(m.result));
      }
      for (const id of ids) assert.equal(answers.get(`${typeof id}:${id}`), `Echo: ${message(who, id)}`);
    }
  });

  test('exai-ws shim --server everything sees that one server as it is; an unknown name is refused', async () => {
    const daemon = await sharedDaemon();
    const direct = await connectEverythingDirect(cleanup);
    const { client } = await connectShim(cleanup, daemon, { args: ['--server', 'everything'] });

    assert.deepEqual(client.getServerVersion(), direct.getServerVersion());
    assert.equal(client.getServerVersion()?.name, 'mcp-servers/everything');
    assert.deepEqual(client.getServerCapabilities(), direct.getServerCapabilities());
    assert.equal(client.getInstructions(), direct.getInstructions());
    const tools = (await client.listTools()).tools;
    assert.deepEqual(tools, (await direct.listTools()).tools, 'unprefixed, and no built-in or other server’s tools');
    assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { message: 'single' } })), 'Echo: single');
    assert.deepEqual(await client.getPrompt({ name: 'simple-prompt' }), await direct.getPrompt({ name: 'simple-prompt' }));

    // Its refused linger (2 s while stdin stays open) at a tenth: it exits either way.
    const refused = spawnShim(cleanup, { ...daemon.clientEnv, EXAI_WS_TIMER_SCALE: '0.1' }, ['--server', 'nosuch']);
    // `within` clears its timer: a bare 10 s timer kept this file's process alive after its tests.
    const code = await within(refused.exited, 10_000, 'the refused shim to exit');
    assert.notEqual(code, 0);
    const lines = refused.stderr().trim().split('\n');
    assert.equal(lines.length, 1, refused.stderr());
    assert.match(lines[0] ?? '', /nosuch/);
    assert.match(lines[0] ?? '', /everything/, 'the refusal names the servers that exist');
  });

  test('broken config entries are reported and skipped; the good server works; status shows both', async () => {
    const daemon = await sharedDaemon();
    const { client } = await connectWs(cleanup, daemon);
    const names = (await client.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('memory__read_graph'), names.join(', '));
    assert.ok(!names.some((n) => n.startsWith('broken__') || n.startsWith('nocmd__')));
    const created = await client.callTool({
      name: 'memory__create_entities',
      arguments: { entities: [{ name: 'still-works', entityType: 'test', observations: [] }] },
    });
    assert.notEqual(created.isError, true, textOf(created));

    const health = await getHealth(daemon);
    const config = health.config as unknown as { path: string; problems: { server: string; key: string; reason: string }[] };
    assert.equal(config.path, join(daemon.home, 'config.json'));
    assert.deepEqual(
      config.problems.map((p) => [p.server, p.key]),
      [['broken', 'command']],
    );
    const nocmd = await serverReport(daemon, 'nocmd');
    assert.equal(nocmd.state, 'failed');
    assert.match(nocmd.last_error ?? '', /no-such-command-xyz.*not found/);
    const call = await client.callTool({ name: 'nocmd__anything', arguments: {} }).catch((e: unknown) => e);
    assert.ok(call instanceof Error, 'a tool of a server that never started is not callable');

    const status = await runCli(['status'], daemon.clientEnv);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /servers\n/);
    // NAME STATE PID SCOPE RESTARTS SESSIONS LAST ERROR
    assert.match(status.stdout, new RegExp(`memory\\s+ready\\s+2025-11-25\\s+${(await serverReport(daemon, 'memory')).pid}\\s`));
    assert.match(status.stdout, /nocmd\s+failed\s+-\s+-\s+shared\s+\d+\s+\d+\s+.*no-such-command-xyz/);
    assert.match(status.stdout, /config problems.*\n\s+broken: command: /);
  });

  test('a config file that is not JSON does not stop the daemon: one warning naming the file, line and column', async () => {
    const home = makeHome(cleanup);
    writeFileSync(join(home, 'config.json'), '{"mcpServers": {"memory": ');
    const daemon = await startDaemon(cleanup, { home });
    await waitFor(() => daemon.stderr().includes('config file not applied'), 'the warning');
    const warning = daemon
      .stderr()
      .split('\n')
      .filter((line) => line.includes('config file not applied'));
    assert.equal(warning.length, 1, daemon.stderr());
    assert.match(warning[0] ?? '', /config\.json is not valid JSON: line 1, column 27: the file ends where a value was expected/);
    assert.equal(daemon.proc.exitCode, null, 'the daemon runs on');
  });
});
