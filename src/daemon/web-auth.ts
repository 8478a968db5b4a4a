/**
 * Who may read the daemon's pages: a request with the token as `Authorization: Bearer`, or a
 * browser holding a session cookie. Browsers cannot send the bearer header, so `exai-ws open`
 * (which can read the token) asks for a one-time code, and the browser trades the code for an
 * HttpOnly, SameSite=Strict cookie on its first visit (`GET /?code=...`).
 *
 * Codes and cookies are random 32-byte values kept only as SHA-256 hashes (a lookup by hash
 * leaks nothing useful through timing), live in this process only (a restarted daemon forgets
 * them) and are bounded in number: a flood of `POST /auth/code` evicts the oldest codes, never
 * grows memory.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { tokensEqual } from './token.js';

export const COOKIE_NAME = 'exai_ws_session';
/** How long a one-time code can be redeemed. */
export const CODE_TTL_MS = 60_000;
/** How long a browser session lasts (its cookie's Max-Age). */
export const COOKIE_TTL_MS = 12 * 60 * 60 * 1000;
const MAX_CODES = 16;
const MAX_COOKIES = 64;

export type Credential = 'bearer' | 'cookie';

export interface WebAuthOptions {
  /** The clock, in ms (tests pass their own). */
  now?: () => number;
}

export class WebAuth {
  private readonly token: string;
  private readonly now: () => number;
  /** Hash -> expiry (ms). Insertion order is age order: the first entry is evicted first. */
  private readonly codes = new Map<string, number>();
  private readonly cookies = new Map<string, number>();

  constructor(token: string, options: WebAuthOptions = {}) {
    this.token = token;
    this.now = options.now ?? Date.now;
  }

  /** `Authorization: Bearer <token>` naming this daemon's token (compared in constant time). */
  bearerValid(authorization: string | undefined): boolean {
    const match = authorization === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    return match?.[1] !== undefined && tokensEqual(match[1], this.token);
  }

  /** How the request proves it may read the daemon's state; null when it does not. */
  credential(req: IncomingMessage): Credential | null {
    if (this.bearerValid(req.headers.authorization)) return 'bearer';
    const cookie = cookieValue(req.headers.cookie, COOKIE_NAME);
    if (cookie !== undefined && this.valid(this.cookies, cookie)) return 'cookie';
    return null;
  }

  /** A new one-time code, good for {@link CODE_TTL_MS}. */
  issueCode(): { code: string; expiresInS: number } {
    const code = randomBytes(32).toString('base64url');
    remember(this.codes, hash(code), this.now() + CODE_TTL_MS, MAX_CODES);
    return { code, expiresInS: CODE_TTL_MS / 1000 };
  }

  /**
   * Trades a code for a new session cookie's value; null when the code is unknown, used or
   * expired. A code is gone after its first try either way.
   */
  redeem(code: string): string | null {
    const key = hash(code);
    const expiresAtMs = this.codes.get(key);
    this.codes.delete(key);
    if (expiresAtMs === undefined || expiresAtMs <= this.now()) return null;
    const value = randomBytes(32).toString('base64url');
    remember(this.cookies, hash(value), this.now() + COOKIE_TTL_MS, MAX_COOKIES);
    return value;
  }

  /** The `Set-Cookie` header for a session: script cannot read it, other sites cannot send it. */
  setCookieHeader(value: string): string {
    return `${COOKIE_NAME}=${value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${COOKIE_TTL_MS / 1000}`;
  }

  private valid(store: Map<string, number>, value: string): boolean {
    const key = hash(value);
    const expiresAtMs = store.get(key);
    if (expiresAtMs === undefined) return false;
    if (expiresAtMs > this.now()) return true;
    store.delete(key);
    return false;
  }
}

function hash(value: string): string {
  return createHash('sha256').update(value).digest('base64url');
}

function remember(store: Map<string, number>, key: string, expiresAtMs: number, max: number): void {
  store.set(key, expiresAtMs);
  while (store.size > max) {
    const oldest = store.keys().next().value;
    if (oldest === undefined) break;
    store.delete(oldest);
  }
}

/** One cookie's value from a `Cookie` header; undefined when absent. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const at = part.indexOf('=');
    if (at < 0) continue;
    if (part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return undefined;
}
