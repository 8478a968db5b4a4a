/**
 * The daemon as a small OAuth 2.1 authorization server for its own `/mcp` (the MCP
 * authorization spec's "authorization server", for loopback clients only): metadata (RFC 8414),
 * registration (RFC 7591) or Client ID Metadata Documents (clients.ts), the authorization code
 * grant with PKCE S256 only, refresh tokens, revocation (RFC 7009), `iss` in the answer (RFC
 * 9207). Tokens are for the daemon's `/mcp` resource as a whole: `/mcp`, `/mcp/NAME` and
 * every profile.
 *
 * What this does not decide is who approves: an authorization request waits here
 * ({@link AuthorizationServer.pending}) until the consent route (daemon/web/consent-routes.ts)
 * shows it to the user and the user allows or denies it. Any local process may start a request;
 * only the user finishes one.
 *
 * No I/O but the metadata documents' fetch and the store's writes; the clock is injected.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { ClientRegistry, isRefusal, matchRedirect, refusal, type KnownClient, type OAuthRefusal } from './clients.js';
import { Grants, MCP_SCOPE, type Grant, type TokenAnswer } from './grants.js';
import type { FetchLike } from '@modelcontextprotocol/client';

/** How long an authorization request waits for the user. */
export const REQUEST_TTL_MS = 10 * 60 * 1000;
/**
 * Authorization requests waiting at most, and per client: past these the oldest is forgotten,
 * one the user has seen last (a flood of requests cannot take the page from under the user).
 */
export const MAX_PENDING = 64;
export const MAX_PENDING_PER_CLIENT = 8;

/** Paths of the authorization server's endpoints, under the daemon's origin. */
export const AUTHZ_PATHS = Object.freeze({
  authorize: '/oauth/authorize',
  token: '/oauth/token',
  register: '/oauth/register',
  revoke: '/oauth/revoke',
  serverMetadata: '/.well-known/oauth-authorization-server',
  resourceMetadata: '/.well-known/oauth-protected-resource',
});

/** An authorization request waiting for the user. */
export interface PendingRequest {
  id: string;
  /** The consent form's anti-forgery value: a POST must carry it. */
  csrf: string;
  client: KnownClient;
  redirect_uri: string;
  state: string | undefined;
  code_challenge: string;
  scope: string;
  resource: string;
  /** The daemon's origin the request came to (the `iss` of the answer). */
  issuer: string;
  expires_at_ms: number;
  /** Shown to a browser holding the cookie: kept before others when requests must give way. */
  seen?: boolean;
}

/** What `GET /oauth/authorize` leads to. */
export type AuthorizeOutcome =
  | { kind: 'consent'; request: PendingRequest }
  /** An error the client hears about, at its redirect URI. */
  | { kind: 'redirect'; location: string }
  /** An error only the user can see: the client or its redirect URI are not to be trusted with it. */
  | { kind: 'error'; message: string };

/** A client that holds tokens, as `exai-ws clients` lists it. */
export interface TokenHolder {
  client_id: string;
  client_name: string;
  kind: KnownClient['kind'] | 'unknown';
  /** Approvals still good. */
  grants: number;
  first_approved_at: string;
  last_used_at: string;
}

/** Where registrations and grants are kept between runs (daemon/files/grant-store.ts). */
export interface AuthzStore {
  load(): { clients: KnownClient[]; grants: Grant[] };
  save(snapshot: { clients: KnownClient[]; grants: Grant[] }): void;
}

export interface AuthorizationServerOptions {
  store?: AuthzStore;
  now?: () => number;
  fetch?: FetchLike;
}

export class AuthorizationServer {
  readonly clients: ClientRegistry;
  readonly grants: Grants;
  private readonly now: () => number;
  private readonly pending = new Map<string, PendingRequest>();

  constructor(options: AuthorizationServerOptions = {}) {
    this.now = options.now ?? Date.now;
    const store = options.store;
    const restored = store?.load() ?? { clients: [], grants: [] };
    const changed = () => store?.save({ clients: this.clients.registrations, grants: this.grants.all });
    this.clients = new ClientRegistry({ now: this.now, fetch: options.fetch, restored: restored.clients, changed });
    this.grants = new Grants({ now: this.now, restored: restored.grants, changed });
    this.grants.sweep();
  }

  /** RFC 8414 metadata of the issuer at `origin` (`http://127.0.0.1:PORT`). */
  static serverMetadata(origin: string): Record<string, unknown> {
    return {
      issuer: origin,
      authorization_endpoint: origin + AUTHZ_PATHS.authorize,
      token_endpoint: origin + AUTHZ_PATHS.token,
      registration_endpoint: origin + AUTHZ_PATHS.register,
      revocation_endpoint: origin + AUTHZ_PATHS.revoke,
      scopes_supported: [MCP_SCOPE],
      response_types_supported: ['code'],
      response_modes_supported: ['query'],
      grant_types_supported: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_methods_supported: ['none'],
      revocation_endpoint_auth_methods_supported: ['none'],
      code_challenge_methods_supported: ['S256'],
      authorization_response_iss_parameter_supported: true,
      client_id_metadata_document_supported: true,
    };
  }

