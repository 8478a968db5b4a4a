/**
 * `exai-ws import --from vscode|claude|cursor [path] [--dry-run]`: copies the MCP servers a
 * client already starts on its own into the daemon's config file (`configPath()`), then prints
 * the one shim entry that replaces them in that client.
 *
 * Stdout carries only JSON (the shim entry, or with `--dry-run` the resulting config) so it can
 * be piped; every note, warning and error goes to stderr. Exit codes: 0 done, 1 the source file
 * (or the daemon's config) is missing or not JSON, 2 bad usage.
 */
import { existsSync, mkdirSync, realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { parseUpstreams } from '../hosting/upstream-config.js';
import { configPath } from '../local/config-path.js';
import { parseCommand } from '../local/args.js';
import { IMPORT_SPEC } from '../local/specs.js';
import {
  CLIENT_KINDS,
  CLIENT_LABEL,
  convertServer,
  daemonName,
  defaultSourcePaths,
  isObject,
  readJsonFile,
  serversOf,
  shimEntry,
  sourceContext,
  type ClientKind,
  type Json,
  type JsonObject,
  type SourceContext,
} from './client-config.js';

/** The keys of a stdio entry and of a remote one: an entry that changes kind loses the other kind's. */
const STDIO_KEYS = ['command', 'args', 'env', 'cwd'] as const;
const REMOTE_KEYS = ['url', 'headers'] as const;
/** Maps merged key by key, so that a re-import keeps the variables and headers the source does not name. */
const MERGED_MAPS = ['env', 'headers'] as const;
const USAGE = IMPORT_SPEC.usage;
export interface ImportIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  cwd: string;
  env: NodeJS.ProcessEnv;
  platform: NodeJS.Platform;
}

/**
 * Runs the command; resolves to the exit code. Never throws for the user's files: every
 * failure is one line on stderr.
 */
export function runImportCommand(args: readonly string[], io: Partial<ImportIo> = {}): number {
  const { stdout, stderr, cwd, env, platform } = {
    stdout: process.stdout,
    stderr: process.stderr,
    cwd: process.cwd(),
    env: process.env,
    platform: process.platform,
    ...io,
  };
  const say = (line: string) => stderr.write(`exai-ws import: ${line}\n`);

  const options = parseArgs(args);
  if ('help' in options) {
    stdout.write(`${USAGE}\n`);
    return 0;
  }
  if ('error' in options) {
    say(options.error);
    stderr.write(`${USAGE}\n`);
    return 2;
  }
  const { from, dryRun } = options;
  const label = CLIENT_LABEL[from];
  // A dry run changes nothing, and says so in every line: "would replace", not "replaced".
  const tense = (done: string, future: string) => (dryRun ? future : done);

  const source = readSource(options, { cwd, env, platform }, say);
  if (source === null) return 1;
  const { sourcePath, servers } = source;

  // The daemon's config: never overwritten when it cannot be read back faithfully.
  const targetPath = configPath(env, platform);
  const config = readTarget(targetPath, say);
  if (config === null) return 1;
  const hosted: JsonObject = isObject(config.mcpServers) ? config.mcpServers : {};
  config.mcpServers = hosted;

  const context = sourceContext(from, sourcePath, source.json);
  const imported = mergeServers(servers, hosted, { context, targetPath, tense, say });
  const text = `${JSON.stringify(config, null, 2)}\n`;
  const summary =
    imported.length === 0 ? 'no servers' : `${imported.length} server${imported.length === 1 ? '' : 's'} (${imported.join(', ')})`;

  if (dryRun) {
    stdout.write(text);
    say(`dry run: would write ${summary} to ${targetPath}; nothing was written`);
    return 0;
  }
  try {
    writeAtomically(targetPath, text);
  } catch (error) {
    say(`cannot write ${targetPath}: ${(error as Error).message}`);
    return 1;
  }
  stdout.write(`${JSON.stringify(shimEntry(from, env), null, 2)}\n`);
  say(`wrote ${summary} to ${targetPath}; in ${sourcePath}, ${label}'s own entries can now be replaced by the one above`);
  return 0;
}

type Say = (line: string) => unknown;

/** The client's config file and its servers; null (after saying why) when it is missing or not that client's. */
function readSource(
  options: { from: ClientKind; path: string | undefined },
  { cwd, env, platform }: Pick<ImportIo, 'cwd' | 'env' | 'platform'>,
  say: Say,
): { sourcePath: string; json: Json; servers: JsonObject } | null {
  const { from } = options;
  const label = CLIENT_LABEL[from];
  let sourcePath: string;
  if (options.path !== undefined) {
    sourcePath = resolve(cwd, options.path);
  } else {
    const candidates = defaultSourcePaths(from, cwd, env, platform);
    const found = candidates.find((p) => existsSync(p));
    if (!found) {
      say(`no ${label} MCP config found at ${candidates.join(' or ')}; pass its path: exai-ws import --from ${from} PATH`);
      return null;
    }
    sourcePath = found;
  }
  const source = readJsonFile(sourcePath);
  if ('error' in source) {
    say(source.error === 'missing' ? `${sourcePath} does not exist` : `${sourcePath}: ${source.error}`);
    return null;
  }
  const servers = serversOf(source.json, from);
  if (!servers) {
    const key = from === 'vscode' ? '"servers"' : '"mcpServers"';
    say(`${sourcePath} has no ${key} object: is it a ${label} MCP config?`);
    return null;
  }
  return { sourcePath, json: source.json, servers };
}

