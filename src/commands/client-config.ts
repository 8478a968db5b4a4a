/**
 * MCP clients' own config files, as `exai-ws import` reads them: where each client keeps its
 * file, JSON with comments, the named servers and VS Code inputs, and each entry converted to
 * the daemon's (variables expanded where they have one value, the rest reported). Also the
 * one shim entry a client keeps instead, and how to recognise it when importing again.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { userConfigDir } from '../local/config-path.js';
import { CLI_PATH, SHIM_PATH } from '../local/dist-paths.js';
import type { Selection } from '../protocol/hello.js';

export type ClientKind = 'vscode' | 'claude' | 'cursor';
export const CLIENT_KINDS: readonly ClientKind[] = ['vscode', 'claude', 'cursor'];
export const CLIENT_LABEL: Record<ClientKind, string> = { vscode: 'VS Code', claude: 'Claude Desktop', cursor: 'Cursor' };

/** The name of the entry the client gets instead of its own servers. */
export const SHIM_ENTRY_NAME = 'exai-ws';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** What {@link convertServer} makes of one source entry. */
export type Conversion = { skip: string } | { entry: JsonObject; warnings: string[] };

export interface SourceContext {
  kind: ClientKind;
  /** The folder `${workspaceFolder}` stands for, when the file belongs to one workspace. */
  workspaceFolder: string | undefined;
  /** VS Code `inputs`, by id, for naming what a `${input:...}` asks for. */
  inputs: Map<string, string>;
}

/**
 * Where each client keeps its MCP config, in the order they are tried. VS Code: the workspace's
 * `.vscode/mcp.json`, then the user-level `mcp.json`. Claude Desktop and VS Code are Electron
 * apps, so on Linux they honour `XDG_CONFIG_HOME`.
 */
export function defaultSourcePaths(from: ClientKind, cwd: string, env: NodeJS.ProcessEnv, platform: NodeJS.Platform): string[] {
  const appData = platform === 'linux' && env.XDG_CONFIG_HOME ? env.XDG_CONFIG_HOME : userConfigDir(env, platform);
  switch (from) {
    case 'vscode':
      return [join(cwd, '.vscode', 'mcp.json'), join(appData, 'Code', 'User', 'mcp.json')];
    case 'claude':
      return [join(appData, 'Claude', 'claude_desktop_config.json')];
    case 'cursor':
      return [join(homedir(), '.cursor', 'mcp.json')];
  }
}

/**
 * Turns JSON with comments (VS Code's JSONC) into JSON: drops `//` and `/* *\/` comments and
 * trailing commas outside strings. Strings are copied untouched, so `"http://x"` survives.
 * Throws on an unterminated block comment.
 */
export function stripJsonc(text: string): string {
  const out: string[] = [];
  let pendingComma = -1; // index in `out` of a comma not yet followed by a value
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  while (i < text.length) {
    const c = text[i] as string;
    const next = text[i + 1];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out.push(text.slice(i, j + 1));
      pendingComma = -1;
      i = j + 1;
    } else if (c === '/' && next === '/') {
      const end = text.indexOf('\n', i);
      i = end < 0 ? text.length : end;
    } else if (c === '/' && next === '*') {
      const end = text.indexOf('*/', i + 2);
      if (end < 0) throw new SyntaxError('unterminated /* comment');
      out.push(' ');
      i = end + 2;
    } else {
      if ((c === '}' || c === ']') && pendingComma >= 0) out[pendingComma] = '';
      if (c === ',') pendingComma = out.length;
      else if (!/\s/.test(c)) pendingComma = -1;
      out.push(c);
      i++;
    }
  }
  return out.join('');
}

export function readJsonFile(path: string, comments = true): { json: Json } | { error: string } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { error: 'missing' };
    return { error: `cannot read it (${code ?? (error as Error).message})` };
  }
  try {
    return { json: JSON.parse(comments ? stripJsonc(text) : text) as Json };
  } catch (error) {
    return { error: `not valid JSON (${(error as Error).message})` };
  }
}

export function isObject(value: Json | undefined): value is JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** The named servers: VS Code `servers` (or `mcp.servers` in settings.json), others `mcpServers`. */
export function serversOf(root: Json, from: ClientKind): JsonObject | undefined {
  if (!isObject(root)) return undefined;
  const mcp = isObject(root.mcp) ? root.mcp.servers : undefined;
  const candidates = from === 'vscode' ? [root.servers, mcp, root.mcpServers] : [root.mcpServers, root.servers];
  return candidates.find(isObject);
}

/** What converting the entries of one source file needs to know about it. */
export function sourceContext(kind: ClientKind, sourcePath: string, root: Json): SourceContext {
  return { kind, workspaceFolder: workspaceFolderOf(sourcePath), inputs: inputsOf(root) };
}

