/**
 * A server entry's name filters and the lists remembered between runs (src/mux/server-lists.ts,
 * src/mux/remembered-lists.ts, src/daemon/files/remembered-lists.ts), over a real Hub whose
 * hosted servers are SDK `McpServer`s linked in memory, each start counted. Checked: the
 * `include_*` / `exclude_*` keys (parsed, bounded, refused when bad); an excluded tool neither
 * listed nor resolved in a merged or single-server view, running, not started or down; lists
 * answered from memory by a new hub without starting anything, the first call starting just
 * its server; `list_changed` after that start only when the server lists otherwise than
 * remembered; a failed server left out even when remembered; the stores' bounds, keys,
 * pruning, and their files (corrupt, too big, unwritable) never throwing.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { McpServer } from '@modelcontextprotocol/server';
import { builtinUpstream, createBuiltinServer, linkInMemory } from '../../src/builtin/builtin.js';
import type { RpcNotification } from '../../src/protocol/jsonrpc.js';
import { Hub } from '../../src/mux/hub.js';
import type { View } from '../../src/mux/view.js';
import { Upstream } from '../../src/hosting/upstream.js';
import { parseUpstreams, type NameFilters, type UpstreamSpec } from '../../src/hosting/upstream-config.js';
import { MemoryRememberedLists, type ListsKey, type RememberedLists } from '../../src/mux/remembered-lists.js';
import { ServerLists } from '../../src/mux/server-lists.js';
import { FileRememberedLists } from '../../src/daemon/files/remembered-lists.js';
import { specOf } from '../fixtures/hub-rig.js';

const temp = mkdtempSync(join(tmpdir(), 'exai-ws-lists-'));
const hubs: Hub[] = [];
after(async () => {
  await Promise.all(hubs.map((h) => h.close()));
  rmSync(temp, { recursive: true, force: true });
});

interface Fixture {
  name: string;
  tools: string[];
  prompts?: string[];
  filters?: NameFilters;
  scope?: UpstreamSpec['scope'];
  /** Its starts fail. */
  broken?: boolean;
}

interface Rig {
  hub: Hub;
  /** Starts per server name (each launch counted, failed ones too). */
  starts: Map<string, number>;
  /** Tool calls each server heard, `<name> <tool>`. */
  heard: string[];
  /** list_changed notifications the hub sent: `<method> <server>`. */
  changed: string[];
  /** The running SDK server of each hosted server, by name (the last one started). */
  running: Map<string, McpServer>;
}

function mcp(f: Fixture, heard: string[]): McpServer {
  const server = new McpServer({ name: f.name, version: '1.0.0' });
  for (const tool of f.tools) {
    server.registerTool(tool, { description: `tool ${tool}` }, () => {
      heard.push(`${f.name} ${tool}`);
      return { content: [{ type: 'text', text: tool }] };
    });
  }
  for (const prompt of f.prompts ?? []) server.registerPrompt(prompt, { description: prompt }, () => ({ messages: [] }));
  return server;
}

async function rig(fixtures: Fixture[], remembered?: RememberedLists): Promise<Rig> {
  const starts = new Map<string, number>();
  const heard: string[] = [];
  const changed: string[] = [];
  const running = new Map<string, McpServer>();
  const builtin = await builtinUpstream(createBuiltinServer({ startedAtMs: Date.now() }));
  const specs = fixtures.map((f) => ({ ...specOf(f.name, f.scope), ...(f.filters ? { filters: f.filters } : {}) }));
  const hub = new Hub(builtin, specs, {
    listTimeoutMs: 5_000,
    listWaitMs: 0,
    remembered,
    create: (spec, key) => {
      const fixture = fixtures.find((f) => f.name === spec.name) as Fixture;
      return new Upstream({
        name: spec.name,
        prefix: spec.name,
        idleTimeoutMs: 0,
        restartBackoffMs: [0],
        scope: spec.scope,
        scopeKey: spec.scope === 'shared' ? undefined : key,
        launch: async (wire) => {
          starts.set(spec.name, (starts.get(spec.name) ?? 0) + 1);
          if (fixture.broken) throw new Error('cannot start');
          const server = mcp(fixture, heard);
          running.set(spec.name, server);
          const link = await linkInMemory(spec.name, server);
          wire(link);
          await link.start();
          return { link };
        },
      });
    },
  });
  hub.onlistchanged = (n: RpcNotification, server) =>
    changed.push(`${n.method} ${typeof server === 'string' || server === null ? String(server) : server.name}`);
  await builtin.connect();
  hubs.push(hub);
  return { hub, starts, heard, changed, running };
}

