/**
 * Tool parameters mirrored into `Mcp-Param-*` headers (x-mcp-header.ts, modern-http.ts): the
 * value encoding, the walk of a tool's inputSchema (nested properties, annotations that make a
 * tool invalid), and the link's fetch, which learns the tools from `tools/list` answers (JSON
 * and SSE), drops the invalid ones and sends each call's headers.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FetchLike } from '@modelcontextprotocol/client';
import { modernFetch } from '../../src/hosting/modern-http.js';
import { encodeParam, headerParamsOf, paramHeaders, paramHeadersMismatch } from '../../src/hosting/x-mcp-header.js';
import { decodeHeaderValue } from '../../src/transport/http-modern.js';

const b64 = (text: string) => `=?base64?${Buffer.from(text, 'utf8').toString('base64')}?=`;

test('values: strings plain when visible ASCII, else the Base64 sentinel; integers and booleans as text; others not mirrored', () => {
  assert.equal(encodeParam('us-west1'), 'us-west1');
  assert.equal(encodeParam('a b\tc'), 'a b\tc', 'inner space and tab stay plain');
  assert.equal(encodeParam('Hello, 世界'), '=?base64?SGVsbG8sIOS4lueVjA==?=');
  assert.equal(encodeParam(' padded '), '=?base64?IHBhZGRlZCA=?=');
  assert.equal(encodeParam('line1\nline2'), '=?base64?bGluZTEKbGluZTI=?=');
  assert.equal(encodeParam('=?base64?literal?='), '=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=', 'a value that looks encoded is encoded');
  assert.equal(encodeParam('=?base64?SGVsbG8='), '=?base64?SGVsbG8=', 'no suffix: not the sentinel, plain');
  assert.equal(encodeParam(42), '42');
  assert.equal(encodeParam(-7), '-7');
  assert.equal(encodeParam(true), 'true');
  assert.equal(encodeParam(false), 'false');
  assert.equal(encodeParam(null), undefined);
  assert.equal(encodeParam(undefined), undefined);
  assert.equal(encodeParam(1.5), undefined);
  assert.equal(encodeParam(2 ** 53), undefined, 'beyond the safe integers');
  assert.equal(encodeParam({ a: 1 }), undefined);
});

test('the walk finds annotations at any depth of properties, and the headers take the value at each exact path', () => {
  const schema = {
    type: 'object',
    properties: {
      region: { type: 'string', 'x-mcp-header': 'Region' },
      query: { type: 'string' },
      target: {
        type: 'object',
        properties: { shard: { type: 'integer', 'x-mcp-header': 'Shard' }, dry: { type: 'boolean', 'x-mcp-header': 'Dry-Run' } },
      },
      // A property named like the keyword is a property, and a default holding the key is data.
      'x-mcp-header': { type: 'string', default: { 'x-mcp-header': 'NotOne' } },
    },
  };
  const verdict = headerParamsOf(schema);
  assert.ok(verdict.ok, JSON.stringify(verdict));
  assert.deepEqual(
    verdict.params.map((p) => [p.name, p.path.join('.')]),
    [
      ['Region', 'region'],
      ['Shard', 'target.shard'],
      ['Dry-Run', 'target.dry'],
    ],
  );
  assert.deepEqual(paramHeaders(verdict.params, { region: 'eu', target: { shard: 3, dry: false }, query: 'x' }), [
    ['Mcp-Param-Region', 'eu'],
    ['Mcp-Param-Shard', '3'],
    ['Mcp-Param-Dry-Run', 'false'],
  ]);
  assert.deepEqual(
    paramHeaders(verdict.params, { region: null, target: { dry: true } }),
    [['Mcp-Param-Dry-Run', 'true']],
    'null and absent: no header',
  );
  assert.deepEqual(paramHeaders(verdict.params, { target: 'not an object' }), []);
  assert.deepEqual(paramHeaders(verdict.params, undefined), []);
  assert.deepEqual(headerParamsOf({ type: 'object', properties: { q: { type: 'string' } } }), { ok: true, params: [] });
  assert.deepEqual(headerParamsOf(undefined), { ok: true, params: [] });
});

test('invalid annotations make the tool invalid, each with its reason', () => {
  const obj = (properties: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ type: 'object', properties, ...extra });
  const invalid: [string, unknown, RegExp][] = [
    ['empty name', obj({ a: { type: 'string', 'x-mcp-header': '' } }), /non-empty/],
    ['not a string', obj({ a: { type: 'string', 'x-mcp-header': 7 } }), /non-empty string/],
    ['a space', obj({ a: { type: 'string', 'x-mcp-header': 'My Region' } }), /token/],
    ['CR LF', obj({ a: { type: 'string', 'x-mcp-header': 'A\r\nX-Evil' } }), /token/],
    ['a colon', obj({ a: { type: 'string', 'x-mcp-header': 'A:B' } }), /token/],
    ['non-ASCII', obj({ a: { type: 'string', 'x-mcp-header': 'Régión' } }), /token/],
    [
      'same name, other case',
      obj({ a: { type: 'string', 'x-mcp-header': 'Region' }, b: { type: 'string', 'x-mcp-header': 'REGION' } }),
      /repeats/,
    ],
    ['type number', obj({ a: { type: 'number', 'x-mcp-header': 'A' } }), /string, integer or boolean/],
    ['type object', obj({ a: { type: 'object', 'x-mcp-header': 'A' } }), /string, integer or boolean/],
    ['no type', obj({ a: { 'x-mcp-header': 'A' } }), /string, integer or boolean/],
    ['type list', obj({ a: { type: ['string', 'null'], 'x-mcp-header': 'A' } }), /string, integer or boolean/],
    ['on the root', { type: 'object', 'x-mcp-header': 'Root' }, /root/],
    ['under items', obj({ a: { type: 'array', items: { type: 'string', 'x-mcp-header': 'A' } } }), /through properties alone/],
    ['under anyOf', obj({ a: { anyOf: [{ type: 'string', 'x-mcp-header': 'A' }] } }), /through properties alone/],
    [
      'under oneOf in a nested object',
      obj({ a: obj({ b: { oneOf: [{ type: 'string', 'x-mcp-header': 'B' }] } }) }),
      /through properties alone/,
    ],
    ['under then', obj({}, { if: {}, then: obj({ a: { type: 'string', 'x-mcp-header': 'A' } }) }), /through properties alone/],
    ['in $defs', obj({ a: { $ref: '#/$defs/r' } }, { $defs: { r: { type: 'string', 'x-mcp-header': 'A' } } }), /through properties alone/],
    ['under additionalProperties', obj({}, { additionalProperties: { type: 'string', 'x-mcp-header': 'A' } }), /through properties alone/],
    [
      'properties under items',
      obj({ a: { type: 'array', items: obj({ b: { type: 'string', 'x-mcp-header': 'B' } }) } }),
      /through properties alone/,
    ],
  ];
  for (const [what, schema, reason] of invalid) {
    const verdict = headerParamsOf(schema);
    assert.equal(verdict.ok, false, `${what} is invalid`);
    if (!verdict.ok) assert.match(verdict.why, reason, what);
  }
});

const URL_ = new URL('http://127.0.0.1:1/mcp');
const META = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} };
const TOOLS = [
  {
    name: 'sql',
    inputSchema: {
      type: 'object',
      properties: { region: { type: 'string', 'x-mcp-header': 'Region' }, n: { type: 'integer', 'x-mcp-header': 'N' } },
    },
  },
  { name: 'bad', inputSchema: { type: 'object', properties: { a: { type: 'number', 'x-mcp-header': 'A' } } } },
  { name: 'plain', inputSchema: { type: 'object' } },
];

function post(body: unknown): RequestInit {
  return { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
}

/** A server behind a fake fetch: answers tools/list with `TOOLS` (as JSON or SSE), records each call's headers. */
function server(sse: boolean) {
  const calls: Headers[] = [];
  const fetch: FetchLike = (_url, init) => {
    const body = JSON.parse(String(init?.body)) as { id: number; method: string };
    if (body.method !== 'tools/list') {
      calls.push(new Headers(init?.headers));
      return Promise.resolve(Response.json({ jsonrpc: '2.0', id: body.id, result: { content: [] } }));
    }
    const answer = JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { tools: TOOLS } });
    if (!sse)
      return Promise.resolve(
        new Response(answer, { headers: { 'content-type': 'application/json', 'content-length': String(answer.length) } }),
      );
    const note = `{"jsonrpc":"2.0",\ndata: "method":"notifications/message","params":{"level":"info","data":"x"}}`;
    const text = `id: 1\nevent: message\ndata: ${note}\n\nid: 2\nevent: message\ndata: ${answer}\n\n`;
    return Promise.resolve(new Response(text, { headers: { 'content-type': 'text/event-stream' } }));
  };
  return { fetch, calls };
}

