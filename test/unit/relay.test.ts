/**
 * The daemon relays a server's plain result as text (protocol/relay.ts) instead of JSON.parse +
 * JSON.stringify. These tests hold the scanner to JSON.parse (every text it accepts, JSON.parse
 * reads the same way; odd texts go to the full parse), and show that a server link with the fast
 * path and one without it give the client equal JSON and the same errors and strays for the
 * same server lines: plain, spaced, duplicate keys, errors, malformed errors, non-object
 * results, tasks, huge results, deep nesting, a neighbour's id, lines that are not JSON.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JSONRPCMessage, Transport } from '@modelcontextprotocol/client';
import { MAX_RELAY_DEPTH, RelayedResponse, RelayedResult, scanSuccess } from '../../src/protocol/relay.js';
import { ServerLink, type CallOutcome } from '../../src/hosting/server-link.js';
import { serializeFor, type UnsendableDeps } from '../../src/daemon/sessions/unsendable.js';

/** Texts the scanner must accept, with the id it must read. */
const ACCEPTED: [string, string | number][] = [
  ['{"jsonrpc":"2.0","id":7,"result":{}}', 7],
  ['{"result":{"content":[{"type":"text","text":"hi"}]},"id":"abc","jsonrpc":"2.0"}', 'abc'],
  ['  { "jsonrpc" : "2.0" ,\t"id" : -12 , "result" : { "a" : [ 1 , 2.5 , -3 , 0 , 0.25 ] } }  ', -12],
  ['{"jsonrpc":"2.0","id":1,"result":{"a":1,"a":2,"b":{"c":true,"c":false}}}', 1],
  ['{"jsonrpc":"2.0","id":2,"result":{"s":"\\u00e9\\n\\"\\\\\\/\\b\\f\\r\\t","e":"é 😀 \u2028","z":null}}', 2],
  ['{"jsonrpc":"2.0","id":3,"result":{"float":0.30000000000000004,"big":12345678901234567890,"neg":-0.5}}', 3],
  ['{"jsonrpc":"2.0","id":"a-b c","result":{"nested":{"task":{"taskId":"t"}}}}', 'a-b c'],
  [`{"jsonrpc":"2.0","id":9,"result":{"a":${'['.repeat(MAX_RELAY_DEPTH - 1)}${']'.repeat(MAX_RELAY_DEPTH - 1)}}}`, 9],
];

/** Texts the scanner must leave to JSON.parse: invalid, or valid but not its plain case. */
const REFUSED: string[] = [
  '',
  'not json',
  '{"jsonrpc":"2.0","id":1,"result":{}',
  '{"jsonrpc":"2.0","id":1,"result":{}} x',
  '{"jsonrpc":"2.0","id":1,"result":{},}',
  '{"jsonrpc":"2.0","id":1,"result":{"a":1,}}',
  '{"jsonrpc":"2.0","id":1,"result":{"a":[1,]}}',
  '{"jsonrpc":"2.0","id":1,"result":{"a":01}}',
  '{"jsonrpc":"2.0","id":1,"result":{"a":1.}}',
  '{"jsonrpc":"2.0","id":1,"result":{"a":.5}}',
  '{"jsonrpc":"2.0","id":1,"result":{"a":+1}}',
  '{"jsonrpc":"2.0","id":1,"result":{"a":-}}',
  '{"jsonrpc":"2.0","id":1,"result":{"a":NaN}}',
  "{'jsonrpc':'2.0','id':1,'result':{}}",
  '{"jsonrpc":"2.0","id":1,"result":{"a":"\\x"}}',
  '{"jsonrpc":"2.0","id":1,"result":{"a":"\\u12"}}',
  '{"jsonrpc":"2.0","id":1,"result":{"a":"tab\there"}}',
  '{"jsonrpc":"2.0","id":1,"result":{"a":tru}}',
  // Valid JSON, but not the plain case.
  '{"jsonrpc":"2.0","id":1,"result":{"a":1e400}}',
  '{"jsonrpc":"2.0","id":1,"result":{"a":1E2}}',
  '{"jsonrpc":"2.0","id":1,"result":{"a":-0}}',
  '{"jsonrpc":"2.0","id":1,"result":{"a":-0.000}}',
  `{"jsonrpc":"2.0","id":1,"result":{"a":${'1'.repeat(400)}}}`,
  '{"jsonrpc":"2.0","id":1,"result":{"a":1}\r}',
  '{"jsonrpc":"2.0",\n"id":1,"result":{}}',
  `{"jsonrpc":"2.0","id":9,"result":{"a":${'['.repeat(MAX_RELAY_DEPTH)}${']'.repeat(MAX_RELAY_DEPTH)}}}`,
  '{"jsonrpc":"2.0","id":1,"id":2,"result":{}}',
  '{"jsonrpc":"2.0","id":1,"result":{},"result":{}}',
  '{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"result":{}}',
  '{"jsonrpc":"2.0","\\u0069d":1,"result":{}}',
  '{"jsonrpc":"2.0","id":"a\\"b","result":{}}',
  '{"jsonrpc":"2.0","id":1e3,"result":{}}',
  '{"jsonrpc":"2.0","id":1.5,"result":{}}',
  '{"jsonrpc":"2.0","id":9007199254740993,"result":{}}',
  '{"jsonrpc":"2.0","id":true,"result":{}}',
  '{"jsonrpc":"2.0","id":[5],"result":{}}',
  '{"jsonrpc":"2.0","id":null,"result":{}}',
  '{"jsonrpc":"2.0","result":{}}',
  '{"id":1,"result":{}}',
  '{"jsonrpc":"1.0","id":1,"result":{}}',
  '{"jsonrpc":"2\\u002e0","id":1,"result":{}}',
  '{"jsonrpc":"2.0","id":1,"result":[]}',
  '{"jsonrpc":"2.0","id":1,"result":null}',
  '{"jsonrpc":"2.0","id":1,"result":"text"}',
  '{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"no"}}',
  '{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}',
  '{"jsonrpc":"2.0","id":1,"result":{},"method":"x"}',
  '{"jsonrpc":"2.0","id":1,"result":{},"extra":1}',
  '[{"jsonrpc":"2.0","id":1,"result":{}}]',
];

