/**
 * The catalog (src/mux/catalog.ts) over real parts: each server is an SDK `McpServer` behind a
 * real `Upstream` and `ServerLink`, joined in memory as the built-in server is (builtin.ts
 * linkInMemory), so lists, capabilities and starts are the real ones and only processes are
 * left out. Checked: merged lists in view order with `<server>__` prefixes (none for the
 * unprefixed and in a single-server view), name and URI lookup, clashes, servers that cannot
 * start, late servers (left out after the list wait, announced when they arrive), list failures,
 * items that cannot be listed, and the caches dropped on `list_changed`.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { InMemoryTransport, McpServer, ResourceTemplate, Server } from '@modelcontextprotocol/server';
import { RpcCode } from '../../src/protocol/codes.js';
import { linkInMemory } from '../../src/builtin/builtin.js';
import { ServerLink } from '../../src/hosting/server-link.js';
import { Upstream } from '../../src/hosting/upstream.js';
import { Catalog, type CatalogView, type ListOutcome } from '../../src/mux/catalog.js';
import type { ListKind } from '../../src/mux/lists.js';

const made: Upstream[] = [];
after(async () => {
  await Promise.all(made.map((u) => u.close()));
});

interface Offer {
  tools?: string[];
  prompts?: string[];
  resources?: string[];
  templates?: string[];
}

/** An SDK server offering these tools, prompts, resources (URIs) and resource templates. */
function mcp(offer: Offer): McpServer {
  const server = new McpServer({ name: 'fixture', version: '1.0.0' });
  for (const name of offer.tools ?? []) {
    server.registerTool(name, { description: `tool ${name}` }, () => ({ content: [{ type: 'text', text: name }] }));
  }
  for (const name of offer.prompts ?? []) {
    server.registerPrompt(name, { description: `prompt ${name}` }, () => ({ messages: [] }));
  }
  for (const uri of offer.resources ?? []) {
    server.registerResource(uri, uri, {}, () => ({ contents: [{ uri, text: uri }] }));
  }
  for (const template of offer.templates ?? []) {
    server.registerResource(template, new ResourceTemplate(template, { list: undefined }), {}, (uri) => ({
      contents: [{ uri: uri.href, text: '' }],
    }));
  }
  return server;
}

/**
 * A real Upstream whose launch links `server` in memory; `gate` holds its start until it
 * resolves, a rejected one makes the start fail.
 */
function upstream(name: string, prefix: string | null, server: McpServer | Server, gate?: () => Promise<void>): Upstream {
  const u = new Upstream({
    name,
    prefix,
    idleTimeoutMs: 0,
    launch: async (wire) => {
      await gate?.();
      const link = server instanceof McpServer ? await linkInMemory(name, server) : await linkLowLevel(name, server);
      wire(link);
      await link.start();
      return { link };
    },
  });
  made.push(u);
  return u;
}

async function linkLowLevel(name: string, server: Server): Promise<ServerLink> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  return new ServerLink(name, clientSide);
}

function view(servers: Upstream[], single = false): CatalogView {
  return { single, key: servers.map((s) => s.name).join('+') + (single ? ':single' : ''), servers: () => servers };
}

function names(outcome: ListOutcome, field = 'name'): unknown[] {
  assert.ok('items' in outcome, JSON.stringify(outcome));
  return outcome.items.map((item) => item[field]);
}

interface Logged {
  event: string;
  details: Record<string, unknown>;
}

function catalog(options: { listWaitMs?: number; onarrived?: (server: Upstream, kind: ListKind) => void } = {}): {
  catalog: Catalog;
  logged: Logged[];
} {
  const logged: Logged[] = [];
  return {
    catalog: new Catalog({ listTimeoutMs: 5_000, log: (event, details) => logged.push({ event, details }), ...options }),
    logged,
  };
}

test('a merged list: view order, hosted names prefixed, unprefixed servers bare, the first of a clash wins', async () => {
  const builtin = upstream('exai-ws', null, mcp({ tools: ['version', 'chat'] }));
  const memory = upstream('memory', 'memory', mcp({ tools: ['read', 'write'], prompts: ['summarize'] }));
  const plain = upstream('plain', null, mcp({ tools: ['version', 'grep'] }));
  const { catalog: c } = catalog();
  const all = view([builtin, memory, plain]);
  assert.deepEqual(names(await c.list('tools', all)), ['version', 'chat', 'memory__read', 'memory__write', 'grep']);
  assert.deepEqual(names(await c.list('prompts', all)), ['memory__summarize']);
  const listed = await c.list('tools', all);
  assert.ok('items' in listed);
  assert.equal(listed.items[2]?.description, 'tool read', 'an item is the server own, only its name prefixed');

  assert.deepEqual(await c.resolve('tools', 'memory__read', all), { server: memory, name: 'read' });
  assert.deepEqual(await c.resolve('tools', 'version', all), { server: builtin, name: 'version' }, 'the first server wins a clash');
  assert.deepEqual(await c.resolve('tools', 'grep', all), { server: plain, name: 'grep' });
  assert.deepEqual(await c.resolve('prompts', 'memory__summarize', all), { server: memory, name: 'summarize' });
  assert.equal(await c.resolve('tools', 'read', all), undefined, 'a prefixed server name is not reachable bare');
  assert.equal(await c.resolve('tools', 'memory__nope', all), undefined);
  assert.equal(await c.resolve('tools', 'nobody__read', all), undefined);
  assert.equal(c.knows('tools', 'memory__write'), true, 'names of built lists are known (for the metrics)');
  assert.equal(c.knows('tools', 'write'), false);
});

