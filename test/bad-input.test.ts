/**
 * Issue 9: no client message and no hosted server's output can take the daemon down. One
 * daemon hosts a hostile fixture server (test/fixtures/hosted-hostile.ts) beside the built-in
 * tools; raw WebSocket sessions throw bad input at it, case by case, each asserting the exact
 * answer a user would see, while a victim (a real shim under the official SDK client) calls a
 * built-in and a hosted tool in a loop and must get every answer right. At the end the daemon
 * is the same process and /health answers.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { startHostingDaemon } from './fixtures/hosted-servers.js';
import {
  CLI,
  Cleanup,
  ROOT,
  makeHome,
  spawnLines,
  closed,
  connectShim,
  getHealth,
  logPath,
  nextJson,
  openSession as openSessionWith,
  openSocket,
  readJsonLines,
  sendHello,
  textOf,
  toolText,
  waitFor,
  type DaemonHandle,
  type RawShim,
  type ShimClient,
} from './helpers.js';

const HOSTILE_SCRIPT = join(ROOT, 'dist', 'test', 'fixtures', 'hosted-hostile.js');
const MAX_BYTES = 2 * 1024 * 1024;
const MAX_SESSIONS = 12;
const HELLO_TIMEOUT_MS = 800;
const BACKPRESSURE = 4;
const QUEUE_LIMIT = 4;

const cleanup = new Cleanup();
after(() => cleanup.run());

let daemon: DaemonHandle;
/** The attacker's main session: raw WebSocket, hello done, MCP initialized with sampling. */
let attacker: WebSocket;
/** How many bad inputs the daemon was sent, for the report. */
let tried = 0;

interface VictimStats {
  calls: number;
  slowestMs: number;
  failures: string[];
}
const victimStats: VictimStats = { calls: 0, slowestMs: 0, failures: [] };
let victimStop = false;
let victimLoop: Promise<void> | undefined;

/** A JSON array nested `depth` deep, as text (JSON.stringify could not write it). */
function deep(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}

/** `JSON.stringify(value)` with every `"@DEEP@"` replaced by a `depth`-deep array. */
function withDeep(value: unknown, depth = 100_000): string {
  return JSON.stringify(value).split('"@DEEP@"').join(deep(depth));
}

/** Sends one bad input as a raw text frame and counts it. */
function attack(ws: WebSocket, frame: string | Buffer, options: { binary?: boolean } = {}): void {
  tried++;
  ws.send(frame, { binary: options.binary ?? false });
}

function send(ws: WebSocket, message: unknown): void {
  ws.send(JSON.stringify(message));
}

/** {@link closed}, armed before the close can happen; never an unhandled rejection. */
function watchClose(ws: WebSocket, timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
  const promise = closed(ws, timeoutMs);
  promise.catch(() => undefined);
  return promise;
}

/** The next frame, which must answer request `id` (nothing else may come first). */
async function nextReply(ws: WebSocket, id: unknown, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  const message = await nextJson(ws, timeoutMs);
  assert.ok('result' in message || 'error' in message, `expected the reply to ${String(id)}, got ${JSON.stringify(message).slice(0, 300)}`);
  assert.deepEqual(message.id, id);
  return message;
}

/** Frames until the reply to `id`; returns it and what came before. */
async function replyTo(
  ws: WebSocket,
  id: unknown,
  timeoutMs = 10_000,
): Promise<{ reply: Record<string, unknown>; before: Record<string, unknown>[] }> {
  const before: Record<string, unknown>[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const message = await nextJson(ws, Math.max(1, deadline - Date.now()));
    if (message.method === undefined && ('result' in message || 'error' in message) && JSON.stringify(message.id) === JSON.stringify(id)) {
      return { reply: message, before };
    }
    before.push(message);
  }
}

function errorOf(reply: Record<string, unknown>): { code: number; message: string; data?: unknown } {
  assert.ok('error' in reply, `expected an error reply, got ${JSON.stringify(reply).slice(0, 300)}`);
  return reply.error as { code: number; message: string; data?: unknown };
}

let pingSeq = 0;
/** A ping that must be the very next frame answered: the session is alive and nothing stray was sent. */
async function assertAlive(ws: WebSocket): Promise<void> {
  const id = `alive-${++pingSeq}`;
  send(ws, { jsonrpc: '2.0', id, method: 'ping' });
  assert.deepEqual((await nextReply(ws, id)).result, {});
}

/** A raw session on this file's daemon: hello accepted, MCP initialized (helpers' openSession). */
async function openSession(capabilities: Record<string, unknown> = {}): Promise<WebSocket> {
  return (await openSessionWith(cleanup, daemon, { capabilities, clientName: 'attacker' })).ws;
}

