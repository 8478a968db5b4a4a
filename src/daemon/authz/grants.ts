/**
 * What the user approved, and the credentials that came of it: authorization codes (in memory,
 * good once, for {@link CODE_TTL_MS}), access tokens ({@link ACCESS_TOKEN_TTL_MS}) and refresh
 * tokens (rotated at each use, {@link REFRESH_TOKEN_TTL_MS}). One approval is one grant; its
 * tokens are kept only as SHA-256 hashes, so the file they are written to (grant-store) holds
 * nothing a reader could send, and a lookup by hash leaks nothing through timing.
 *
 * A code tried twice revokes what it gave (RFC 6749 4.1.2: the first use may have been a thief's).
 * Grants are bounded ({@link MAX_GRANTS}): past it the one used longest ago gives way.
 */
import { createHash, randomBytes } from 'node:crypto';
import { refusal, type OAuthRefusal } from './clients.js';

export const CODE_TTL_MS = 5 * 60 * 1000;
export const ACCESS_TOKEN_TTL_MS = 60 * 60 * 1000;
export const REFRESH_TOKEN_TTL_MS = 30 * 24 * 60 * 60 * 1000;
export const MAX_GRANTS = 256;
/** Codes outstanding at most (each lives minutes): past this the oldest is forgotten. */
export const MAX_CODES = 64;
/** Replaced refresh tokens remembered per grant, to tell a loose copy from an unknown token. */
export const MAX_RETIRED = 8;
/** How long a rotated refresh token is still honoured (see {@link Grant.previous}). */
export const REFRESH_GRACE_MS = 60_000;
/** The one scope there is: all of the daemon's `/mcp`. */
export const MCP_SCOPE = 'mcp';

interface Kept {
  hash: string;
  expires_at_ms: number;
}

/** One approval of one client, as kept on disk (hashes only). */
export interface Grant {
  id: string;
  client_id: string;
  client_name: string;
  scope: string;
  resource: string;
  created_at_ms: number;
  used_at_ms: number;
  /** Access tokens still good: the newest last; the one before stays good while a refresh is answered. */
  access: Kept[];
  refresh: Kept | null;
  /**
   * The refresh token the current one replaced: good for {@link REFRESH_GRACE_MS} after the
   * rotation (two processes of one client refreshing at once both get tokens); used later, it
   * means a copy is loose, and the grant is revoked (OAuth 2.1 4.3.1).
   */
  previous?: Kept;
  /** Hashes of refresh tokens replaced before `previous` (the last {@link MAX_RETIRED}): any use revokes the grant. */
  retired?: string[];
}

/** What the user approved, waiting for the client to trade its code. */
export interface Approval {
  client_id: string;
  client_name: string;
  redirect_uri: string;
  code_challenge: string;
  scope: string;
  resource: string;
}

interface Code extends Approval {
  expires_at_ms: number;
  /** The grant the code was traded for: a second try revokes it. */
  traded?: string;
}

/** A token endpoint's success (RFC 6749 5.1). */
export interface TokenAnswer {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  refresh_token: string;
  scope: string;
}

export interface GrantsOptions {
  now?: () => number;
  restored?: Grant[];
  changed?: () => void;
}

export const hashOf = (secret: string) => createHash('sha256').update(secret).digest('base64url');
const secret = (prefix: string) => `${prefix}${randomBytes(32).toString('base64url')}`;

export class Grants {
  private readonly now: () => number;
  private readonly changed: () => void;
  private readonly codes = new Map<string, Code>();
  /** id -> grant; insertion order is age order. */
  private readonly grants = new Map<string, Grant>();
  /** Token hash -> grant id. */
  private readonly byAccess = new Map<string, string>();
  private readonly byRefresh = new Map<string, string>();
  /** Grant id -> its current refresh token, in memory for {@link REFRESH_GRACE_MS} after it was issued. */
  private readonly fresh = new Map<string, string>();

  constructor(options: GrantsOptions = {}) {
    this.now = options.now ?? Date.now;
    this.changed = options.changed ?? (() => undefined);
    for (const grant of options.restored ?? []) this.index(grant);
  }

  /** Every grant, for writing them and for `exai-ws clients`. */
  get all(): Grant[] {
    return [...this.grants.values()];
  }

  /** A new code for what the user approved. */
  issueCode(approval: Approval): string {
    const code = secret('exai_ac_');
    const now = this.now();
    for (const [key, kept] of this.codes) if (kept.expires_at_ms <= now) this.codes.delete(key);
    this.codes.set(hashOf(code), { ...approval, expires_at_ms: now + CODE_TTL_MS });
    while (this.codes.size > MAX_CODES) this.codes.delete(this.codes.keys().next().value as string);
    return code;
  }

