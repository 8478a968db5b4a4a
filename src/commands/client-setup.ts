/**
 * `exai-ws config vscode|cursor|claude-code|gemini|codex|claude-desktop [--server NAME]`: prints
 * the entry a client needs, ready to paste, with absolute paths. Clients that connect by URL get
 * the Streamable HTTP form (`http://127.0.0.1:PORT/mcp` and the token, no shim process); every
 * client also gets the shim form (stdio), the only one Claude Desktop's file takes. `--server
 * NAME` gives one hosted server alone, unprefixed (`/mcp/NAME`, `shim --server`).
 *
 * The port is the running daemon's, else the one the user's settings file names, else the one
 * the home's daemon last listened on (state.json: a port of its own when someone else held the
 * default), else the default. Printing a URL entry records its port in state.json (`url_port`),
 * so that a daemon that has to listen elsewhere can say the entries must be printed again.
 *
 * Everything goes to stdout: notes as plain lines, each entry as a JSON block (a line `{` to a
 * line `}`), a TOML table or a command line. Exit codes: 0 printed; 2 bad usage (on stderr).
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadUpstreamConfig } from '../hosting/upstream-config.js';
import { cardIsLive } from '../local/pidfile.js';
import { updateState } from '../local/user-state.js';
import { configPath, settingsPath, userConfigDir } from '../local/config-path.js';
import { DEFAULT_HOST, defaultHome, defaultPort, inspectTokenFile, readAddressCard, resolveHome, urlHost } from '../local/files.js';
import { readSettings } from '../local/settings.js';
import { readState } from '../local/state.js';
import { SHIM_ENTRY_NAME, shimServer, type JsonObject } from './client-config.js';
import { parseCommand } from '../local/args.js';
import { ExitCode } from './exit-codes.js';
import { CONFIG_SPEC } from '../local/specs.js';
import { shellLine } from './service-files.js';

export type SetupClient = 'vscode' | 'cursor' | 'claude-code' | 'gemini' | 'codex' | 'claude-desktop';
export const SETUP_CLIENTS: readonly SetupClient[] = ['vscode', 'cursor', 'claude-code', 'gemini', 'codex', 'claude-desktop'];
const USAGE = CONFIG_SPEC.usage;
/** Stands for the token while the daemon has not made one. */
export const TOKEN_PLACEHOLDER = '<token>';
/**
 * The variable Codex reads the token from (`bearer_token_env_var`: Codex takes no token in its
 * config). Not `EXAI_WS_TOKEN`: exported in the user's shell, that one would become the token of
 * a daemon started by hand there, win over the token file in every `exai-ws` command (stale after
 * `exai-ws token rotate`), and be reported as a setting passed in vain by whatever starts a daemon.
 */
export const CODEX_TOKEN_VAR = 'CODEX_EXAI_WS_TOKEN';
/** The names `--server` accepts: the daemon's server names (upstream-config.ts). */
const SERVER_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Where a client reaches the daemon over HTTP, and where each part came from. */
export interface Endpoint {
  /** `http://HOST:PORT/mcp` or `.../mcp/NAME`. */
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

/** A port value as the daemon takes it (0 included); undefined when unset or not a port. */
function portValue(text: string | undefined): number | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  const port = Number(text);
  return Number.isInteger(port) && port >= 0 && port <= 65535 ? port : undefined;
}

/**
 * Finds the port (a live daemon's address card, else the settings file's `EXAI_WS_PORT`, else
 * state.json's port, else the default) and the token (`EXAI_WS_TOKEN` of this shell, else of the
 * settings file, else the token file). Never throws: a missing token is reported in `tokenNote`
 * and left null.
 */
