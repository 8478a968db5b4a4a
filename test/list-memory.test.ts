/**
 * Lists remembered between daemon runs, and server entries' tool filters, end to end: a real
 * daemon with its own home, real shim windows and real server processes. Ten lazy servers
 * (test/fixtures/counted-server.ts: each start appends its pid to a file) are listed once; the
 * daemon is stopped with SIGTERM and started again on the same home; a new window's first
 * `tools/list` is answered from the files in `<home>/lists` without starting any of them, and
 * its first call starts just that one. server-memory with `exclude_tools: ["delete_*"]` shows
 * no delete tool and refuses a call to one as an unknown tool (-32602), in the merged and the
 * single-server view, before it ever started, and the call never reaches it.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Cleanup, ROOT, connectShim, makeHome, startDaemon, textOf, waitFor, type DaemonHandle } from './helpers.js';
import { memoryEntry, serverReport } from './fixtures/hosted-servers.js';
import { modernPost } from './fixtures/modern-http.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const COUNTED = join(ROOT, 'dist', 'test', 'fixtures', 'counted-server.js');
const LISTS_WAIT = { EXAI_WS_LIST_WAIT_MS: '0' };

/** The `<name> <pid>` lines the counted servers wrote, one per start. */
function starts(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
}

async function stop(daemon: DaemonHandle): Promise<void> {
  daemon.proc.kill('SIGTERM');
  await daemon.exited;
}

test('a restarted daemon lists ten lazy servers seen once from memory, starting none; the first call starts just its one', async () => {
  const home = makeHome(cleanup);
  const startsFile = join(home, 'starts.txt');
  const names = Array.from({ length: 10 }, (_, i) => `s${i}`);
  const servers = Object.fromEntries(names.map((name) => [name, { command: process.execPath, args: [COUNTED, startsFile, name] }]));
  writeFileSync(join(home, 'config.json'), JSON.stringify({ mcpServers: servers }));

  const first = await startDaemon(cleanup, { home, env: LISTS_WAIT });
  const window = await connectShim(cleanup, first);
  const seen = (await window.client.listTools()).tools.map((t) => t.name);
  for (const name of names) assert.ok(seen.includes(`${name}__ping`) && seen.includes(`${name}__echo`), name);
  assert.equal(starts(startsFile).length, 10, 'never seen: the first list starts them all');
  await waitFor(() => existsSync(join(home, 'lists')) && readdirSync(join(home, 'lists')).length === 10, 'ten remembered lists');
  await window.client.close();
  await stop(first);

  const second = await startDaemon(cleanup, { home, env: LISTS_WAIT });
  const fresh = await connectShim(cleanup, second);
  assert.deepEqual(
    (await fresh.client.listTools()).tools.map((t) => t.name),
    seen,
    'the same list, from memory',
  );
  assert.equal(starts(startsFile).length, 10, 'no server started by the list');
  for (const name of names) assert.equal((await serverReport(second, name)).state, 'stopped', name);

  const result = await fresh.client.callTool({ name: 's4__ping', arguments: {} });
  assert.equal(textOf(result), 'pong from s4');
  const after = starts(startsFile);
  assert.equal(after.length, 11);
  assert.match(after[10] ?? '', /^s4 \d+$/);
  for (const name of names) assert.equal((await serverReport(second, name)).state, name === 's4' ? 'ready' : 'stopped', name);
});

test('an excluded tool is neither listed nor callable: merged and single-server views, before the server ever started', async () => {
  const home = makeHome(cleanup);
  writeFileSync(join(home, 'config.json'), JSON.stringify({ mcpServers: { memory: memoryEntry(home, { exclude_tools: ['delete_*'] }) } }));
  const daemon = await startDaemon(cleanup, { home, env: LISTS_WAIT });
  const merged = await connectShim(cleanup, daemon);
  const unknown = (name: string) => (error: unknown) => {
    const e = error as { code?: unknown; message?: unknown };
    assert.equal(e.code, -32602);
    assert.match(String(e.message), new RegExp(`Unknown tool: ${name}`));
    return true;
  };

  await assert.rejects(
    merged.client.callTool({ name: 'memory__delete_entities', arguments: { entityNames: ['kept'] } }),
    unknown('memory__delete_entities'),
  );
  assert.equal((await serverReport(daemon, 'memory')).state, 'stopped', 'refused without starting it');
  // A single-server window's initialize starts its server: its first call, before any list.
  const single = await connectShim(cleanup, daemon, { args: ['--server', 'memory'] });
  await assert.rejects(
    single.client.callTool({ name: 'delete_entities', arguments: { entityNames: ['kept'] } }),
    unknown('delete_entities'),
  );

  const listedMerged = (await merged.client.listTools()).tools.map((t) => t.name);
  assert.ok(listedMerged.includes('memory__read_graph'));
  assert.deepEqual(
    listedMerged.filter((n) => n.includes('delete')),
    [],
  );
  const listedSingle = (await single.client.listTools()).tools.map((t) => t.name);
  assert.ok(listedSingle.includes('create_entities'));
  assert.deepEqual(
    listedSingle.filter((n) => n.includes('delete')),
    [],
  );

  await merged.client.callTool({
    name: 'memory__create_entities',
    arguments: { entities: [{ name: 'kept', entityType: 'note', observations: ['still here'] }] },
  });
  await assert.rejects(
    merged.client.callTool({ name: 'memory__delete_entities', arguments: { entityNames: ['kept'] } }),
    unknown('memory__delete_entities'),
  );
  await assert.rejects(
    single.client.callTool({ name: 'delete_entities', arguments: { entityNames: ['kept'] } }),
    unknown('delete_entities'),
  );
  // The 2026-07-28 path, merged (/mcp) and single-server (/mcp/memory): refused the same way, and
  // the lists from the running server's lists keep their truthful cache hints.
  for (const [path, name] of [
    ['/mcp', 'memory__delete_entities'],
    ['/mcp/memory', 'delete_entities'],
  ] as const) {
    const refused = await modernPost(daemon, path, 'tools/call', { name, arguments: { entityNames: ['kept'] } });
    assert.deepEqual(refused.body.error, { code: -32602, message: `Unknown tool: ${name}` }, path);
    const listed = await modernPost(daemon, path, 'tools/list', {});
    const result = listed.body.result as { tools: { name: string }[]; ttlMs?: unknown; cacheScope?: unknown };
    assert.deepEqual(
      result.tools.map((t) => t.name).filter((n) => n.includes('delete')),
      [],
      path,
    );
    assert.equal(result.ttlMs, 0, path);
  }
  const graph = textOf(await single.client.callTool({ name: 'read_graph', arguments: {} }));
  assert.match(graph, /kept/, 'the delete calls never reached the server');
});