/** The victim: a real shim and SDK client calling a built-in and a hosted tool until told to stop. */
async function runVictim(victim: ShimClient): Promise<void> {
  // Bounded: stops when told, or after 20k calls whatever happens.
  for (let n = 0; !victimStop && n < 20_000; n++) {
    const text = `victim-${n}`;
    const hosted = n % 2 === 1;
    const started = performance.now();
    try {
      const result = await victim.client.callTool(
        hosted ? { name: 'hostile__echo_raw', arguments: { text } } : { name: 'echo', arguments: { text } },
        undefined,
        { timeout: 15_000 },
      );
      const got = textOf(result);
      const okay = hosted ? (JSON.parse(got) as { params: { arguments: { text: string } } }).params.arguments.text === text : got === text;
      if (!okay) victimStats.failures.push(`call ${n}: wrong answer ${got.slice(0, 200)}`);
    } catch (error) {
      victimStats.failures.push(`call ${n}: ${(error as Error).message}`);
    }
    victimStats.calls++;
    victimStats.slowestMs = Math.max(victimStats.slowestMs, performance.now() - started);
  }
}

/**
 * `exai-ws stdio` for the last case, started with the daemon: it shares nothing with it, and its
 * start (the whole CLI's) then overlaps the daemon's and the cases before it instead of coming
 * after them. Its initialize is sent at once; the case reads the answer.
 */
let stdio: RawShim;

before(async () => {
  stdio = spawnLines(cleanup, [CLI, 'stdio'], { EXAI_WS_HOME: makeHome(cleanup) });
  stdio.send(
    JSON.stringify({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'attacker', version: '1' } },
    }),
  );
  daemon = await startHostingDaemon(cleanup, () => ({ hostile: { command: process.execPath, args: [HOSTILE_SCRIPT] } }), {
    EXAI_WS_MAX_BYTES: String(MAX_BYTES),
    EXAI_WS_MAX_SESSIONS: String(MAX_SESSIONS),
    EXAI_WS_HELLO_TIMEOUT_MS: String(HELLO_TIMEOUT_MS),
    EXAI_WS_BACKPRESSURE: String(BACKPRESSURE),
    EXAI_WS_QUEUE_LIMIT: String(QUEUE_LIMIT),
    // A session whose socket an attack closed ends at once, so the session limit is predictable.
    EXAI_WS_RESUME_GRACE_MS: '0',
    EXAI_WS_HEARTBEAT_MS: '0',
  });
  // The attacker first: the hosted server then starts already offered sampling, and is not
  // renewed for it in the middle of the victim's calls.
  attacker = await openSession({ sampling: {} });
  const victim = await connectShim(cleanup, daemon, { name: 'victim' });
  // One good call each way first: the victim's loop then runs beside every attack.
  assert.equal(textOf(await victim.client.callTool({ name: 'echo', arguments: { text: 'warm' } })), 'warm');
  await victim.client.callTool({ name: 'hostile__echo_raw', arguments: {} });
  victimLoop = runVictim(victim);
});

test('frames that are not one JSON-RPC object get -32700 / -32600 with id null', async () => {
  const cases: [string, number, RegExp][] = [
    ['{"jsonrpc":', -32700, /^Parse error: not valid JSON$/],
    ['{"jsonrpc":"2.0","id":1,"method":"ping"', -32700, /^Parse error: not valid JSON$/],
    ['', -32700, /^Parse error/],
    ['42', -32600, /not a JSON object/],
    ['"hello"', -32600, /not a JSON object/],
    ['null', -32600, /not a JSON object/],
    ['true', -32600, /not a JSON object/],
    ['[{"jsonrpc":"2.0","id":1,"method":"ping"}]', -32600, /batches are not supported/],
    ['[]', -32600, /batches are not supported/],
    ['{}', -32600, /jsonrpc must be "2.0"/],
    ['{"jsonrpc":"2.0","id":"np"}', -32600, /no method, result or error/],
    ['{"jsonrpc":"2.0","id":"pp","method":"ping","params":5}', -32600, /params must be an object/],
  ];
  for (const [frame, code, message] of cases) {
    attack(attacker, frame);
    const reply = await nextJson(attacker);
    const error = errorOf(reply);
    assert.equal(error.code, code, `${frame}: ${JSON.stringify(reply)}`);
    assert.match(error.message, message, frame);
    if (frame !== '{"jsonrpc":"2.0","id":"np"}' && frame !== '{"jsonrpc":"2.0","id":"pp","method":"ping","params":5}') {
      assert.equal(reply.id, null, frame);
    }
  }
  await assertAlive(attacker);
});