export async function resolveEndpoint(env: NodeJS.ProcessEnv, server?: string): Promise<Endpoint> {
  const paths = resolveHome(env);
  const settingsFile = settingsPath(env);
  const settings = readSettings(settingsFile).values;
  const card = readAddressCard(paths.pid);
  const statePort = readState(paths).port;
  const settingsPort = portValue(settings.EXAI_WS_PORT);
  let host = settings.EXAI_WS_HOST || DEFAULT_HOST;
  let port: number;
  let portNote: string;
  const notes: string[] = [];
  if (card && card.port > 0 && (await cardIsLive(card))) {
    host = card.host;
    port = card.port;
    portNote = `port ${port}: the running daemon's (pid ${card.pid}, ${paths.pid})`;
    if (settingsPort !== undefined && settingsPort > 0 && settingsPort !== port) {
      portNote += `; ${settingsFile} names port ${settingsPort}, where the daemon listens after a restart (unless another program holds it): this entry must then change`;
    }
  } else if (settingsPort !== undefined && settingsPort > 0) {
    port = settingsPort;
    portNote = `port ${port}: EXAI_WS_PORT in ${settingsFile} (no daemon runs now)`;
  } else {
    port = statePort ?? defaultPort(env);
    const why =
      statePort === undefined
        ? `the default (no daemon runs now; when another program holds it, the daemon takes a port of its own at its start: run this again then)`
        : `the port this home's daemon last listened on (${paths.state}; no daemon runs now)`;
    portNote =
      settingsPort === 0
        ? `port ${port} is a guess: EXAI_WS_PORT=0 in ${settingsFile} picks a new port at every start, and an HTTP entry needs a fixed one (exai-ws settings unset EXAI_WS_PORT: the daemon then keeps one)`
        : `port ${port}: ${why}`;
  }
  const shellPort = portValue(env.EXAI_WS_PORT);
  if (shellPort !== undefined && shellPort !== port) {
    notes.push(
      `EXAI_WS_PORT=${shellPort} of this shell is not where a shim or exai-ws restart starts the daemon: that reads its settings from ${settingsFile} (exai-ws settings set EXAI_WS_PORT=${shellPort}); only a daemon started by hand from this shell (exai-ws daemon) takes it`,
    );
  }
  const url = `http://${urlHost(host)}:${port}/mcp${server === undefined ? '' : `/${encodeURIComponent(server)}`}`;
  const endpoint = { url, port, portNote, notes };

  if (env.EXAI_WS_TOKEN && env.EXAI_WS_TOKEN.length > 0) {
    return { ...endpoint, token: env.EXAI_WS_TOKEN, tokenNote: 'token: EXAI_WS_TOKEN from this shell (the daemon must run with the same)' };
  }
  if (settings.EXAI_WS_TOKEN && settings.EXAI_WS_TOKEN.length > 0) {
    return { ...endpoint, token: settings.EXAI_WS_TOKEN, tokenNote: `token: EXAI_WS_TOKEN in ${settingsFile}` };
  }
  const found = inspectTokenFile(paths.token);
  switch (found.state) {
    case 'ok':
      return { ...endpoint, token: found.token, tokenNote: `token: ${paths.token}` };
    case 'missing':
      return {
        ...endpoint,
        token: null,
        tokenNote: `token: none yet: the daemon creates ${paths.token} when it first starts; start it (exai-ws service install, or exai-ws daemon), then run this again, or replace ${TOKEN_PLACEHOLDER} by the file's content`,
      };
    case 'invalid':
      return {
        ...endpoint,
        token: null,
        tokenNote: `token: ${paths.token} holds no usable token (${found.reason}); the daemon replaces it when it starts: restart it, then run this again`,
      };
    case 'unreadable':
      return { ...endpoint, token: null, tokenNote: `token: cannot read ${paths.token} (${found.error.code ?? found.error.message})` };
  }
}

/**
 * The shim entry: the shim finds its daemon through the home's address card and the user's
 * settings, so it needs no `env` block; only a home other than the default is passed on.
 */
function shimFor(env: NodeJS.ProcessEnv, server: string | undefined): JsonObject {
  const entry = shimServer(env, server);
  if (env.EXAI_WS_HOME && resolve(env.EXAI_WS_HOME) === resolve(defaultHome(env))) delete entry.env;
  return entry;
}

/** One part of the output: a line of text, a JSON entry, a TOML table, or a shell command. */
export type Block = { text: string } | { json: JsonObject } | { toml: string } | { command: string[] };

