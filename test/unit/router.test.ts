/**
 * The router over a real Hub whose servers are linked in memory (no process, no socket): which
 * server a call, a read, a subscription or a log level goes to, merged lists per view, the
 * errors for names nobody has, what `initialize` keeps of the client, and how a client's roots
 * move its workspace. Each session's state is its SessionContext, reached through methods.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { RpcCode } from '../../src/protocol/codes.js';
import type { Answer, RpcResponse } from '../../src/protocol/jsonrpc.js';
import { Cancellation } from '../../src/hosting/cancellation.js';
import { LIST_CHANGED_METHODS } from '../../src/mux/lists.js';
import type { SessionContext, SessionOpening } from '../../src/mux/session-context.js';
import { MAX_CLIENT_LABEL_CHARS } from '../../src/protocol/eras.js';
import { Router } from '../../src/daemon/sessions/router.js';
import { Listens } from '../../src/daemon/sessions/listens.js';
import { hubRig, settle, type HubRig } from '../fixtures/hub-rig.js';

type Json = Record<string, unknown>;

interface Client {
  context: SessionContext;
  router: Router;
  /** What the session sent its client (notifications, progress). */
  sent: Json[];
  /** What the session asked its client. */
  asked: string[];
  call(method: string, params?: Json): Promise<RpcResponse | null>;
  result(method: string, params?: Json): Promise<Json>;
  error(method: string, params?: Json): Promise<{ code: number; message: string }>;
}

let nextId = 1;

function open(rig: HubRig, id: string, opening: SessionOpening = {}, answers: Record<string, Answer> = {}): Client {
  const sent: Json[] = [];
  const asked: string[] = [];
  const peer = {
    send: (message: object) => (sent.push(message as Json), true),
    request: (method: string) => {
      asked.push(method);
      return Promise.resolve(answers[method] ?? { error: { code: RpcCode.METHOD_NOT_FOUND, message: 'not here' } });
    },
  };
  const context = rig.hub.openSession(id, opening, peer);
  const router = new Router(context, rig.hub, { callTimeoutMs: 5_000, listens: new Listens(() => {}) });
  const call = (method: string, params?: Json) =>
    router.handle({ jsonrpc: '2.0', id: nextId++, method, ...(params ? { params } : {}) }, new Cancellation());
  return {
    context,
    router,
    sent,
    asked,
    call,
    async result(method, params) {
      const response = await call(method, params);
      assert.ok(response && 'result' in response, `${method}: ${JSON.stringify(response)}`);
      return response.result;
    },
    async error(method, params) {
      const response = await call(method, params);
      assert.ok(response && 'error' in response, `${method}: ${JSON.stringify(response)}`);
      return response.error;
    },
  };
}

const names = (result: Json, key = 'tools') => (result[key] as { name: string }[]).map((t) => t.name).sort();
const text = (result: Json) => (result.content as { text: string }[]).map((c) => c.text).join('');