const merged: View = {};

async function toolNames(hub: Hub, view: View = merged): Promise<string[]> {
  const listed = await hub.list('tools', view);
  assert.ok('items' in listed, JSON.stringify(listed));
  return listed.items.map((t) => t.name as string).filter((n) => n !== 'version' && n !== 'listmodels' && n !== 'chat');
}

/** Waits (in turns, never by the clock) until `done` holds. */
async function until(done: () => boolean): Promise<void> {
  for (let turn = 0; turn < 10_000 && !done(); turn++) await new Promise((resolve) => setImmediate(resolve));
  assert.ok(done(), 'the condition never held');
}

/** A memory store that counts what it keeps. */
class CountingStore extends MemoryRememberedLists {
  writes = 0;
  override remember(...args: Parameters<MemoryRememberedLists['remember']>): void {
    this.writes++;
    super.remember(...args);
  }
}

const MEMORY_TOOLS = ['read_graph', 'create_entities', 'delete_entities', 'delete_relations'];

test('the include_/exclude_ keys: parsed into the spec, bounded, a bad one refuses its entry', () => {
  const { servers, problems } = parseUpstreams({
    mcpServers: {
      memory: { command: 'x', exclude_tools: ['delete_*'], include_prompts: ['a*'] },
      plain: { command: 'x' },
      empty: { command: 'x', include_tools: [''] },
      many: { command: 'x', exclude_tools: Array.from({ length: 257 }, (_, i) => `t${i}`) },
      long: { command: 'x', exclude_prompts: ['x'.repeat(257)] },
      shape: { command: 'x', include_tools: 'delete_*' },
    },
  });
  assert.deepEqual(
    servers.map((s) => [s.name, s.filters]),
    [
      ['memory', { excludeTools: ['delete_*'], includePrompts: ['a*'] }],
      ['plain', undefined],
    ],
  );
  assert.equal('filters' in (servers[1] as object), false, 'an entry without filters keeps its spec (and key) as before');
  assert.deepEqual(
    problems.map((p) => `${p.server} ${p.key}`),
    ['empty include_tools.0', 'many exclude_tools', 'long exclude_prompts.0', 'shape include_tools'],
  );
});

test('an excluded tool is neither listed nor resolved: merged and single views, running, not started, down', async () => {
  const { hub, heard, starts } = await rig([
    { name: 'memory', tools: MEMORY_TOOLS, filters: { excludeTools: ['delete_*'] } },
    {
      name: 'picky',
      tools: MEMORY_TOOLS,
      prompts: ['ask', 'tell'],
      filters: { includeTools: ['*_entities'], excludeTools: ['delete_*'], excludePrompts: ['t*'] },
    },
    { name: 'down', tools: MEMORY_TOOLS, filters: { excludeTools: ['delete_*'] }, broken: true },
  ]);
  // Not started yet: a call by name is resolved before any list.
  assert.equal(await hub.resolve('tools', 'memory__delete_entities', merged), undefined);
  assert.equal(await hub.resolve('tools', 'delete_entities', { server: 'memory' }), undefined);
  assert.equal(starts.size, 0, 'refused by its name alone, nothing started');
  assert.deepEqual(await toolNames(hub), ['memory__read_graph', 'memory__create_entities', 'picky__create_entities']);
  assert.deepEqual(await toolNames(hub, { server: 'memory' }), ['read_graph', 'create_entities']);
  const prompts = await hub.list('prompts', merged);
  assert.ok('items' in prompts);
  assert.deepEqual(
    prompts.items.map((p) => p.name),
    ['picky__ask'],
  );
  for (const [name, view] of [
    ['memory__delete_entities', merged],
    ['picky__read_graph', merged],
    ['delete_relations', { server: 'memory' }],
    ['down__delete_entities', merged],
    ['delete_entities', { server: 'down' }],
  ] as const) {
    assert.equal(await hub.resolve('tools', name, view), undefined, name);
  }
  assert.equal(await hub.resolve('prompts', 'picky__tell', merged), undefined);
  // Allowed names of a down server still reach it (for its -32011), as before.
  assert.equal((await hub.resolve('tools', 'down__read_graph', merged))?.name, 'read_graph');
  assert.equal((await hub.resolve('tools', 'read_graph', { server: 'down' }))?.name, 'read_graph');
  assert.deepEqual(heard, [], 'no call reached a server');
});

