/**
 * Where a login's secrets are kept: the clients the daemon registered (per authorization
 * server and redirect URI: a changed daemon port registers again), the tokens (per resource,
 * stamped with the issuer that gave them: tokens of one authorization server are never shown to
 * another) and what discovery found (per resource, so a refresh after a restart needs no new
 * discovery). The daemon's is files in `$EXAI_WS_HOME/oauth/` (daemon/files/oauth-vault.ts);
 * {@link MemoryVault} keeps them in memory (tests, and a core without a home).
 *
 * Every method is synchronous and never throws: a write that fails (a full disk) keeps the value
 * in memory and says so through the vault's own log; the login works until the daemon stops.
 */
import type { OAuthDiscoveryState, StoredOAuthClientInformation, StoredOAuthTokens } from '@modelcontextprotocol/client';

/** Tokens as kept: what the token endpoint answered, the issuer, and when they were obtained. */
export type KeptTokens = StoredOAuthTokens & {
  /** Milliseconds since the epoch when the token endpoint answered. */
  obtained_at: number;
  /** Milliseconds since the epoch when the access token expires (from `expires_in`), if it said. */
  expires_at?: number;
  /** The login they came from (refreshed tokens keep it): refusals are counted per login. */
  login?: string;
  /** The client they were issued to (a refresh must come from it). */
  client?: { client_id: string; client_secret?: string; token_endpoint_auth_method?: string };
};

export interface OAuthVault {
  client(issuer: string, redirectUri: string): StoredOAuthClientInformation | undefined;
  saveClient(issuer: string, redirectUri: string, client: StoredOAuthClientInformation | undefined): void;
  tokens(resource: string): KeptTokens | undefined;
  saveTokens(resource: string, tokens: KeptTokens | undefined): void;
  discovery(resource: string): OAuthDiscoveryState | undefined;
  saveDiscovery(resource: string, state: OAuthDiscoveryState | undefined): void;
}

/** A vault in memory only. */
export class MemoryVault implements OAuthVault {
  private readonly clients = new Map<string, StoredOAuthClientInformation>();
  private readonly kept = new Map<string, KeptTokens>();
  private readonly found = new Map<string, OAuthDiscoveryState>();

  client(issuer: string, redirectUri: string): StoredOAuthClientInformation | undefined {
    return this.clients.get(clientKey(issuer, redirectUri));
  }

  saveClient(issuer: string, redirectUri: string, client: StoredOAuthClientInformation | undefined): void {
    setOrDelete(this.clients, clientKey(issuer, redirectUri), client);
  }

  tokens(resource: string): KeptTokens | undefined {
    return this.kept.get(resource);
  }

  saveTokens(resource: string, tokens: KeptTokens | undefined): void {
    setOrDelete(this.kept, resource, tokens);
  }

  discovery(resource: string): OAuthDiscoveryState | undefined {
    return this.found.get(resource);
  }

  saveDiscovery(resource: string, state: OAuthDiscoveryState | undefined): void {
    setOrDelete(this.found, resource, state);
  }
}

/** The key of a registration: the authorization server and the redirect URI it was made for. */
export function clientKey(issuer: string, redirectUri: string): string {
  return `${issuer} ${redirectUri}`;
}

function setOrDelete<V>(map: Map<string, V>, key: string, value: V | undefined): void {
  if (value === undefined) map.delete(key);
  else map.set(key, value);
}