describe('routing over a hub with two hosted servers', async () => {
  const rig = await hubRig();
  after(() => rig.close());

  test('tools/list merges the built-in tools (bare) and each hosted server (prefixed); a single-server view sees its own names', async () => {
    const all = open(rig, 'list-all');
    const merged = names(await all.result('tools/list'));
    assert.ok(merged.includes('version'), merged.join());
    assert.ok(merged.includes('alpha__echo') && merged.includes('beta__echo'), merged.join());
    const single = open(rig, 'list-one', { server: 'beta' });
    assert.deepEqual(names(await single.result('tools/list')), ['echo', 'hold']);
    all.context.close();
    single.context.close();
  });

  test('a call goes to the server that owns the name, under its own name; the built-in server answers its own', async () => {
    const client = open(rig, 'calls');
    rig.heard.length = 0;
    assert.equal(text(await client.result('tools/call', { name: 'beta__echo', arguments: { text: 'hi' } })), 'beta:hi');
    assert.deepEqual(rig.heard, ['beta tools/call echo']);
    const version = await client.result('tools/call', { name: 'version', arguments: {} });
    assert.equal((version.structuredContent as { name: string }).name, 'exai-ws');
    const read = await client.result('resources/read', { uri: 'mem://alpha/note' });
    assert.deepEqual(read.contents, [{ uri: 'mem://alpha/note', text: 'a note from alpha' }]);
    client.context.close();
  });

  test('unknown names and methods are errors naming what was asked; nothing reaches a server', async () => {
    const client = open(rig, 'errors');
    rig.heard.length = 0;
    assert.deepEqual(await client.error('tools/call', { name: 'gamma__echo', arguments: {} }), {
      code: RpcCode.INVALID_PARAMS,
      message: 'Unknown tool: gamma__echo',
    });
    assert.deepEqual(await client.error('tools/call', { arguments: {} }), {
      code: RpcCode.INVALID_PARAMS,
      message: 'tools/call needs params.name as a string',
    });
    assert.deepEqual(await client.error('resources/read', { uri: 'mem://nobody/note' }), {
      code: RpcCode.INVALID_PARAMS,
      message: 'Unknown resource: mem://nobody/note',
    });
    assert.deepEqual(await client.error('prompts/get', { name: 'constructor' }), {
      code: RpcCode.INVALID_PARAMS,
      message: 'Unknown prompt: constructor',
    });
    assert.deepEqual(await client.error('frobnicate/now'), { code: RpcCode.METHOD_NOT_FOUND, message: 'Method not found: frobnicate/now' });
    const badToken = await client.error('tools/call', { name: 'alpha__echo', arguments: { text: 'x' }, _meta: { progressToken: {} } });
    assert.equal(badToken.code, RpcCode.INVALID_PARAMS);
    assert.deepEqual(rig.heard, []);
    client.context.close();
  });

  test('resources/subscribe: the owning server hears the first subscribe and the last unsubscribe; a closed session lets go', async () => {
    const a = open(rig, 'sub-a');
    const b = open(rig, 'sub-b');
    rig.heard.length = 0;
    await a.result('resources/subscribe', { uri: 'mem://alpha/note' });
    await b.result('resources/subscribe', { uri: 'mem://alpha/note' });
    assert.deepEqual(rig.heard, ['alpha resources/subscribe mem://alpha/note']);
    const alpha = rig.instances.get('alpha');
    assert.ok(alpha);
    assert.deepEqual([...rig.hub.subscribers(alpha, 'mem://alpha/note')].sort(), ['sub-a', 'sub-b']);
    await a.result('resources/unsubscribe', { uri: 'mem://alpha/note' });
    assert.deepEqual([...rig.hub.subscribers(alpha, 'mem://alpha/note')], ['sub-b']);
    assert.equal(rig.heard.length, 1, 'b is still subscribed');
    b.context.close();
    await settle();
    assert.deepEqual(rig.heard, ['alpha resources/subscribe mem://alpha/note', 'alpha resources/unsubscribe mem://alpha/note']);
    assert.deepEqual([...rig.hub.subscribers(alpha, 'mem://alpha/note')], []);
    assert.deepEqual(await b.error('resources/subscribe', { uri: 'mem://beta/nope' }), {
      code: RpcCode.INVALID_PARAMS,
      message: 'Unknown resource: mem://beta/nope',
    });
    a.context.close();
  });

  test('logging/setLevel: each server is set to the most verbose level a session that sees it asked for; a closed session stops counting', async () => {
    const verbose = open(rig, 'log-verbose');
    const quiet = open(rig, 'log-quiet', { server: 'beta' });
    await verbose.result('tools/list'); // both hosted servers ready
    rig.heard.length = 0;
    assert.deepEqual(await quiet.error('logging/setLevel', { level: 'loud' }), {
      code: RpcCode.INVALID_PARAMS,
      message: 'level must be one of debug, info, notice, warning, error, critical, alert, emergency',
    });
    assert.equal(quiet.context.logLevel, undefined);
    await quiet.result('logging/setLevel', { level: 'error' });
    await settle();
    assert.deepEqual(rig.heard, ['beta logging/setLevel error'], 'only the server its view sees');
    await verbose.result('logging/setLevel', { level: 'debug' });
    await settle();
    assert.deepEqual(rig.heard.slice(1).sort(), ['alpha logging/setLevel debug', 'beta logging/setLevel debug']);
    assert.equal(verbose.context.logLevel, 'debug');
    rig.heard.length = 0;
    verbose.context.close();
    await settle();
    assert.deepEqual(rig.heard, ['beta logging/setLevel error'], 'beta back to what the remaining session asked for');
    quiet.context.close();
  });
});