test('a new hub lists from memory without starting anything; the first call starts just its server', async () => {
  const store = new CountingStore();
  const fixtures = Array.from({ length: 10 }, (_, i) => ({ name: `s${i}`, tools: ['read', 'write'] }));
  const first = await rig(fixtures, store);
  const seen = await toolNames(first.hub);
  assert.equal(first.starts.size, 10, 'the first list ever starts them all');
  await until(() => store.size.entries === 10);
  await first.hub.close();

  const second = await rig(fixtures, store);
  assert.deepEqual(await toolNames(second.hub), seen);
  assert.deepEqual(await toolNames(second.hub, { server: 's3' }), ['read', 'write']);
  assert.equal(second.starts.size, 0, 'no server started by a list');
  const target = await second.hub.resolve('tools', 's7__write', merged);
  assert.ok(target);
  const before = store.writes;
  const outcome = await target.server.call('tools/call', { name: target.name }, { timeoutMs: 5_000 });
  assert.ok(outcome && 'result' in outcome);
  assert.deepEqual([...second.starts], [['s7', 1]]);
  await until(() => store.writes > before);
  assert.deepEqual(second.changed, [], 'the running server lists as remembered: no list_changed');
});

test('a server that lists otherwise than remembered: its sessions hear list_changed once it runs', async () => {
  const store = new MemoryRememberedLists();
  const first = await rig([{ name: 'memory', tools: ['read'], prompts: ['p'] }], store);
  await toolNames(first.hub);
  await until(() => store.size.entries === 1);
  await first.hub.close();

  const second = await rig([{ name: 'memory', tools: ['read', 'write'], prompts: ['p'] }], store);
  assert.deepEqual(await toolNames(second.hub), ['memory__read']);
  const target = await second.hub.resolve('tools', 'memory__read', merged);
  await target?.server.connect();
  await until(() => second.changed.length > 0);
  assert.deepEqual(second.changed, ['notifications/tools/list_changed memory']);
  assert.deepEqual(await toolNames(second.hub), ['memory__read', 'memory__write']);
});

test('a running server that says list_changed is listed again and remembered so', async () => {
  const store = new MemoryRememberedLists();
  const key = { name: 'memory', entry: JSON.stringify(specOf('memory')), folder: '' };
  const { hub, running } = await rig([{ name: 'memory', tools: ['read'] }], store);
  await toolNames(hub);
  await until(() => store.recall(key) !== undefined);
  running.get('memory')?.registerTool('write', { description: 'write' }, () => ({ content: [] }));
  await until(() => store.recall(key)?.lists.tools?.length === 2);
  assert.deepEqual(await toolNames(hub), ['memory__read', 'memory__write']);
});

test('a server whose start failed is left out, remembered or not', async () => {
  const store = new MemoryRememberedLists();
  const first = await rig([{ name: 'memory', tools: ['read'] }], store);
  await toolNames(first.hub);
  await until(() => store.size.entries === 1);
  await first.hub.close();

  const fixture = { name: 'memory', tools: ['read'], broken: true };
  const second = await rig([fixture], store);
  assert.deepEqual(await toolNames(second.hub), ['memory__read'], 'not started yet: from memory');
  const target = await second.hub.resolve('tools', 'memory__read', merged);
  const outcome = await target?.server.call('tools/call', { name: 'read' }, { timeoutMs: 5_000 });
  assert.ok(outcome && 'error' in outcome);
  assert.deepEqual(
    second.changed.filter((c) => c.startsWith('notifications/tools/')),
    ['notifications/tools/list_changed memory'],
  );
  assert.deepEqual(await toolNames(second.hub), [], 'failed: left out');
  fixture.broken = false;
  await target?.server.connect();
  assert.deepEqual(
    second.changed.filter((c) => c.startsWith('notifications/tools/')),
    ['notifications/tools/list_changed memory', 'notifications/tools/list_changed memory'],
    'told again once it starts',
  );
  assert.deepEqual(await toolNames(second.hub), ['memory__read']);
});

test('an edited entry is another key: a workspace instance is remembered per folder, pruned with its entry', async () => {
  const store = new MemoryRememberedLists();
  const fixtures: Fixture[] = [{ name: 'ws', tools: ['read'], scope: 'workspace' }];
  const first = await rig(fixtures, store);
  await toolNames(first.hub, { workspace: '/a' });
  await until(() => store.size.entries === 1);
  await first.hub.close();
  const second = await rig(fixtures, store);
  await toolNames(second.hub, { workspace: '/b' });
  assert.deepEqual([...second.starts], [['ws', 1]], 'another folder is not remembered');
  await toolNames(second.hub, { workspace: '/a' });
  assert.deepEqual([...second.starts], [['ws', 1]], 'the first folder is');
  await until(() => store.size.entries === 2);
  await second.hub.reload([{ ...specOf('ws', 'workspace'), filters: { excludeTools: ['x'] } }]);
  assert.equal(store.size.entries, 0, 'the old entry is pruned');
});

