/**
 * Tool search (src/mux/tool-search.ts, issue 25) over the real tools lists of server-everything,
 * server-memory and server-filesystem (test/fixtures/tool-lists/three-servers.json, captured by
 * scripts/capture-tool-lists.mjs) and the query set written before the ranker was tuned
 * (test/fixtures/tool-queries.json): what a person types must find the tool, at least 90% of the
 * time within the first three results. Then its manners: the limit, queries with no words,
 * hostile tool lists, parameter names and server names.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ToolSearch, type Searchable } from '../../src/mux/tool-search.js';

// The fixtures stay in the source tree: from dist/test/unit/ that is three folders up, as
// test/helpers.ts finds test/fixtures/client-openings.
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const FIXTURES = join(ROOT, 'test', 'fixtures');

interface ServerTools {
  server: string;
  tools: Record<string, unknown>[];
}
interface Query {
  query: string;
  expect: string[];
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(join(FIXTURES, path), 'utf8')) as T;
}

/** The tools as the daemon lists them to a window: `<server>__<tool>`. */
function exposed(lists: readonly ServerTools[]): Searchable[] {
  return lists.flatMap(({ server, tools }) =>
    tools.map((tool) => ({ server, tool: { ...tool, name: `${server}__${String(tool.name)}` } })),
  );
}

const entries = exposed(readJson<ServerTools[]>('tool-lists/three-servers.json'));
const queries = readJson<Query[]>('tool-queries.json');
const names = (tools: Record<string, unknown>[]): unknown[] => tools.map((tool) => tool.name);

test('the query set finds its tool within the top 3 at least 90% of the time', () => {
  const search = new ToolSearch(entries);
  let top1 = 0;
  let top3 = 0;
  const misses: string[] = [];
  for (const { query, expect } of queries) {
    const found = names(search.search(query, 3));
    if (expect.includes(found[0] as string)) top1++;
    if (found.some((name) => expect.includes(name as string))) top3++;
    else misses.push(`  "${query}": got ${found.join(', ')}; expected ${expect.join(' or ')}`);
  }
  const rate = (hits: number): string => `${hits}/${queries.length} (${((100 * hits) / queries.length).toFixed(1)}%)`;
  console.log(`tool search: top-1 ${rate(top1)}, top-3 ${rate(top3)}${misses.length > 0 ? `\nmissed:\n${misses.join('\n')}` : ''}`);
  assert.ok(queries.length >= 30, 'the query set has at least 30 queries');
  assert.ok(top3 / queries.length >= 0.9, `top-3 hit rate ${rate(top3)} is below 90%`);
});

test('at most `limit` results, best first; none for a limit under 1', () => {
  const search = new ToolSearch(entries);
  assert.equal(search.search('file', 2).length, 2);
  assert.ok(search.search('file', 100).length > 3);
  assert.ok(search.search('file', 100).length <= entries.length);
  assert.deepEqual(search.search('file', 0), []);
  assert.deepEqual(search.search('file', -1), []);
  assert.deepEqual(search.search('file', Number.NaN), []);
  assert.deepEqual(names(search.search('list directory', 1)), ['fs__list_directory']);
});

test('a query with no usable words finds nothing', () => {
  const search = new ToolSearch(entries);
  for (const query of ['', '   ', '?!?', '__--..', 'the a of', '\u0000\u0001']) {
    assert.deepEqual(search.search(query, 5), [], JSON.stringify(query));
  }
  assert.deepEqual(search.search('zqxjvw', 5), []);
  assert.deepEqual(search.search(undefined as unknown as string, 5), []);
});

test('the listed tool objects themselves are returned', () => {
  const search = new ToolSearch(entries);
  const [first] = search.search('echo', 1);
  assert.ok(first !== undefined);
  assert.ok(entries.some((entry) => entry.tool === first));
});

test('a hostile tools list neither throws nor hides the good tools', () => {
  const huge = `${'overwhelm '.repeat(200_000)} needleword`;
  const hostile: Searchable[] = [
    null as unknown as Searchable,
    { server: 'bad', tool: null as unknown as Record<string, unknown> },
    {
      server: 'bad',
      tool: JSON.parse('{"name":"bad__proto","inputSchema":{"properties":{"__proto__":{"description":7},"constructor":{}}}}') as Record<
        string,
        unknown
      >,
    },
    { server: 'bad', tool: 'echo' as unknown as Record<string, unknown> },
    { server: 'bad', tool: { name: 42, description: 'a number for a name' } },
    { server: 'bad', tool: { description: 'no name at all' } },
    { server: 'bad', tool: { name: '' } },
    { server: 'bad', tool: { name: 'bad__huge', description: huge, inputSchema: 'not an object' } },
    { server: 'bad', tool: { name: 'bad__odd', description: { text: 'not a string' }, inputSchema: { properties: ['x', 'y'] } } },
    { server: 'bad', tool: { name: 'bad__nulls', description: null, inputSchema: { properties: null } } },
    { server: 42 as unknown as string, tool: { name: 'bad__number_server', inputSchema: [] } },
    {
      server: 'bad',
      tool: {
        name: 'x'.repeat(1_000_000),
        inputSchema: { properties: Object.fromEntries([...Array(10_000).keys()].map((i) => [`p${i}`, {}])) },
      },
    },
  ];
  const search = new ToolSearch([...hostile, ...entries]);
  for (const query of ['no name at all', 'a number for a name', 'echo', 'proto constructor']) {
    const found = names(search.search(query, 50));
    assert.ok(found.length > 0 && found.every((name) => typeof name === 'string' && name !== ''), query);
  }
  assert.equal(names(search.search('overwhelm', 5))[0], 'bad__huge');
  // Past the first 2,000 characters a description is not read.
  assert.deepEqual(names(search.search('needleword', 5)), []);
  assert.equal(names(search.search('echo back the input', 1))[0], 'everything__echo');
  // A hostile query is clipped too.
  assert.doesNotThrow(() => search.search('directory '.repeat(100_000), 5));
  assert.doesNotThrow(() => search.search('\uD800 \uDFFF '.repeat(100), 5));
  assert.doesNotThrow(() => search.search('constructor __proto__ hasOwnProperty toString', 5));
});

test('a tool is found by a parameter name', () => {
  const search = new ToolSearch(entries);
  // `excludePatterns` is in no name or description: only fs's directory_tree and search_files take it.
  const found = names(search.search('exclude patterns', 2)).sort();
  assert.deepEqual(found, ['fs__directory_tree', 'fs__search_files']);
  assert.equal(names(search.search('dry run', 1))[0], 'fs__edit_file');
});

test("a server's name narrows the results to that server's tools", () => {
  const search = new ToolSearch(entries);
  const first = (query: string): unknown => names(search.search(query, 1))[0];
  // `search` and `read` name tools of fs and of memory: the server's name picks which comes first.
  assert.equal(first('fs search'), 'fs__search_files');
  assert.equal(first('memory search'), 'memory__search_nodes');
  assert.equal(first('read'), 'fs__read_file');
  assert.equal(first('memory read'), 'memory__read_graph');
  // `list` is an fs word; with `memory` the memory tools come first.
  assert.ok(names(search.search('list', 3)).every((name) => String(name).startsWith('fs__')));
  const memory = names(search.search('memory list', 3));
  assert.ok(
    memory.every((name) => String(name).startsWith('memory__')),
    memory.join(', '),
  );
  const everything = names(search.search('everything resource', 3));
  assert.ok(
    everything.every((name) => String(name).startsWith('everything__')),
    everything.join(', '),
  );
});
