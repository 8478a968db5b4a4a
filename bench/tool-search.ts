/**
 * Tool search (issue 25, src/mux/tool-search.ts) over the real tools lists of server-everything,
 * server-memory and server-filesystem (test/fixtures/tool-lists/three-servers.json) and the query
 * set written before the ranker was tuned (test/fixtures/tool-queries.json): top-1 and top-3 hit
 * rates, the time to build the index, and the mean time of one search (every query searched
 * `rounds` times, limit 3, after one discarded round). In process, no child processes.
 *
 * `npm run bench -- --only search` or `node dist/bench/tool-search.js` (`--quick`: fewer rounds).
 * Written to bench-results/tool-search-<timestamp>.json.
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { ToolSearch, type Searchable } from '../src/mux/tool-search.js';
import { isEntryPoint } from './calls.js';
import { ROOT, runBench, writePhaseResults } from './procs.js';

const ROUNDS_FULL = 200;
const ROUNDS_QUICK = 20;

interface Query {
  query: string;
  expect: string[];
}

export interface ToolSearchResults {
  tools: number;
  queries: number;
  top1: number;
  top3: number;
  top1_rate: number;
  top3_rate: number;
  index_ms: number;
  rounds: number;
  mean_search_us: number;
  misses: { query: string; got: string[]; expect: string[] }[];
  loadavg_before: number[];
  loadavg_after: number[];
}

function readFixture(path: string): unknown {
  return JSON.parse(readFileSync(join(ROOT, 'test', 'fixtures', path), 'utf8'));
}

/** The tools as the daemon lists them to a window: `<server>__<tool>`. */
function exposedTools(): Searchable[] {
  const lists = readFixture('tool-lists/three-servers.json') as { server: string; tools: Record<string, unknown>[] }[];
  return lists.flatMap(({ server, tools }) =>
    tools.map((tool) => ({ server, tool: { ...tool, name: `${server}__${String(tool.name)}` } })),
  );
}

export function runToolSearch(rounds: number): ToolSearchResults {
  const loadBefore = loadavg();
  const entries = exposedTools();
  const queries = readFixture('tool-queries.json') as Query[];
  const built = performance.now();
  const search = new ToolSearch(entries);
  const indexMs = performance.now() - built;

  let top1 = 0;
  let top3 = 0;
  const misses: ToolSearchResults['misses'] = [];
  for (const { query, expect } of queries) {
    const got = search.search(query, 3).map((tool) => String(tool.name));
    if (got[0] !== undefined && expect.includes(got[0])) top1++;
    if (got.some((name) => expect.includes(name))) top3++;
    else misses.push({ query, got, expect });
  }

  for (const { query } of queries) search.search(query, 3);
  const started = performance.now();
  for (let round = 0; round < rounds; round++) {
    for (const { query } of queries) search.search(query, 3);
  }
  const meanUs = ((performance.now() - started) * 1000) / (rounds * queries.length);

  return {
    tools: entries.length,
    queries: queries.length,
    top1,
    top3,
    top1_rate: top1 / queries.length,
    top3_rate: top3 / queries.length,
    index_ms: indexMs,
    rounds,
    mean_search_us: meanUs,
    misses,
    loadavg_before: loadBefore,
    loadavg_after: loadavg(),
  };
}

export function toolSearchLines(r: ToolSearchResults): string[] {
  const percent = (rate: number): string => `${(100 * rate).toFixed(1)}%`;
  return [
    `tool search: ${r.queries} queries over ${r.tools} tools (server-everything, server-memory, server-filesystem)`,
    `  top-1 ${r.top1}/${r.queries} (${percent(r.top1_rate)}), top-3 ${r.top3}/${r.queries} (${percent(r.top3_rate)})`,
    `  index built in ${r.index_ms.toFixed(2)} ms; mean search ${r.mean_search_us.toFixed(1)} us (${r.rounds} rounds, limit 3)`,
    ...r.misses.map((m) => `  missed "${m.query}": got ${m.got.join(', ') || 'nothing'}; expected ${m.expect.join(' or ')}`),
  ];
}

export function mainToolSearch(quick: boolean): Promise<void> {
  const startedAt = new Date();
  const results = runToolSearch(quick ? ROUNDS_QUICK : ROUNDS_FULL);
  writePhaseResults('tool-search', startedAt, quick, 'tool_search', results, toolSearchLines(results));
  return Promise.resolve();
}

if (isEntryPoint(import.meta.url)) runBench(() => mainToolSearch(process.argv.includes('--quick')));
