/**
 * Who may ask the daemon's authorization server for a token, and where it may send the answer:
 * clients registered dynamically (RFC 7591: bounded in number, each expiring when unused) and
 * clients identified by a Client ID Metadata Document (an https URL as `client_id`, fetched
 * with a deadline and a size bound, cached for a while, never from an address of this machine).
 *
 * A registration may list any redirect URIs (VS Code registers a web one beside its loopback
 * one); an authorization redirects only to a loopback `http` URI the client registered, on any
 * port (RFC 8252 7.3: a native app's loopback listener gets a new port each run).
 *
 * Nothing here throws on bad input: a refusal is an {@link OAuthRefusal}, the wire's error.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { FetchLike } from '@modelcontextprotocol/client';
import { boundedFetch } from '../../hosting/oauth/bounded-fetch.js';

/** An OAuth error as the wire carries it (RFC 6749 5.2, RFC 7591 3.2.2). */
export interface OAuthRefusal {
  error: string;
  error_description: string;
}

export const refusal = (error: string, description: string): OAuthRefusal => ({ error, error_description: description });
export const isRefusal = (value: unknown): value is OAuthRefusal =>
  typeof value === 'object' && value !== null && typeof (value as OAuthRefusal).error === 'string';

/** A client as the authorization server knows it. */
export interface KnownClient {
  client_id: string;
  /** What the consent page and `exai-ws clients` call it (the client's own name, else its id). */
  client_name: string;
  redirect_uris: string[];
  kind: 'registered' | 'metadata_document';
  /** When it was registered or its document fetched (ms since the epoch). */
  created_at_ms: number;
  /** Past this (ms), an unused registration is forgotten; a document is fetched again. */
  expires_at_ms: number;
  /** When a user last approved it or it last used a token (ms); absent: never authorized. */
  used_at_ms?: number;
}

/** Registrations kept at most: past this the oldest one never authorized is forgotten. */
export const MAX_REGISTRATIONS = 256;
/** A registration that has not been authorized within this long is forgotten. */
export const UNUSED_REGISTRATION_TTL_MS = 24 * 60 * 60 * 1000;
/** A registration authorized at least once lives this long past its last use. */
export const REGISTRATION_TTL_MS = 90 * 24 * 60 * 60 * 1000;
/** Metadata documents kept at most (each for its `Cache-Control: max-age`, at most a day). */
export const MAX_DOCUMENTS = 64;
const DOCUMENT_TTL_MS = 60 * 60 * 1000;
const MAX_DOCUMENT_TTL_MS = 24 * 60 * 60 * 1000;
/** A metadata document's fetch: its deadline and the largest answer read. */
export const DOCUMENT_TIMEOUT_MS = 5_000;
export const MAX_DOCUMENT_BYTES = 64 * 1024;
/** Metadata documents fetched at once at most: a flood of made-up client ids cannot make the daemon a fetching machine. */
export const MAX_FETCHES = 4;

const url = z.string().min(1).max(1024);
/** What a registration (or a metadata document) may say; the rest is ignored. */
const ClientMetadata = z.object({
  redirect_uris: z.array(url).min(1).max(8),
  client_name: z.string().max(200).optional(),
  client_uri: url.optional(),
  token_endpoint_auth_method: z.string().max(64).optional(),
  grant_types: z.array(z.string().max(64)).max(8).optional(),
  response_types: z.array(z.string().max(64)).max(8).optional(),
  scope: z.string().max(1024).optional(),
});
export type ClientMetadata = z.infer<typeof ClientMetadata>;

/** True for `http://127.0.0.1`, `http://localhost` and `http://[::1]` URIs, any port, no fragment. */
export function isLoopbackRedirect(uri: string): boolean {
  const parsed = parseUrl(uri);
  return parsed !== null && parsed.protocol === 'http:' && LOOPBACK.has(parsed.hostname) && parsed.hash === '' && parsed.username === '';
}
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * The registered URI `requested` stands for, if it is a loopback one: the same host, path and
 * query, any port. Null when the client did not register it or it is not loopback.
 */
export function matchRedirect(client: KnownClient, requested: string): string | null {
  if (!isLoopbackRedirect(requested)) return null;
  const want = new URL(requested);
  for (const registered of client.redirect_uris) {
    if (!isLoopbackRedirect(registered)) continue;
    const have = new URL(registered);
    if (have.hostname === want.hostname && have.pathname === want.pathname && have.search === want.search) return requested;
  }
  return null;
}

