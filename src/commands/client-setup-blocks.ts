/**
 * What `exai-ws config CLIENT` prints for each client (client-setup.ts), in that client's own
 * form (JSON, a TOML table, a command line), pure, from the endpoint and the environment:
 *
 * - for the clients that speak MCP authorization (VS Code, Claude Code, Cursor, Gemini CLI),
 *   first the URL entry alone: it holds no secret, the client logs in through the daemon's
 *   own consent page (daemon/authz/) and `exai-ws clients` lists it;
 * - then the URL entry with the daemon token in a header, for clients or scripts without MCP
 *   authorization (Codex: its bearer token variable);
 * - then the shim entry (stdio), the only one Claude Desktop's file takes.
 */
import { join, resolve } from 'node:path';
import { userConfigDir } from '../local/config-path.js';
import { defaultHome } from '../local/files.js';
import { SHIM_ENTRY_NAME, shimServer, type JsonObject } from './client-config.js';
import { shellLine } from './service-files.js';
import type { Selection } from '../protocol/hello.js';

export type SetupClient = 'vscode' | 'cursor' | 'claude-code' | 'gemini' | 'codex' | 'claude-desktop';
export const SETUP_CLIENTS: readonly SetupClient[] = ['vscode', 'cursor', 'claude-code', 'gemini', 'codex', 'claude-desktop'];
/** Stands for the token while the daemon has not made one. */
export const TOKEN_PLACEHOLDER = '<token>';
/**
 * The variable Codex reads the token from (`bearer_token_env_var`: Codex takes no token in its
 * config). Not `EXAI_WS_TOKEN`: exported in the user's shell, that one would become the token of
 * a daemon started by hand there, win over the token file in every `exai-ws` command (stale after
 * `exai-ws token rotate`), and be reported as a setting passed in vain by whatever starts a daemon.
 */
export const CODEX_TOKEN_VAR = 'CODEX_EXAI_WS_TOKEN';

/** Where a client reaches the daemon over HTTP, and where each part came from. */
export interface Endpoint {
  /** `http://HOST:PORT/mcp`, `.../mcp/NAME` or `.../mcp?profile=NAME`. */
  url: string;
  port: number;
  /** Why this port: the running daemon's address card, the settings file, state.json, or the default. */
  portNote: string;
  /** null while there is no usable token yet. */
  token: string | null;
  tokenNote: string;
  /** Anything else about the URL entry the user should know (a shell's EXAI_WS_PORT the daemon ignores). */
  notes: string[];
}

/**
 * The shim entry: the shim finds its daemon through the home's address card and the user's
 * settings, so it needs no `env` block; only a home other than the default is passed on.
 */
function shimFor(env: NodeJS.ProcessEnv, selection: Selection): JsonObject {
  const entry = shimServer(env, selection);
  if (env.EXAI_WS_HOME && resolve(env.EXAI_WS_HOME) === resolve(defaultHome(env))) delete entry.env;
  return entry;
}

/** One part of the output: a line of text, a JSON entry, a TOML table, or a shell command. */
export type Block = { text: string } | { json: JsonObject } | { toml: string } | { command: string[] };

/**
 * What to print for one client: pure, from the endpoint and the environment (for the shim
 * form's `EXAI_WS_HOME`). `platform` picks Claude Desktop's file location.
 */
/** What every client's blocks are made of. */
interface Parts {
  /** The entry's name: the server's, or the daemon's. */
  name: string;
  endpoint: Endpoint;
  /** The URL entry's common keys. */
  http: { url: string; headers: { Authorization: string } };
  /** The shim entry: `command`, `args` and perhaps `env`. */
  shim: JsonObject;
  /** What the entry gives, in words. */
  what: string;
  secret: Block;
  /** Says the token-free URL entry holds no secret and how its client is allowed. */
  loginNote: Block;
  /** Introduces the header form, the alternative to the token-free entry. */
  headerIntro: Block;
  needsDaemon: Block;
  shimIntro: Block;
  env: NodeJS.ProcessEnv;
  platform: NodeJS.Platform;
}

