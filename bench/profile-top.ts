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

/** One mapping: generated column, source index, source line, name index (-1: none), 0-based. */
type Segment = [number, number, number, number];

interface SourceMap {
  lines: Segment[][];
  sources: string[];
  names: string[];
}

/** Per generated line, its segments, from a source map's mappings. */
function decodeMappings(mappings: string): Segment[][] {
  const lines: Segment[][] = [];
  let srcLine = 0;
  let src = 0;
  let name = 0;
  for (const text of mappings.split(';')) {
    const segments: Segment[] = [];
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
        src += values[1]!;
        srcLine += values[2]!;
        if (values.length >= 5) name += values[4]!;
        segments.push([col, src, srcLine, values.length >= 5 ? name : -1]);
      }
    }
    lines.push(segments);
  }
  return lines;
}

const maps = new Map<string, SourceMap | null>();

/** Where a position in one of our dist/ files (or the shim bundle) comes from, by its source map. */
function original(url: string, line: number, column: number): { file: string; line: number; name: string | undefined } | undefined {
  const path = url.replace(/^file:\/\//, '');
  if (!maps.has(path)) {
    const file = `${path}.map`;
    const raw = existsSync(file)
      ? (JSON.parse(readFileSync(file, 'utf8')) as { mappings: string; sources: string[]; names?: string[] })
      : null;
    maps.set(path, raw && { lines: decodeMappings(raw.mappings), sources: raw.sources, names: raw.names ?? [] });
  }
  const map = maps.get(path);
  const segments = map?.lines[line];
  if (!map || !segments || segments.length === 0) return undefined;
  let best = segments[0]!;
  for (const segment of segments) if (segment[0] <= column) best = segment;
  const source = (map.sources[best[1]] ?? '').replace(/^(\.\.\/)+/, '');
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(source);
  return { file: pkg ? `${pkg[1]}: ${pkg[2]}` : source, line: best[2] + 1, name: best[3] >= 0 ? map.names[best[3]] : undefined };
}

/** `name  [file:line]`: for our files (and the minified shim bundle) the TypeScript source's. */
function frameKey(frame: ProfileNode['callFrame']): string {
  const file = fileOf(frame.url);
  const bundle = file.endsWith('shim.cjs');
  const at = isOurs(file) || bundle ? original(frame.url, frame.lineNumber, frame.columnNumber) : undefined;
  const name = (bundle ? at?.name : undefined) ?? (frame.functionName || '(anonymous)');
  return `${name}  [${at ? `${bundle ? at.file : file}:${at.line}` : `${file}:${frame.lineNumber + 1}`}]`;
}

/** The file a frame is charged to: the shim bundle's frames to their own sources. */
function fileKey(frame: ProfileNode['callFrame']): string {
  const file = fileOf(frame.url);
  if (!file.endsWith('shim.cjs')) return file;
  return original(frame.url, frame.lineNumber, frame.columnNumber)?.file ?? file;
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
    add(into.selfByFunction, frameKey(node.callFrame), us);
    add(into.selfByFile, fileKey(node.callFrame), us);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame;
      if (!isOurs(fileKey(frame))) continue;
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
