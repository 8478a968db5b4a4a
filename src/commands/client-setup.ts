/**
 * `exai-ws config vscode|cursor|claude-code|claude-desktop [--server NAME]`: prints the entry a
 * client needs, ready to paste, with absolute paths. Clients that connect by URL get the
 * Streamable HTTP form (`http://127.0.0.1:PORT/mcp` and the `Authorization` header, no shim
 * process); every client also gets the shim form (stdio), the only one Claude Desktop's file
 * takes. `--server NAME` gives one hosted server alone, unprefixed (`/mcp/NAME`, `shim --server`).
 *
 * Everything goes to stdout: notes as plain lines, each entry as a JSON block (a line `{` to a
 * line `}`) or a command line. Exit codes: 0 printed; 2 bad usage (on stderr).
 */
import { join } from 'node:path';
import { loadUpstreamConfig } from '../core/upstream-config.js';
import { cardIsLive } from '../daemon/pidfile.js';
import { configPath, userConfigDir } from '../protocol/config-path.js';
import { DEFAULT_HOST, DEFAULT_PORT, inspectTokenFile, readAddressCard, resolveHome, urlHost } from '../protocol/files.js';
import { SHIM_ENTRY_NAME, shimServer, type JsonObject } from './client-config.js';
import { parseCommand } from './args.js';
import { ExitCode } from './exit-codes.js';
import { CONFIG_SPEC } from './specs.js';
import { shellLine } from './service-files.js';

export type SetupClient = 'vscode' | 'cursor' | 'claude-code' | 'claude-desktop';
export const SETUP_CLIENTS: readonly SetupClient[] = ['vscode', 'cursor', 'claude-code', 'claude-desktop'];
const USAGE = CONFIG_SPEC.usage;
/** Stands for the token while the daemon has not made one. */
export const TOKEN_PLACEHOLDER = '<token>';
/** The names `--server` accepts: the daemon's server names (upstream-config.ts). */
const SERVER_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Where a client reaches the daemon over HTTP, and where each part came from. */
export interface Endpoint {
  /** `http://HOST:PORT/mcp` or `.../mcp/NAME`. */
  url: string;
  port: number;
  /** Why this port: the running daemon's address card, `EXAI_WS_PORT`, or the default. */
  portNote: string;
  /** null while there is no usable token yet. */
  token: string | null;
  tokenNote: string;
}

/**
 * Finds the port (a live daemon's address card, else `EXAI_WS_PORT`, else 8765) and the token
 * (`EXAI_WS_TOKEN`, else the token file). Never throws: a missing token is reported in
 * `tokenNote` and left null.
 */
export async function resolveEndpoint(env: NodeJS.ProcessEnv, server?: string): Promise<Endpoint> {
  const paths = resolveHome(env);
  const card = readAddressCard(paths.pid);
  let host = env.EXAI_WS_HOST || DEFAULT_HOST;
  let port = DEFAULT_PORT;
  let portNote: string;
  const envPort = env.EXAI_WS_PORT === undefined || env.EXAI_WS_PORT === '' ? NaN : Number(env.EXAI_WS_PORT);
  if (card && card.port > 0 && (await cardIsLive(card))) {
    host = card.host;
    port = card.port;
    portNote = `port ${port}: the running daemon's (pid ${card.pid}, ${paths.pid})`;
    const configured = Number.isInteger(envPort) ? envPort : DEFAULT_PORT;
    if (configured !== port) {
      portNote += `; a daemon started from this shell would listen on ${configured === 0 ? 'a new random port' : `port ${configured}`}, and the entry must then change`;
    }
  } else if (Number.isInteger(envPort) && envPort > 0) {
    port = envPort;
    portNote = `port ${port}: EXAI_WS_PORT (no daemon runs now)`;
  } else if (envPort === 0) {
    portNote = `port ${port} is a guess: EXAI_WS_PORT=0 picks a new port at every start, and an HTTP entry needs a fixed one (set EXAI_WS_PORT)`;
  } else {
    portNote = `port ${port}: the default (no daemon runs now; EXAI_WS_PORT changes it)`;
  }
  const url = `http://${urlHost(host)}:${port}/mcp${server === undefined ? '' : `/${encodeURIComponent(server)}`}`;

  if (env.EXAI_WS_TOKEN && env.EXAI_WS_TOKEN.length > 0) {
    return {
      url,
      port,
      portNote,
      token: env.EXAI_WS_TOKEN,
      tokenNote: 'token: EXAI_WS_TOKEN from this shell (the daemon must run with the same)',
    };
  }
  const found = inspectTokenFile(paths.token);
  switch (found.state) {
    case 'ok':
      return { url, port, portNote, token: found.token, tokenNote: `token: ${paths.token}` };
    case 'missing':
      return {
        url,
        port,
        portNote,
        token: null,
        tokenNote: `token: none yet: the daemon creates ${paths.token} when it first starts; start it (exai-ws service install, or exai-ws daemon), then run this again, or replace ${TOKEN_PLACEHOLDER} by the file's content`,
      };
    case 'invalid':
      return {
        url,
        port,
        portNote,
        token: null,
        tokenNote: `token: ${paths.token} holds no usable token (${found.reason}); the daemon replaces it when it starts: restart it, then run this again`,
      };
    case 'unreadable':
      return {
        url,
        port,
        portNote,
        token: null,
        tokenNote: `token: cannot read ${paths.token} (${found.error.code ?? found.error.message})`,
      };
  }
}

/** One part of the output: a line of text, a JSON entry, or a shell command. */
export type Block = { text: string } | { json: JsonObject } | { command: string[] };

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
  const shim = shimServer(env, server);
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

/** Renders blocks: JSON pretty-printed, commands quoted for a POSIX shell, a blank line between. */
export function renderBlocks(blocks: readonly Block[]): string {
  return blocks
    .map((block) => ('json' in block ? JSON.stringify(block.json, null, 2) : 'command' in block ? shellLine(block.command) : block.text))
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
  const notes = [endpoint.portNote, endpoint.tokenNote];
  if (server !== undefined) {
    const missing = serverMissing(env, server);
    if (missing) notes.push(missing);
  }
  // The shim form finds the port and the token itself.
  const shown = client === 'claude-desktop' ? notes.slice(2) : notes;
  stdout.write(renderBlocks(shown.length > 0 ? [...blocks, { text: shown.map((n) => `- ${n}`).join('\n') }] : blocks));
  return ExitCode.OK;
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
