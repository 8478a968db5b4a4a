/**
 * The client side's settings: where a shim or a CLI command finds the home, the daemon's host
 * and port, and the token, each with where it came from. One precedence, for every client-side
 * caller (the daemon reads its own in daemon/files/config.ts):
 *
 *   home   `EXAI_WS_HOME` of the caller's environment, else the platform's state folder.
 *   host   the address card's (when the card counts, below), else `EXAI_WS_HOST` of the
 *          settings file, else {@link DEFAULT_HOST}.
 *   port   the address card's (when it names a port), else `EXAI_WS_PORT` of the settings file
 *          (1-65535), else the port the home's daemon last had (state.json), else the default.
 *   token  `EXAI_WS_TOKEN` of the caller's shell (only for a command the user typed:
 *          `shell: true`), else `EXAI_WS_TOKEN` of the settings file, else the token file.
 *
 * A client's own `EXAI_WS_HOST`, `EXAI_WS_PORT` (and, for a shim, `EXAI_WS_TOKEN`) are never
 * taken: clients launch shims with whatever environment they have, and the user's daemon is the
 * one the user's settings name. The shell's `EXAI_WS_PORT` is reported (`shellPort`) so that a
 * command can say it is not used. Kept free of heavy imports: the shim loads this at start-up.
 */
import { settingsPath } from './config-path.js';
import {
  DEFAULT_HOST,
  defaultPort,
  inspectTokenFile,
  readAddressCard,
  resolveHome,
  type AddressCard,
  type DaemonAddress,
  type HomePaths,
  type TokenFileState,
} from './files.js';
import { readSettings } from './settings.js';
import { readState } from './state.js';

export type HomeSource = 'env' | 'default';
export type HostSource = 'pidfile' | 'settings' | 'default';
/** The address card, the settings file's `EXAI_WS_PORT`, state.json, or the default. */
export type PortSource = DaemonAddress['source'];
/** The shell's `EXAI_WS_TOKEN`, the settings file's, or the token file (which may hold none). */
export type TokenSource = 'shell' | 'settings' | 'file';

export interface ClientSettings {
  paths: HomePaths;
  homeSource: HomeSource;
  /** The settings file read (daemon.env, or what `EXAI_WS_SETTINGS` names). */
  settingsPath: string;
  host: string;
  hostSource: HostSource;
  port: number;
  portSource: PortSource;
  /** The address card the host and port came from, when they did. */
  card: AddressCard | null;
  /** `EXAI_WS_PORT` of the settings file as the daemon takes it (0 included), whether or not it won; undefined when unset or not a port. */
  settingsPort: number | undefined;
  /** `EXAI_WS_PORT` of the caller's environment: never taken, reported for notes. */
  shellPort: number | undefined;
  /** null when the token file holds no usable token (see `tokenFile`). */
  token: string | null;
  tokenSource: TokenSource;
  /** What the token file held, when the token was looked for there. */
  tokenFile: TokenFileState | undefined;
}

export interface ClientSettingsOptions {
  /** A command the user typed in a shell: that shell's `EXAI_WS_TOKEN` wins (a shim never takes it). */
  shell?: boolean;
  /**
   * The address card that counts (default: the home's card as it is on disk). A caller that
   * checked the card's daemon is alive passes the card, or null when it is not.
   */
  card?: AddressCard | null;
}

/** A port value as the daemon takes it (0 included); undefined when unset or not a port. */
export function portValue(text: string | undefined): number | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  const port = Number(text);
  return Number.isInteger(port) && port >= 0 && port <= 65535 ? port : undefined;
}

/** Resolves the home, host, port and token in the order at the top of this file. Never throws. */
export function resolveClientSettings(env: NodeJS.ProcessEnv = process.env, options: ClientSettingsOptions = {}): ClientSettings {
  const paths = resolveHome(env);
  const homeSource: HomeSource = env.EXAI_WS_HOME && env.EXAI_WS_HOME.length > 0 ? 'env' : 'default';
  const settingsFile = settingsPath(env);
  const settings = readSettings(settingsFile).values;
  const settingsPort = portValue(settings.EXAI_WS_PORT);
  const card = options.card === undefined ? readAddressCard(paths.pid) : options.card;
  const address = addressOf(card, settings.EXAI_WS_HOST, settingsPort, paths, env);
  const shellToken = options.shell && env.EXAI_WS_TOKEN ? env.EXAI_WS_TOKEN : undefined;
  const settingsToken = settings.EXAI_WS_TOKEN || undefined;
  const tokenFile = (shellToken ?? settingsToken) === undefined ? inspectTokenFile(paths.token) : undefined;
  return {
    paths,
    homeSource,
    settingsPath: settingsFile,
    ...address,
    settingsPort,
    shellPort: portValue(env.EXAI_WS_PORT),
    token: shellToken ?? settingsToken ?? (tokenFile?.state === 'ok' ? tokenFile.token : null),
    tokenSource: shellToken !== undefined ? 'shell' : settingsToken !== undefined ? 'settings' : 'file',
    tokenFile,
  };
}

/** The host and port: the card's when it names a port, else the settings file's, state.json's, the default. */
function addressOf(
  card: AddressCard | null,
  settingsHost: string | undefined,
  settingsPort: number | undefined,
  paths: HomePaths,
  env: NodeJS.ProcessEnv,
): Pick<ClientSettings, 'host' | 'hostSource' | 'port' | 'portSource' | 'card'> {
  if (card && card.port > 0) return { host: card.host, hostSource: 'pidfile', port: card.port, portSource: 'pidfile', card };
  const host = settingsHost || DEFAULT_HOST;
  const hostSource: HostSource = settingsHost ? 'settings' : 'default';
  if (settingsPort !== undefined && settingsPort > 0) return { host, hostSource, port: settingsPort, portSource: 'settings', card: null };
  const statePort = readState(paths).port;
  if (statePort !== undefined) return { host, hostSource, port: statePort, portSource: 'state', card: null };
  return { host, hostSource, port: defaultPort(env), portSource: 'default', card: null };
}

/**
 * Finds the home's daemon and the token to prove itself with, by {@link resolveClientSettings}:
 * the address card as it is on disk, whether or not its daemon still runs. `shell: true` (a CLI
 * command the user typed) lets `EXAI_WS_TOKEN` of that shell win, as a daemon started by hand
 * from the same shell would use it.
 */
export function discoverDaemon(env: NodeJS.ProcessEnv = process.env, options: { shell?: boolean } = {}): DaemonAddress {
  const { host, port, token, portSource } = resolveClientSettings(env, { shell: options.shell });
  return { host, port, token, source: portSource };
}