  /**
   * `grant_type=authorization_code`: the code's tokens, when the client, the redirect URI (if
   * sent), the PKCE verifier and the resource (if sent) match what was approved.
   */
  trade(params: {
    code: string;
    client_id: string;
    code_verifier: string;
    redirect_uri?: string;
    resource?: string;
  }): TokenAnswer | OAuthRefusal {
    const key = hashOf(params.code);
    const code = this.codes.get(key);
    const invalid = (why: string) => refusal('invalid_grant', why);
    if (code === undefined || code.expires_at_ms <= this.now()) {
      this.codes.delete(key);
      return invalid('the authorization code is unknown or expired');
    }
    if (code.traded !== undefined) {
      // Used before: whoever used it first may not be the client; what it got is revoked.
      this.revokeGrant(code.traded);
      this.codes.delete(key);
      return invalid('the authorization code was used already; the tokens it gave are revoked');
    }
    if (code.client_id !== params.client_id) return invalid('the authorization code was issued to another client');
    if (params.redirect_uri !== undefined && params.redirect_uri !== code.redirect_uri)
      return invalid('redirect_uri differs from the authorization request');
    if (!verifierMatches(params.code_verifier, code.code_challenge))
      return invalid('code_verifier does not match the code_challenge (PKCE S256)');
    if (params.resource !== undefined && params.resource !== code.resource)
      return refusal('invalid_target', 'resource differs from the authorization request');
    const now = this.now();
    const grant: Grant = {
      id: randomBytes(12).toString('base64url'),
      client_id: code.client_id,
      client_name: code.client_name,
      scope: code.scope,
      resource: code.resource,
      created_at_ms: now,
      used_at_ms: now,
      access: [],
      refresh: null,
    };
    code.traded = grant.id;
    this.grants.set(grant.id, grant);
    while (this.grants.size > MAX_GRANTS) this.evictLeastUsed();
    return this.mint(grant);
  }

  /** `grant_type=refresh_token`: new tokens (the refresh token is rotated), for the same client. */
  refresh(params: { refresh_token: string; client_id?: string; scope?: string }): TokenAnswer | OAuthRefusal {
    const hash = hashOf(params.refresh_token);
    const id = this.byRefresh.get(hash);
    const grant = id === undefined ? undefined : this.grants.get(id);
    const gone = refusal('invalid_grant', 'the refresh token is unknown, revoked or expired: log in again');
    if (grant === undefined || grant.refresh === null) return gone;
    if (grant.retired?.includes(hash)) {
      this.revokeGrant(grant.id);
      return refusal('invalid_grant', 'the refresh token was used already: the login is revoked, log in again');
    }
    let again: string | undefined;
    if (grant.previous?.hash === hash) {
      if (grant.previous.expires_at_ms <= this.now()) {
        this.revokeGrant(grant.id);
        return refusal('invalid_grant', 'the refresh token was used already: the login is revoked, log in again');
      }
      // Within the grace: the same current refresh token again (kept in memory only, for that long).
      again = this.fresh.get(grant.id);
      if (again === undefined) return gone;
    } else if (grant.refresh.expires_at_ms <= this.now()) return gone;
    if (params.client_id !== undefined && params.client_id !== grant.client_id)
      return refusal('invalid_grant', 'the refresh token was issued to another client');
    if (params.scope !== undefined && params.scope.split(' ').some((s) => s !== '' && !grant.scope.split(' ').includes(s)))
      return refusal('invalid_scope', 'a refresh cannot widen the scope');
    return this.mint(grant, again);
  }

  /**
   * The grant an access token belongs to, or why there is none: `expired` (the client should
   * refresh) or `unknown` (never issued, or revoked).
   */
  verify(token: string): Grant | 'expired' | 'unknown' {
    const hash = hashOf(token);
    const id = this.byAccess.get(hash);
    const grant = id === undefined ? undefined : this.grants.get(id);
    const kept = grant?.access.find((a) => a.hash === hash);
    if (grant === undefined || kept === undefined) return 'unknown';
    const now = this.now();
    if (kept.expires_at_ms <= now) return 'expired';
    grant.used_at_ms = now;
    return grant;
  }

  /** RFC 7009: the grant an access or refresh token belongs to is revoked; unknown tokens are no error. */
  revokeToken(token: string): void {
    const hash = hashOf(token);
    const id = this.byAccess.get(hash) ?? this.byRefresh.get(hash);
    if (id !== undefined) this.revokeGrant(id);
  }