export function setupBlocks(
  client: SetupClient,
  endpoint: Endpoint,
  env: NodeJS.ProcessEnv,
  platform: NodeJS.Platform,
  selection: Selection = {},
): Block[] {
  const { server, profile } = selection;
  const name = server ?? (profile === undefined ? SHIM_ENTRY_NAME : `${SHIM_ENTRY_NAME}-${profile}`);
  const http = { url: endpoint.url, headers: { Authorization: `Bearer ${endpoint.token ?? TOKEN_PLACEHOLDER}` } };
  const shim = shimFor(env, selection);
  const what =
    server !== undefined
      ? `the hosted server "${server}" alone, with its own tool names`
      : profile !== undefined
        ? `the profile "${profile}" of the daemon's config (its servers and tools, or tool search)`
        : 'the daemon (its built-in tools and every hosted server, as <server>__<tool>)';
  const secret: Block = {
    text: 'This entry holds the daemon token, a secret: anyone who reads it can use the daemon. Keep it in your user configuration, not in a file you commit.',
  };
  const loginNote: Block = {
    text: "The URL alone holds no secret: the first time the client connects, it opens the daemon's consent page in your browser, where you allow the client (with the browser logged in to the daemon by `exai-ws open`, or with the one-time code `exai-ws open --print` prints). `exai-ws clients` lists the clients you allowed; `exai-ws clients revoke NAME` revokes one.",
  };
  const headerIntro: Block = {
    text: 'Alternative, for clients or scripts without MCP authorization: the same URL with the daemon token in a header:',
  };
  const needsDaemon: Block = {
    text: 'A URL entry needs a daemon running (a client does not start one): `exai-ws service install` starts it at login; the shim form below starts one itself.',
  };
  const shimIntro: Block = {
    text: `Alternative, the shim (a small stdio process per window; it holds no secret and starts the daemon when none runs):`,
  };
  const notes = { secret, loginNote, headerIntro, needsDaemon, shimIntro };
  return CLIENT_BLOCKS[client]({ name, endpoint, http, shim, what, ...notes, env, platform });
}

