/**
 * One `url` server's OAuth login, as every window shares it: the SDK's `auth()` does the MCP
 * authorization steps (protected-resource and authorization-server discovery, registration by
 * pre-registered client, Client ID Metadata Document or dynamic registration, PKCE, `resource`,
 * `iss`, scope selection, refresh); this file decides when, and keeps the outcome in the vault.
 *
 * - The server's transport gets {@link OAuthSession.transportAuth}: `token()` before each
 *   request (refreshed first when it is about to expire), `onUnauthorized()` on a 401. Both run
 *   one renewal at a time: two windows calling as the token expires cause one refresh.
 * - A refused token (401 with a token sent) means the authorization server may have moved:
 *   discovery starts over, so tokens and registrations of the old one are not used with the new.
 * - Nothing here waits for a person. What only a login can fix sets the state `needs_login`
 *   (and throws {@link LoginNeededError} into the call); `exai-ws login` or a window's URL
 *   elicitation then starts a {@link Flow} ({@link OAuthSession.begin}), and the daemon's
 *   callback finishes it ({@link OAuthSession.finish}).
 * - A 403 `insufficient_scope` adds the scopes asked to the next login; after
 *   {@link MAX_SCOPE_REFUSALS} logins whose tokens the server still refuses for the same scopes,
 *   the state is `refused` and no more logins are offered for them (challenges.ts).
 * - A logout forgets the tokens at once; a refresh under way when it came keeps nothing.
 *
 * Tokens never leave this file and the vault except in the `Authorization` header of requests
 * to this server and in requests to its authorization server.
 */
import { randomBytes } from 'node:crypto';
import {
  auth,
  discoverOAuthProtectedResourceMetadata,
  type AuthProvider,
  type FetchLike,
  type OAuthClientProvider,
  type StoredOAuthClientInformation,
  type StoredOAuthTokens,
} from '@modelcontextprotocol/client';
import type { LoginReport, LoginState } from '../../local/health.js';
import type { LocalErrorCode } from '../../local/errors.js';
import type { CoreLog } from '../core-log.js';
import type { OAuthEntry } from '../upstream-config.js';
import type { OAuthVault } from './vault.js';
import { boundedFetch } from './bounded-fetch.js';
import { Challenges, MAX_SCOPE_REFUSALS } from './challenges.js';
import { bearerOf, errorText, expired, expiring, keptOf, loginReport } from './kept.js';
import { sdkProvider, type Flow, type ProviderHost } from './provider.js';

export type { Flow } from './provider.js';
export { MAX_SCOPE_REFUSALS } from './challenges.js';
export { errorText } from './kept.js';

/** After a failed refresh, how long requests go on with the token held before one is tried again. */
const REFRESH_RETRY_MS = 5_000;

/** Only a person can help: a login (or a login with more scopes) is needed. */
export class LoginNeededError extends Error {
  override name = 'LoginNeededError';
  readonly code = 'ELOGIN_NEEDED' satisfies LocalErrorCode;
  constructor(
    readonly server: string,
    why: string,
  ) {
    super(`${server} needs a login (${why}): run \`exai-ws login ${server}\``);
  }
}

export interface OAuthSessionOptions {
  name: string;
  url: string;
  entry?: OAuthEntry | undefined;
  vault: OAuthVault;
  /** The daemon's callback URL; undefined while it has no port. */
  redirectUrl: () => string | undefined;
  log?: CoreLog | undefined;
  /** For requests to the authorization server (default: the global fetch). */
  fetch?: FetchLike;
  /** Renewals under way by resource, shared by the sessions of entries with the same URL (one refresh for all). */
  renewals?: Map<string, Promise<void>>;
}

export class OAuthSession {
  readonly name: string;
  readonly url: string;
  private readonly vault: OAuthVault;
  private readonly entry: OAuthEntry | undefined;
  private readonly options: OAuthSessionOptions;
  private readonly fetchFn: FetchLike;
  private readonly renewals: Map<string, Promise<void>>;
  private state: LoginState;
  private error: string | null = null;
  private readonly challenges = new Challenges();
  /** Bumped by a logout: a renewal started before it keeps nothing. */
  private generation = 0;
  private refreshFailedAt = 0;
  /** Which bearer each refused response was answered to (the transport hands back only the response). */
  private readonly sent = new WeakMap<Response, string | undefined>();

  constructor(options: OAuthSessionOptions) {
    this.options = options;
    this.name = options.name;
    this.url = options.url;
    this.vault = options.vault;
    this.entry = options.entry;
    this.fetchFn = boundedFetch(options.fetch ?? ((input, init) => fetch(input, init)));
    this.renewals = options.renewals ?? new Map<string, Promise<void>>();
    this.state = this.vault.tokens(this.url) ? 'logged_in' : 'none';
  }

  /** What the server's transport is given as its `authProvider`. */
  get transportAuth(): AuthProvider {
    return { token: () => this.token(), onUnauthorized: (ctx) => this.onUnauthorized(ctx.response) };
  }