test('lists remembered from a process offered other client capabilities are not used: the server is started to list', async () => {
  const store = new MemoryRememberedLists();
  let starts = 0;
  const server = new Upstream({
    name: 'everything',
    prefix: 'everything',
    idleTimeoutMs: 0,
    launch: async (wire) => {
      starts++;
      const link = await linkInMemory('everything', mcp({ name: 'everything', tools: ['echo', 'sample'] }, []));
      wire(link);
      await link.start();
      return { link };
    },
  });
  const spec = specOf('everything');
  store.remember({ name: 'everything', entry: JSON.stringify(spec), folder: '' }, { ...lists(['echo']), offered: [] });
  let declared: Record<string, unknown> = { sampling: {} };
  const serverLists = new ServerLists({ listTimeoutMs: 5_000, remembered: store, declared: () => declared });
  serverLists.configure(spec);
  const names = async () => ((await serverLists.share(server, 'tools', false)) as { name: string }[]).map((t) => t.name);
  assert.deepEqual(await names(), ['echo', 'sample'], 'a window can sample now: listed by the server itself');
  assert.equal(starts, 1);
  await server.close();
  declared = {};
  const again = new Upstream({
    name: 'everything',
    prefix: 'everything',
    idleTimeoutMs: 0,
    launch: () => Promise.reject(new Error('not started')),
  });
  assert.deepEqual(
    ((await serverLists.share(again, 'tools', false)) as { name: string }[]).map((t) => t.name),
    ['echo'],
    'the same offer: from memory',
  );
});

const key = (name: string, folder = ''): ListsKey => ({ name, entry: `{"name":"${name}"}`, folder });
const lists = (tools: string[]) => ({ capabilities: { tools: {} }, lists: { tools: tools.map((name) => ({ name })) }, offered: [] });

test('the memory store: bounded by entries and bytes, least recently seen first', () => {
  const store = new MemoryRememberedLists({ maxEntries: 2, maxBytes: 200 });
  store.remember(key('a'), lists(['x']));
  store.remember(key('b'), lists(['x']));
  store.remember(key('a'), lists(['y'])); // seen again: now the newest
  store.remember(key('c'), lists(['x']));
  assert.equal(store.recall(key('b')), undefined);
  assert.deepEqual(store.recall(key('a')), lists(['y']));
  store.remember(key('d'), lists(Array.from({ length: 20 }, (_, i) => `tool${i}`)));
  assert.equal(store.recall(key('d')), undefined, 'larger than all the bytes: not kept');
  store.remember(key('e'), lists(['a-somewhat-longer-tool-name', 'another-long-tool-name']));
  assert.ok(store.size.bytes <= 200 && store.size.entries <= 2);
  assert.equal(store.recall(key('a')), undefined);
});

test('the file store: read by a new daemon, keyed by entry and folder, owner-only, bounded, pruned', () => {
  const dir = join(temp, 'bounds');
  const warned: string[] = [];
  const warn = (message: string) => warned.push(message);
  const one = new FileRememberedLists(dir, warn, { maxEntries: 3 });
  one.remember(key('a'), lists(['x']));
  one.remember(key('a', '/work'), lists(['w']));
  const two = new FileRememberedLists(dir, warn, { maxEntries: 3 });
  assert.deepEqual(two.recall(key('a')), lists(['x']));
  assert.deepEqual(two.recall(key('a', '/work')), lists(['w']));
  assert.equal(two.recall(key('a', '/other')), undefined);
  assert.equal(two.recall({ ...key('a'), entry: '{"name":"a","args":[]}' }), undefined);
  const files = readdirSync(dir);
  if (process.platform !== 'win32') {
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    for (const f of files) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600);
  }
  assert.ok(
    files.every((f) => !readFileSync(join(dir, f), 'utf8').includes('{"name":"a"}')),
    'the entry itself is not written',
  );
  two.remember(key('b'), lists(['x']));
  two.remember(key('c'), lists(['x']));
  assert.equal(readdirSync(dir).length, 3, 'the oldest file went');
  assert.equal(new FileRememberedLists(dir, warn).recall(key('a')), undefined);
  two.prune('c', '{"name":"c","edited":true}');
  assert.equal(new FileRememberedLists(dir, warn).recall(key('c')), undefined);
  assert.deepEqual(new FileRememberedLists(dir, warn).recall(key('b')), lists(['x']));
  // An entry edited while no daemon ran: its first write under the new entry prunes the old one.
  const three = new FileRememberedLists(dir, warn);
  three.remember({ ...key('b'), entry: '{"name":"b","edited":true}' }, lists(['y']));
  assert.equal(new FileRememberedLists(dir, warn).recall(key('b')), undefined);
  assert.deepEqual(warned, []);
});

