/**
 * Where the daemon keeps its state (DESIGN.md, "Files and configuration"): the home and its
 * paths, the address card, the token file. How a client picks among them and the user's
 * settings is client-settings.ts. Kept free of heavy imports: the shim loads this at start-up.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 8765;

/**
 * The port a daemon tries when nothing names one: {@link DEFAULT_PORT}, or
 * `EXAI_WS_TEST_DEFAULT_PORT` (tests move the default there, so that none binds 8765).
 */
export function defaultPort(env: NodeJS.ProcessEnv = process.env): number {
  const moved = Number(env.EXAI_WS_TEST_DEFAULT_PORT);
  return Number.isInteger(moved) && moved > 0 && moved <= 65535 ? moved : DEFAULT_PORT;
}

/** A host as it goes in a URL or a `Host` header: an IPv6 literal in brackets. */
export function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** The address card in `logs/ws_daemon.pid`. */
export interface AddressCard {
  pid: number;
  host: string;
  /** 0 while the daemon is still binding. */
  port: number;
  version: string;
  started_at: string;
}

export interface HomePaths {
  home: string;
  token: string;
  logs: string;
  pid: string;
  log: string;
  metrics: string;
  /** Tools of hosted servers learned to ask the client back (sampling, elicitation, roots). */
  asksClient: string;
  /** Hosted servers' lists remembered once seen, a file per server instance (daemon/files/remembered-lists.ts). */
  lists: string;
  /** What is remembered between runs (local/state.ts): the daemon's own port. */
  state: string;
  /** OAuth logins to `url` servers: registrations and tokens, the user's alone (daemon/files/oauth-vault.ts). */
  oauth: string;
}

/** The per-user state directory used when `EXAI_WS_HOME` is not set. */
export function defaultHome(env: NodeJS.ProcessEnv = process.env): string {
  if (process.platform === 'win32') return join(env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local'), 'exai-ws');
  if (process.platform === 'darwin') return join(homedir(), 'Library', 'Application Support', 'exai-ws');
  const state = env.XDG_STATE_HOME && env.XDG_STATE_HOME.length > 0 ? env.XDG_STATE_HOME : join(homedir(), '.local', 'state');
  return join(state, 'exai-ws');
}

export function homePaths(home: string): HomePaths {
  const logs = join(home, 'logs');
  return Object.freeze({
    home,
    token: join(home, 'token'),
    logs,
    pid: join(logs, 'ws_daemon.pid'),
    log: join(logs, 'ws_daemon.log'),
    metrics: join(logs, 'metrics.jsonl'),
    asksClient: join(home, 'asks-client.json'),
    lists: join(home, 'lists'),
    state: join(home, 'state.json'),
    oauth: join(home, 'oauth'),
  });
}

export function resolveHome(env: NodeJS.ProcessEnv = process.env): HomePaths {
  const home = env.EXAI_WS_HOME && env.EXAI_WS_HOME.length > 0 ? env.EXAI_WS_HOME : defaultHome(env);
  return homePaths(home);
}

/** Reads the address card, or returns null when there is none or it is unreadable. */
export function readAddressCard(pidPath: string): AddressCard | null {
  let text: string;
  try {
    text = readFileSync(pidPath, 'utf8');
  } catch {
    return null;
  }
  return parseAddressCard(text);
}

/** Parses an address card's text; null when it is not one. */
export function parseAddressCard(text: string): AddressCard | null {
  try {
    const card = JSON.parse(text) as Partial<AddressCard> | null;
    if (typeof card?.pid !== 'number' || typeof card.host !== 'string' || typeof card.port !== 'number') return null;
    return {
      pid: card.pid,
      host: card.host,
      port: card.port,
      version: String(card.version ?? ''),
      started_at: String(card.started_at ?? ''),
    };
  } catch {
    return null;
  }
}

/** Shortest token accepted from the token file (the same floor as `EXAI_WS_TOKEN`). */
export const MIN_TOKEN_CHARS = 16;
/** Longest token accepted from the token file (it travels in an HTTP header). */
export const MAX_TOKEN_CHARS = 1024;

/**
 * True for a usable token: {@link MIN_TOKEN_CHARS} to {@link MAX_TOKEN_CHARS} visible ASCII
 * characters (no spaces or control characters), so it can be sent as
 * `Authorization: Bearer <token>` unchanged.
 */
export function isValidToken(token: string): boolean {
  return token.length >= MIN_TOKEN_CHARS && token.length <= MAX_TOKEN_CHARS && /^[\x21-\x7e]+$/.test(token);
}

/** What the token file holds: a usable token, nothing, something else, or an error reading it. */
export type TokenFileState =
  | { state: 'ok'; token: string }
  | { state: 'missing' }
  | { state: 'invalid'; reason: 'empty' | 'malformed' }
  | { state: 'unreadable'; error: NodeJS.ErrnoException };

/** Reads and classifies the token file; never throws. Surrounding whitespace is ignored. */
export function inspectTokenFile(tokenPath: string): TokenFileState {
  let text: string;
  try {
    text = readFileSync(tokenPath, 'utf8');
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    return e.code === 'ENOENT' ? { state: 'missing' } : { state: 'unreadable', error: e };
  }
  const token = text.trim();
  if (token.length === 0) return { state: 'invalid', reason: 'empty' };
  return isValidToken(token) ? { state: 'ok', token } : { state: 'invalid', reason: 'malformed' };
}

/**
 * Reads the token file; null when it does not exist yet, cannot be read, or does not hold a
 * valid token (empty, binary, several words): a client that sent such a "token" would only be
 * refused with 401, and the daemon replaces such a file with a new token when it starts.
 */
export function readTokenFile(tokenPath: string): string | null {
  const found = inspectTokenFile(tokenPath);
  return found.state === 'ok' ? found.token : null;
}

/** Where a client should connect, and the token to prove itself with (client-settings.ts `discoverDaemon`). */
export interface DaemonAddress {
  host: string;
  port: number;
  token: string | null;
  /**
   * Where the port came from, for error messages: the address card, the settings file's
   * `EXAI_WS_PORT`, the port the home's daemon last had (state.json), or the default.
   */
  source: 'pidfile' | 'settings' | 'state' | 'default';
}