  /** Wraps the transport's fetch: notes each 401 and 403 (the challenge, and the token it refused). */
  watch(inner: FetchLike): FetchLike {
    return async (input, init) => {
      const response = await inner(input, init);
      if (response.status === 401 || response.status === 403) {
        const bearer = bearerOf(init?.headers);
        this.sent.set(response, bearer);
        this.noteChallenge(response, bearer);
      }
      return response;
    };
  }

  /** True once the server asked for a login (a 401 or 403 seen), or a token is held. */
  get asksForLogin(): boolean {
    return this.challenges.seen || this.vault.tokens(this.url) !== undefined;
  }

  /** Whether a call that failed on this server failed for want of a login, and what to say. */
  get need(): { kind: 'needed' | 'refused'; message: string } | undefined {
    if (this.state === 'refused') return { kind: 'refused', message: this.error ?? `${this.name} refuses the scopes granted` };
    if (this.state === 'needs_login') return { kind: 'needed', message: this.error ?? `${this.name} needs a login` };
    return undefined;
  }

  /** For status: never a token, and never throws. */
  report(): LoginReport {
    return loginReport(this.state, this.vault.tokens(this.url), this.error);
  }

  /** The scopes a login asks for: the server's challenges, else the entry's, else (undefined) the SDK's choice. */
  scopeToAsk(): string | undefined {
    return this.challenges.scopeToAsk(this.entry?.scopes);
  }

  /**
   * Starts a login: the authorization URL a person must open, or undefined when the server
   * needs none (it never asked, and publishes no protected-resource metadata). Rejects with
   * the reason when it cannot start (discovery failed, registration refused, ...).
   */
  async begin(): Promise<Flow | undefined> {
    if (this.options.redirectUrl() === undefined) throw new Error('the daemon has no port to take the login on yet');
    if (!this.asksForLogin && !(await this.publishesMetadata())) return undefined;
    // A login looks again: the authorization server may have changed since the last one.
    this.vault.saveDiscovery(this.url, undefined);
    const flow = this.newFlow('login');
    const result = await auth(this.provider(flow), {
      serverUrl: this.url,
      resourceMetadataUrl: flow.resourceMetadataUrl,
      scope: flow.scope,
      forceReauthorization: true,
      fetchFn: this.fetchFn,
    });
    if (result === 'AUTHORIZED' || flow.url === undefined) return undefined;
    flow.discovery ??= this.vault.discovery(this.url);
    return flow;
  }

  /** Takes the authorization server's answer to `flow` (the code; `iss` is checked): tokens kept, or why not. */
  async finish(flow: Flow, code: string, iss: string | undefined): Promise<void> {
    try {
      await auth(this.provider(flow), {
        serverUrl: this.url,
        authorizationCode: code,
        iss,
        resourceMetadataUrl: flow.resourceMetadataUrl,
        scope: flow.scope,
        fetchFn: this.fetchFn,
      });
    } catch (error) {
      this.error = `the login failed: ${errorText(error)}`;
      throw new Error(errorText(error));
    }
  }

  /** Forgets the tokens (the registration stays), and any renewal under way keeps nothing. True when there were any. */
  logout(): boolean {
    const had = this.vault.tokens(this.url) !== undefined;
    this.generation++;
    this.vault.saveTokens(this.url, undefined);
    this.challenges.reset();
    this.setState(this.challenges.seen || had ? 'needs_login' : 'none', 'logged out');
    return had;
  }

  private async token(): Promise<string | undefined> {
    const held = this.vault.tokens(this.url);
    if (held === undefined) return undefined;
    if (held.refresh_token !== undefined && expiring(held) && Date.now() - this.refreshFailedAt > REFRESH_RETRY_MS) {
      await this.renew(false);
    }
    return this.vault.tokens(this.url)?.access_token;
  }

  private async onUnauthorized(response: Response): Promise<void> {
    const sent = this.sent.get(response);
    await this.renewals.get(this.url);
    const held = this.vault.tokens(this.url);
    if (held === undefined) {
      this.setState('needs_login', this.state === 'needs_login' ? this.error : 'no login yet');
      throw new LoginNeededError(this.name, 'no login yet');
    }
    // Another request renewed it meanwhile (or none was sent): the transport retries with the new one.
    if (sent === undefined || held.access_token !== sent) return;
    await this.renew(true);
  }

  /** One renewal at a time for this resource: a refresh (or, for a refused token, discovery again first). */
  private renew(refused: boolean): Promise<void> {
    let renewing = this.renewals.get(this.url);
    if (renewing === undefined) {
      renewing = this.doRenew(refused).finally(() => this.renewals.delete(this.url));
      this.renewals.set(this.url, renewing);
    }
    return renewing;
  }