  /** Revokes every grant of `clientId`, and the codes it has not traded yet; how many grants there were. */
  revokeClient(clientId: string): number {
    for (const [key, code] of this.codes) if (code.client_id === clientId) this.codes.delete(key);
    let count = 0;
    for (const grant of this.all) {
      if (grant.client_id !== clientId) continue;
      this.revokeGrant(grant.id, false);
      count++;
    }
    if (count > 0) this.changed();
    return count;
  }

  private revokeGrant(id: string, notify = true): void {
    const grant = this.grants.get(id);
    if (grant === undefined) return;
    for (const access of grant.access) this.byAccess.delete(access.hash);
    if (grant.refresh !== null) this.byRefresh.delete(grant.refresh.hash);
    if (grant.previous !== undefined) this.byRefresh.delete(grant.previous.hash);
    for (const hash of grant.retired ?? []) this.byRefresh.delete(hash);
    this.fresh.delete(id);
    this.grants.delete(id);
    if (notify) this.changed();
  }

  /** New tokens for `grant`: the previous access token stays good until it expires, older ones go. */
  /**
   * New tokens for `grant`: the previous access token stays good until it expires, older ones go.
   * The refresh token is rotated, unless `sameRefresh` (a refresh within the grace) is given back.
   */
  private mint(grant: Grant, sameRefresh?: string): TokenAnswer {
    const now = this.now();
    const access = secret('exai_at_');
    const refresh = sameRefresh ?? secret('exai_rt_');
    if (sameRefresh === undefined) {
      if (grant.previous !== undefined) {
        grant.retired = [...(grant.retired ?? []), grant.previous.hash];
        for (const gone of grant.retired.splice(0, Math.max(0, grant.retired.length - MAX_RETIRED))) this.byRefresh.delete(gone);
      }
      grant.previous = grant.refresh === null ? undefined : { hash: grant.refresh.hash, expires_at_ms: now + REFRESH_GRACE_MS };
      grant.refresh = { hash: hashOf(refresh), expires_at_ms: now + REFRESH_TOKEN_TTL_MS };
      this.fresh.set(grant.id, refresh);
      setTimeout(() => this.fresh.get(grant.id) === refresh && this.fresh.delete(grant.id), REFRESH_GRACE_MS).unref();
    }
    const keep = grant.access.filter((a) => a.expires_at_ms > now).slice(-1);
    for (const old of grant.access) if (!keep.includes(old)) this.byAccess.delete(old.hash);
    grant.access = [...keep, { hash: hashOf(access), expires_at_ms: now + ACCESS_TOKEN_TTL_MS }];
    grant.used_at_ms = now;
    this.index(grant);
    this.changed();
    return {
      access_token: access,
      token_type: 'Bearer',
      expires_in: ACCESS_TOKEN_TTL_MS / 1000,
      refresh_token: refresh,
      scope: grant.scope,
    };
  }

  private index(grant: Grant): void {
    this.grants.set(grant.id, grant);
    for (const access of grant.access) this.byAccess.set(access.hash, grant.id);
    if (grant.refresh !== null) this.byRefresh.set(grant.refresh.hash, grant.id);
    if (grant.previous !== undefined) this.byRefresh.set(grant.previous.hash, grant.id);
    for (const hash of grant.retired ?? []) this.byRefresh.set(hash, grant.id);
  }

  private evictLeastUsed(): void {
    let oldest: Grant | undefined;
    for (const grant of this.grants.values()) if (oldest === undefined || grant.used_at_ms < oldest.used_at_ms) oldest = grant;
    if (oldest !== undefined) this.revokeGrant(oldest.id, false);
  }

  /** Forgets grants whose refresh token expired (their access tokens are older still). */
  sweep(): void {
    const now = this.now();
    let changed = false;
    for (const grant of this.all) {
      if (grant.refresh !== null && grant.refresh.expires_at_ms > now) continue;
      if (grant.access.some((a) => a.expires_at_ms > now)) continue;
      this.revokeGrant(grant.id, false);
      changed = true;
    }
    if (changed) this.changed();
  }
}

/** PKCE S256 (RFC 7636 4.6): BASE64URL(SHA256(verifier)) equals the challenge; the verifier is 43-128 unreserved characters. */
export function verifierMatches(verifier: string, challenge: string): boolean {
  if (!/^[A-Za-z0-9\-._~]{43,128}$/.test(verifier)) return false;
  return createHash('sha256').update(verifier).digest('base64url') === challenge;
}