export interface ClientRegistryOptions {
  now?: () => number;
  /** How metadata documents are fetched (tests pass their own); bounded here. */
  fetch?: FetchLike;
  /** Registrations restored from disk (grant-store). */
  restored?: KnownClient[];
  /** Called after every change to the registrations (to write them). */
  changed?: () => void;
}

export class ClientRegistry {
  private readonly now: () => number;
  private readonly fetchDocument: FetchLike;
  private readonly changed: () => void;
  /** client_id -> registration; insertion order is age order. */
  private readonly registered = new Map<string, KnownClient>();
  private readonly documents = new Map<string, KnownClient>();
  /** Fetches under way, by URL: a second request for the same document waits for the first. */
  private readonly fetching = new Map<string, Promise<KnownClient | OAuthRefusal>>();

  constructor(options: ClientRegistryOptions = {}) {
    this.now = options.now ?? Date.now;
    this.fetchDocument = boundedFetch(options.fetch ?? fetch, DOCUMENT_TIMEOUT_MS, MAX_DOCUMENT_BYTES);
    this.changed = options.changed ?? (() => undefined);
    for (const client of options.restored ?? []) this.registered.set(client.client_id, client);
  }

  /** How many registrations there are, approved or not. */
  get size(): number {
    return this.registered.size;
  }

  /**
   * The registrations to keep across restarts: those a user approved. One never approved is in
   * memory only, so a flood of registrations writes nothing and cannot grow the file.
   */
  get registrations(): KnownClient[] {
    return [...this.registered.values()].filter((client) => client.used_at_ms !== undefined);
  }

  /**
   * `POST /oauth/register` (RFC 7591): a public client (`token_endpoint_auth_method` "none"),
   * with at least one loopback redirect URI. Past {@link MAX_REGISTRATIONS} the oldest
   * registration never authorized gives way; when every one is in use, a refusal.
   */
  register(body: unknown, waiting: (clientId: string) => boolean = () => false): KnownClient | OAuthRefusal {
    const parsed = ClientMetadata.safeParse(body);
    if (!parsed.success)
      return refusal('invalid_client_metadata', `the registration is not valid: ${parsed.error.issues[0]?.message ?? ''}`);
    const metadata = parsed.data;
    const bad = metadata.redirect_uris.find((uri) => parseUrl(uri) === null || new URL(uri).hash !== '');
    if (bad !== undefined) return refusal('invalid_redirect_uri', `not an absolute URI without a fragment: ${bad.slice(0, 200)}`);
    if (!metadata.redirect_uris.some(isLoopbackRedirect))
      return refusal(
        'invalid_redirect_uri',
        'exai-ws sends its answers only to loopback redirect URIs (http://127.0.0.1:PORT/..., http://localhost:PORT/...)',
      );
    const grants = metadata.grant_types ?? ['authorization_code'];
    if (!grants.includes('authorization_code'))
      return refusal('invalid_client_metadata', 'exai-ws grants only authorization_code (and refresh_token)');
    this.forgetExpired();
    if (this.registered.size >= MAX_REGISTRATIONS && !this.evictUnused(waiting))
      return refusal(
        'temporarily_unavailable',
        `exai-ws keeps at most ${MAX_REGISTRATIONS} clients; revoke some with \`exai-ws clients revoke NAME\``,
      );
    const now = this.now();
    const client: KnownClient = {
      client_id: `exai-${randomBytes(16).toString('base64url')}`,
      client_name: displayName(metadata.client_name, metadata.client_uri),
      redirect_uris: metadata.redirect_uris,
      kind: 'registered',
      created_at_ms: now,
      expires_at_ms: now + UNUSED_REGISTRATION_TTL_MS,
    };
    this.registered.set(client.client_id, client);
    return client;
  }

  /** The registration answer (RFC 7591 3.2.1) for `client`. */
  static registrationAnswer(client: KnownClient): Record<string, unknown> {
    return {
      client_id: client.client_id,
      client_id_issued_at: Math.floor(client.created_at_ms / 1000),
      client_name: client.client_name,
      redirect_uris: client.redirect_uris,
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    };
  }