/** What the scanner's verdict must agree with: JSON.parse, the daemon's own reading. */
function assertAgreesWithParse(text: string): void {
  const head = scanSuccess(text);
  if (head === undefined) return;
  const parsed = JSON.parse(text) as { jsonrpc: unknown; id: unknown; result: unknown };
  assert.equal(parsed.jsonrpc, '2.0', text);
  assert.equal(parsed.id, head.id, text);
  assert.deepEqual(JSON.parse(text.slice(head.start, head.end)), parsed.result, text);
  const relayed = new RelayedResponse('client-1', new RelayedResult(text.slice(head.start, head.end)));
  const full = JSON.stringify({ jsonrpc: '2.0', id: 'client-1', result: parsed.result });
  assert.deepEqual(JSON.parse(relayed.text), JSON.parse(full), text);
}

test('the scanner accepts plain success responses and reads them as JSON.parse does', () => {
  for (const [text, id] of ACCEPTED) {
    const head = scanSuccess(text);
    assert.ok(head, `accepted: ${text.slice(0, 80)}`);
    assert.equal(head.id, id);
    assertAgreesWithParse(text);
  }
});

test('the scanner leaves invalid text and everything but the plain case to JSON.parse', () => {
  for (const text of REFUSED) assert.equal(scanSuccess(text), undefined, `refused: ${text.slice(0, 80)}`);
});

test('a result with a top-level task (or an escaped key) is flagged; one nested deeper is not', () => {
  assert.equal(scanSuccess('{"jsonrpc":"2.0","id":1,"result":{"task":{"taskId":"t1"}}}')?.task, true);
  assert.equal(scanSuccess('{"jsonrpc":"2.0","id":1,"result":{"t\\u0061sk":{}}}')?.task, true);
  assert.equal(scanSuccess('{"jsonrpc":"2.0","id":1,"result":{"a":{"task":1},"tasks":2}}')?.task, false);
});

test('mutated texts: whatever the scanner accepts, JSON.parse reads the same way', () => {
  const alphabet = ' {}[]":,\\-+.0123456789eEtrufalsn\r\nxu';
  let seed = 12345;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (const [base] of ACCEPTED) {
    for (let round = 0; round < 1_500; round++) {
      const chars = [...base];
      for (let edits = 1 + random(3); edits > 0; edits--) {
        const at = random(chars.length + 1);
        const kind = random(3);
        const c = alphabet[random(alphabet.length)] as string;
        if (kind === 0) chars.splice(at, 1);
        else if (kind === 1) chars.splice(at, 0, c);
        else chars[at] = c;
      }
      assertAgreesWithParse(chars.join(''));
    }
  }
});

/** A line transport as ChildTransport is one, driven by the test: `line` is what the server writes. */
class FakeServer implements Transport {
  onmessage?: (message: JSONRPCMessage) => void;
  onclose?: () => void;
  onerror?: (error: Error) => void;
  readonly requests: { id: string | number; method: string }[] = [];
  readonly notJson: string[] = [];

  async start(): Promise<void> {}
  close(): Promise<void> {
    this.onclose?.();
    return Promise.resolve();
  }
  send(message: JSONRPCMessage): Promise<void> {
    this.took(JSON.stringify(message));
    return Promise.resolve();
  }
  /** As ChildTransport.receive: the line goes to `online` first when there is one (see the subclass). */
  line(text: string): void {
    if (this.fast(text)) return;
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      this.notJson.push(text);
      return;
    }
    this.onmessage?.(message as JSONRPCMessage);
  }
  protected fast(_text: string): boolean {
    return false;
  }
  protected took(text: string): void {
    const request = JSON.parse(text) as { id?: string | number; method: string };
    if (request.method === 'initialize' && request.id !== undefined) {
      queueMicrotask(() => this.line(JSON.stringify({ jsonrpc: '2.0', id: request.id, result: { capabilities: {} } })));
    } else if (request.id !== undefined) {
      this.requests.push({ id: request.id, method: request.method });
    }
  }
}

