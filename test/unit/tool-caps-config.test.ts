/**
 * The config's `client_tool_caps` (issue 25): the known caps of Cursor and VS Code by default,
 * the user's entries over them (first match wins, case-insensitive globs on the client's name),
 * `0` and `null` as "no cap", and bad entries reported as config problems while the rest apply.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_TOOL_CAPS, parseToolCaps, toolCapLookup } from '../../src/hosting/tool-caps-config.js';
import { parseUpstreams } from '../../src/hosting/upstream-config.js';

const capOf = (raw: unknown, client: string | undefined) => toolCapLookup(parseToolCaps(raw).toolCaps)(client);

test('no client_tool_caps: Cursor takes 40 tools, VS Code 128, any other client has no known cap', () => {
  const { toolCaps, problems } = parseToolCaps(undefined);
  assert.deepEqual(problems, []);
  assert.deepEqual(toolCaps, [
    { glob: 'cursor*', max: 40 },
    { glob: 'Visual Studio Code*', max: 128 },
  ]);
  assert.equal(capOf(undefined, 'cursor-vscode'), 40, "Cursor's own clientInfo name");
  assert.equal(capOf(undefined, 'Visual Studio Code'), 128);
  assert.equal(capOf(undefined, 'visual studio code - insiders'), 128, 'names match whatever their case');
  assert.equal(capOf(undefined, 'claude-code'), null);
  assert.equal(capOf(undefined, undefined), null, 'a client that gave no name has no known cap');
  assert.deepEqual(Object.keys(DEFAULT_TOOL_CAPS), ['cursor*', 'Visual Studio Code*']);
});

test("the user's caps come before the defaults: a new client, a default changed, a more precise glob", () => {
  const raw = { 'my-agent*': 12, 'Cursor*': 60, 'visual studio code - insiders': 64 };
  const { toolCaps, problems } = parseToolCaps(raw);
  assert.deepEqual(problems, []);
  assert.deepEqual(toolCaps, [
    { glob: 'my-agent*', max: 12 },
    { glob: 'Cursor*', max: 60 },
    { glob: 'visual studio code - insiders', max: 64 },
    { glob: 'Visual Studio Code*', max: 128 },
  ]);
  assert.equal(capOf(raw, 'my-agent 2'), 12);
  assert.equal(capOf(raw, 'cursor-vscode'), 60, "the user's glob replaced the default's (the same glob in another case)");
  assert.equal(capOf(raw, 'Visual Studio Code - Insiders'), 64, "the user's glob matches first");
  assert.equal(capOf(raw, 'Visual Studio Code'), 128, 'the default still applies to what the user did not name');
});

test('0 or null: no cap for the clients the glob matches (on a default glob, the default is gone)', () => {
  const raw = { 'cursor*': 0, 'Visual Studio Code': null };
  const { toolCaps, problems } = parseToolCaps(raw);
  assert.deepEqual(problems, []);
  assert.equal(capOf(raw, 'cursor-vscode'), null);
  assert.equal(capOf(raw, 'Visual Studio Code'), null, 'an exact name exempts that client');
  assert.equal(capOf(raw, 'Visual Studio Code - Insiders'), 128, 'the default still holds for the others');
  assert.deepEqual(
    toolCaps.map((r) => r.glob),
    ['cursor*', 'Visual Studio Code', 'Visual Studio Code*'],
  );
});

test('bad values are reported with their glob and left out; the other entries and the defaults apply', () => {
  const { toolCaps, problems } = parseToolCaps({ a: -1, b: 2.5, c: '40', d: true, '': 3, e: 7 });
  assert.deepEqual(
    problems.map((p) => [p.server, p.key]),
    [
      ['client_tool_caps', 'a'],
      ['client_tool_caps', 'b'],
      ['client_tool_caps', 'c'],
      ['client_tool_caps', 'd'],
      ['client_tool_caps', ''],
    ],
  );
  assert.match(problems[0]?.reason ?? '', /an integer of at least 1\), or 0 or null for no cap/);
  assert.deepEqual(
    toolCaps.map((r) => r.glob),
    ['e', 'cursor*', 'Visual Studio Code*'],
  );
  for (const raw of [[], 'cursor', 40, null]) {
    const bad = parseToolCaps(raw);
    assert.deepEqual(bad.problems, [
      { server: '*', key: 'client_tool_caps', reason: 'must be an object of client name globs to the most tools each takes' },
    ]);
    assert.equal(toolCapLookup(bad.toolCaps)('cursor-vscode'), 40, 'a key that is not an object leaves the defaults');
  }
});

test("the config file's client_tool_caps: parsed with mcpServers and profiles, its problems among the file's", () => {
  const config = parseUpstreams({ mcpServers: {}, client_tool_caps: { 'cap-test*': 2, broken: 'x' } });
  assert.equal(toolCapLookup(config.toolCaps)('cap-test-client'), 2);
  assert.deepEqual(
    config.problems.map((p) => `${p.server} ${p.key}`),
    ['client_tool_caps broken'],
  );
  assert.equal(toolCapLookup(parseUpstreams({ mcpServers: {} }).toolCaps)('cursor-vscode'), 40, 'a file without the key: the defaults');
  assert.equal(toolCapLookup(parseUpstreams([]).toolCaps)('cursor-vscode'), 40, 'a file that is no object: the defaults');
});
