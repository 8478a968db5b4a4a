/**
 * Who may use the daemon over HTTP: a request with the token as `Authorization: Bearer` (HTTP
 * MCP clients, older CLIs), with a proof as `Authorization: Exai-Proof <sn>.<cp>` (the CLI:
 * it first asked `POST /auth/challenge` and checked the daemon's proof, see proof.ts), or a
 * browser holding a session cookie. Browsers cannot send the header, so `exai-ws open` asks
 * for a one-time code, and the browser trades the code for an HttpOnly, SameSite=Strict cookie
 * on its first visit (`GET /?code=...`).
 *
 * Outstanding challenges are bounded in number and age ({@link MAX_CHALLENGES},
 * {@link CHALLENGE_TTL_MS}) and good once: a flood of challenges evicts the oldest, never grows
 * memory. A new token ({@link WebAuth.setToken}) forgets every code, cookie and challenge.
 *
 * Codes and cookies are random 32-byte values kept only as SHA-256 hashes (a lookup by hash
 * leaks nothing useful through timing), live in this process only (a restarted daemon forgets
 * them) and are bounded in number: a flood of `POST /auth/code` evicts the oldest codes, never
 * grows memory.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { computeProof, newNonce, parseProofAuthorization, proofValid } from '../../local/proof.js';
import { tokensEqual } from '../../local/token.js';

export const COOKIE_NAME = 'exai_ws_session';
/**
 * Where a browser keeps its consent key (localStorage of the daemon's own origin): the one
 * credential the consent page's Allow needs besides the cookie. Browsers send a cookie of
 * 127.0.0.1 to every port of it, so a program serving another port the browser visits gets the
 * cookie; storage is the origin's alone (scheme, host and port). The key reaches the page in the
 * fragment of the redirect that follows a redeemed code (`/#consent=KEY`), which no server sees.
 */
export const CONSENT_KEY_STORAGE = 'exai_ws_consent';
export const CONSENT_KEY_FRAGMENT = '#consent=';
/** Consent keys a browser keeps at most (space-separated, newest first); an Allow sends them all. */
export const KEPT_KEYS = 4;
/** How long a one-time code can be redeemed. */
export const CODE_TTL_MS = 60_000;
/** How long a browser session lasts (its cookie's Max-Age). */
export const COOKIE_TTL_MS = 12 * 60 * 60 * 1000;
const MAX_CODES = 16;
const MAX_COOKIES = 64;
/** How long an answered challenge's proof may be used. */
export const CHALLENGE_TTL_MS = 30_000;
/** Challenges answered and not yet used: past this the oldest is forgotten. */
export const MAX_CHALLENGES = 256;

/** How a request showed it holds the token: the token itself, a proof, or the browser's cookie. */
export type Credential = 'bearer' | 'proof' | 'cookie';

/** What the daemon answers to `POST /auth/challenge`. */
export interface ChallengeAnswer {
  nonce: string;
  proof: string;
  expires_in_s: number;
}

interface Challenge {
  clientNonce: string;
  /** The `Host` the challenge came to: the proof is good there only. */
  address: string;
  expiresAtMs: number;
}

export interface WebAuthOptions {
  /** The clock, in ms (tests pass their own). */
  now?: () => number;
}

export class WebAuth {
  private tokenValue: string;
  private readonly now: () => number;
  /** Hash -> expiry (ms). Insertion order is age order: the first entry is evicted first. */
  private readonly codes = new Map<string, number>();
  private readonly cookies = new Map<string, number>();
  /** Consent keys (hash -> expiry), given with each redeemed code. */
  private readonly consentKeys = new Map<string, number>();
  /** Daemon nonce -> the challenge it answered. Insertion order is age order. */
  private readonly challenges = new Map<string, Challenge>();

  constructor(token: string, options: WebAuthOptions = {}) {
    this.tokenValue = token;
    this.now = options.now ?? Date.now;
  }

  /** The token requests are checked against now. */
  get token(): string {
    return this.tokenValue;
  }

  /**
   * Takes a new token (`exai-ws token rotate`): from now on only it is accepted; one-time
   * codes, browser sessions and outstanding challenges, all granted under the old one, are
   * forgotten.
   */
  setToken(token: string): void {
    this.tokenValue = token;
    this.codes.clear();
    this.cookies.clear();
    this.consentKeys.clear();
    this.challenges.clear();
  }

