/**
 * The SDK's `OAuthClientProvider` for one authorization request of a login (session.ts): the
 * `flow` holds what is that request's own (its `state`, PKCE verifier, URL and discovery), the
 * host what the server's login keeps for every request (registrations, tokens, discovery).
 */
import type {
  OAuthClientMetadata,
  OAuthClientProvider,
  OAuthDiscoveryState,
  StoredOAuthClientInformation,
  StoredOAuthTokens,
} from '@modelcontextprotocol/client';
import type { KeptTokens } from './vault.js';

/** A login under way: what the authorization server's answer needs to be taken. */
export interface Flow {
  /** A login (a person opens its URL) or a renewal (a refresh; its URL, if any, is never shown). */
  readonly purpose: 'login' | 'renew';
  readonly server: string;
  readonly state: string;
  readonly scope: string | undefined;
  readonly resourceMetadataUrl: URL | undefined;
  verifier?: string;
  url?: string;
  discovery?: OAuthDiscoveryState;
  /** The client this request used (kept with the tokens it gets). */
  client?: StoredOAuthClientInformation;
  /** The session's logout count when it began (a renewal from before a logout keeps nothing). */
  readonly generation: number;
}

/** What a provider reaches of the server's login. */
export interface ProviderHost {
  redirectUrl(): string | undefined;
  clientMetadataUrl(): string | undefined;
  client(issuer: string | undefined, purpose: Flow['purpose']): StoredOAuthClientInformation | undefined;
  saveClient(client: StoredOAuthClientInformation | undefined, issuer: string | undefined): void;
  tokens(): KeptTokens | undefined;
  keep(tokens: StoredOAuthTokens, issuer: string | undefined, flow: Flow): void;
  forgetTokens(): void;
  discovery(): OAuthDiscoveryState | undefined;
  saveDiscovery(state: OAuthDiscoveryState | undefined): void;
}

export function sdkProvider(host: ProviderHost, flow: Flow): OAuthClientProvider {
  // The authorization server this request talks to, once the SDK has said (registrations are its).
  let issuer: string | undefined;
  return {
    get redirectUrl() {
      return host.redirectUrl();
    },
    clientMetadataUrl: host.clientMetadataUrl(),
    get clientMetadata(): OAuthClientMetadata {
      return clientMetadata(host.redirectUrl());
    },
    state: () => flow.state,
    clientInformation: (ctx) => {
      issuer = ctx?.issuer ?? issuer;
      flow.client = host.client(issuer, flow.purpose);
      return flow.client;
    },
    saveClientInformation: (client, ctx) => {
      flow.client = client;
      host.saveClient(client, ctx?.issuer ?? issuer);
    },
    tokens: () => host.tokens(),
    saveTokens: (tokens, ctx) => host.keep(tokens, ctx?.issuer, flow),
    redirectToAuthorization: (url) => void (flow.url = url.href),
    saveCodeVerifier: (verifier) => void (flow.verifier = verifier),
    codeVerifier: () => {
      if (flow.verifier === undefined) throw new Error('no login is under way for this answer');
      return flow.verifier;
    },
    discoveryState: () => flow.discovery ?? host.discovery(),
    saveDiscoveryState: (state) => {
      flow.discovery = state;
      host.saveDiscovery(state);
    },
    invalidateCredentials: (what) => {
      if (what === 'all' || what === 'tokens') host.forgetTokens();
      if (what === 'all' || what === 'client') host.saveClient(undefined, issuer);
      if (what === 'all' || what === 'discovery') {
        flow.discovery = undefined;
        host.saveDiscovery(undefined);
      }
      if (what === 'all' || what === 'verifier') flow.verifier = undefined;
    },
  };
}

/** What the daemon registers as (dynamic registration), and asks refresh tokens with. */
function clientMetadata(redirect: string | undefined): OAuthClientMetadata {
  return {
    client_name: 'exai-ws',
    redirect_uris: redirect === undefined ? [] : [redirect],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  };
}