  /**
   * The client of `clientId`: a registration, or the metadata document at that https URL
   * (fetched now unless cached). A refusal when there is none.
   */
  async resolve(clientId: string): Promise<KnownClient | OAuthRefusal> {
    const now = this.now();
    const registered = this.registered.get(clientId);
    if (registered !== undefined) {
      if (registered.expires_at_ms > now) return registered;
      this.registered.delete(clientId);
      this.changed();
    }
    if (!isDocumentUrl(clientId)) return refusal('invalid_client', 'unknown client_id: register again');
    const cached = this.documents.get(clientId);
    if (cached !== undefined && cached.expires_at_ms > now) return cached;
    this.documents.delete(clientId);
    const under = this.fetching.get(clientId);
    if (under !== undefined) return under;
    if (this.fetching.size >= MAX_FETCHES)
      return refusal('temporarily_unavailable', 'too many client metadata documents are being fetched: try again');
    const fetched = this.fetchClientDocument(clientId).then((client) => {
      if (!isRefusal(client)) {
        this.documents.set(clientId, client);
        while (this.documents.size > MAX_DOCUMENTS) this.documents.delete(this.documents.keys().next().value as string);
      }
      return client;
    });
    this.fetching.set(clientId, fetched);
    try {
      return await fetched;
    } finally {
      this.fetching.delete(clientId);
    }
  }

  /** A known client, without fetching (registrations and cached documents). */
  known(clientId: string): KnownClient | undefined {
    return this.registered.get(clientId) ?? this.documents.get(clientId);
  }

  /** Keeps a registration that was just authorized or used for {@link REGISTRATION_TTL_MS}. */
  used(clientId: string): void {
    const client = this.registered.get(clientId);
    if (client === undefined) return;
    client.used_at_ms = this.now();
    client.expires_at_ms = client.used_at_ms + REGISTRATION_TTL_MS;
  }

  private async fetchClientDocument(clientId: string): Promise<KnownClient | OAuthRefusal> {
    const failed = (why: string) => refusal('invalid_client', `the client's metadata document at ${clientId} ${why}`);
    let response: Response;
    let body: unknown;
    try {
      response = await this.fetchDocument(clientId, { redirect: 'error', headers: { accept: 'application/json' } });
      if (!response.ok) return failed(`answered HTTP ${response.status}`);
      body = await response.json();
    } catch (error) {
      return failed(`could not be read (${(error as Error).message.slice(0, 200)})`);
    }
    const parsed = ClientMetadata.extend({ client_id: z.string() }).safeParse(body);
    if (!parsed.success) return failed(`is not valid: ${parsed.error.issues[0]?.message ?? ''}`);
    if (parsed.data.client_id !== clientId) return failed('names another client_id');
    const maxAge = /max-age=(\d+)/i.exec(response.headers.get('cache-control') ?? '')?.[1];
    const ttlMs = maxAge === undefined ? DOCUMENT_TTL_MS : Math.min(Number(maxAge) * 1000, MAX_DOCUMENT_TTL_MS);
    const now = this.now();
    return {
      client_id: clientId,
      client_name: displayName(parsed.data.client_name, clientId),
      redirect_uris: parsed.data.redirect_uris,
      kind: 'metadata_document',
      created_at_ms: now,
      expires_at_ms: now + ttlMs,
    };
  }

  private forgetExpired(): void {
    const now = this.now();
    let changed = false;
    for (const [id, client] of this.registered) {
      if (client.expires_at_ms <= now) changed = this.registered.delete(id) || changed;
    }
    if (changed) this.changed();
  }

  /** Forgets the oldest registration never authorized and with no login waiting; false when there is none. */
  private evictUnused(waiting: (clientId: string) => boolean): boolean {
    for (const [id, client] of this.registered) {
      if (client.used_at_ms === undefined && !waiting(id)) {
        this.registered.delete(id);
        return true;
      }
    }
    return false;
  }
}

/**
 * A Client ID Metadata Document's URL: https with a path, no fragment, not naming this
 * machine (a document must come from the client's publisher, never from a local service).
 */
export function isDocumentUrl(clientId: string): boolean {
  const parsed = parseUrl(clientId);
  if (parsed === null || parsed.protocol !== 'https:' || parsed.pathname === '/' || parsed.hash !== '' || parsed.username !== '')
    return false;
  // A trailing dot names the same host (`localhost.` is this machine too).
  const host = parsed.hostname.toLowerCase().replace(/\.$/, '');
  return !(LOOPBACK.has(host) || host.endsWith('.localhost') || host === '0.0.0.0' || /^127\.|^\[(::|f[cd]|fe80)/i.test(host));
}

function displayName(name: string | undefined, fallback: string | undefined): string {
  // Control and format characters (bidi overrides among them) would let a name show as another.
  const clean = (name ?? '').replace(/[\p{Cc}\p{Cf}\u2028\u2029]/gu, ' ').trim();
  if (clean.length > 0) return clean.slice(0, 100);
  return (fallback ?? 'an unnamed client').slice(0, 100);
}

function parseUrl(text: string): URL | null {
  try {
    return new URL(text);
  } catch {
    return null;
  }
}