function inputsOf(root: Json): Map<string, string> {
  const inputs = new Map<string, string>();
  if (isObject(root) && Array.isArray(root.inputs)) {
    for (const input of root.inputs) {
      if (isObject(input) && typeof input.id === 'string')
        inputs.set(input.id, typeof input.description === 'string' ? input.description : '');
    }
  }
  return inputs;
}

/** `<folder>/.vscode/mcp.json` and `<folder>/.cursor/mcp.json` belong to `<folder>`; `~/.cursor` does not. */
function workspaceFolderOf(sourcePath: string): string | undefined {
  const dir = dirname(sourcePath);
  if (basename(dir) !== '.vscode' && basename(dir) !== '.cursor') return undefined;
  const folder = dirname(dir);
  return folder === homedir() ? undefined : folder;
}

/** An exai-ws shim entry: this machine's bundled shim, `exai-ws-shim`, or `exai-ws shim` through a bin or npx. */
function isShimEntry(raw: JsonObject): boolean {
  const args = Array.isArray(raw.args) ? raw.args.filter((a): a is string => typeof a === 'string') : [];
  const command = typeof raw.command === 'string' ? raw.command : '';
  const parts = [command, ...args];
  const is = (path: string) => (part: string) => isAbsolute(part) && resolve(part) === path;
  if (parts.some((part) => /exai-ws-shim/i.test(part) || is(SHIM_PATH)(part))) return true;
  return args.includes('shim') && parts.some((part) => /exai-ws/i.test(part) || is(CLI_PATH)(part));
}

/**
 * Converts one client entry to the daemon's (`command`/`args`/`env`/`cwd` or `url`/`headers`).
 * What cannot be carried over faithfully is kept where possible and named in `warnings`.
 */
export function convertServer(raw: Json, context: SourceContext): Conversion {
  if (!isObject(raw)) return { skip: 'not an object' };
  if (isShimEntry(raw)) return { skip: 'it is the exai-ws shim itself' };
  const warnings: string[] = [];
  const type = typeof raw.type === 'string' ? raw.type : undefined;
  const remoteTypes = ['http', 'sse', 'streamable-http', 'streamableHttp'];
  const isStdio = type === 'stdio' || (type === undefined && raw.command !== undefined);
  const isRemote = (type !== undefined && remoteTypes.includes(type)) || (type === undefined && !isStdio && raw.url !== undefined);

  const entry: JsonObject = {};
  if (isStdio) {
    if (typeof raw.command !== 'string' || raw.command.length === 0) return { skip: 'a stdio server without a "command"' };
    entry.command = raw.command;
    entry.args = Array.isArray(raw.args) ? raw.args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))) : [];
    if (raw.env !== undefined) entry.env = stringRecord(raw.env, 'env', warnings);
    if (typeof raw.cwd === 'string') entry.cwd = raw.cwd;
    if (typeof raw.envFile === 'string') {
      warnings.push(`"envFile" ${raw.envFile} is not carried over: exai-ws does not read env files; copy its variables into "env"`);
    }
  } else if (isRemote) {
    if (typeof raw.url !== 'string' || raw.url.length === 0) return { skip: 'a remote server without a "url"' };
    entry.url = raw.url;
    if (raw.headers !== undefined) entry.headers = stringRecord(raw.headers, 'headers', warnings);
    if (type === 'sse' || (type === undefined && /\/sse\/?$/.test(raw.url))) {
      warnings.push(
        'uses the legacy SSE transport; exai-ws speaks Streamable HTTP, which works only if the server serves that at the same URL',
      );
    }
  } else {
    return { skip: type !== undefined ? `unknown type "${type}"` : 'neither "command" nor "url"' };
  }
  if (isObject(raw.dev)) warnings.push('its "dev" (watch and debug) settings are VS Code only and are not carried over');
  if (raw.disabled === true) {
    entry.disabled = true;
    warnings.push('is disabled in the source, so it is imported disabled');
  }
  // One process per window's folder, started with that folder where the source names it: what
  // the client itself did with ${workspaceFolder}. A remote server is one process for all.
  const perWorkspace = isStdio && context.kind !== 'claude' && usesWorkspaceFolder(entry);
  if (perWorkspace) entry.scope = 'workspace';
  if (context.kind !== 'claude') expandVariables(entry, context, warnings, perWorkspace);
  if (typeof entry.cwd === 'string' && !isAbsolute(entry.cwd) && !entry.cwd.includes('${')) {
    if (perWorkspace) entry.cwd = `\${workspaceFolder}/${entry.cwd}`;
    else if (context.workspaceFolder) entry.cwd = resolve(context.workspaceFolder, entry.cwd);
  }
  return { entry, warnings };
}