for (const sse of [false, true]) {
  test(`the link learns the tools from a tools/list answer (${sse ? 'SSE' : 'JSON'}), drops an invalid one and mirrors each call's parameters`, async () => {
    const inner = server(sse);
    const rejected: string[] = [];
    const fetch = modernFetch(inner.fetch, (tool, why) => rejected.push(`${tool}: ${why}`));
    const call = (id: number, name: string, args: unknown) =>
      fetch(URL_, post({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args, _meta: META } }));

    await call(1, 'sql', { region: 'eu', n: 5 });
    assert.equal(inner.calls[0]?.get('mcp-param-region'), null, 'before any tools/list, nothing is known');

    const listed = await fetch(URL_, post({ jsonrpc: '2.0', id: 2, method: 'tools/list', params: { _meta: META } }));
    const text = await listed.text();
    const answer = sse
      ? (text
          .split('\n\n')
          .map((e) => /data: (.*)/.exec(e)?.[1])
          .find((d) => d?.includes('"result"')) ?? '')
      : text;
    const names = (JSON.parse(answer) as { result: { tools: { name: string }[] } }).result.tools.map((t) => t.name);
    assert.deepEqual(names, ['sql', 'plain'], 'the invalid tool is left out of tools/list');
    assert.equal(rejected.length, 1);
    assert.match(rejected[0] ?? '', /^bad: property a: .*string, integer or boolean/);
    if (sse)
      assert.match(text, /^id: 1\nevent: message\ndata: \{"jsonrpc":"2.0",\ndata: "method":"notifications\/message"/, 'other events go on');

    await call(3, 'sql', { region: 'Hello, 世界', n: 5 });
    await call(4, 'sql', { region: null });
    await call(5, 'plain', { region: 'eu' });
    const [, both, none, plain] = inner.calls;
    assert.equal(both?.get('mcp-param-region'), b64('Hello, 世界'));
    assert.equal(both?.get('mcp-param-n'), '5');
    assert.equal(both?.get('mcp-name'), 'sql');
    assert.equal(none?.get('mcp-param-region'), null, 'a null value: no header');
    assert.equal(plain?.get('mcp-param-region'), null, 'a tool without annotations: no header');
  });
}