test('ids: strings, negatives, floats and huge strings come back exactly; other types and ids past 2^53 are refused', async () => {
  for (const id of ['abc', '', -7, 0, 1.5, -0.25, 9007199254740991, -9007199254740991]) {
    attack(attacker, JSON.stringify({ jsonrpc: '2.0', id, method: 'ping' }));
    const raw = await nextJson(attacker);
    assert.deepEqual(raw, { jsonrpc: '2.0', id, result: {} });
  }
  const huge = 'i'.repeat(1024 * 1024);
  attack(attacker, JSON.stringify({ jsonrpc: '2.0', id: huge, method: 'ping' }));
  const hugeReply = await nextJson(attacker);
  assert.equal(hugeReply.id, huge, 'a 1 MB string id comes back unchanged');
  for (const idText of ['null', '{}', '{"a":1}', '[1]', 'true', 'false']) {
    attack(attacker, `{"jsonrpc":"2.0","id":${idText},"method":"ping"}`);
    const reply = await nextJson(attacker);
    assert.equal(reply.id, null, idText);
    assert.deepEqual(errorOf(reply), { code: -32600, message: 'Invalid request: id must be a string or number' }, idText);
  }
  // JSON.parse reads 9007199254740993 as ...992: answering would name a request never sent.
  for (const idText of ['9007199254740993', '9007199254740992', '-9007199254740993', '1e300', '123456789012345678901234567890']) {
    attack(attacker, `{"jsonrpc":"2.0","id":${idText},"method":"ping"}`);
    const reply = await nextJson(attacker);
    assert.equal(reply.id, null, idText);
    const error = errorOf(reply);
    assert.equal(error.code, -32600, idText);
    assert.match(error.message, /numeric id must lie within \+-\(2\^53 - 1\).*use a string id/, idText);
  }
  attack(attacker, '{"jsonrpc":"2.0","id":1e400,"method":"ping"}'); // Infinity
  assert.deepEqual(errorOf(await nextJson(attacker)), { code: -32600, message: 'Invalid request: id must be a string or number' });
  await assertAlive(attacker);
});

test('duplicate keys: the last one wins, as JSON.parse reads it', async () => {
  attack(attacker, '{"jsonrpc":"2.0","id":"first","id":"second","method":"ping"}');
  assert.deepEqual(await nextJson(attacker), { jsonrpc: '2.0', id: 'second', result: {} });
  attack(attacker, '{"jsonrpc":"2.0","id":"dm","method":"no/such","method":"ping"}');
  assert.deepEqual(await nextJson(attacker), { jsonrpc: '2.0', id: 'dm', result: {} });
  attack(attacker, '{"jsonrpc":"2.0","id":"dn","method":"tools/call","params":{"name":"nope","name":"echo","arguments":{"text":"last"}}}');
  assert.equal(toolText(await nextReply(attacker, 'dn')), 'last');
  await assertAlive(attacker);
});

test('__proto__ keys: no prototype is touched, and they reach a hosted server as sent', async () => {
  // The whole message under __proto__: an own key, not the message's prototype.
  attack(attacker, '{"__proto__":{"jsonrpc":"2.0","id":"p","method":"ping"}}');
  const proto = await nextJson(attacker);
  assert.equal(proto.id, null);
  assert.deepEqual(errorOf(proto), { code: -32600, message: 'Invalid request: jsonrpc must be "2.0"' });
  attack(attacker, '{"jsonrpc":"2.0","id":"p2","method":"ping","__proto__":{"method":"tools/list","id":"other"}}');
  assert.deepEqual(await nextJson(attacker), { jsonrpc: '2.0', id: 'p2', result: {} });
  attack(
    attacker,
    '{"jsonrpc":"2.0","id":"p3","method":"tools/call","params":{"__proto__":{"name":"echo"},"name":"hostile__echo_raw",' +
      '"arguments":{"__proto__":{"polluted":true},"x":1},"_meta":{"__proto__":{"progressToken":[1]}}}}',
  );
  const seen = JSON.parse(toolText(await nextReply(attacker, 'p3'))) as { params: Record<string, Record<string, unknown>> };
  assert.equal(seen.params.name, 'echo_raw', 'the server got its own tool name');
  assert.ok(Object.hasOwn(seen.params, '__proto__'), 'params.__proto__ forwarded as an own key');
  assert.ok(Object.hasOwn(seen.params.arguments ?? {}, '__proto__'), 'arguments.__proto__ forwarded as an own key');
  assert.deepEqual(Object.getOwnPropertyDescriptor(seen.params.arguments, '__proto__')?.value, { polluted: true });
  assert.ok(Object.hasOwn(seen.params._meta ?? {}, '__proto__'), '_meta.__proto__ forwarded as an own key');
  // A later call still resolves names normally: nothing was polluted.
  attack(attacker, '{"jsonrpc":"2.0","id":"p4","method":"tools/call","params":{"name":"polluted","arguments":{}}}');
  assert.deepEqual(errorOf(await nextReply(attacker, 'p4')), { code: -32602, message: 'Unknown tool: polluted' });
  await assertAlive(attacker);
});

const PROTO_NAMES = ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf'];

test('Object.prototype names as methods are unknown methods (-32601)', async () => {
  for (const method of PROTO_NAMES) {
    attack(attacker, JSON.stringify({ jsonrpc: '2.0', id: `m-${method}`, method, params: { name: 'echo' } }));
    assert.deepEqual(errorOf(await nextReply(attacker, `m-${method}`)), { code: -32601, message: `Method not found: ${method}` });
  }
  attack(attacker, JSON.stringify({ jsonrpc: '2.0', method: 'toString' })); // as a notification: no answer
  await assertAlive(attacker);
});

