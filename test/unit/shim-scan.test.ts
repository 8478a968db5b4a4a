/**
 * The shim's scanner (src/shim/scan.ts): what it reads of a message's top level without
 * building it must be exactly what a full JSON.parse would give, and it must accept exactly the
 * texts JSON.parse accepts (a malformed line is still told apart and answered alone).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_SCAN_DEPTH, headOf, readHead } from '../../src/shim/scan.js';

/** The yardstick: the head as JSON.parse would give it; undefined when JSON.parse throws. */
function parsedHead(text: string) {
  try {
    return headOf(JSON.parse(text), text.includes('\n'));
  } catch {
    return undefined;
  }
}

const VALID = [
  '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"version","arguments":{}}}',
  '{"jsonrpc":"2.0","id":"abc","result":{"content":[{"type":"text","text":"{\\"a\\":1}"}],"structuredContent":{"v":"0.1"}}}',
  '{"jsonrpc":"2.0","id":-0,"error":{"code":-32000,"message":"x"}}',
  '{"jsonrpc":"2.0","method":"notifications/initialized"}',
  '  {"id" : 1.5e3 , "method" : "m" }  ',
  '{"id":1e400,"method":"m"}',
  '{"id":9007199254740993,"method":"m"}',
  '{"id":null,"method":"m"}',
  '{"id":true,"method":7}',
  '{"id":{"nested":1},"method":["a"]}',
  '{"\\u0069d":"esc","m\\u0065thod":"\\u0074ools/list"}',
  '{"id":"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9","method":"x"}',
  '{"id":1,"id":"second","method":"a","method":"b"}',
  '{"method":null}',
  '{"result":null,"error":false}',
  '{"id":"ünïcødé ✓ 😀","method":"😀"}',
  '{}',
  '[]',
  '[{"id":1,"method":"batch"}]',
  '"a string"',
  '42',
  'null',
  'true',
  '{"id":1,\n"method":"multi\\nline"}',
  '{"a":[1,2,[3,{"b":[]}]],"id":0,"method":"deep"}',
  '{"x":-0.5E-7,"y":0e+1,"id":2,"method":"n"}',
  '{"id":1,"method":"x","params":{"__proto__":{"a":1}}}',
];

const INVALID = [
  '',
  ' ',
  '{',
  '}',
  '{"id":1,}',
  '{"id":1 "method":"x"}',
  '{id:1}',
  "{'id':1}",
  '{"id":01}',
  '{"id":1.}',
  '{"id":.5}',
  '{"id":1e}',
  '{"id":+1}',
  '{"id":-}',
  '{"id":NaN}',
  '{"id":Infinity}',
  '{"id":tru}',
  '{"id":nul}',
  '{"id":"unterminated}',
  '{"id":"bad \\x escape"}',
  '{"id":"bad \\u12G4"}',
  '{"id":"raw\ttab"}',
  '{"id":"raw\nnewline"}',
  '{"id":1}}',
  '{"id":1} x',
  '{"id":1}{"id":2}',
  '[1,2',
  '[1,]',
  '\ufeff{"id":1}',
  '{"a":[1,2}',
  '{"a" 1}',
  'undefined',
  '{"id":1,"method":"x","params":{"a":[1,{"b":}]}}',
];

test('scanner: valid JSON gives exactly the head JSON.parse gives', () => {
  for (const text of VALID) {
    const expected = parsedHead(text);
    assert.ok(expected, `the fixture is valid JSON: ${text}`);
    assert.deepEqual(readHead(text), expected, text);
  }
});

test('scanner: whatever JSON.parse refuses, the scanner refuses (no malformed line passes as a message)', () => {
  for (const text of INVALID) {
    assert.equal(parsedHead(text), undefined, `the fixture is not JSON: ${JSON.stringify(text)}`);
    assert.equal(readHead(text), undefined, JSON.stringify(text));
  }
});

test('scanner: a message nested deeper than its own limit is read by JSON.parse instead, with the same answer', () => {
  const deep = `{"id":7,"method":"m","params":${'['.repeat(MAX_SCAN_DEPTH + 5)}${']'.repeat(MAX_SCAN_DEPTH + 5)}}`;
  assert.deepEqual(readHead(deep), parsedHead(deep));
  assert.equal(readHead(deep)?.id, 7);
  const veryDeep = `{"params":${'['.repeat(100_000)}${']'.repeat(100_000)},"id":"x","method":"m"}`;
  assert.deepEqual(readHead(veryDeep), parsedHead(veryDeep), 'no stack overflow');
  const broken = `{"id":7,"params":${'['.repeat(MAX_SCAN_DEPTH + 5)}}`;
  assert.equal(readHead(broken), undefined);
});

test('scanner: random mutations of valid messages agree with JSON.parse on validity and head', () => {
  let seed = 42;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const alphabet = '{}[]:,"\\ 0123456789-+.eEtrufalsn\nxu';
  for (let n = 0; n < 5000; n++) {
    const base = VALID[Math.floor(random() * VALID.length)] as string;
    const at = Math.floor(random() * base.length);
    const ch = alphabet[Math.floor(random() * alphabet.length)] as string;
    const mutated = random() < 0.5 ? base.slice(0, at) + ch + base.slice(at + 1) : base.slice(0, at) + ch + base.slice(at);
    assert.deepEqual(readHead(mutated), parsedHead(mutated), JSON.stringify(mutated));
  }
});