test('a legacy tools/list is left as it is', async () => {
  const inner = server(false);
  const fetch = modernFetch(inner.fetch);
  const listed = await fetch(URL_, post({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }));
  const tools = ((await listed.json()) as { result: { tools: unknown[] } }).result.tools;
  assert.equal(tools.length, 3);
});

test('the server side: headers decoded and matched against the arguments; missing, extra, malformed or different ones refused', () => {
  const verdict = headerParamsOf({
    type: 'object',
    properties: {
      region: { type: 'string', 'x-mcp-header': 'Region' },
      o: { type: 'object', properties: { n: { type: 'integer', 'x-mcp-header': 'N' } } },
    },
  });
  assert.ok(verdict.ok);
  const check = (args: unknown, headers: Record<string, string>) =>
    paramHeadersMismatch(
      verdict.params,
      args,
      (name) => Object.entries(headers).find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1],
    );
  assert.equal(check({ region: 'Hello', o: { n: 42 } }, { 'mcp-param-region': b64('Hello'), 'mcp-param-n': '42.0' }), undefined);
  assert.equal(check({ region: 'SGVsbG8=' }, { 'Mcp-Param-Region': 'SGVsbG8=' }), undefined, 'no prefix: literal');
  assert.equal(check({ region: '=?base64?SGVsbG8=' }, { 'Mcp-Param-Region': '=?base64?SGVsbG8=' }), undefined, 'no suffix: literal');
  assert.equal(check({ region: null }, {}), undefined);
  assert.equal(check({}, {}), undefined);
  assert.match(check({ region: 'Hello' }, {}) ?? '', /arguments\.region is given but the Mcp-Param-Region header is absent/);
  assert.match(check({}, { 'Mcp-Param-Region': 'x' }) ?? '', /is sent but arguments\.region is absent/);
  assert.match(check({ region: 'Hello' }, { 'Mcp-Param-Region': '=?base64?SGVsbG8?=' }) ?? '', /not a valid value/, 'bad padding');
  assert.match(check({ region: 'Hello' }, { 'Mcp-Param-Region': '=?base64?SGVs!!!bG8=?=' }) ?? '', /not a valid value/, 'bad characters');
  assert.match(check({ region: 'Hello' }, { 'Mcp-Param-Region': 'Bye' }) ?? '', /does not match arguments\.region/);
  assert.match(check({ o: { n: 42 } }, { 'Mcp-Param-N': '43' }) ?? '', /does not match arguments\.o\.n/);
  assert.equal(decodeHeaderValue('=?base64??='), '');
  assert.equal(decodeHeaderValue('=?base64?/w==?='), undefined, 'not UTF-8');
  assert.equal(decodeHeaderValue('é'), undefined, 'not ASCII');
});
