/**
 * Profiles as the config writes them and as the hub applies them: parsing (bad profiles reported
 * and left out), which profile a window is in, the tool globs, and the search step's own answers.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseUpstreams } from '../../src/hosting/upstream-config.js';
import { Profiles } from '../../src/mux/profiles.js';
import { includeExclude } from '../../src/local/name-globs.js';
import { SEARCH_MODE_TOOLS, searchStep } from '../../src/daemon/sessions/search-mode.js';
import type { ListOutcome } from '../../src/mux/catalog.js';

function parse(profiles: unknown, servers: Record<string, unknown> = {}) {
  return parseUpstreams({ mcpServers: servers, profiles });
}

describe('profile config', () => {
  test('profiles are parsed with their defaults', () => {
    const { profiles, problems } = parse(
      { a: { servers: ['memory'] }, b: { tools: ['fs__*', '!fs__write_*'], search: true } },
      {
        memory: { command: 'x' },
      },
    );
    assert.deepEqual(problems, []);
    assert.deepEqual(
      profiles.map((p) => [p.name, p.servers, p.tools, p.clients, p.search]),
      [
        ['a', ['memory'], [], [], false],
        ['b', undefined, ['fs__*', '!fs__write_*'], [], true],
      ],
    );
  });

  test('a bad profile is reported and left out; the others stay', () => {
    const { profiles, problems } = parse({ good: {}, 'bad name!': {}, typo: { tool: ['x'] }, wrong: { search: 'yes' } });
    assert.deepEqual(
      profiles.map((p) => p.name),
      ['good'],
    );
    assert.deepEqual(problems.map((p) => p.server).sort(), ['profile bad name!', 'profile typo', 'profile wrong']);
    assert.equal(parse([]).problems[0]?.key, 'profiles');
  });

  test('a profile naming an unknown server is kept, with a warning', () => {
    const { profiles, problems } = parse({ p: { servers: ['exai-ws', 'gone'] } });
    assert.equal(profiles.length, 1);
    assert.equal(problems.length, 1);
    assert.match(problems[0]?.reason ?? '', /no server named 'gone'/);
  });

  test('no config entry may take the built-in server name', () => {
    const { servers, problems } = parseUpstreams({ mcpServers: { 'exai-ws': { command: 'x' }, other: { command: 'y' } } });
    assert.deepEqual(
      servers.map((s) => s.name),
      ['other'],
    );
    assert.match(problems[0]?.reason ?? '', /built-in server's name/);
  });
});

describe('which profile a window is in', () => {
  const profiles = new Profiles();
  profiles.set(
    parse({
      first: { clients: ['Visual Studio Code*'] },
      second: { clients: ['visual*', 'cursor*'] },
      asked: { servers: ['exai-ws'] },
    }).profiles,
  );

  test('the one it asked for', () => {
    const of = profiles.of({ profile: 'asked', client: 'cursor-vscode' });
    assert.equal('profile' in of ? of.profile?.spec.name : of.missing, 'asked');
  });

  test("its client's default: the first matching profile in file order, case-insensitive", () => {
    const name = (client: string) => {
      const of = profiles.of({ client });
      return 'profile' in of ? of.profile?.spec.name : `missing ${of.missing}`;
    };
    assert.equal(name('visual studio code'), 'first');
    assert.equal(name('Cursor-vscode'), 'second');
    assert.equal(name('claude-code'), undefined);
  });

  test('a single-server window has none; a profile the config lost is missing, never everything', () => {
    assert.deepEqual(profiles.of({ server: 'memory', client: 'cursor' }), { profile: undefined });
    assert.deepEqual(profiles.of({ profile: 'gone' }), { missing: 'gone' });
  });

  test('a reload applies at once to the same window', () => {
    const own = new Profiles();
    own.set(parse({ p: { clients: ['x*'] } }).profiles);
    const view = Object.freeze({ client: 'x1' });
    const before = own.of(view);
    assert.equal('profile' in before ? before.profile?.spec.name : undefined, 'p');
    assert.equal(own.set(parse({ q: { clients: ['y*'] } }).profiles), true);
    assert.deepEqual(own.of(view), { profile: undefined });
    assert.equal(own.set(parse({ q: { clients: ['y*'] } }).profiles), false, 'the same profiles again: no change');
  });

  test('tool globs: shown when a plain pattern matches (or none is given) and no ! pattern does', () => {
    const picked = includeExclude(['fs__read_*', 'everything__echo', '!fs__read_media_file']);
    assert.deepEqual(['fs__read_file', 'fs__read_media_file', 'everything__echo', 'everything__get-sum', 'version'].filter(picked), [
      'fs__read_file',
      'everything__echo',
    ]);
    const allBut = includeExclude(['!memory__*']);
    assert.deepEqual(['memory__read_graph', 'version'].filter(allBut), ['version']);
  });
});

describe('the search step', () => {
  const tools = (): Promise<ListOutcome> =>
    Promise.resolve({
      items: [
        { name: 'fs__list_directory', description: 'List the files in a directory', inputSchema: { type: 'object' } },
        { name: 'memory__read_graph', description: 'Read the knowledge graph', inputSchema: { type: 'object' } },
      ],
    });
  const call = (params: Record<string, unknown>) => ({ jsonrpc: '2.0' as const, id: 7, method: 'tools/call', params });

  test('tools/list: the two tools, a few hundred bytes', async () => {
    const step = await searchStep({ jsonrpc: '2.0', id: 1, method: 'tools/list' }, tools);
    assert.ok(step && 'answer' in step);
    assert.deepEqual(SEARCH_MODE_TOOLS.map((t) => t.name).sort(), ['call_tool', 'search_tools']);
    assert.ok(JSON.stringify(SEARCH_MODE_TOOLS).length < 1_200);
  });

  test('call_tool becomes the call it names, its _meta (progress token) kept', async () => {
    const step = await searchStep(
      call({ name: 'call_tool', arguments: { name: 'memory__read_graph', arguments: { a: 1 } }, _meta: { progressToken: 'p' } }),
      tools,
    );
    assert.ok(step && 'route' in step);
    assert.deepEqual(step.route, call({ name: 'memory__read_graph', arguments: { a: 1 }, _meta: { progressToken: 'p' } }));
  });

  test('bad arguments are the tool saying what is wrong, not a protocol error', async () => {
    for (const args of [{}, { name: 3 }, { name: 'x', arguments: 'no' }]) {
      const step = await searchStep(call({ name: 'call_tool', arguments: args }), tools);
      assert.ok(step && 'answer' in step && 'result' in step.answer && step.answer.result.isError === true, JSON.stringify(args));
    }
    for (const args of [{}, { query: 'x', limit: 0 }, { query: 'x', limit: 100 }, { query: 'x', limit: 1.5 }]) {
      const step = await searchStep(call({ name: 'search_tools', arguments: args }), tools);
      assert.ok(step && 'answer' in step && 'result' in step.answer && step.answer.result.isError === true, JSON.stringify(args));
    }
  });

  test('search_tools answers with the matching tools; another tool is routed as it is', async () => {
    const step = await searchStep(call({ name: 'search_tools', arguments: { query: 'folder contents', limit: 1 } }), tools);
    assert.ok(step && 'answer' in step && 'result' in step.answer);
    const found = step.answer.result.structuredContent as { tools: { name: string }[] };
    assert.deepEqual(
      found.tools.map((t) => t.name),
      ['fs__list_directory'],
    );
    assert.equal(await searchStep(call({ name: 'fs__list_directory', arguments: {} }), tools), undefined);
  });
});
