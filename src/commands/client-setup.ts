/**
 * `exai-ws config vscode|cursor|claude-code|gemini|codex|claude-desktop [--server NAME]`: prints
 * the entry a client needs, ready to paste, with absolute paths. Clients that connect by URL get
 * the Streamable HTTP form (`http://127.0.0.1:PORT/mcp`, no shim process): first the URL alone
 * for those that speak MCP authorization (they log in through the daemon's consent page), then
 * the URL with the token for those that do not; every client also gets the shim form (stdio),
 * the only one Claude Desktop's file takes (client-setup-blocks.ts). `--server
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
import { loadUpstreamConfig } from '../hosting/upstream-config.js';
import { cardIsLive } from '../local/pidfile.js';
import { updateState } from '../local/user-state.js';
import { configPath } from '../local/config-path.js';
import { readAddressCard, resolveHome, urlHost } from '../local/files.js';
import { resolveClientSettings, type ClientSettings } from '../local/client-settings.js';
import { readState } from '../local/state.js';
import { parseCommand } from '../local/args.js';
import { ExitCode } from './exit-codes.js';
import { CONFIG_SPEC } from '../local/specs.js';
import { SETUP_CLIENTS, TOKEN_PLACEHOLDER, renderBlocks, setupBlocks, type Endpoint, type SetupClient } from './client-setup-blocks.js';
import type { Selection } from '../protocol/hello.js';

export {
  CODEX_TOKEN_VAR,
  SETUP_CLIENTS,
  TOKEN_PLACEHOLDER,
  renderBlocks,
  setupBlocks,
  tomlTable,
  type Block,
  type Endpoint,
  type SetupClient,
} from './client-setup-blocks.js';

const USAGE = CONFIG_SPEC.usage;
/** The names `--server` accepts: the daemon's server names (upstream-config.ts). */
const SERVER_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Finds the port and the token by the client side's one precedence (client-settings.ts), with
 * the address card only when its daemon is alive, and the shell's `EXAI_WS_TOKEN` first (a
 * command the user typed). Never throws: a missing token is reported in `tokenNote` and left null.
 */
export async function resolveEndpoint(env: NodeJS.ProcessEnv, selection: Selection = {}): Promise<Endpoint> {
  const onDisk = readAddressCard(resolveHome(env).pid);
  const live = onDisk && onDisk.port > 0 && (await cardIsLive(onDisk)) ? onDisk : null;
  const settings = resolveClientSettings(env, { shell: true, card: live });
  const { host, port, shellPort, settingsPath: settingsFile } = settings;
  const notes: string[] = [];
  if (shellPort !== undefined && shellPort !== port) {
    notes.push(
      `EXAI_WS_PORT=${shellPort} of this shell is not where a shim or exai-ws restart starts the daemon: that reads its settings from ${settingsFile} (exai-ws settings set EXAI_WS_PORT=${shellPort}); only a daemon started by hand from this shell (exai-ws daemon) takes it`,
    );
  }
  const { server, profile } = selection;
  const path = server === undefined ? '' : `/${encodeURIComponent(server)}`;
  const query = profile === undefined ? '' : `?profile=${encodeURIComponent(profile)}`;
  const url = `http://${urlHost(host)}:${port}/mcp${path}${query}`;
  return { url, port, portNote: portNote(settings), notes, ...tokenOf(settings) };
}

