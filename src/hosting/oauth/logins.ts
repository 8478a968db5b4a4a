/**
 * Every `url` server's login, for the whole daemon: one {@link OAuthSession} per server (made
 * when its transport is, or when a login is asked first), the logins under way by their `state`,
 * and the callback that finishes them.
 *
 * A login starts from `exai-ws login NAME` (the control route) or from a window told to log in
 * (URL elicitation); either way it is the same kind of flow, good once, for
 * {@link FLOW_TTL_MS}, at most {@link MAX_FLOWS} at a time (the oldest is dropped). The
 * callback takes the code, the session exchanges it, and the daemon checks that the server
 * accepts the token ({@link LoginHooks.verify}) before the login is said to be done.
 *
 * Loading the SDK's client waits for the first session: a daemon hosting no `url` server never
 * loads it.
 */
import type { FetchLike } from '@modelcontextprotocol/client';
import type { LoginReport } from '../../local/health.js';
import type { LocalErrorCode } from '../../local/errors.js';
import type { CoreLog } from '../core-log.js';
import type { HttpSpec } from '../upstream-config.js';
import type { Flow, OAuthSession } from './session.js';
import { errorText, loginReport } from './kept.js';
import type { OAuthVault } from './vault.js';

/** How long a started login may take before its answer is refused. */
export const FLOW_TTL_MS = 10 * 60_000;
/** Logins under way at most (a client asking again and again cannot grow this). */
export const MAX_FLOWS = 64;
/** How long a window told to log in is given the same login as the window told before it. */
export const REUSE_MS = 60_000;

/** How a login ended. */
export type LoginOutcome =
  { ok: true; server: string; issuer: string | null; expires_at: string | null } | { ok: false; server: string; error: string };

/** What the core does for logins: reach the server once (its challenge), and check a new token. */
export interface LoginHooks {
  /** The entry of a `url` server by name (undefined: no such server, or not a `url` one). */
  specOf(name: string): HttpSpec | undefined;
  /** Makes the server answer once, so that its challenge (scopes, metadata URL) is known. Never rejects. */
  probe(name: string): Promise<void>;
  /** After new tokens: the server is started (again) now and asked once; the reason it refuses, or undefined. */
  verify(name: string): Promise<string | undefined>;
}

interface Pending {
  flow: Flow;
  /** The answer came (good once); the outcome stays for whoever waits, until the login's time is up. */
  answered: boolean;
  session: OAuthSession;
  startedAtMs: number;
  outcome: Promise<LoginOutcome>;
  settle: (outcome: LoginOutcome) => void;
}

/** A login started: the URL to open and its `state`; or the server needs none. */
export type Started = { state: string; url: string } | { already: true };

export class OAuthLogins {
  private readonly sessions = new Map<string, { spec: HttpSpec; session: OAuthSession }>();
  private readonly flows = new Map<string, Pending>();
  /** Refreshes under way by resource: entries with the same URL share one. */
  private readonly renewals = new Map<string, Promise<void>>();
  hooks: LoginHooks | undefined;

  constructor(
    private readonly vault: OAuthVault,
    private readonly redirectUrl: () => string | undefined,
    private readonly log?: CoreLog,
    /** For requests to authorization servers (default: the global fetch; tests answer in memory). */
    private readonly fetch?: FetchLike,
  ) {}

  /** The session of this entry: the one it had, unless its URL or `oauth` changed. */
  async sessionFor(spec: HttpSpec): Promise<OAuthSession> {
    const had = this.sessions.get(spec.name);
    if (had && had.spec.url === spec.url && JSON.stringify(had.spec.oauth) === JSON.stringify(spec.oauth)) return had.session;
    const { OAuthSession } = await import('./session.js');
    const session = new OAuthSession({
      name: spec.name,
      url: spec.url,
      entry: spec.oauth,
      vault: this.vault,
      redirectUrl: this.redirectUrl,
      log: this.log,
      renewals: this.renewals,
      ...(this.fetch ? { fetch: this.fetch } : {}),
    });
    this.sessions.set(spec.name, { spec, session });
    return session;
  }

  /** A `url` server's login for status (from what is kept, before its first start); undefined for other servers. */
  report(name: string): LoginReport | undefined {
    const spec = this.hooks?.specOf(name);
    if (spec === undefined) return undefined;
    const had = this.sessions.get(name);
    if (had !== undefined && had.spec.url === spec.url) return had.session.report();
    const tokens = this.vault.tokens(spec.url);
    return loginReport(tokens === undefined ? 'none' : 'logged_in', tokens, null);
  }

  /** Why a failed call to this server failed for want of a login, if it did. */
  need(name: string): { kind: 'needed' | 'refused'; message: string } | undefined {
    return this.sessions.get(name)?.session.need;
  }