  /**
   * RFC 9728 metadata of the resource at `origin` + `path` (`/mcp`, `/mcp/NAME`, with a query
   * for a profile: the URL the client asked, as RFC 9728 3.3 wants it named); its own issuer is
   * the authorization server. A token it gives is good for all of `/mcp`.
   */
  static resourceMetadata(origin: string, path = '/mcp'): Record<string, unknown> {
    return {
      resource: `${origin}${path}`,
      authorization_servers: [origin],
      scopes_supported: [MCP_SCOPE],
      bearer_methods_supported: ['header'],
      resource_name: 'exai-ws',
    };
  }

  /** `POST /oauth/register`. */
  register(body: unknown): Record<string, unknown> | OAuthRefusal {
    const client = this.clients.register(body, (id) => this.waitsFor(id));
    return isRefusal(client) ? client : ClientRegistry.registrationAnswer(client);
  }

  /**
   * `GET /oauth/authorize` at the issuer `origin`: the request, waiting for the user, or why not.
   * Errors before the client and its redirect URI are known are shown to the user only.
   */
  async authorize(query: URLSearchParams, origin: string): Promise<AuthorizeOutcome> {
    const clientId = query.get('client_id');
    if (!clientId) return { kind: 'error', message: 'the request names no client_id' };
    const client = await this.clients.resolve(clientId);
    if (isRefusal(client)) return { kind: 'error', message: client.error_description };
    const asked = query.get('redirect_uri') ?? onlyLoopback(client);
    const redirectUri = asked === null ? null : matchRedirect(client, asked);
    if (redirectUri === null)
      return {
        kind: 'error',
        message: `${client.client_name} asked to be answered at a redirect URI it did not register, or not on this machine (loopback): ${(asked ?? 'none').slice(0, 200)}`,
      };
    const state = query.get('state') ?? undefined;
    const fail = (error: string, description: string): AuthorizeOutcome => ({
      kind: 'redirect',
      location: answerUrl(redirectUri, { error, error_description: description, state, iss: origin }),
    });
    if (query.get('response_type') !== 'code') return fail('unsupported_response_type', 'only response_type=code is supported');
    const challenge = query.get('code_challenge');
    if (!challenge || !/^[A-Za-z0-9_-]{43}$/.test(challenge))
      return fail('invalid_request', 'PKCE is required: send a code_challenge (S256)');
    if (query.get('code_challenge_method') !== 'S256') return fail('invalid_request', 'only code_challenge_method=S256 is supported');
    const resource = query.get('resource') ?? `${origin}/mcp`;
    if (!isDaemonResource(resource, origin))
      return fail('invalid_target', `this authorization server issues tokens for ${origin}/mcp only`);
    const now = this.now();
    for (const [id, waiting] of this.pending) if (waiting.expires_at_ms <= now) this.pending.delete(id);
    const request: PendingRequest = {
      id: randomBytes(16).toString('base64url'),
      csrf: randomBytes(24).toString('base64url'),
      client,
      redirect_uri: redirectUri,
      state,
      code_challenge: challenge,
      scope: MCP_SCOPE,
      resource,
      issuer: origin,
      expires_at_ms: now + REQUEST_TTL_MS,
    };
    if (!this.makeRoom(client.client_id))
      return { kind: 'error', message: 'too many logins wait for an answer now: answer or close them, then start this one again' };
    this.pending.set(request.id, request);
    return { kind: 'consent', request };
  }

  /** The user's browser was shown `request`: it gives way to others last. */
  seen(request: PendingRequest): void {
    request.seen = true;
  }

  /**
   * Room for one more request of `clientId`: past a bound, the oldest request nobody has seen
   * gives way. A request the user's browser was shown never does; when only those are left, no
   * room (false): the new request is refused, the user's stays.
   */
  private makeRoom(clientId: string): boolean {
    const all = [...this.pending.values()];
    for (const [of, max] of [
      [all.filter((r) => r.client.client_id === clientId), MAX_PENDING_PER_CLIENT],
      [all, MAX_PENDING],
    ] as const) {
      if (of.length < max) continue;
      const evict = of.find((r) => !r.seen && this.pending.has(r.id));
      if (evict === undefined) return false;
      this.pending.delete(evict.id);
    }
    return true;
  }

  /** Whether a request of `clientId` waits for the user (its registration must not give way). */
  private waitsFor(clientId: string): boolean {
    for (const request of this.pending.values()) if (request.client.client_id === clientId) return true;
    return false;
  }

  /** A request still waiting, when `csrf` (if given) is its own. */
  waiting(id: string, csrf?: string): PendingRequest | undefined {
    const request = this.pending.get(id);
    if (request === undefined || request.expires_at_ms <= this.now()) return undefined;
    if (csrf !== undefined && !sameSecret(csrf, request.csrf)) return undefined;
    return request;
  }