test('Object.prototype names as tool names are unknown tools (-32602); a hosted tool really named so is reached by its prefix', async () => {
  for (const name of PROTO_NAMES) {
    attack(attacker, JSON.stringify({ jsonrpc: '2.0', id: `t-${name}`, method: 'tools/call', params: { name, arguments: {} } }));
    assert.deepEqual(errorOf(await nextReply(attacker, `t-${name}`)), { code: -32602, message: `Unknown tool: ${name}` });
  }
  for (const name of ['toString', 'constructor']) {
    send(attacker, { jsonrpc: '2.0', id: `h-${name}`, method: 'tools/call', params: { name: `hostile__${name}`, arguments: {} } });
    assert.equal(toolText(await nextReply(attacker, `h-${name}`)), `the ${name} tool`);
  }
  attack(attacker, JSON.stringify({ jsonrpc: '2.0', id: 'pg', method: 'prompts/get', params: { name: 'constructor' } }));
  assert.deepEqual(errorOf(await nextReply(attacker, 'pg')), { code: -32602, message: 'Unknown prompt: constructor' });
  await assertAlive(attacker);
});

test('a hosted server junk in its tools list is left out; the list still answers', async () => {
  send(attacker, { jsonrpc: '2.0', id: 'list', method: 'tools/list' });
  const tools = ((await nextReply(attacker, 'list')).result as { tools: { name: string }[] }).tools.map((t) => t.name);
  assert.ok(tools.includes('echo') && tools.includes('hostile__echo_raw') && tools.includes('hostile__toString'), tools.join(','));
  assert.ok(!tools.some((name) => name.includes('deep_schema')), 'the tool no client could be sent is left out');
  assert.equal(tools.length, new Set(tools).size);
});

test('params nested 100k deep: built-in tools answer or refuse them, hosted ones get -32602, unknown methods -32601', async () => {
  tried++;
  attacker.send(
    withDeep({ jsonrpc: '2.0', id: 'd1', method: 'tools/call', params: { name: 'echo', arguments: { text: 'deep', extra: '@DEEP@' } } }),
  );
  assert.equal(toolText(await nextReply(attacker, 'd1')), 'deep', 'the built-in echo ignores an argument it does not know');
  tried++;
  attacker.send(
    withDeep({ jsonrpc: '2.0', id: 'd2', method: 'tools/call', params: { name: 'hostile__echo_raw', arguments: { x: '@DEEP@' } } }),
  );
  assert.deepEqual(errorOf(await nextReply(attacker, 'd2')), {
    code: -32602,
    message: 'Invalid params: the request cannot be sent to hostile: it is nested too deeply to serialise',
  });
  tried++;
  attacker.send(withDeep({ jsonrpc: '2.0', id: 'd3', method: 'no/such', params: { x: '@DEEP@' } }));
  assert.deepEqual(errorOf(await nextReply(attacker, 'd3')), { code: -32601, message: 'Method not found: no/such' });
  tried++;
  attacker.send(withDeep({ jsonrpc: '2.0', id: 'd4', method: 'tools/call', params: { name: '@DEEP@' } }));
  assert.deepEqual(errorOf(await nextReply(attacker, 'd4')), { code: -32602, message: 'tools/call needs params.name as a string' });
  await assertAlive(attacker);
  // Its own session: initialize again would take the attacker's sampling capability away.
  const ws = await openSession();
  tried++;
  ws.send(withDeep({ jsonrpc: '2.0', id: 'd5', method: 'initialize', params: { capabilities: '@DEEP@', clientInfo: { name: '@DEEP@' } } }));
  assert.equal(((await nextReply(ws, 'd5')).result as { serverInfo: { name: string } }).serverInfo.name, 'exai-ws');
  await assertAlive(ws);
  const bye = watchClose(ws);
  ws.close(1000);
  await bye;
});

test('progress tokens that are not a string or number are refused (-32602), to built-in and hosted tools', async () => {
  const refusal = { code: -32602, message: 'Invalid params: params._meta.progressToken must be a string or a number' };
  const tokens: [string, string][] = [
    ['5000 deep', deep(5_000)],
    ['100k deep', deep(100_000)],
    ['object', '{"a":1}'],
    ['null', 'null'],
    ['boolean', 'true'],
  ];
  for (const tool of ['progress', 'hostile__progress']) {
    for (const [what, token] of tokens) {
      const id = `pt-${tool}-${what}`;
      attack(
        attacker,
        `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"method":"tools/call","params":{"name":"${tool}","arguments":{"steps":1,"interval_ms":0},"_meta":{"progressToken":${token}}}}`,
      );
      assert.deepEqual(errorOf(await nextReply(attacker, id)), refusal, id);
    }
  }
  // A valid token still works: progress carries it back exactly.
  for (const token of ['tok', 42]) {
    send(attacker, {
      jsonrpc: '2.0',
      id: `ok-${token}`,
      method: 'tools/call',
      params: { name: 'hostile__progress', arguments: {}, _meta: { progressToken: token } },
    });
    const { reply, before } = await replyTo(attacker, `ok-${token}`);
    assert.equal(toolText(reply), 'progressed');
    assert.deepEqual(
      before.map((m) => [m.method, (m.params as Record<string, unknown>).progressToken, (m.params as Record<string, unknown>).progress]),
      [1, 2, 3].map((i) => ['notifications/progress', token, i]),
    );
  }
  await assertAlive(attacker);
});