/**
 * What to print for one client: pure, from the endpoint and the environment (for the shim
 * form's `EXAI_WS_HOME`). `platform` picks Claude Desktop's file location.
 */
export function setupBlocks(
  client: SetupClient,
  endpoint: Endpoint,
  env: NodeJS.ProcessEnv,
  platform: NodeJS.Platform,
  server?: string,
): Block[] {
  const name = server ?? SHIM_ENTRY_NAME;
  const http = { url: endpoint.url, headers: { Authorization: `Bearer ${endpoint.token ?? TOKEN_PLACEHOLDER}` } };
  const shim = shimFor(env, server);
  const what =
    server === undefined
      ? 'the daemon (its built-in tools and every hosted server, as <server>__<tool>)'
      : `the hosted server "${server}" alone, with its own tool names`;
  const secret: Block = {
    text: 'This entry holds the daemon token, a secret: anyone who reads it can use the daemon. Keep it in your user configuration, not in a file you commit.',
  };
  const needsDaemon: Block = {
    text: 'A URL entry needs a daemon running (a client does not start one): `exai-ws service install` starts it at login; the shim form below starts one itself.',
  };
  const shimIntro: Block = {
    text: `Alternative, the shim (a small stdio process per window; it holds no secret and starts the daemon when none runs):`,
  };
  const blocks: Block[] = [];
  switch (client) {
    case 'vscode':
      blocks.push(
        {
          text: `VS Code, over Streamable HTTP: ${what}. Paste under "servers" in your user mcp.json (command "MCP: Open User Configuration") or in .vscode/mcp.json:`,
        },
        { json: { servers: { [name]: { type: 'http', ...http } } } },
        secret,
        needsDaemon,
        shimIntro,
        { json: { servers: { [name]: { type: 'stdio', ...shim } } } },
      );
      break;
    case 'cursor':
      blocks.push(
        {
          text: `Cursor, over Streamable HTTP: ${what}. Paste under "mcpServers" in ~/.cursor/mcp.json (every project) or a project's .cursor/mcp.json:`,
        },
        { json: { mcpServers: { [name]: http } } },
        secret,
        needsDaemon,
        shimIntro,
        { json: { mcpServers: { [name]: shim } } },
      );
      break;
    case 'claude-code': {
      const header = `Authorization: Bearer ${endpoint.token ?? TOKEN_PLACEHOLDER}`;
      blocks.push(
        { text: `Claude Code, over Streamable HTTP: ${what}. Run (--scope user: every project, kept in ~/.claude.json):` },
        { command: ['claude', 'mcp', 'add', '--scope', 'user', '--transport', 'http', name, endpoint.url, '--header', header] },
        { text: 'Or as an entry of a project\'s .mcp.json, under "mcpServers":' },
        { json: { mcpServers: { [name]: { type: 'http', ...http } } } },
        secret,
        needsDaemon,
        shimIntro,
        shim.env === undefined
          ? { command: ['claude', 'mcp', 'add', '--scope', 'user', name, '--', shim.command as string, ...(shim.args as string[])] }
          : { command: ['claude', 'mcp', 'add-json', '--scope', 'user', name, JSON.stringify({ type: 'stdio', ...shim })] },
      );
      break;
    }
    case 'gemini': {
      const header = `Authorization: Bearer ${endpoint.token ?? TOKEN_PLACEHOLDER}`;
      blocks.push(
        { text: `Gemini CLI, over Streamable HTTP: ${what}. Run (--scope user: every project, kept in ~/.gemini/settings.json):` },
        { command: ['gemini', 'mcp', 'add', '--scope', 'user', '--transport', 'http', name, endpoint.url, '--header', header] },
        {
          text: 'Or as an entry of ~/.gemini/settings.json (or a project\'s .gemini/settings.json), under "mcpServers" ("httpUrl" is Streamable HTTP; "url" would be SSE):',
        },
        { json: { mcpServers: { [name]: { httpUrl: endpoint.url, headers: http.headers } } } },
        secret,
        needsDaemon,
        shimIntro,
        { json: { mcpServers: { [name]: shim } } },
      );
      break;
    }
    case 'codex': {
      const token = endpoint.token ?? TOKEN_PLACEHOLDER;
      blocks.push(
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
      );
      break;
    }
    case 'claude-desktop':
      blocks.push(
        {
          text: `Claude Desktop, through the shim (its config file takes stdio servers only): ${what}. Paste under "mcpServers" in ${claudeDesktopFile(env, platform)}, then restart Claude Desktop:`,
        },
        { json: { mcpServers: { [name]: shim } } },
      );
      break;
  }
  return blocks;
}

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