  /**
   * The user's answer to a waiting request: where the browser goes next (the client's redirect
   * URI with a code, or with `access_denied`). The request is gone either way.
   */
  decide(request: PendingRequest, allow: boolean): string {
    this.pending.delete(request.id);
    const { client, redirect_uri, state, issuer } = request;
    if (!allow)
      return answerUrl(redirect_uri, { error: 'access_denied', error_description: 'the user denied the request', state, iss: issuer });
    this.clients.used(client.client_id);
    const code = this.grants.issueCode({
      client_id: client.client_id,
      client_name: client.client_name,
      redirect_uri,
      code_challenge: request.code_challenge,
      scope: request.scope,
      resource: request.resource,
    });
    return answerUrl(redirect_uri, { code, state, iss: issuer });
  }

  /** `POST /oauth/token` with its form; `basicClientId` from `Authorization: Basic`, if sent. */
  token(form: URLSearchParams, basicClientId?: string): TokenAnswer | OAuthRefusal {
    const clientId = form.get('client_id') ?? basicClientId;
    const grantType = form.get('grant_type');
    if (grantType === 'authorization_code') {
      const code = form.get('code');
      const verifier = form.get('code_verifier');
      if (!code || !clientId) return refusal('invalid_request', 'send code and client_id');
      if (!verifier) return refusal('invalid_request', 'PKCE is required: send code_verifier');
      const answer = this.grants.trade({
        code,
        client_id: clientId,
        code_verifier: verifier,
        redirect_uri: form.get('redirect_uri') ?? undefined,
        resource: form.get('resource') ?? undefined,
      });
      if (!isRefusal(answer)) this.clients.used(clientId);
      return answer;
    }
    if (grantType === 'refresh_token') {
      const token = form.get('refresh_token');
      if (!token) return refusal('invalid_request', 'send refresh_token');
      const answer = this.grants.refresh({ refresh_token: token, client_id: clientId ?? undefined, scope: form.get('scope') ?? undefined });
      if (!isRefusal(answer) && clientId) this.clients.used(clientId);
      return answer;
    }
    return refusal('unsupported_grant_type', 'only authorization_code and refresh_token are supported');
  }

  /** The clients that hold tokens, the most recently used first. */
  holders(): TokenHolder[] {
    this.grants.sweep();
    const byClient = new Map<string, Grant[]>();
    for (const grant of this.grants.all) byClient.set(grant.client_id, [...(byClient.get(grant.client_id) ?? []), grant]);
    return [...byClient.entries()]
      .map(([clientId, grants]) => ({
        client_id: clientId,
        client_name: grants[grants.length - 1]?.client_name ?? clientId,
        kind: this.clients.known(clientId)?.kind ?? ('unknown' as const),
        grants: grants.length,
        first_approved_at: new Date(Math.min(...grants.map((g) => g.created_at_ms))).toISOString(),
        last_used_at: new Date(Math.max(...grants.map((g) => g.used_at_ms))).toISOString(),
      }))
      .sort((a, b) => b.last_used_at.localeCompare(a.last_used_at));
  }

  /**
   * `exai-ws clients revoke NAME`: every token of the clients whose id is `name`, or whose
   * name is `name` (case aside). The clients revoked (none: nothing matched).
   */
  revoke(name: string): TokenHolder[] {
    const wanted = name.trim().toLowerCase();
    const matched = this.holders().filter((h) => h.client_id === name || h.client_name.toLowerCase() === wanted);
    for (const holder of matched) {
      this.grants.revokeClient(holder.client_id);
      for (const [id, request] of this.pending) if (request.client.client_id === holder.client_id) this.pending.delete(id);
    }
    return matched;
  }
}

/**
 * A resource this daemon issues tokens for: its `/mcp` or anything under it, on its own origin
 * (either spelling of loopback the daemon answers to).
 */
export function isDaemonResource(resource: string, origin: string): boolean {
  let url: URL;
  try {
    url = new URL(resource);
  } catch {
    return false;
  }
  const daemon = new URL(origin);
  const spellings = new Set([daemon.host, `127.0.0.1:${daemon.port}`, `localhost:${daemon.port}`]);
  return url.protocol === daemon.protocol && spellings.has(url.host) && url.hash === '' && /^\/mcp(\/|$)/.test(url.pathname);
}

function onlyLoopback(client: KnownClient): string | null {
  const loopback = client.redirect_uris.filter((uri) => matchRedirect(client, uri) !== null);
  return loopback.length === 1 ? (loopback[0] as string) : null;
}

function answerUrl(redirectUri: string, params: Record<string, string | undefined>): string {
  const url = new URL(redirectUri);
  for (const [key, value] of Object.entries(params)) if (value !== undefined) url.searchParams.set(key, value);
  return url.toString();
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
