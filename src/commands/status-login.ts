/**
 * What `exai-ws status` says of each remote (`url`) server's OAuth login (issue 26), in a
 * section of its own under the servers: logged in (by which issuer, until when), needs a login
 * (and the command that gives it), refreshing failing, or refused. The report never holds a
 * token (`LoginReport` in local/health.ts); what it holds that other programs chose (the
 * issuer, the error) is printed through `printable`. A daemon that reports no logins (an older
 * one, or no `url` server) gets no section.
 */
import type { LoginState } from '../local/health.js';
import { printable, truncate, wrap, type Style } from './terminal.js';
import { INDENT, formatDuration, type Paint } from './status-layout.js';

/** A server's login in `status --json` (`servers[].login`); null for a server that is not a `url` one. */
export interface StatusLogin {
  state: LoginState;
  issuer: string | null;
  /** When the access token expires (ISO 8601); null when the server did not say. */
  expires_at: string | null;
  /** The scopes granted, space-separated. */
  scope: string | null;
  /** Why the last login, refresh or call failed, in words. */
  error: string | null;
}

const STATES: ReadonlySet<string> = new Set<LoginState>(['none', 'logged_in', 'needs_login', 'refresh_failing', 'refused']);

const STYLE: Record<LoginState, Style> = {
  none: 'dim',
  logged_in: 'green',
  needs_login: 'yellow',
  refresh_failing: 'red',
  refused: 'red',
};

/** A server report's `login`, read defensively; null when absent or not a login report. */
export function loginOf(value: unknown): StatusLogin | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  const r = value as Record<string, unknown>;
  if (typeof r.state !== 'string' || !STATES.has(r.state)) return null;
  const str = (v: unknown) => (typeof v === 'string' ? v : null);
  return { state: r.state as LoginState, issuer: str(r.issuer), expires_at: str(r.expires_at), scope: str(r.scope), error: str(r.error) };
}

/**
 * One server's login in words, as status and the page say it: `logged in (issuer X, expires in
 * 52m 0s)`, `needs login: run \`exai-ws login NAME\``, `refresh failing: ERROR; ...`, `refused:
 * ERROR`, `no login asked for`. `nowMs` is "now" for the expiry.
 */
export function loginText(server: string, login: StatusLogin, nowMs: number): string {
  const run = `run \`exai-ws login ${server}\``;
  const error = login.error !== null ? printable(login.error) : null;
  switch (login.state) {
    case 'logged_in': {
      const details = [login.issuer !== null ? `issuer ${printable(login.issuer)}` : null, expiryText(login.expires_at, nowMs)];
      const shown = details.filter((d) => d !== null);
      return `logged in${shown.length > 0 ? ` (${shown.join(', ')})` : ''}`;
    }
    case 'needs_login':
      return `needs login: ${run}${error !== null ? ` (${error})` : ''}`;
    case 'refresh_failing':
      return `refresh failing: ${error ?? 'the token could not be refreshed'}; ${run} if it goes on`;
    case 'refused':
      return `refused: ${error ?? 'the server kept refusing the scopes granted'}`;
    case 'none':
      return 'no login asked for';
  }
}

/** `expires in 52m 0s`, `expired 3m 0s ago`; null when unknown. */
function expiryText(expiresAt: string | null, nowMs: number): string | null {
  const at = expiresAt === null ? Number.NaN : Date.parse(expiresAt);
  if (!Number.isFinite(at)) return null;
  const seconds = Math.round((at - nowMs) / 1000);
  return seconds >= 0 ? `expires in ${formatDuration(seconds)}` : `expired ${formatDuration(-seconds)} ago`;
}

/**
 * The `logins` section: one line per `url` server (by name: a workspace server's instances
 * share its login), its text wrapped, never cut (an error is what the user acts on). Nothing
 * when no server reports a login.
 */
export function loginsSection(
  servers: readonly { name: string; login: StatusLogin | null }[],
  paint: Paint,
  width: number,
  nowMs: number,
): string[] {
  const byName = new Map<string, StatusLogin>();
  for (const server of servers) if (server.login !== null && !byName.has(server.name)) byName.set(server.name, server.login);
  if (byName.size === 0) return [];
  const names = [...byName.keys()].map(printable);
  const nameWidth = Math.min(Math.max(...names.map((n) => n.length)), Math.max(8, Math.floor(width / 3)));
  const hang = ' '.repeat(INDENT.length + nameWidth + 2);
  const lines = [paint('logins', 'bold')];
  [...byName].forEach(([name, login], i) => {
    const label = truncate(names[i] ?? name, nameWidth).padEnd(nameWidth);
    const text = wrap(loginText(printable(name), login, nowMs), Math.max(20, width - hang.length));
    text.forEach((part, j) => lines.push(`${j === 0 ? `${INDENT}${label}  ` : hang}${paint(part, STYLE[login.state])}`));
  });
  return lines;
}