  /** `Authorization: Bearer <token>` naming this daemon's token (compared in constant time). */
  bearerValid(authorization: string | undefined): boolean {
    const bearer = bearerOf(authorization);
    return bearer !== undefined && tokensEqual(bearer, this.tokenValue);
  }

  /**
   * Answers a challenge that came to `address` (the request's `Host`, checked by the caller):
   * a new daemon nonce and this daemon's proof, remembered so that one request may then carry
   * the client's proof. `clientNonce` must be a well-formed nonce (proof.ts `isNonce`).
   */
  answerChallenge(clientNonce: string, address: string): ChallengeAnswer {
    const nonce = newNonce();
    const now = this.now();
    // Expired challenges go first; then the oldest, past the bound.
    for (const [key, entry] of this.challenges) {
      if (entry.expiresAtMs > now) break;
      this.challenges.delete(key);
    }
    remember(this.challenges, nonce, { clientNonce, address: address.toLowerCase(), expiresAtMs: now + CHALLENGE_TTL_MS }, MAX_CHALLENGES);
    return { nonce, proof: computeProof('daemon', this.tokenValue, address, clientNonce, nonce), expires_in_s: CHALLENGE_TTL_MS / 1000 };
  }

  /**
   * `Authorization: Exai-Proof <sn>.<cp>` with the client's proof for a challenge this daemon
   * answered, at the same address, not expired. The challenge is used up by the first try,
   * right or wrong.
   */
  proofValid(authorization: string | undefined, address: string | undefined): boolean {
    const parsed = parseProofAuthorization(authorization);
    if (parsed === null || address === undefined) return false;
    const challenge = this.challenges.get(parsed.daemonNonce);
    if (challenge === undefined) return false;
    this.challenges.delete(parsed.daemonNonce);
    if (challenge.expiresAtMs <= this.now() || challenge.address !== address.toLowerCase()) return false;
    return proofValid(parsed.clientProof, 'client', this.tokenValue, challenge.address, challenge.clientNonce, parsed.daemonNonce);
  }

  /** The token or a proof of it in `Authorization` (not the cookie: for `/mcp`, codes and the upgrade). */
  tokenCredential(req: IncomingMessage): Extract<Credential, 'bearer' | 'proof'> | null {
    const authorization = req.headers.authorization;
    if (this.bearerValid(authorization)) return 'bearer';
    if (this.proofValid(authorization, req.headers.host)) return 'proof';
    return null;
  }

  /** How the request proves it may read the daemon's state; null when it does not. */
  credential(req: IncomingMessage): Credential | null {
    const byToken = this.tokenCredential(req);
    if (byToken !== null) return byToken;
    return this.cookieValid(req) ? 'cookie' : null;
  }

  /** The request carries a browser session's cookie (the consent page asks for nothing else). */
  cookieValid(req: IncomingMessage): boolean {
    const cookie = cookieValue(req.headers.cookie, COOKIE_NAME);
    return cookie !== undefined && this.valid(this.cookies, cookie);
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

  /**
   * A new consent key, for the browser that just redeemed a code (see {@link CONSENT_KEY_STORAGE}):
   * good as long as a session cookie, bounded in number like them.
   */
  issueConsentKey(): string {
    const key = randomBytes(32).toString('base64url');
    remember(this.consentKeys, hash(key), this.now() + COOKIE_TTL_MS, MAX_COOKIES);
    return key;
  }

  /** Whether one of `keys` (the browser's kept keys, space-separated) is a good consent key. */
  consentKeyValid(keys: string): boolean {
    return keys
      .split(' ')
      .slice(0, KEPT_KEYS)
      .some((key) => key.length > 0 && key.length <= 64 && this.valid(this.consentKeys, key));
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

function remember<T>(store: Map<string, T>, key: string, value: T, max: number): void {
  store.set(key, value);
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

/** The token of `Authorization: Bearer <token>`; undefined for any other header, or none. */
export function bearerOf(authorization: string | undefined): string | undefined {
  return authorization === undefined ? undefined : /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1];
}