  private async doRenew(refused: boolean): Promise<void> {
    // Refused: the authorization server may have moved (its tokens and client are then not used).
    if (refused) this.vault.saveDiscovery(this.url, undefined);
    const flow = this.newFlow('renew');
    let result: 'AUTHORIZED' | 'REDIRECT';
    try {
      result = await auth(this.provider(flow), {
        serverUrl: this.url,
        resourceMetadataUrl: flow.resourceMetadataUrl,
        scope: flow.scope,
        fetchFn: this.fetchFn,
      });
    } catch (error) {
      result = 'REDIRECT';
      this.error = `refreshing the token failed: ${errorText(error)}`;
    }
    if (result === 'AUTHORIZED') return;
    // The SDK takes a refresh that failed for a passing reason (a 5xx, no answer) for "log in again".
    this.refreshFailedAt = Date.now();
    const held = this.vault.tokens(this.url);
    if (!refused && held !== undefined && !expired(held)) {
      this.setState('refresh_failing', this.error?.startsWith('refreshing') ? this.error : 'refreshing the token failed');
      this.options.log?.('oauth refresh failed', { server: this.name, error: this.error }, 'warn');
      return;
    }
    this.setState('needs_login', refused ? 'the server refused the token and it could not be refreshed' : 'the token expired');
    if (refused) throw new LoginNeededError(this.name, 'the server refused the token');
  }

  private noteChallenge(response: Response, bearer: string | undefined): void {
    const held = this.vault.tokens(this.url);
    const who = bearer !== undefined && held?.access_token === bearer && held.login !== undefined ? `login ${held.login}` : bearer;
    const refusal = this.challenges.note(response, who, held?.scope);
    if (refusal === undefined) return;
    const { scope, count } = refusal;
    if (count >= MAX_SCOPE_REFUSALS) {
      this.setState('refused', `${this.name} refused the scopes granted after ${count} logins (it asks for: ${scope ?? 'unnamed scopes'})`);
    } else {
      this.setState('needs_login', `the server asks for more scopes: ${scope ?? 'unnamed'}`);
    }
  }

  private async publishesMetadata(): Promise<boolean> {
    try {
      const resourceMetadataUrl = this.challenges.resourceMetadataUrl;
      await discoverOAuthProtectedResourceMetadata(this.url, { resourceMetadataUrl }, this.fetchFn);
      return true;
    } catch {
      return false;
    }
  }

  private newFlow(purpose: Flow['purpose']): Flow {
    return {
      purpose,
      server: this.name,
      state: randomBytes(32).toString('base64url'),
      scope: this.scopeToAsk(),
      resourceMetadataUrl: this.challenges.resourceMetadataUrl,
      generation: this.generation,
    };
  }

  private setState(state: LoginState, why: string | null): void {
    this.state = state;
    this.error = why;
  }

  private keep(tokens: StoredOAuthTokens, issuer: string | undefined, flow: Flow): void {
    // A renewal that began before a logout keeps nothing: the logout stands.
    if (flow.purpose === 'renew' && flow.generation !== this.generation) return;
    const held = this.vault.tokens(this.url);
    // A login's tokens are that login's; refreshed ones stay the login's they came from, and keep
    // the client they were issued to (a registration of another port would be refused).
    const login = flow.purpose === 'login' ? randomBytes(8).toString('hex') : held?.login;
    const client = flow.client ?? held?.client;
    this.vault.saveTokens(this.url, keptOf(tokens, issuer, login, client));
    this.refreshFailedAt = 0;
    this.setState('logged_in', null);
  }

  private clientOf(issuer: string | undefined, purpose: Flow['purpose']): StoredOAuthClientInformation | undefined {
    const configured = this.entry?.clientId;
    if (configured !== undefined) {
      // Stamped with the issuer, as the SDK wants (else it warns and stamps it again at each use).
      const secret = this.entry?.clientSecret;
      return { client_id: configured, ...(secret !== undefined ? { client_secret: secret } : {}), ...(issuer ? { issuer } : {}) };
    }
    const held = this.vault.tokens(this.url);
    // A renewal uses the client the tokens were issued to; a new login the registration for this port.
    if (purpose === 'renew' && held?.client !== undefined && held.issuer === issuer) return { ...held.client, issuer };
    const redirect = this.options.redirectUrl();
    return issuer === undefined || redirect === undefined ? undefined : this.vault.client(issuer, redirect);
  }

  private saveClient(client: StoredOAuthClientInformation | undefined, issuer: string | undefined): void {
    const redirect = this.options.redirectUrl();
    // A pre-registered client is the config's: nothing to keep.
    if (this.entry?.clientId !== undefined || issuer === undefined || redirect === undefined) return;
    this.vault.saveClient(issuer, redirect, client);
  }

  /** The SDK's view of this login, with `flow` holding what one authorization request needs. */
  private provider(flow: Flow): OAuthClientProvider {
    return sdkProvider(this.host, flow);
  }

  /** What the SDK's provider reaches of this session. */
  private readonly host: ProviderHost = {
    redirectUrl: () => this.options.redirectUrl(),
    clientMetadataUrl: () => this.entry?.clientMetadataUrl,
    client: (issuer, purpose) => this.clientOf(issuer, purpose),
    saveClient: (client, issuer) => this.saveClient(client, issuer),
    tokens: () => this.vault.tokens(this.url),
    keep: (tokens, issuer, flow) => this.keep(tokens, issuer, flow),
    forgetTokens: () => this.vault.saveTokens(this.url, undefined),
    discovery: () => this.vault.discovery(this.url),
    saveDiscovery: (state) => this.vault.saveDiscovery(this.url, state),
  };
}