  /**
   * Starts a login to `name`; `onDone` hears how it ended (once). Rejects with the reason when
   * it cannot start: no such `url` server, discovery or registration failed.
   */
  async begin(name: string, onDone?: (outcome: LoginOutcome) => void, reuse = false): Promise<Started> {
    const spec = this.hooks?.specOf(name);
    if (spec === undefined) throw new UnknownServerError(name);
    const session = await this.sessionFor(spec);
    // Windows calling while a login is needed share a recent one (a window calling in a loop
    // starts no new login, nor a request to the authorization server, each time).
    const recent = reuse ? this.recentFlow(session) : undefined;
    if (recent?.flow.url !== undefined) {
      if (onDone) void recent.outcome.then(onDone);
      return { state: recent.flow.state, url: recent.flow.url };
    }
    if (!session.asksForLogin) await this.hooks?.probe(name);
    const flow = await session.begin();
    if (flow === undefined || flow.url === undefined) return { already: true };
    this.sweep();
    let settle: (outcome: LoginOutcome) => void = () => undefined;
    const outcome = new Promise<LoginOutcome>((resolve) => (settle = resolve));
    if (onDone) void outcome.then(onDone);
    this.flows.set(flow.state, { flow, session, answered: false, startedAtMs: Date.now(), outcome, settle });
    // Whoever waits for it hears when it expires, even if nothing else comes by.
    setTimeout(() => this.drop(flow.state, 'the login was not completed in time'), FLOW_TTL_MS).unref();
    while (this.flows.size > MAX_FLOWS) this.drop(this.flows.keys().next().value as string, 'too many logins under way');
    this.log?.('oauth login started', { server: name });
    return { state: flow.state, url: flow.url };
  }

  /** How the login with this `state` ends; undefined when no such login is under way. */
  wait(state: string): Promise<LoginOutcome> | undefined {
    this.sweep();
    return this.flows.get(state)?.outcome;
  }

  /** The authorization server's answer (the callback's query): the login ends, and how is returned. */
  async complete(query: URLSearchParams): Promise<LoginOutcome> {
    this.sweep();
    const state = query.get('state') ?? '';
    const pending = this.flows.get(state);
    if (pending === undefined || pending.answered) {
      return { ok: false, server: '', error: 'this login is unknown, was used already or has expired: start it again' };
    }
    // Good once: a second answer with the same state is refused.
    pending.answered = true;
    const server = pending.flow.server;
    const outcome = await this.finish(pending, query);
    this.log?.(
      outcome.ok ? 'oauth login done' : 'oauth login failed',
      outcome.ok ? { server } : { server, error: outcome.error },
      outcome.ok ? undefined : 'warn',
    );
    pending.settle(outcome);
    return outcome;
  }

  /** Forgets the server's tokens. Undefined when there is no such `url` server. */
  async logout(name: string): Promise<boolean | undefined> {
    const spec = this.hooks?.specOf(name);
    if (spec === undefined) return undefined;
    const forgot = (await this.sessionFor(spec)).logout();
    this.log?.('oauth logout', { server: name });
    return forgot;
  }

  private async finish(pending: Pending, query: URLSearchParams): Promise<LoginOutcome> {
    const server = pending.flow.server;
    const refused = query.get('error');
    if (refused !== null) {
      const said = query.get('error_description');
      return { ok: false, server, error: `the authorization server refused: ${errorText(refused)}${said ? ` (${errorText(said)})` : ''}` };
    }
    const code = query.get('code');
    if (code === null || code === '') return { ok: false, server, error: 'the answer carries no code' };
    // The server left the config (or moved) while the person logged in: nothing is kept for it.
    if (this.hooks?.specOf(server)?.url !== pending.session.url)
      return { ok: false, server, error: 'the server is no longer in the config' };
    try {
      await pending.session.finish(pending.flow, code, query.get('iss') ?? undefined);
    } catch (error) {
      return { ok: false, server, error: `the login failed: ${errorText(error)}` };
    }
    const refusal = await this.hooks?.verify(server);
    if (refusal !== undefined) return { ok: false, server, error: `the server does not accept the new token: ${refusal}` };
    const report = pending.session.report();
    return { ok: true, server, issuer: report.issuer, expires_at: report.expires_at };
  }

  /** A login to this session's server started within {@link REUSE_MS} that asks the scopes it would ask now. */
  private recentFlow(session: OAuthSession): Pending | undefined {
    const now = Date.now();
    let found: Pending | undefined;
    for (const pending of this.flows.values()) {
      const fresh = !pending.answered && now - pending.startedAtMs < REUSE_MS;
      if (pending.session === session && fresh && pending.flow.scope === session.scopeToAsk()) found = pending;
    }
    return found;
  }

  private sweep(): void {
    const now = Date.now();
    for (const [state, pending] of this.flows) {
      if (now - pending.startedAtMs >= FLOW_TTL_MS) this.drop(state, 'the login was not completed in time');
    }
  }

  private drop(state: string, why: string): void {
    const pending = this.flows.get(state);
    if (pending === undefined) return;
    this.flows.delete(state);
    pending.settle({ ok: false, server: pending.flow.server, error: why });
  }
}

/** No `url` server of that name. */
export class UnknownServerError extends Error {
  override name = 'UnknownServerError';
  readonly code = 'EUNKNOWN_SERVER' satisfies LocalErrorCode;
  constructor(readonly server: string) {
    super(`no url server named ${JSON.stringify(server.slice(0, 100))} in the config`);
  }
}