test('a single-server view shows its server as it is: no prefixes', async () => {
  const memory = upstream('memory', 'memory', mcp({ tools: ['read'], prompts: ['summarize'] }));
  const { catalog: c } = catalog();
  const alone = view([memory], true);
  assert.deepEqual(names(await c.list('tools', alone)), ['read']);
  assert.deepEqual(names(await c.list('prompts', alone)), ['summarize']);
  assert.deepEqual(await c.resolve('tools', 'read', alone), { server: memory, name: 'read' });
  assert.equal(await c.resolve('tools', 'memory__read', alone), undefined);
});

test('resources keep their URIs; a URI made from a template resolves to the server of that template', async () => {
  const notes = upstream('notes', 'notes', mcp({ resources: ['notes://index'], templates: ['notes://page/{id}'] }));
  const files = upstream('files', 'files', mcp({ resources: ['file:///a.txt'], tools: ['read'] }));
  const { catalog: c } = catalog();
  const all = view([notes, files]);
  assert.deepEqual(names(await c.list('resources', all), 'uri'), ['notes://index', 'file:///a.txt']);
  assert.deepEqual(names(await c.list('resourceTemplates', all), 'uriTemplate'), ['notes://page/{id}']);
  assert.deepEqual(await c.resolve('resources', 'file:///a.txt', all), { server: files, name: 'file:///a.txt' });
  assert.deepEqual(await c.resolve('resources', 'notes://page/42', all), { server: notes, name: 'notes://page/42' });
  assert.equal(await c.resolve('resources', 'other://x', all), undefined, 'two servers offer resources: no guess');
  const one = view([files]);
  assert.deepEqual(await c.resolve('resources', 'file:///unlisted', one), { server: files, name: 'file:///unlisted' }, 'the one offering');
});

test('a server that cannot start is left out; names under its prefix still route to it; its sessions hear when it runs', async () => {
  const builtin = upstream('exai-ws', null, mcp({ tools: ['version'] }));
  const broken = upstream('broken', 'broken', mcp({ tools: ['x'] }), () => Promise.reject(new Error('spawn ENOENT')));
  const { catalog: c } = catalog();
  const all = view([builtin, broken]);
  assert.deepEqual(names(await c.list('tools', all)), ['version']);
  assert.deepEqual(await c.resolve('tools', 'broken__x', all), { server: broken, name: 'x' }, 'a call gets its -32011, not unknown');
  assert.equal(c.missed(broken), true, 'left out once: its sessions must list again when it runs');
  assert.equal(c.missed(broken), false, 'and only once');
  assert.equal(c.missed(builtin), false);
});

test('in a single-server view a server that cannot start is the view failing: -32011, and every name is its', async () => {
  const broken = upstream('broken', 'broken', mcp({ tools: ['x'] }), () => Promise.reject(new Error('spawn ENOENT')));
  const { catalog: c } = catalog();
  const alone = view([broken], true);
  const outcome = await c.list('tools', alone);
  assert.ok('error' in outcome);
  assert.equal(outcome.error.code, RpcCode.UPSTREAM_UNAVAILABLE);
  assert.match(outcome.error.message, /^broken: /);
  assert.deepEqual(outcome.error.data, { server: 'broken' });
  assert.deepEqual(await c.resolve('tools', 'anything', alone), { server: broken, name: 'anything' });
});

test('a late server: the list answers without it after the list wait, announces it when its list is there, then includes it', async () => {
  let open: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const arrivals: [string, ListKind][] = [];
  const builtin = upstream('exai-ws', null, mcp({ tools: ['version'] }));
  const late = upstream('late', 'late', mcp({ tools: ['work'] }), () => gate);
  const { catalog: c } = catalog({ listWaitMs: 30, onarrived: (server, kind) => arrivals.push([server.name, kind]) });
  const all = view([builtin, late]);
  const started = Date.now();
  assert.deepEqual(names(await c.list('tools', all)), ['version'], 'answered without the late server');
  assert.ok(Date.now() - started < 2_000, 'within about the list wait');
  assert.deepEqual(await c.resolve('tools', 'late__work', all), { server: late, name: 'work' }, 'its names route to it meanwhile');
  assert.deepEqual(arrivals, []);
  open();
  await waitUntil(() => arrivals.length > 0);
  assert.deepEqual(arrivals, [['late', 'tools']]);
  assert.deepEqual(names(await c.list('tools', all)), ['version', 'late__work']);
  assert.equal(c.knows('tools', 'late__work'), true);
});