describe('initialize', async () => {
  const rig = await hubRig([{ name: 'alpha' }]);
  after(() => rig.close());

  test('keeps the client name (bounded) and its well-formed capabilities, and answers as exai-ws', async () => {
    const client = open(rig, 'init');
    const result = await client.result('initialize', {
      protocolVersion: '1999-01-01',
      clientInfo: { name: 'x'.repeat(1000), version: '2.0' },
      capabilities: { sampling: {}, roots: { listChanged: true }, bogus: 'not an object' },
    });
    assert.equal((result.serverInfo as { name: string }).name, 'exai-ws');
    assert.equal(typeof result.protocolVersion, 'string');
    assert.notEqual(result.protocolVersion, '1999-01-01', 'an unknown version gets the latest');
    assert.equal(client.context.clientInfo?.name?.length, MAX_CLIENT_LABEL_CHARS);
    assert.equal(client.context.clientInfo?.version, '2.0');
    assert.deepEqual(Object.keys(client.context.capabilities ?? {}).sort(), ['roots', 'sampling']);
    assert.equal(client.context.declares('bogus'), false);
    client.context.close();
  });

  test('a single-server view gets that server as if it had launched it', async () => {
    const client = open(rig, 'init-one', { server: 'alpha' });
    const result = await client.result('initialize', { protocolVersion: '2025-06-18', clientInfo: { name: 'c', version: '1' } });
    assert.equal((result.serverInfo as { name: string }).name, 'alpha');
    assert.equal(result.protocolVersion, '2025-06-18');
    const alpha = rig.instances.get('alpha');
    assert.ok(alpha && client.context.uses(alpha));
    assert.deepEqual([...alpha.userIds], ['init-one'], 'the server stays up while the session lives');
    client.context.close();
    assert.deepEqual([...alpha.userIds], [], 'and is let go when it closes');
  });
});

describe('roots move a session to its workspace', async () => {
  const rig = await hubRig([{ name: 'ws', scope: 'workspace' }]);
  after(() => rig.close());

  test('a client declaring roots is asked for them; the first file root becomes its workspace and it is told its lists changed', async () => {
    const client = open(rig, 'roots', { cwd: '/home/someone' }, { 'roots/list': { result: { roots: [{ uri: 'file:///srv/project' }] } } });
    assert.equal(client.context.view.workspace, '/home/someone', 'the working directory until roots say better');
    await client.result('initialize', { clientInfo: { name: 'c', version: '1' }, capabilities: { roots: {} } });
    client.router.notify({ jsonrpc: '2.0', method: 'notifications/initialized' });
    await settle();
    assert.deepEqual(client.asked, ['roots/list']);
    assert.equal(client.context.view.workspace, '/srv/project');
    assert.equal(client.context.cwd, '/home/someone', 'the working directory itself is kept as the hello gave it');
    assert.deepEqual(
      client.sent.map((m) => m.method),
      [...LIST_CHANGED_METHODS],
    );
    assert.equal(text(await client.result('tools/call', { name: 'ws__echo', arguments: { text: 'x' } })), 'ws@/srv/project:x');
    client.context.close();
  });

  test('a client without roots keeps its working directory as its workspace and is not asked', async () => {
    const client = open(rig, 'no-roots', { cwd: '/home/other' });
    await client.result('initialize', { clientInfo: { name: 'c', version: '1' }, capabilities: {} });
    client.router.notify({ jsonrpc: '2.0', method: 'notifications/initialized' });
    await settle();
    assert.deepEqual(client.asked, []);
    assert.equal(text(await client.result('tools/call', { name: 'ws__echo', arguments: { text: 'y' } })), 'ws@/home/other:y');
    client.context.close();
  });
});