test('a hosted server result nested 100k deep: that request gets -32603, nothing else is lost', async () => {
  send(attacker, { jsonrpc: '2.0', id: 'dr', method: 'tools/call', params: { name: 'hostile__deep_result', arguments: {} } });
  assert.deepEqual(errorOf(await nextReply(attacker, 'dr', 20_000)), {
    code: -32603,
    message: 'Internal error: the result cannot be sent: it is nested too deeply to serialise',
  });
  tried++;
  // Just deep enough to overflow JSON.stringify (the reported 12 KB frame).
  send(attacker, {
    jsonrpc: '2.0',
    id: 'dr5k',
    method: 'tools/call',
    params: { name: 'hostile__deep_result', arguments: { depth: 5_000 } },
  });
  assert.equal(errorOf(await nextReply(attacker, 'dr5k')).code, -32603);
  tried++;
  await assertAlive(attacker);
});

test('hosted notifications nested 100k deep (log, unknown, progress) are dropped, counted and logged; the call answers', async () => {
  send(attacker, {
    jsonrpc: '2.0',
    id: 'dnote',
    method: 'tools/call',
    params: { name: 'hostile__deep_notify', arguments: {}, _meta: { progressToken: 'dn-token' } },
  });
  const { reply, before } = await replyTo(attacker, 'dnote', 20_000);
  assert.equal(toolText(reply), 'notified');
  assert.deepEqual(before, [], 'no deep notification reached the client');
  tried += 3;
  const dropped = await waitFor(
    () => {
      const lines = readJsonLines(logPath(daemon.home)).filter((l) => l.msg === 'message dropped: it cannot be serialised');
      return lines.length >= 3 ? lines : null;
    },
    'three warn lines for the dropped notifications',
    10_000,
  );
  assert.ok(dropped.every((l) => l.level === 40 && l.reason === 'it is nested too deeply to serialise'));
  assert.deepEqual(
    dropped.slice(0, 3).map((l) => l.method),
    ['notifications/message', 'notifications/x-hostile', 'notifications/progress'],
  );
  await assertAlive(attacker);
});

test('a hosted server null result or malformed error becomes -32603 naming the server', async () => {
  send(attacker, { jsonrpc: '2.0', id: 'br', method: 'tools/call', params: { name: 'hostile__bad_result', arguments: {} } });
  assert.deepEqual(errorOf(await nextReply(attacker, 'br')), {
    code: -32603,
    message: 'hostile sent a result that is not an object',
    data: { server: 'hostile' },
  });
  send(attacker, { jsonrpc: '2.0', id: 'be', method: 'tools/call', params: { name: 'hostile__bad_error', arguments: {} } });
  assert.deepEqual(errorOf(await nextReply(attacker, 'be')), {
    code: -32603,
    message: 'hostile sent a malformed error',
    data: { server: 'hostile' },
  });
  tried += 2;
  await assertAlive(attacker);
});

test('server-to-client requests: deep params never reach the client, a deep answer never reaches the server; both get -32603', async () => {
  send(attacker, {
    jsonrpc: '2.0',
    id: 'ad',
    method: 'tools/call',
    params: { name: 'hostile__ask_deep', arguments: {}, _meta: { progressToken: 'ad' } },
  });
  const deepAsk = await replyTo(attacker, 'ad');
  assert.equal(
    toolText(deepAsk.reply),
    'error -32603: sampling/createMessage cannot be sent to the client: its params cannot be serialised',
  );
  assert.deepEqual(deepAsk.before, []);
  send(attacker, {
    jsonrpc: '2.0',
    id: 'ask',
    method: 'tools/call',
    params: { name: 'hostile__ask', arguments: {}, _meta: { progressToken: 'ask' } },
  });
  const request = await nextJson(attacker);
  assert.equal(request.method, 'sampling/createMessage');
  attack(attacker, withDeep({ jsonrpc: '2.0', id: request.id, result: { role: 'assistant', content: '@DEEP@' } }));
  assert.equal(
    toolText(await nextReply(attacker, 'ask')),
    "error -32603: the client's answer cannot be sent: it is nested too deeply to serialise",
  );
  tried++;
  await assertAlive(attacker);
});

test("capabilities nested 100k deep in one client's initialize never reach a shared server: it keeps serving everyone", async () => {
  const ws = await openSocket(cleanup, daemon);
  assert.equal((await sendHello(ws)).ok, true);
  attack(
    ws,
    withDeep({
      jsonrpc: '2.0',
      id: 'caps',
      method: 'initialize',
      params: {
        protocolVersion: '2025-06-18',
        capabilities: { elicitation: { form: '@DEEP@' }, roots: '@DEEP@', experimental: '@DEEP@' },
        clientInfo: { name: 'deep-caps', version: '1' },
      },
    }),
  );
  assert.ok((await nextReply(ws, 'caps')).result);
  send(ws, { jsonrpc: '2.0', method: 'notifications/initialized' });
  // The shared server is renewed for the capability this client offers; it must come back.
  for (const [who, id] of [
    [ws, 'after-caps-1'],
    [attacker, 'after-caps-2'],
  ] as const) {
    send(who, { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'hostile__echo_raw', arguments: { text: id } } });
    const { reply } = await replyTo(who, id);
    assert.equal((JSON.parse(toolText(reply)) as { params: { arguments: { text: string } } }).params.arguments.text, id);
  }
  const bye = watchClose(ws);
  ws.close(1000);
  await bye;
});

