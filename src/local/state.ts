/**
 * What the daemon and the CLI remember for a home between runs, in `$EXAI_WS_HOME/state.json`:
 * the port this home's daemon last bound (so that a daemon that had to take a port of its own
 * keeps it across restarts) and the port `exai-ws config` last printed in a URL entry (so that
 * the daemon can tell when those entries point at a port it no longer holds).
 *
 * Node built-ins only and no stdout: the shim bundles this file. Reading never throws; a file
 * that is not what it should be counts as empty.
 */
import { readFileSync } from 'node:fs';

export interface UserState {
  /** The port this home's daemon last listened on. */
  port?: number;
  /** The port the URL entries printed by `exai-ws config` name. */
  url_port?: number;
}

function isPort(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) > 0 && (value as number) <= 65535;
}

/** The home's remembered state; empty when there is none or it cannot be read. */
export function readState(paths: { state: string }): UserState {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(paths.state, 'utf8'));
  } catch {
    return {};
  }
  if (parsed === null || typeof parsed !== 'object') return {};
  const record = parsed as Record<string, unknown>;
  const state: UserState = {};
  if (isPort(record.port)) state.port = record.port;
  if (isPort(record.url_port)) state.url_port = record.url_port;
  return state;
}