/** Why this port: the running daemon's, the settings file's, state.json's, or the default. */
function portNote({ port, portSource, card, settingsPort, settingsPath: settingsFile, paths }: ClientSettings): string {
  if (portSource === 'pidfile') {
    let note = `port ${port}: the running daemon's (pid ${card?.pid}, ${paths.pid})`;
    if (settingsPort !== undefined && settingsPort > 0 && settingsPort !== port) {
      note += `; ${settingsFile} names port ${settingsPort}, where the daemon listens after a restart (unless another program holds it): this entry must then change`;
    }
    return note;
  }
  if (portSource === 'settings') return `port ${port}: EXAI_WS_PORT in ${settingsFile} (no daemon runs now)`;
  const why =
    portSource === 'default'
      ? `the default (no daemon runs now; when another program holds it, the daemon takes a port of its own at its start: run this again then)`
      : `the port this home's daemon last listened on (${paths.state}; no daemon runs now)`;
  return settingsPort === 0
    ? `port ${port} is a guess: EXAI_WS_PORT=0 in ${settingsFile} picks a new port at every start, and an HTTP entry needs a fixed one (exai-ws settings unset EXAI_WS_PORT: the daemon then keeps one)`
    : `port ${port}: ${why}`;
}

/** The token and where it came from; null, with what to do, while the token file holds none. */
function tokenOf({
  token,
  tokenSource,
  tokenFile,
  settingsPath: settingsFile,
  paths,
}: ClientSettings): Pick<Endpoint, 'token' | 'tokenNote'> {
  if (tokenSource === 'shell') return { token, tokenNote: 'token: EXAI_WS_TOKEN from this shell (the daemon must run with the same)' };
  if (tokenSource === 'settings') return { token, tokenNote: `token: EXAI_WS_TOKEN in ${settingsFile}` };
  switch (tokenFile?.state) {
    case 'ok':
    case undefined:
      return { token, tokenNote: `token: ${paths.token}` };
    case 'missing':
      return {
        token: null,
        tokenNote: `token: none yet: the daemon creates ${paths.token} when it first starts; start it (exai-ws service install, or exai-ws daemon), then run this again, or replace ${TOKEN_PLACEHOLDER} by the file's content`,
      };
    case 'invalid':
      return {
        token: null,
        tokenNote: `token: ${paths.token} holds no usable token (${tokenFile.reason}); the daemon replaces it when it starts: restart it, then run this again`,
      };
    case 'unreadable':
      return { token: null, tokenNote: `token: cannot read ${paths.token} (${tokenFile.error.code ?? tokenFile.error.message})` };
  }
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
  const profile = parsed.values.profile as string | undefined;
  if (server !== undefined && (!SERVER_NAME.test(server) || server.includes('__'))) {
    stderr.write(
      `exai-ws config: --server ${JSON.stringify(server)} is not a server name (1-64 characters of [A-Za-z0-9_.-] without "__")\n`,
    );
    return ExitCode.USAGE;
  }
  if (profile !== undefined && (!SERVER_NAME.test(profile) || server !== undefined)) {
    stderr.write(
      `exai-ws config: ${server === undefined ? `--profile ${JSON.stringify(profile)} is not a profile name (1-64 characters of [A-Za-z0-9_.-])` : 'give --server or --profile, not both'}\n`,
    );
    return ExitCode.USAGE;
  }
  const endpoint = await resolveEndpoint(env, { server, profile });
  const blocks = setupBlocks(client as SetupClient, endpoint, env, platform, { server, profile });
  // The shim form finds the port and the token itself.
  const withUrl = client !== 'claude-desktop';
  const notes = withUrl ? [endpoint.portNote, endpoint.tokenNote, ...endpoint.notes] : [];
  const missing = server === undefined && profile === undefined ? null : notInConfig(env, { server, profile });
  if (missing) notes.push(missing);
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

/** A note when the server or profile is not in the daemon's config file, where a typo would give 404 later. */
function notInConfig(env: NodeJS.ProcessEnv, { server, profile }: Selection): string | null {
  const path = configPath(env);
  const what = server === undefined ? `the profile "${profile}"` : `the hosted server "${server}"`;
  try {
    const config = loadUpstreamConfig(path);
    if (server !== undefined ? config.servers.some((s) => s.name === server) : config.profiles.some((p) => p.name === profile)) return null;
    return `${what} is not in ${path}: the entry fails (404 over HTTP, an error to initialize through the shim) until it is added`;
  } catch (error) {
    return `cannot check ${what}: ${(error as Error).message}`;
  }
}