test('a client name of 512 KB: the session initializes, and the daemon logs and keeps only its start', async () => {
  const ws = await openSocket(cleanup, daemon);
  assert.equal((await sendHello(ws)).ok, true);
  const name = `huge-${'n'.repeat(512 * 1024)}`;
  attack(
    ws,
    JSON.stringify({
      jsonrpc: '2.0',
      id: 'big-name',
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name, version: name } },
    }),
  );
  assert.ok((await nextReply(ws, 'big-name')).result);
  await assertAlive(ws);
  const line = await waitFor(
    () => readJsonLines(logPath(daemon.home)).find((l) => l.msg === 'session initialized' && String(l.mcp_client).startsWith('huge-')),
    'the session initialized line',
  );
  assert.ok(String(line.mcp_client).length < 300, `logged ${String(line.mcp_client).length} characters of the name`);
  assert.ok(String(line.mcp_client_version).length < 300);
  const bye = watchClose(ws);
  ws.close(1000);
  await bye;
});

test('responses to ids the daemon never sent, unknown notifications and cancellations of nothing are ignored', async () => {
  const frames = [
    '{"jsonrpc":"2.0","id":"never-sent","result":{}}',
    '{"jsonrpc":"2.0","id":12345,"error":{"code":-1,"message":"x"}}',
    '{"jsonrpc":"2.0","id":"exai-ws-999999","result":{}}',
    '{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}',
    '{"jsonrpc":"2.0","method":"notifications/whatever","params":{"x":1}}',
    withDeep({ jsonrpc: '2.0', method: 'notifications/whatever', params: { x: '@DEEP@' } }),
    withDeep({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: '@DEEP@' } }),
    '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"nothing-in-flight"}}',
    '{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}',
    '{"jsonrpc":"2.0","method":"__proto__","params":{"__proto__":{}}}',
  ];
  for (const frame of frames) attack(attacker, frame);
  await assertAlive(attacker);
});

test('a flood of 5000 notifications costs nothing but itself', async () => {
  tried++; // one case, however many frames
  for (let i = 0; i < 5_000; i++) {
    attacker.send(`{"jsonrpc":"2.0","method":"notifications/flood","params":{"i":${i}}}`);
  }
  await assertAlive(attacker);
});

test('a hosted server flooding a client that stopped reading: notifications past 8 MB unread are dropped, the call answers', async () => {
  const ws = await openSession();
  const COUNT = 2_000; // 64 KB each: 128 MB a daemon would otherwise buffer for this client
  const doneFile = join(daemon.home, 'flood-done');
  tried++;
  send(ws, {
    jsonrpc: '2.0',
    id: 'flood',
    method: 'tools/call',
    params: { name: 'hostile__flood', arguments: { count: COUNT, bytes: 65_536, done_file: doneFile }, _meta: { progressToken: 'f' } },
  });
  const socket = (ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
  socket.pause();
  // Not reading until the server has written all of it and the daemon has read it.
  await waitFor(() => existsSync(doneFile), 'the server to finish its flood', 30_000);
  await waitFor(
    () => readJsonLines(logPath(daemon.home)).some((l) => String(l.msg).startsWith('client not reading')),
    'the daemon to drop notifications',
    10_000,
  );
  await new Promise((resolve) => setTimeout(resolve, 500));
  // Another window, opened later (so listed after the stuck one), still gets every log message.
  // (The attacker, which set no level and so gets every log message, does not want it.)
  send(attacker, { jsonrpc: '2.0', id: 'quiet', method: 'logging/setLevel', params: { level: 'emergency' } });
  await nextReply(attacker, 'quiet');
  const other = await openSession();
  send(other, {
    jsonrpc: '2.0',
    id: 'one-log',
    method: 'tools/call',
    params: { name: 'hostile__flood', arguments: { count: 1, bytes: 10 } },
  });
  const { reply: logged, before: logs } = await replyTo(other, 'one-log');
  assert.equal(toolText(logged), 'flooded');
  assert.ok(
    logs.some((m) => m.method === 'notifications/message' && (m.params as { data?: unknown }).data === 'x'.repeat(10)),
    `the log message reached the other window: ${JSON.stringify(logs).slice(0, 300)}`,
  );
  const otherBye = watchClose(other);
  other.close(1000);
  await otherBye;
  socket.resume();
  const { reply, before } = await replyTo(ws, 'flood', 60_000);
  assert.equal(toolText(reply), 'flooded');
  const progress = before.filter((m) => m.method === 'notifications/progress');
  assert.ok(progress.length > 0, 'notifications before the client stopped reading arrive');
  assert.ok(progress.length <= COUNT / 2, `${progress.length} of ${COUNT} notifications were buffered for a client that was not reading`);
  await assertAlive(ws);
  const bye = watchClose(ws);
  ws.close(1000);
  await bye;
});

test('a flood of requests: past the in-flight and queue limits each gets -32010 at once', async () => {
  const ws = await openSession();
  for (let i = 0; i < BACKPRESSURE + QUEUE_LIMIT; i++) {
    send(ws, { jsonrpc: '2.0', id: `hold-${i}`, method: 'tools/call', params: { name: 'sleep', arguments: { ms: 30_000 } } });
  }
  const over = 20;
  for (let i = 0; i < over; i++) attack(ws, JSON.stringify({ jsonrpc: '2.0', id: `over-${i}`, method: 'ping' }));
  for (let i = 0; i < over; i++) {
    assert.deepEqual(errorOf(await nextReply(ws, `over-${i}`)), {
      code: -32010,
      message: `session over capacity: ${BACKPRESSURE} in flight and ${QUEUE_LIMIT} queued`,
      data: { retry_after_ms: 100 },
    });
  }
  // Cancelled requests get no answer (MCP); the session is usable again at once.
  for (let i = 0; i < BACKPRESSURE + QUEUE_LIMIT; i++) {
    send(ws, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: `hold-${i}`, reason: 'test' } });
  }
  await assertAlive(ws);
  const goodbye = watchClose(ws);
  ws.close(1000);
  await goodbye;
});

