/**
 * The daemon's OAuth login routes (hosting/oauth/logins.ts does the logins):
 *
 * - `POST /control/login` `{"server": NAME}`: starts a login; `200 {"server", "url", "state"}`
 *   (or `{"server", "ok": true, "already": true}` when the server needs none), `404` no such
 *   `url` server, `409` it cannot start (the reason), `503` not running.
 * - `POST /control/login-wait` `{"state": STATE}`: answers once that login ended (at most
 *   {@link FLOW_TTL_MS}): `200 {"ok": true, "server", "issuer", "expires_at"}` or
 *   `200 {"ok": false, "server", "error"}`; `404` no such login under way.
 * - `POST /control/logout` `{"server": NAME}`: `200 {"server", "forgot"}`, `404` no such server.
 * - `GET /oauth/callback?code&state&iss` (the redirect URI, opened by the user's browser, so
 *   without the daemon's token): the login with that `state` ends; a small page says how. The
 *   `state` is the proof: random, good once, for a login this daemon started.
 *
 * The control routes come here after server.ts checked Host, Origin and the token (as for
 * `/control/stop`). Nothing here answers with a token, and errors name no secret.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { queryOf, writeJson } from '../../transport/http-wire.js';
import { FLOW_TTL_MS, UnknownServerError, type OAuthLogins } from '../../hosting/oauth/logins.js';
import type { Logger } from '../files/logger.js';
import { jsonField, readSmallBody } from './small-body.js';
import { escapeHtml } from './html.js';

export type LoginAction = 'login' | 'login-wait' | 'logout';

export const LOGIN_PATHS: ReadonlyMap<string, LoginAction> = new Map([
  ['/control/login', 'login'],
  ['/control/login-wait', 'login-wait'],
  ['/control/logout', 'logout'],
]);

/** The redirect URI's path. */
export const CALLBACK_PATH = '/oauth/callback';

/** Largest body read: a server name or a state. */
const MAX_BODY_BYTES = 4096;

export interface LoginRoutesDeps {
  /** The logins (undefined until the core runs, or in a core without them). */
  logins(): OAuthLogins | undefined;
  logger: Pick<Logger, 'warn'>;
}

export class LoginRoutes {
  constructor(private readonly deps: LoginRoutesDeps) {}

  /** An authenticated `POST /control/login*` (server.ts checked method and credential). */
  handle(action: LoginAction, req: IncomingMessage, res: ServerResponse): void {
    readSmallBody(req, MAX_BODY_BYTES, (body) => {
      // Too large: the rest of the body is not read, so the connection ends with the answer (as control.ts does).
      if (body === null) res.setHeader('connection', 'close');
      const logins = this.deps.logins();
      if (logins === undefined) return writeJson(res, 503, { error: 'the daemon is not running its servers yet' });
      const field = action === 'login-wait' ? 'state' : 'server';
      const value = jsonField(body, field);
      if (value === undefined) return writeJson(res, 400, { error: `send {"${field}": "..."}` });
      const answer =
        action === 'login' ? this.login(logins, value) : action === 'logout' ? this.logout(logins, value) : this.wait(logins, value);
      answer.then(
        ({ status, body: reply }) => writeJson(res, status, reply),
        (error: unknown) => {
          this.deps.logger.warn({ err: (error as Error).message, action }, 'login route failed');
          if (!res.headersSent) writeJson(res, 500, { error: (error as Error).message });
        },
      );
    });
  }

  /** `GET /oauth/callback`: the browser comes back from the authorization server. */
  onCallback(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    if (req.method !== 'GET') return writeJson(res, 405, { error: 'method not allowed' });
    const logins = this.deps.logins();
    const query = new URLSearchParams(queryOf(req.url));
    if (logins === undefined) return page(res, 503, 'The daemon is not ready', 'Start the login again in a moment.');
    logins.complete(query).then(
      (outcome) => {
        if (outcome.ok) page(res, 200, `Logged in to ${outcome.server}`, 'Every window can use it now. You may close this tab.');
        else page(res, 400, outcome.server ? `The login to ${outcome.server} failed` : 'The login failed', outcome.error);
      },
      (error: unknown) => {
        // A bug, not the user's: said as such, and the daemon goes on.
        this.deps.logger.warn({ err: (error as Error).message }, 'oauth callback failed');
        if (!res.headersSent) page(res, 500, 'The login could not be completed', 'The daemon failed to take the answer: see its log.');
      },
    );
  }

  private async login(logins: OAuthLogins, server: string): Promise<{ status: number; body: unknown }> {
    try {
      const started = await logins.begin(server);
      if ('already' in started) return { status: 200, body: { server, ok: true, already: true } };
      return { status: 200, body: { server, url: started.url, state: started.state } };
    } catch (error) {
      if (error instanceof UnknownServerError) return { status: 404, body: { error: error.message } };
      return { status: 409, body: { server, error: (error as Error).message } };
    }
  }

  private async logout(logins: OAuthLogins, server: string): Promise<{ status: number; body: unknown }> {
    const forgot = await logins.logout(server);
    if (forgot === undefined) return { status: 404, body: { error: new UnknownServerError(server).message } };
    return { status: 200, body: { server, forgot } };
  }

  private async wait(logins: OAuthLogins, state: string): Promise<{ status: number; body: unknown }> {
    const outcome = logins.wait(state);
    if (outcome === undefined)
      return { status: 404, body: { error: `no login under way with that state (they last ${FLOW_TTL_MS / 60_000} minutes)` } };
    return { status: 200, body: await outcome };
  }
}

/** A small page for the browser the login came back in. */
function page(res: ServerResponse, status: number, title: string, text: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-security-policy': "default-src 'none'",
    'referrer-policy': 'no-referrer',
  });
  res.end(
    `<!doctype html><meta charset="utf-8"><title>${escapeHtml(title)} - exai-ws</title>` +
      `<h1>${escapeHtml(title)}</h1><p>${escapeHtml(text)}</p>\n`,
  );
}