/** Each client's blocks, in the order printed: a declarative table. */
const CLIENT_BLOCKS: Readonly<Record<SetupClient, (parts: Parts) => Block[]>> = {
  vscode: ({ name, endpoint, http, shim, what, secret, loginNote, headerIntro, needsDaemon, shimIntro }) => [
    {
      text: `VS Code, over Streamable HTTP: ${what}. Paste under "servers" in your user mcp.json (command "MCP: Open User Configuration") or in .vscode/mcp.json:`,
    },
    { json: { servers: { [name]: { type: 'http', url: endpoint.url } } } },
    loginNote,
    headerIntro,
    { json: { servers: { [name]: { type: 'http', ...http } } } },
    secret,
    needsDaemon,
    shimIntro,
    { json: { servers: { [name]: { type: 'stdio', ...shim } } } },
  ],
  cursor: ({ name, endpoint, http, shim, what, secret, loginNote, headerIntro, needsDaemon, shimIntro }) => [
    {
      text: `Cursor, over Streamable HTTP: ${what}. Paste under "mcpServers" in ~/.cursor/mcp.json (every project) or a project's .cursor/mcp.json:`,
    },
    { json: { mcpServers: { [name]: { url: endpoint.url } } } },
    loginNote,
    headerIntro,
    { json: { mcpServers: { [name]: http } } },
    secret,
    needsDaemon,
    shimIntro,
    { json: { mcpServers: { [name]: shim } } },
  ],
  'claude-code': ({ name, endpoint, http, shim, what, secret, loginNote, headerIntro, needsDaemon, shimIntro }) => {
    const add = ['claude', 'mcp', 'add', '--scope', 'user', '--transport', 'http', name, endpoint.url];
    return [
      { text: `Claude Code, over Streamable HTTP: ${what}. Run (--scope user: every project, kept in ~/.claude.json):` },
      { command: add },
      { text: 'Or as an entry of a project\'s .mcp.json, under "mcpServers":' },
      { json: { mcpServers: { [name]: { type: 'http', url: endpoint.url } } } },
      loginNote,
      headerIntro,
      { command: [...add, '--header', `Authorization: ${http.headers.Authorization}`] },
      { json: { mcpServers: { [name]: { type: 'http', ...http } } } },
      secret,
      needsDaemon,
      shimIntro,
      shim.env === undefined
        ? { command: ['claude', 'mcp', 'add', '--scope', 'user', name, '--', shim.command as string, ...(shim.args as string[])] }
        : { command: ['claude', 'mcp', 'add-json', '--scope', 'user', name, JSON.stringify({ type: 'stdio', ...shim })] },
    ];
  },
  gemini: ({ name, endpoint, http, shim, what, secret, loginNote, headerIntro, needsDaemon, shimIntro }) => {
    const add = ['gemini', 'mcp', 'add', '--scope', 'user', '--transport', 'http', name, endpoint.url];
    return [
      { text: `Gemini CLI, over Streamable HTTP: ${what}. Run (--scope user: every project, kept in ~/.gemini/settings.json):` },
      { command: add },
      {
        text: 'Or as an entry of ~/.gemini/settings.json (or a project\'s .gemini/settings.json), under "mcpServers" ("httpUrl" is Streamable HTTP; "url" would be SSE):',
      },
      { json: { mcpServers: { [name]: { httpUrl: endpoint.url } } } },
      loginNote,
      headerIntro,
      { command: [...add, '--header', `Authorization: ${http.headers.Authorization}`] },
      { json: { mcpServers: { [name]: { httpUrl: endpoint.url, headers: http.headers } } } },
      secret,
      needsDaemon,
      shimIntro,
      { json: { mcpServers: { [name]: shim } } },
    ];
  },
  codex: ({ name, endpoint, shim, what, needsDaemon, shimIntro }) => {
    const token = endpoint.token ?? TOKEN_PLACEHOLDER;
    return [
      {
        text: `Codex CLI, over Streamable HTTP: ${what}. Codex reads the token from a variable of its environment, not from its config: export ${CODEX_TOKEN_VAR} where Codex starts (in your shell's profile, e.g. ~/.profile), then run once:`,
      },
      { command: ['export', `${CODEX_TOKEN_VAR}=${token}`] },
      { command: ['codex', 'mcp', 'add', name, '--url', endpoint.url, '--bearer-token-env-var', CODEX_TOKEN_VAR] },
      { text: 'Or as a table of ~/.codex/config.toml:' },
      { toml: tomlTable(name, { url: endpoint.url, bearer_token_env_var: CODEX_TOKEN_VAR }) },
      {
        text: `The export line holds the daemon token, a secret: anyone who reads it can use the daemon. Keep it in a file only you can read, not in a file you commit.`,
      },
      needsDaemon,
      shimIntro,
      {
        command: [
          'codex',
          'mcp',
          'add',
          name,
          ...Object.entries((shim.env ?? {}) as Record<string, string>).flatMap(([key, value]) => ['--env', `${key}=${value}`]),
          '--',
          shim.command as string,
          ...(shim.args as string[]),
        ],
      },
      { text: 'Or as a table of ~/.codex/config.toml:' },
      { toml: tomlTable(name, shim as Record<string, TomlValue>) },
    ];
  },
  'claude-desktop': ({ name, shim, what, env, platform }) => [
    {
      text: `Claude Desktop, through the shim (its config file takes stdio servers only): ${what}. Paste under "mcpServers" in ${claudeDesktopFile(env, platform)}, then restart Claude Desktop:`,
    },
    { json: { mcpServers: { [name]: shim } } },
  ],
};

function claudeDesktopFile(env: NodeJS.ProcessEnv, platform: NodeJS.Platform): string {
  return join(userConfigDir(env, platform), 'Claude', 'claude_desktop_config.json');
}

type TomlValue = string | string[] | Record<string, string>;

/**
 * `[mcp_servers.NAME]` with its keys, for Codex's config.toml. Strings are written as JSON
 * strings, which TOML reads alike (basic strings with the same escapes); a map is an inline table.
 */
export function tomlTable(name: string, entries: Record<string, TomlValue>): string {
  const key = (k: string) => (/^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k));
  const value = (v: TomlValue): string =>
    typeof v === 'string'
      ? JSON.stringify(v)
      : Array.isArray(v)
        ? `[${v.map((item) => JSON.stringify(item)).join(', ')}]`
        : `{ ${Object.entries(v)
            .map(([k, item]) => `${key(k)} = ${JSON.stringify(item)}`)
            .join(', ')} }`;
  return [`[mcp_servers.${key(name)}]`, ...Object.entries(entries).map(([k, v]) => `${key(k)} = ${value(v)}`)].join('\n');
}

/** Renders blocks: JSON pretty-printed, commands quoted for a POSIX shell, a blank line between. */
export function renderBlocks(blocks: readonly Block[]): string {
  return blocks
    .map((block) =>
      'json' in block
        ? JSON.stringify(block.json, null, 2)
        : 'command' in block
          ? shellLine(block.command)
          : 'toml' in block
            ? block.toml
            : block.text,
    )
    .join('\n\n')
    .concat('\n');
}
