/**
 * Reads V8 `.cpuprofile` files (from `node --cpu-prof`, e.g. `npm run bench -- --only cpu
 * --prof DIR`) and prints where the time went: self time by function and by file, as shares of
 * the sampled time with the process idle left out, and the share of time spent under each of
 * our own functions (inclusive), so a cost in a Node or library frame is charged to our caller.
 *
 * Usage: `node dist/bench/profile-top.js [--top N] [--skip-ms MS] FILE.cpuprofile...` (several
 * files of one process kind are summed; `--skip-ms` leaves out each profile's first MS of
 * wall time: start-up and warm-up, which are not the hot path). A diagnostic for reading the hot path, not part of the bench run.
 */
import { existsSync, readFileSync } from 'node:fs';
import { ROOT } from './procs.js';
import { isEntryPoint } from './calls.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** A frame's place: our TypeScript file (from dist/), a package, or Node's own. */
export function fileOf(url: string): string {
  if (url === '') return '(native/VM)';
  const path = url.replace(/^file:\/\//, '');
  const ours = path.indexOf('/dist/');
  if (path.startsWith(ROOT) && ours >= 0 && !path.includes('/node_modules/')) return path.slice(ours + 6).replace(/\.js$/, '.ts');
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(path);
  if (pkg) return `${pkg[1]}: ${pkg[2]}`;
  return path;
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Per generated line, its segments as [column, source line] (0-based), from a source map's mappings. */
function decodeMappings(mappings: string): [number, number][][] {
  const lines: [number, number][][] = [];
  let srcLine = 0;
  for (const text of mappings.split(';')) {
    const segments: [number, number][] = [];
    let col = 0;
    for (const segment of text.split(',')) {
      if (segment === '') continue;
      const values: number[] = [];
      let value = 0;
      let shift = 0;
      for (const ch of segment) {
        const digit = BASE64.indexOf(ch);
        value += (digit & 31) << shift;
        if (digit & 32) shift += 5;
        else {
          values.push(value & 1 ? -(value >>> 1) : value >>> 1);
          value = 0;
          shift = 0;
        }
      }
      col += values[0] ?? 0;
      if (values.length >= 4) {
        srcLine += values[2]!;
        segments.push([col, srcLine]);
      }
    }
    lines.push(segments);
  }
  return lines;
}

const maps = new Map<string, [number, number][][] | null>();

/** The TypeScript line (1-based) of a position in one of our dist/ files, from its source map. */
function sourceLine(url: string, line: number, column: number): number | undefined {
  const path = url.replace(/^file:\/\//, '');
  if (!maps.has(path)) {
    const map = `${path}.map`;
    maps.set(path, existsSync(map) ? decodeMappings((JSON.parse(readFileSync(map, 'utf8')) as { mappings: string }).mappings) : null);
  }
  const segments = maps.get(path)?.[line];
  if (!segments || segments.length === 0) return undefined;
  let best = segments[0]!;
  for (const segment of segments) if (segment[0] <= column) best = segment;
  return best[1] + 1;
}

/** `name  [file:line]`, the line in the TypeScript source for our files. */
function frameKey(frame: ProfileNode['callFrame']): string {
  const file = fileOf(frame.url);
  const line = isOurs(file) ? (sourceLine(frame.url, frame.lineNumber, frame.columnNumber) ?? frame.lineNumber + 1) : frame.lineNumber + 1;
  return `${frame.functionName || '(anonymous)'}  [${file}:${line}]`;
}

function isOurs(file: string): boolean {
  return file.startsWith('src/');
}

export interface ProfileSummary {
  /** Sampled time in microseconds, idle and `(program)` included. */
  totalUs: number;
  idleUs: number;
  selfByFunction: Map<string, number>;
  selfByFile: Map<string, number>;
  /** Time under each of our functions (counted once per sample, however deep it recurs). */
  inclusiveOurs: Map<string, number>;
}

function add(map: Map<string, number>, key: string, us: number): void {
  map.set(key, (map.get(key) ?? 0) + us);
}

/** Adds one profile's samples to `into`. */
export function summarize(profile: Profile, into: ProfileSummary, skipUs = 0): void {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  let atUs = 0;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    atUs += us;
    const node = byId.get(id);
    if (!node || atUs < skipUs) return;
    into.totalUs += us;
    const name = node.callFrame.functionName || '(anonymous)';
    if (name === '(idle)') {
      into.idleUs += us;
      return;
    }
    const file = fileOf(node.callFrame.url);
    add(into.selfByFunction, frameKey(node.callFrame), us);
    add(into.selfByFile, file, us);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame;
      if (!isOurs(fileOf(frame.url))) continue;
      const key = frameKey(frame);
      if (seen.has(key)) continue;
      seen.add(key);
      add(into.inclusiveOurs, key, us);
    }
  });
}

function top(map: Map<string, number>, busyUs: number, n: number): string[] {
  return [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([key, us]) => `  ${((100 * us) / busyUs).toFixed(1).padStart(5)}%  ${key}`);
}

function main(): void {
  const args = process.argv.slice(2);
  const topAt = args.indexOf('--top');
  const skipAt = args.indexOf('--skip-ms');
  const n = topAt >= 0 ? Number(args[topAt + 1]) : 30;
  const skipUs = skipAt >= 0 ? Number(args[skipAt + 1]) * 1000 : 0;
  const files = args.filter((_, i) => i !== topAt && i !== topAt + 1 && i !== skipAt && i !== skipAt + 1);
  const s: ProfileSummary = { totalUs: 0, idleUs: 0, selfByFunction: new Map(), selfByFile: new Map(), inclusiveOurs: new Map() };
  for (const file of files) summarize(JSON.parse(readFileSync(file, 'utf8')) as Profile, s, skipUs);
  const busyUs = s.totalUs - s.idleUs;
  const lines = [
    `${files.length} profile(s): ${(s.totalUs / 1e6).toFixed(2)} s sampled, ${(busyUs / 1e6).toFixed(2)} s not idle (shares below are of that)`,
    '',
    'self time by function',
    ...top(s.selfByFunction, busyUs, n),
    '',
    'self time by file',
    ...top(s.selfByFile, busyUs, n),
    '',
    'time under our functions (inclusive)',
    ...top(s.inclusiveOurs, busyUs, n),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

if (isEntryPoint(import.meta.url)) main();