/** Env and header values must be strings; numbers and booleans are turned into theirs. */
function stringRecord(value: Json, key: string, warnings: string[]): JsonObject {
  const out: JsonObject = {};
  if (!isObject(value)) {
    warnings.push(`"${key}" is not an object and is left out`);
    return out;
  }
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === 'string') out[k] = v;
    else if (typeof v === 'number' || typeof v === 'boolean') out[k] = String(v);
    else warnings.push(`${key}.${k} is ${v === null ? 'null' : 'not a string'} and is left out`);
  }
  return out;
}

/** The variables a `workspace`-scoped server's args, env and cwd may use: the daemon fills them per folder. */
const WORKSPACE_VARIABLES = ['workspaceFolder', 'workspaceFolderBasename'] as const;

/** True when the entry's args, env values or cwd use `${workspaceFolder}` (or its basename). */
function usesWorkspaceFolder(entry: JsonObject): boolean {
  const texts = [...(Array.isArray(entry.args) ? entry.args : []), ...(isObject(entry.env) ? Object.values(entry.env) : []), entry.cwd];
  return texts.some((t) => typeof t === 'string' && WORKSPACE_VARIABLES.some((name) => t.includes(`\${${name}}`)));
}

/**
 * Expands the VS Code / Cursor variables that have one value for the daemon (`${userHome}`,
 * `${pathSeparator}`, and `${workspaceFolder}` of a workspace's own file in a remote entry);
 * `${workspaceFolder}` in a `workspace`-scoped entry is kept for the daemon to fill per folder;
 * any other variable is kept verbatim and reported, since the daemon does not expand it.
 */
function expandVariables(entry: JsonObject, context: SourceContext, warnings: string[], perWorkspace: boolean): void {
  const left = new Set<string>();
  const known: Record<string, string | undefined> = {
    userHome: homedir(),
    pathSeparator: sep,
    '/': sep,
  };
  if (!perWorkspace) {
    known.workspaceFolder = context.workspaceFolder;
    known.workspaceFolderBasename = context.workspaceFolder && basename(context.workspaceFolder);
  }
  const expand = (text: string) =>
    text.replace(/\$\{([^}]+)\}/g, (whole, name: string) => {
      const value = known[name];
      if (value !== undefined) return value;
      if (perWorkspace && (WORKSPACE_VARIABLES as readonly string[]).includes(name)) return whole;
      left.add(name);
      return whole;
    });
  const walk = (value: Json): Json => {
    if (typeof value === 'string') return expand(value);
    if (Array.isArray(value)) return value.map(walk);
    if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v)]));
    return value;
  };
  for (const [key, value] of Object.entries(entry)) entry[key] = walk(value);
  for (const name of left) {
    if (name.startsWith('input:')) {
      const description = context.inputs.get(name.slice('input:'.length));
      warnings.push(
        `uses \${${name}}${description ? ` ("${description}")` : ''}, which ${CLIENT_LABEL[context.kind]} prompts for and exai-ws cannot; it is kept verbatim: set the real value in the exai-ws config`,
      );
    } else if (name.startsWith('workspaceFolder')) {
      warnings.push(
        `uses \${${name}}, which has no single value for a server shared by every window; it is kept verbatim: set a path in the exai-ws config`,
      );
    } else {
      warnings.push(`uses \${${name}}, which exai-ws does not expand; it is kept verbatim`);
    }
  }
}

/** Maps a client's server name onto the daemon's name rules ([A-Za-z0-9_.-], 1-64, no "__"). */
export function daemonName(name: string): string {
  const cleaned = name
    .replace(/[^A-Za-z0-9_.-]+/g, '-')
    .replace(/_{2,}/g, '_')
    .replace(/^-+|-+$/g, '')
    .slice(0, 64);
  return cleaned.length > 0 ? cleaned : 'server';
}

/**
 * One stdio server entry running this Node with this CLI's bundled shim (`--server NAME`: that
 * hosted server alone; `--profile NAME`: that profile), with the home the shim must find when it
 * is not the default one.
 */
export function shimServer(env: NodeJS.ProcessEnv = process.env, selection: Selection = {}): JsonObject {
  const args = [SHIM_PATH];
  if (selection.server !== undefined) args.push('--server', selection.server);
  if (selection.profile !== undefined) args.push('--profile', selection.profile);
  const entry: JsonObject = { command: process.execPath, args };
  // A non-default home is how the shim finds the daemon; the client must pass it on.
  if (env.EXAI_WS_HOME) entry.env = { EXAI_WS_HOME: resolve(env.EXAI_WS_HOME) };
  return entry;
}

/** The one entry the client keeps: this Node running this CLI's shim, in the client's format. */
export function shimEntry(from: ClientKind, env: NodeJS.ProcessEnv = process.env): JsonObject {
  const entry = shimServer(env);
  if (from === 'vscode') return { servers: { [SHIM_ENTRY_NAME]: { type: 'stdio', ...entry } } };
  return { mcpServers: { [SHIM_ENTRY_NAME]: entry } };
}
