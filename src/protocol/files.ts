/**
 * Where the daemon keeps its state and how a shim finds it (DESIGN.md, "Files and
 * configuration"). Kept free of heavy imports: the shim loads this at start-up.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 8765;

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
  try {
    const card = JSON.parse(text) as Partial<AddressCard>;
    if (typeof card.pid !== 'number' || typeof card.host !== 'string' || typeof card.port !== 'number') return null;
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

/** Reads the token file; null when it does not exist yet. */
export function readTokenFile(tokenPath: string): string | null {
  try {
    const token = readFileSync(tokenPath, 'utf8').trim();
    return token.length > 0 ? token : null;
  } catch {
    return null;
  }
}

/** Where a client should connect, resolved env first, then the address card. */
export interface DaemonAddress {
  host: string;
  port: number;
  token: string | null;
  /** Where the port came from, for error messages. */
  source: 'env' | 'pidfile' | 'default';
}

/**
 * Finds the daemon: `EXAI_WS_PORT` (non-zero) and `EXAI_WS_HOST` first, then the address
 * card, then the defaults. The token is `EXAI_WS_TOKEN`, else the token file.
 */
export function discoverDaemon(env: NodeJS.ProcessEnv = process.env): DaemonAddress {
  const paths = resolveHome(env);
  const token = env.EXAI_WS_TOKEN && env.EXAI_WS_TOKEN.length > 0 ? env.EXAI_WS_TOKEN : readTokenFile(paths.token);
  const envPort = env.EXAI_WS_PORT ? Number(env.EXAI_WS_PORT) : NaN;
  if (Number.isInteger(envPort) && envPort > 0) {
    return { host: env.EXAI_WS_HOST || DEFAULT_HOST, port: envPort, token, source: 'env' };
  }
  const card = readAddressCard(paths.pid);
  if (card && card.port > 0) return { host: card.host, port: card.port, token, source: 'pidfile' };
  return { host: env.EXAI_WS_HOST || DEFAULT_HOST, port: DEFAULT_PORT, token, source: 'default' };
}