test('a frame over EXAI_WS_MAX_BYTES closes that connection with 1009, and only it', async () => {
  const ws = await openSession();
  const bye = watchClose(ws);
  attack(ws, JSON.stringify({ jsonrpc: '2.0', id: 'big', method: 'ping', params: { pad: 'x'.repeat(MAX_BYTES) } }));
  assert.equal((await bye).code, 1009);
  await assertAlive(attacker);
});

test('a binary frame closes with 1003, invalid UTF-8 with 1007', async () => {
  const binary = await openSession();
  const binaryClosed = watchClose(binary);
  attack(binary, Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' })), { binary: true });
  assert.deepEqual(await binaryClosed, { code: 1003, reason: 'binary frames are not supported' });
  const utf8 = await openSession();
  const utf8Closed = watchClose(utf8);
  attack(utf8, Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]));
  assert.equal((await utf8Closed).code, 1007);
  // Before the hello too.
  const early = await openSocket(cleanup, daemon);
  const earlyClosed = watchClose(early);
  attack(early, Buffer.from([0xc3, 0x28]));
  assert.equal((await earlyClosed).code, 1007);
  await assertAlive(attacker);
});

test('every hello error: its ack, its close code, nothing else', async () => {
  const cases: { frame: string; token?: null; code: string; close: number; message: RegExp }[] = [
    { frame: '{"type":"hello",', code: 'bad_hello', close: 4000, message: /^hello is not valid JSON$/ },
    { frame: '[1,2]', code: 'bad_hello', close: 4000, message: /^hello must be a JSON object$/ },
    { frame: '"hello"', code: 'bad_hello', close: 4000, message: /^hello must be a JSON object$/ },
    { frame: '{"type":"hello","protocol":"1"}', code: 'bad_hello', close: 4000, message: /protocol must be an integer/ },
    { frame: '{"type":"hello","protocol":1,"session_id":"a b"}', code: 'bad_hello', close: 4000, message: /session_id/ },
    {
      frame: withDeep({ type: 'hello', protocol: 1, client: '@DEEP@' }),
      code: 'bad_hello',
      close: 4000,
      message: /client must be an object/,
    },
    {
      frame: '{"type":"hello","protocol":1,"server":"__proto__"}',
      code: 'bad_hello',
      close: 4000,
      message: /no hosted server named '__proto__'/,
    },
    // A close reason is at most 123 bytes: 100 three-byte characters must be cut, not thrown on.
    {
      frame: JSON.stringify({ type: 'hello', protocol: 1, server: '\u20ac'.repeat(100) }),
      code: 'bad_hello',
      close: 4000,
      message: /^no hosted server named '\u20ac{100}'/,
    },
    {
      frame: '{"type":"hello","protocol":1,"server":"constructor"}',
      code: 'bad_hello',
      close: 4000,
      message: /no hosted server named 'constructor'/,
    },
    { frame: '{"__proto__":{"type":"hello"},"protocol":1}', code: 'not_hello', close: 4001, message: /first frame must be/ },
    { frame: '{"jsonrpc":"2.0","id":1,"method":"initialize"}', code: 'not_hello', close: 4001, message: /first frame must be/ },
    {
      frame: '{"type":"hello","protocol":1,"auth_token":"wrong-token-wrong-token"}',
      token: null,
      code: 'unauthorized',
      close: 4003,
      message: /^wrong token$/,
    },
    { frame: '{"type":"hello","protocol":1}', token: null, code: 'unauthorized', close: 4003, message: /^a token is required$/ },
    { frame: '{"type":"hello","protocol":2}', code: 'unsupported_protocol', close: 4004, message: /protocol 2 is not supported/ },
  ];
  // The connection that never says hello waits out its timeout while the cases run.
  const silent = await openSocket(cleanup, daemon);
  const silentClose = watchClose(silent);
  tried++;
  for (const c of cases) {
    const ws = await openSocket(cleanup, daemon, { token: c.token });
    const bye = watchClose(ws);
    attack(ws, c.frame);
    const ack = await nextJson(ws);
    assert.equal(ack.type, 'hello_ack', c.frame.slice(0, 80));
    assert.equal(ack.ok, false);
    const error = ack.error as { code: string; message: string };
    assert.equal(error.code, c.code, c.frame.slice(0, 80));
    assert.match(error.message, c.message, c.frame.slice(0, 80));
    const close = await bye;
    assert.equal(close.code, c.close, c.frame.slice(0, 80));
    assert.ok(error.message.startsWith(close.reason) && Buffer.byteLength(close.reason) <= 123, close.reason);
  }
  assert.deepEqual(await silentClose, { code: 4002, reason: `no hello within ${HELLO_TIMEOUT_MS} ms` });
  await assertAlive(attacker);
});