test('the file store: a corrupt, misshapen or too big file is nothing remembered, logged once; a failed write never throws', () => {
  const dir = join(temp, 'corrupt');
  const warned: string[] = [];
  const warn = (message: string) => warned.push(message);
  const store = new FileRememberedLists(dir, warn, { maxBytes: 1000 });
  store.remember(key('bad'), lists(['x']));
  store.remember(key('shape'), lists(['x']));
  store.remember(key('big'), lists(['x']));
  const fileOf = (name: string) => join(dir, readdirSync(dir).find((f) => f.startsWith(`${name}.`)) as string);
  writeFileSync(fileOf('bad'), '{"name": "bad", ');
  const shape = JSON.parse(readFileSync(fileOf('shape'), 'utf8')) as Record<string, unknown>;
  writeFileSync(fileOf('shape'), JSON.stringify({ ...shape, lists: { tools: 'read' } }));
  writeFileSync(fileOf('big'), ' '.repeat(1100));
  const fresh = new FileRememberedLists(dir, warn, { maxBytes: 1000 });
  for (const name of ['bad', 'shape', 'big', 'bad']) assert.equal(fresh.recall(key(name)), undefined, name);
  assert.equal(warned.length, 3, warned.join('; '));

  // A file where the directory should be: every write fails (as on a full disk).
  const blocked = join(temp, 'blocked');
  writeFileSync(blocked, '');
  const failing = new FileRememberedLists(blocked, warn);
  assert.doesNotThrow(() => failing.remember(key('a'), lists(['x'])));
  assert.doesNotThrow(() => failing.remember(key('b'), lists(['x'])));
  assert.deepEqual(failing.recall(key('a')), lists(['x']), 'kept in memory');
  assert.equal(warned.filter((w) => w.includes('cannot be written')).length, 1, 'logged once');
  if (process.platform !== 'win32' && process.getuid?.() !== 0) {
    chmodSync(fileOf('bad'), 0);
    assert.equal(new FileRememberedLists(dir, warn).recall(key('bad')), undefined);
  }
});

test('the file store: an unchanged list is not written again; what it keeps in memory is bounded too', () => {
  const dir = join(temp, 'unchanged');
  const warned: string[] = [];
  const store = new FileRememberedLists(dir, (message) => warned.push(message), { maxEntries: 2, maxBytes: 600 });
  store.remember(key('a'), lists(['x']));
  const file = join(dir, readdirSync(dir)[0] as string);
  writeFileSync(file, 'tampered'); // a rewrite would replace this
  store.remember(key('a'), lists(['x']));
  assert.equal(readFileSync(file, 'utf8'), 'tampered', 'the same lists again: no write');
  store.remember(key('a'), lists(['y']));
  assert.notEqual(readFileSync(file, 'utf8'), 'tampered', 'other lists: written');
  // A list too big for the bound, said again and again (a flood of list_changed): one warning.
  for (let i = 0; i < 5; i++) store.remember(key('big'), lists(Array.from({ length: 40 }, (_, n) => `tool${n}`)));
  assert.equal(warned.filter((w) => w.includes('larger than the bound')).length, 1);
  assert.equal(store.recall(key('big')), undefined, 'not kept in memory either');

  // Every write failing (a full disk) and many folders: memory keeps at most maxEntries of them.
  const blocked = join(temp, 'blocked-many');
  writeFileSync(blocked, '');
  const failing = new FileRememberedLists(blocked, () => undefined, { maxEntries: 2, maxBytes: 100_000 });
  for (let i = 0; i < 10; i++) failing.remember(key('w', `/folder/${i}`), lists(['x']));
  assert.deepEqual(failing.recall(key('w', '/folder/9')), lists(['x']), 'the most recent is kept in memory');
  assert.equal(failing.recall(key('w', '/folder/0')), undefined, 'the oldest went');
});