export interface ClientSetupIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  env: NodeJS.ProcessEnv;
  platform: NodeJS.Platform;
}

/** Runs `exai-ws config ...`; resolves to the exit code. */
export async function runClientSetupCommand(args: readonly string[], io: Partial<ClientSetupIo> = {}): Promise<number> {
  const { stdout, stderr, env, platform } = {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    platform: process.platform,
    ...io,
  };
  const parsed = parseCommand(CONFIG_SPEC, args);
  if ('help' in parsed) {
    stdout.write(`${USAGE}\n`);
    return ExitCode.OK;
  }
  if ('error' in parsed) {
    stderr.write(`exai-ws config: ${parsed.error}\n${USAGE}\n`);
    return ExitCode.USAGE;
  }
  const [client, ...extra] = parsed.positionals;
  if (client === undefined || extra.length > 0 || !(SETUP_CLIENTS as readonly string[]).includes(client)) {
    stderr.write(
      `exai-ws config: ${client === undefined ? 'which client?' : `unknown client ${JSON.stringify([client, ...extra].join(' '))}`}\n${USAGE}\n`,
    );
    return ExitCode.USAGE;
  }
  const server = parsed.values.server as string | undefined;
  if (server !== undefined && (!SERVER_NAME.test(server) || server.includes('__'))) {
    stderr.write(
      `exai-ws config: --server ${JSON.stringify(server)} is not a server name (1-64 characters of [A-Za-z0-9_.-] without "__")\n`,
    );
    return ExitCode.USAGE;
  }
  const endpoint = await resolveEndpoint(env, server);
  const blocks = setupBlocks(client as SetupClient, endpoint, env, platform, server);
  // The shim form finds the port and the token itself.
  const withUrl = client !== 'claude-desktop';
  const notes = withUrl ? [endpoint.portNote, endpoint.tokenNote, ...endpoint.notes] : [];
  if (server !== undefined) {
    const missing = serverMissing(env, server);
    if (missing) notes.push(missing);
  }
  stdout.write(renderBlocks(notes.length > 0 ? [...blocks, { text: notes.map((n) => `- ${n}`).join('\n') }] : blocks));
  if (withUrl) rememberUrlPort(env, endpoint.port);
  return ExitCode.OK;
}

/**
 * Records the port the printed URL entries name (state.json `url_port`), so that a daemon that
 * listens elsewhere can tell the user to print them again. Best effort: a home that does not
 * exist yet or cannot be written is left as it is.
 */
function rememberUrlPort(env: NodeJS.ProcessEnv, port: number): void {
  const paths = resolveHome(env);
  if (readState(paths).url_port === port) return;
  try {
    // Before the daemon's first start too: that start is when it may find the port held.
    mkdirSync(paths.home, { recursive: true, mode: 0o700 });
    updateState(paths, { url_port: port });
  } catch {
    // The entries are printed; the warning they would feed is a convenience.
  }
}

/** A note when `server` is not in the daemon's config file, where a typo would give 404 later. */
function serverMissing(env: NodeJS.ProcessEnv, server: string): string | null {
  const path = configPath(env);
  try {
    const config = loadUpstreamConfig(path);
    if (config.servers.some((s) => s.name === server)) return null;
    return `"${server}" is not among the hosted servers in ${path}: the entry fails (404) until it is added`;
  } catch (error) {
    return `cannot check that "${server}" is a hosted server: ${(error as Error).message}`;
  }
}