test('a call by prefixed name waits only for the servers that could hold it, not for a slow one elsewhere', async () => {
  let open: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const slow = upstream('slow', 'slow', mcp({ tools: ['a'] }), () => gate);
  const memory = upstream('memory', 'memory', mcp({ tools: ['read'] }));
  const { catalog: c } = catalog({ listWaitMs: 60_000 });
  const all = view([slow, memory]);
  const target = await c.resolve('tools', 'memory__read', all);
  assert.deepEqual(target, { server: memory, name: 'read' });
  assert.equal(c.knows('tools', 'memory__read'), true, 'found by prefix: a name that exists');
  assert.equal(slow.state, 'stopped', 'the slow server, which cannot hold the name, was not even started');
  open();
});

test("a server's failed list leaves it out (logged); items without a name are dropped (logged); the rest is listed", async () => {
  const failing = new Server({ name: 'failing', version: '1' }, { capabilities: { tools: {} } });
  failing.setRequestHandler('tools/list', () => {
    throw new Error('the list broke');
  });
  const odd = new Server({ name: 'odd', version: '1' }, { capabilities: { tools: {} } });
  // A nameless tool is not valid MCP, but a server's list is its own data.
  const nameless = { inputSchema: { type: 'object' } } as unknown as { name: string; inputSchema: { type: 'object' } };
  odd.setRequestHandler('tools/list', () => ({ tools: [{ name: 'good', inputSchema: { type: 'object' } }, nameless] }));
  const builtin = upstream('exai-ws', null, mcp({ tools: ['version'] }));
  const { catalog: c, logged } = catalog();
  const all = view([builtin, upstream('failing', 'failing', failing), upstream('odd', 'odd', odd)]);
  assert.deepEqual(names(await c.list('tools', all)), ['version', 'odd__good']);
  assert.ok(
    logged.some((l) => l.event === 'list failed' && l.details.server === 'failing' && l.details.method === 'tools/list'),
    JSON.stringify(logged),
  );
  assert.ok(logged.some((l) => l.event === 'list items dropped' && l.details.server === 'odd' && l.details.dropped === 1));
  assert.deepEqual(names(await c.list('prompts', all)), [], 'no server declares prompts: nobody is asked');
});

test('lists are cached per server until invalidated (list_changed), then fetched again', async () => {
  const server = mcp({ tools: ['first'] });
  const memory = upstream('memory', 'memory', server);
  const { catalog: c } = catalog();
  const all = view([memory]);
  assert.deepEqual(names(await c.list('tools', all)), ['memory__first']);
  server.registerTool('second', { description: 'added' }, () => ({ content: [] }));
  assert.deepEqual(names(await c.list('tools', all)), ['memory__first'], 'cached');
  c.invalidate(memory, ['prompts']);
  assert.deepEqual(names(await c.list('tools', all)), ['memory__first'], 'another kind dropped: tools stay cached');
  c.invalidate(memory, ['tools']);
  assert.equal(c.knows('tools', 'memory__first'), false, 'known names go with the views');
  assert.deepEqual(names(await c.list('tools', all)), ['memory__first', 'memory__second']);
  c.forget(memory);
  assert.deepEqual(names(await c.list('tools', all)), ['memory__first', 'memory__second'], 'a forgotten server is listed afresh');
});

async function waitUntil(probe: () => boolean, timeoutMs = 5_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('a name found listed is found again at once (resolveBuilt), by merged list or by prefix, until the caches drop', async () => {
  const server = mcp({ tools: ['read'] });
  const memory = upstream('memory', 'memory', server);
  const builtin = upstream('exai-ws', null, mcp({ tools: ['version'] }));
  const { catalog: c } = catalog();
  const all = view([builtin, memory]);
  assert.equal(c.resolveBuilt('tools', 'memory__read', all), undefined, 'nothing listed yet: resolve decides');
  assert.deepEqual(await c.resolve('tools', 'memory__read', all), { server: memory, name: 'read' });
  assert.deepEqual(c.resolveBuilt('tools', 'memory__read', all), { server: memory, name: 'read' }, 'found by prefix, kept');
  assert.equal(c.resolveBuilt('tools', 'memory__write', all), undefined, 'a name nobody lists is never kept');
  c.invalidate(memory, ['tools']);
  assert.equal(c.resolveBuilt('tools', 'memory__read', all), undefined, 'list_changed: forgotten');
  assert.deepEqual(names(await c.list('tools', all)), ['version', 'memory__read']);
  assert.deepEqual(c.resolveBuilt('tools', 'version', all), { server: builtin, name: 'version' }, 'from the built merged list');
  assert.deepEqual(c.resolveBuilt('tools', 'memory__read', all), { server: memory, name: 'read' });
  c.dropViews();
  assert.equal(c.resolveBuilt('tools', 'version', all), undefined, 'a reload: forgotten');
});