test('past EXAI_WS_MAX_SESSIONS a hello gets session_limit and 4008; the sessions already open go on', async () => {
  // The victim and the attacker; the sessions the other cases closed are gone (resume grace 0).
  const total = await waitFor(async () => ((await getHealth(daemon)).sessions.total === 2 ? 2 : null), 'two sessions left');
  const extra: WebSocket[] = [];
  for (let i = total; i < MAX_SESSIONS; i++) {
    const ws = await openSocket(cleanup, daemon);
    assert.equal((await sendHello(ws)).ok, true);
    extra.push(ws);
  }
  const refused = await openSocket(cleanup, daemon);
  const bye = watchClose(refused);
  tried++;
  const ack = await sendHello(refused);
  assert.deepEqual(ack.error, { code: 'session_limit', message: `session limit reached (${MAX_SESSIONS})` });
  assert.equal((await bye).code, 4008);
  for (const ws of extra) {
    const done = watchClose(ws);
    ws.close(1000);
    await done;
  }
  await assertAlive(attacker);
});

test('exai-ws stdio (no daemon) takes the same bad input and keeps answering', async () => {
  const reply = async (id: unknown): Promise<Record<string, unknown>> => {
    for (;;) {
      const message = JSON.parse(await stdio.nextLine(10_000)) as Record<string, unknown>;
      if (message.method === undefined && JSON.stringify(message.id) === JSON.stringify(id)) return message;
    }
  };
  // Its initialize was sent in before(), when it was started.
  assert.ok((await reply(0)).result);
  stdio.send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
  const bad: [string, unknown, { code: number; message: RegExp }][] = [
    [
      withDeep({
        jsonrpc: '2.0',
        id: 's1',
        method: 'tools/call',
        params: { name: 'version', arguments: {}, _meta: { progressToken: '@DEEP@' } },
      }),
      's1',
      { code: -32602, message: /progressToken must be a string or a number/ },
    ],
    [
      withDeep({ jsonrpc: '2.0', id: 's2', method: 'no/such', params: { x: '@DEEP@' } }),
      's2',
      { code: -32601, message: /Method not found/ },
    ],
    [JSON.stringify({ jsonrpc: '2.0', id: 's3', method: 'constructor' }), 's3', { code: -32601, message: /Method not found: constructor/ }],
    [
      JSON.stringify({ jsonrpc: '2.0', id: 's4', method: 'tools/call', params: { name: '__proto__' } }),
      's4',
      { code: -32602, message: /Unknown tool/ },
    ],
    ['{"jsonrpc":"2.0","id":', null, { code: -32700, message: /Parse error/ }],
  ];
  for (const [line, id, expected] of bad) {
    tried++;
    stdio.send(line);
    const error = errorOf(await reply(id));
    assert.equal(error.code, expected.code, line.slice(0, 100));
    assert.match(error.message, expected.message);
  }
  stdio.send(JSON.stringify({ jsonrpc: '2.0', id: 'v', method: 'tools/call', params: { name: 'version', arguments: {} } }));
  assert.match(toolText(await reply('v')), /exai-ws/);
  assert.equal(stdio.proc.exitCode, null, `exai-ws stdio exited: ${stdio.stderr()}`);
});

test('afterwards: the same daemon process, /health ok, and the victim got every answer right', async (t) => {
  victimStop = true;
  await victimLoop;
  assert.equal(daemon.proc.exitCode, null, `the daemon exited: ${daemon.stderr()}`);
  const health = await getHealth(daemon);
  assert.equal(health.status, 'ok');
  assert.equal(health.pid, daemon.pid);
  assert.deepEqual(victimStats.failures, []);
  assert.ok(victimStats.calls >= 10, `the victim made only ${victimStats.calls} calls`);
  await assertAlive(attacker);
  t.diagnostic(
    `bad inputs tried: ${tried}; victim calls: ${victimStats.calls}; slowest victim answer: ${victimStats.slowestMs.toFixed(1)} ms`,
  );
  assert.ok(tried >= 40, `only ${tried} bad inputs`);
});
