/**
 * What a login keeps of the token endpoint's answers, and how it reads them back: bounded
 * lifetimes (an answer claiming a lifetime of centuries is taken as none), expiry checked
 * against a margin, dates that cannot fail to print, and error texts that carry no secret.
 */
import type { StoredOAuthClientInformation, StoredOAuthTokens } from '@modelcontextprotocol/client';
import type { LoginReport, LoginState } from '../../local/health.js';
import type { KeptTokens } from './vault.js';

/** How long before expiry a token is refreshed (at most; a short-lived token at a tenth of its life). */
export const REFRESH_MARGIN_MS = 60_000;
/** The longest lifetime taken from `expires_in`: a year. A longer (or odd) one is taken as unknown. */
export const MAX_LIFETIME_S = 365 * 24 * 3600;

/** The tokens as kept: the issuer, when they came, from which login and client, and their expiry if sane. */
export function keptOf(
  tokens: StoredOAuthTokens,
  issuer: string | undefined,
  login: string | undefined,
  client: StoredOAuthClientInformation | undefined,
): KeptTokens {
  const now = Date.now();
  const kept: KeptTokens = { ...tokens, issuer: issuer ?? tokens.issuer, obtained_at: now };
  if (login !== undefined) kept.login = login;
  if (client !== undefined) kept.client = clientPart(client);
  const lifetime = tokens.expires_in;
  if (typeof lifetime === 'number' && Number.isFinite(lifetime) && lifetime > 0 && lifetime <= MAX_LIFETIME_S) {
    kept.expires_at = now + lifetime * 1000;
  } else {
    delete kept.expires_in;
  }
  return kept;
}

/** What is kept of a client with its tokens: what a refresh sends. */
function clientPart(client: StoredOAuthClientInformation): NonNullable<KeptTokens['client']> {
  const { client_id, client_secret, token_endpoint_auth_method } = client as StoredOAuthClientInformation & {
    token_endpoint_auth_method?: string;
  };
  return { client_id, ...(client_secret ? { client_secret } : {}), ...(token_endpoint_auth_method ? { token_endpoint_auth_method } : {}) };
}

/** True when the access token expires within the refresh margin (a tenth of its life, at most a minute). */
export function expiring(tokens: KeptTokens, now = Date.now()): boolean {
  if (!saneTime(tokens.expires_at)) return false;
  const life = saneTime(tokens.obtained_at) ? tokens.expires_at - tokens.obtained_at : 0;
  return now >= tokens.expires_at - Math.min(REFRESH_MARGIN_MS, Math.max(0, life / 10));
}

/** True when the access token's expiry has passed. */
export function expired(tokens: KeptTokens, now = Date.now()): boolean {
  return saneTime(tokens.expires_at) && now >= tokens.expires_at;
}

/** A login's report for status: the tokens' issuer, expiry and scope while they are held; never a token, never throws. */
export function loginReport(state: LoginState, tokens: KeptTokens | undefined, error: string | null): LoginReport {
  const held = state === 'logged_in' || state === 'refresh_failing';
  return {
    state,
    issuer: held ? (tokens?.issuer ?? null) : null,
    expires_at: held ? isoOf(tokens?.expires_at) : null,
    scope: held ? (tokens?.scope ?? null) : null,
    error: state === 'logged_in' ? null : error,
  };
}

/** ISO 8601 of a time in milliseconds, or null when it is not one a date can hold (never throws). */
export function isoOf(ms: number | undefined): string | null {
  return saneTime(ms) ? new Date(ms).toISOString() : null;
}

function saneTime(ms: number | undefined): ms is number {
  return typeof ms === 'number' && Number.isFinite(ms) && ms >= 0 && ms <= 8.64e15;
}

export function bearerOf(headers: RequestInit['headers'] | undefined): string | undefined {
  const value = new Headers(headers).get('authorization');
  return value?.toLowerCase().startsWith('bearer ') ? value.slice(7) : undefined;
}

/**
 * An error's words for logs, status and windows: no raw answer body (the SDK appends one to
 * some errors), no JSON parser excerpt (it quotes the text around the mistake, which may be a
 * token), no long quoted string; clipped.
 */
export function errorText(error: unknown): string {
  if (error instanceof SyntaxError) return 'an answer was not valid JSON';
  let text = error instanceof Error ? error.message : String(error);
  const body = text.search(/raw body/i);
  if (body >= 0) text = text.slice(0, body).trim();
  text = text.replace(/(["'`])[^"'`]{24,}\1/g, '$1...$1').replace(/[^\x20-\x7e]/g, '?');
  return text.length > 300 ? `${text.slice(0, 300)}...` : text;
}