/** The same server behind the line interface: the link takes the fast path. */
class FakeLineServer extends FakeServer {
  online: ((line: string) => boolean) | undefined = undefined;
  sendText(text: string): void {
    this.took(text);
  }
  protected override fast(text: string): boolean {
    return this.online?.(text) === true;
  }
}

/** One call made on a link, answered with `answer(id)`; what the client would get, as JSON, and what was reported. */
async function callThrough(
  server: FakeServer,
  answer: (id: string | number) => string[],
): Promise<{ client: unknown; strays: unknown[]; notJson: number }> {
  const link = new ServerLink('echo', server);
  const strays: unknown[] = [];
  link.onstray = (id) => strays.push(typeof id);
  await link.start();
  const pending = link.call('tools/call', { name: 'echo' }, { timeoutMs: 60_000, origin: 'session-1', related: 'c1' });
  const sent = server.requests.at(-1);
  assert.ok(sent);
  for (const line of answer(sent.id)) server.line(line);
  const outcome: CallOutcome = await Promise.race([pending, new Promise<CallOutcome>((r) => setTimeout(() => r(null), 50))]);
  await link.close();
  return { client: toClient(outcome), strays, notJson: server.notJson.length };
}

/** What the router and session make of an outcome, as the client parses it (an unserialisable one is replaced, as the session does). */
function toClient(outcome: CallOutcome): unknown {
  if (outcome === null) return null;
  if (outcome instanceof RelayedResult) return JSON.parse(new RelayedResponse('c1', outcome).text);
  const quiet = { logger: { warn: () => undefined }, metrics: { reject: () => undefined } } as unknown as UnsendableDeps;
  return JSON.parse(serializeFor(quiet, 's1', { jsonrpc: '2.0', id: 'c1', ...outcome })?.text ?? 'null');
}

const big = 'x'.repeat(200_000);
const deep = `${'['.repeat(5_000)}${']'.repeat(5_000)}`;
/** Server answers to a call with link-local id `id`, as lines: every kind of answer the link must handle alike. */
const ANSWERS: Record<string, (id: string | number) => string[]> = {
  plain: (id) => [`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"content":[{"type":"text","text":"ok"}]}}`],
  spaced: (id) => [`{ "result" : { "a" : [ 1, 2 ] } , "jsonrpc" : "2.0", "id" : ${JSON.stringify(id)} }`],
  duplicateKeys: (id) => [`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"a":1,"a":{"b":2,"b":3}}}`],
  error: (id) => [`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"error":{"code":-32602,"message":"Unknown tool"}}`],
  malformedError: (id) => [`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"error":{"code":"x","message":1}}`],
  nullResult: (id) => [`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":null}`],
  arrayResult: (id) => [`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":[1]}`],
  task: (id) => [`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"task":{"taskId":"t-1"}}}`],
  huge: (id) => [`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"content":[{"type":"text","text":"${big}"}]}}`],
  deep: (id) => [`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"deep":${deep}}}`],
  exponent: (id) => [`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"n":1e400,"m":-0}}`],
  neighbourThenOwn: (id) => [
    `{"jsonrpc":"2.0","id":${typeof id === 'number' ? id + 1 : '"x"'},"result":{"content":"not yours"}}`,
    `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"content":"yours"}}`,
  ],
  notJsonThenOwn: (id) => ['a banner', `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"ok":true}}`],
  duplicateIds: (id) => [`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"id":12,"result":{"ok":true}}`],
  noAnswer: () => [],
};

test('a link with the fast path gives the client what the full parse gives, for every kind of answer', async () => {
  for (const [name, answer] of Object.entries(ANSWERS)) {
    const full = await callThrough(new FakeServer(), answer);
    const fast = await callThrough(new FakeLineServer(), answer);
    assert.deepEqual(fast, full, name);
  }
});

test('the fast path is taken for plain results and not for the rest', async () => {
  const taken: Record<string, boolean> = {};
  for (const [name, answer] of Object.entries(ANSWERS)) {
    const server = new FakeLineServer();
    const link = new ServerLink('echo', server);
    await link.start();
    const pending = link.call('tools/call', { name: 'echo' }, { timeoutMs: 60_000, origin: 'session-1' });
    const sent = server.requests.at(-1);
    assert.ok(sent);
    for (const line of answer(sent.id)) server.line(line);
    const outcome = await Promise.race([pending, new Promise<null>((r) => setTimeout(() => r(null), 50))]);
    taken[name] = outcome instanceof RelayedResult;
    await link.close();
  }
  assert.deepEqual(
    Object.keys(taken).filter((name) => taken[name]),
    ['plain', 'spaced', 'duplicateKeys', 'huge', 'neighbourThenOwn', 'notJsonThenOwn'],
  );
});