/** The daemon's config as it is (an empty one when missing); null (after saying why) when it cannot be read back faithfully. */
function readTarget(targetPath: string, say: Say): JsonObject | null {
  // Plain JSON, as the daemon reads it: rewriting a commented file would silently drop the comments.
  const target = readJsonFile(targetPath, false);
  if ('error' in target) {
    if (target.error !== 'missing') {
      say(`${targetPath}: ${target.error}; fix or move it first (nothing was changed)`);
      return null;
    }
    return { mcpServers: {} };
  }
  if (!isObject(target.json) || (target.json.mcpServers !== undefined && !isObject(target.json.mcpServers))) {
    say(`${targetPath} is not an exai-ws config (a JSON object with an "mcpServers" object); fix or move it first (nothing was changed)`);
    return null;
  }
  return target.json;
}

/** Converts the source's servers and merges them into `hosted` (changed in place); returns the names imported. */
function mergeServers(
  servers: JsonObject,
  hosted: JsonObject,
  how: {
    context: SourceContext;
    targetPath: string;
    tense: (done: string, future: string) => string;
    say: Say;
  },
): string[] {
  const { context, targetPath, tense, say } = how;
  const imported: string[] = [];
  for (const [sourceName, raw] of Object.entries(servers)) {
    const conversion = convertServer(raw, context);
    if ('skip' in conversion) {
      say(`${tense('skipped', 'would skip')} '${sourceName}': ${conversion.skip}`);
      continue;
    }
    const name = uniqueName(daemonName(sourceName), imported);
    const warn = (why: string) => say(`warning: server '${name}': ${why}`);
    if (name !== sourceName) {
      warn(`${tense('renamed', 'would be renamed')} from '${sourceName}' (exai-ws server names are [A-Za-z0-9_.-] without "__")`);
    }
    for (const why of conversion.warnings) warn(why);
    let entry = conversion.entry;
    const previous = hosted[name];
    if (previous !== undefined) {
      const merged = isObject(previous) ? mergeEntry(previous, entry) : { entry, kept: [] };
      entry = merged.entry;
      say(
        `${tense('replaced', 'would replace')} the existing '${name}' in ${targetPath}` +
          (merged.kept.length > 0 ? ` (${tense('kept', 'would keep')} its ${merged.kept.join(', ')})` : ''),
      );
    }
    hosted[name] = entry;
    imported.push(name);
    for (const problem of parseUpstreams({ mcpServers: { [name]: entry } }).problems) {
      warn(`the daemon will not start it: ${problem.key ? `"${problem.key}" ` : ''}${problem.reason}`);
    }
  }
  return imported;
}

type ParsedArgs = { help: true } | { error: string } | { from: ClientKind; path: string | undefined; dryRun: boolean };

function parseArgs(args: readonly string[]): ParsedArgs {
  const parsed = parseCommand(IMPORT_SPEC, args);
  if (!('values' in parsed)) return parsed;
  const from = parsed.values.from as string | undefined;
  if (from === undefined) return { error: '--from is required' };
  if (!(CLIENT_KINDS as readonly string[]).includes(from))
    return { error: `unknown client '${from}' for --from (one of ${CLIENT_KINDS.join(', ')})` };
  return { from: from as ClientKind, path: parsed.positionals[0], dryRun: parsed.values['dry-run'] === true };
}

/**
 * An existing entry replaced by a new import: the source's values win for the keys it has;
 * what the user set only in the daemon's config stays (daemon-only keys such as `scope` or
 * `start`, unknown keys, `env` variables and `headers` the source does not name), except the
 * other kind's keys when the server changes between stdio and remote. `kept` names what stayed.
 */
export function mergeEntry(previous: JsonObject, source: JsonObject): { entry: JsonObject; kept: string[] } {
  const dropped: readonly string[] = 'url' in source ? STDIO_KEYS : REMOTE_KEYS;
  const entry: JsonObject = {};
  const kept: string[] = [];
  for (const [key, value] of Object.entries(source)) {
    const before = previous[key];
    if ((MERGED_MAPS as readonly string[]).includes(key) && isObject(before) && isObject(value)) {
      const extra = Object.keys(before).filter((k) => !(k in value));
      entry[key] = { ...before, ...value };
      kept.push(...extra.map((k) => `${key}.${k}`));
    } else {
      entry[key] = value;
    }
  }
  for (const [key, value] of Object.entries(previous)) {
    if (dropped.includes(key) || key in source) continue;
    entry[key] = value;
    kept.push(key);
  }
  return { entry, kept };
}

/** Two source names that clean up to the same name must not overwrite each other. */
function uniqueName(name: string, taken: readonly string[]): string {
  if (!taken.includes(name)) return name;
  for (let n = 2; ; n++) {
    const candidate = `${name.slice(0, 60)}-${n}`;
    if (!taken.includes(candidate)) return candidate;
  }
}

/**
 * Replaces the file in one step (temp file in the same directory, then rename), so the daemon
 * never reads half a config. Mode 0600: env and headers often hold secrets. A symlinked config
 * (dotfile managers) is written through to its target.
 */
function writeAtomically(path: string, text: string): void {
  const target = existsSync(path) ? realpathSync(path) : path;
  mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
  const temp = join(dirname(target), `.${basename(target)}.${process.pid}.tmp`);
  try {
    writeFileSync(temp, text, { mode: 0o600 });
    renameSync(temp, target);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
}
