/**
 * `/oauth/authorize`: where the user, and only the user, approves a client of the daemon's
 * authorization server (daemon/authz/).
 *
 * - `GET` with the client's request: checked (authorization-server.ts), then the page. A browser
 *   holding the status page's cookie sees "Allow CLIENT to use exai-ws (N tools)"; any other is
 *   asked for the one-time code that `exai-ws open` prints, which it trades for that cookie.
 * - `POST` (a form): the code, or the decision. Either must come from this page: the `Origin`
 *   is the daemon's own, the form's anti-forgery value is the request's, and a decision needs
 *   the cookie. A process can start a request; without the cookie or a code only the user has,
 *   it cannot finish one.
 *
 * The pages have no script, cannot be framed (`frame-ancestors 'none'`, `X-Frame-Options`),
 * are never cached and send no referrer elsewhere (`same-origin`: with `no-referrer` a browser
 * sends `Origin: null` on the page's own form POST, which the Origin check must refuse); no
 * CORS header is ever set here.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { queryOf } from '../../transport/http-wire.js';
import { AUTHZ_PATHS, type AuthorizationServer, type PendingRequest } from '../authz/authorization-server.js';
import type { Logger } from '../files/logger.js';
import { originOf } from './authz-routes.js';
import { CONSENT_SCRIPT_HASH, codePage, consentPage, errorPage } from './consent-page.js';
import type { ConnectionGuard } from './connections.js';
import { endAfterAnswer, readSmallBody } from './small-body.js';
import { CONSENT_KEY_FRAGMENT, type WebAuth } from './web-auth.js';

/** Largest consent form read (a request id, an anti-forgery value and a pasted link). */
const MAX_CONSENT_BODY_BYTES = 4096;
const FRAMED = new Set(['iframe', 'frame', 'embed', 'object', 'fencedframe']);
/** How long the consent page waits for the count of tools it shows. */
const TOOL_COUNT_WAIT_MS = 2_000;
const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': `default-src 'none'; style-src 'unsafe-inline'; script-src '${CONSENT_SCRIPT_HASH}'; frame-ancestors 'none'; base-uri 'none'`,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
};

export interface ConsentRoutesDeps {
  authz: AuthorizationServer;
  auth: WebAuth;
  guard: ConnectionGuard;
  logger: Logger;
  /** How many tools a client would see (the merged view), for the page; undefined when unknown. */
  toolCount(): Promise<number | undefined>;
}

export class ConsentRoutes {
  constructor(private readonly deps: ConsentRoutesDeps) {}

  handle(req: IncomingMessage, res: ServerResponse): void {
    if (req.method === 'GET' || req.method === 'HEAD') {
      this.onGet(req, res).catch((error: unknown) => {
        this.deps.logger.warn({ err: (error as Error).message }, 'authorization request failed');
        send(res, 500, errorPage('the daemon could not check this request'));
      });
      return;
    }
    if (req.method !== 'POST') return send(res, 405, errorPage('method not allowed'));
    readSmallBody(req, MAX_CONSENT_BODY_BYTES, (body) => {
      if (body === null) {
        endAfterAnswer(req, res);
        return send(res, 413, errorPage('the form is too large'));
      }
      this.onPost(req, res, new URLSearchParams(body));
    });
  }

  private async onGet(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A login is opened by the user's browser itself, never inside another page or by another site.
    const dest = req.headers['sec-fetch-dest'];
    if (req.headers['sec-fetch-site'] === 'cross-site' || (dest !== undefined && FRAMED.has(dest)))
      return send(res, 403, errorPage('a login opens in the browser itself, not from another site or inside a frame'));
    const query = new URLSearchParams(queryOf(req.url));
    const again = query.get('request');
    if (again !== null && !query.has('client_id')) {
      const request = this.deps.authz.waiting(again);
      if (request === undefined) return send(res, 400, errorPage('this authorization request has expired or was answered'));
      return this.show(req, res, request);
    }
    const outcome = await this.deps.authz.authorize(query, originOf(req));
    if (outcome.kind === 'error') return send(res, 400, errorPage(outcome.message));
    if (outcome.kind === 'redirect') return redirect(res, outcome.location);
    return this.show(req, res, outcome.request);
  }

  /** The page for `request`: the consent page to a browser with the cookie (unless `askCode`), else the code form. */
  private async show(req: IncomingMessage, res: ServerResponse, request: PendingRequest, problem?: string, askCode = false): Promise<void> {
    if (askCode || !this.deps.auth.cookieValid(req)) return send(res, problem === undefined ? 200 : 401, codePage(request, problem));
    this.deps.authz.seen(request);
    this.deps.guard.authenticate(req.socket);
    // The count is for the user's information: a list slow to come is not waited for long.
    const tools = await Promise.race([this.deps.toolCount().catch(() => undefined), delay(TOOL_COUNT_WAIT_MS)]);
    send(res, 200, consentPage(request, tools));
  }

  private onPost(req: IncomingMessage, res: ServerResponse, form: URLSearchParams): void {
    // Browsers send `Origin` with every POST; a page elsewhere (even another loopback port) or
    // a forged form must not answer for the user.
    if (req.headers.origin !== originOf(req) || (req.headers['sec-fetch-site'] ?? 'same-origin') !== 'same-origin')
      return send(res, 403, errorPage('approvals are accepted from this page only'));
    const request = this.deps.authz.waiting(form.get('request') ?? '', form.get('csrf') ?? '');
    if (request === undefined)
      return send(res, 400, errorPage('this authorization request has expired, was answered, or the form is not its own'));
    const code = form.get('code');
    if (code !== null) {
      const cookie = this.deps.auth.redeem(codeOf(code));
      if (cookie === null)
        return void this.show(
          req,
          res,
          request,
          'That code was used already, has expired, or is not one: run `exai-ws open --print` again.',
        );
      this.deps.guard.authenticate(req.socket);
      this.deps.authz.seen(request);
      res.writeHead(303, {
        location: `${AUTHZ_PATHS.authorize}?request=${encodeURIComponent(request.id)}${CONSENT_KEY_FRAGMENT}${this.deps.auth.issueConsentKey()}`,
        'set-cookie': this.deps.auth.setCookieHeader(cookie),
        'cache-control': 'no-store',
      });
      res.end();
      return;
    }
    const decision = form.get('decision');
    if (decision !== 'allow' && decision !== 'deny') return send(res, 400, errorPage('the form names no decision'));
    if (!this.deps.auth.cookieValid(req)) return void this.show(req, res, request, 'Your browser is not logged in to this daemon.');
    // The cookie alone is not enough: browsers send it to every port of 127.0.0.1. The key is in
    // this origin's storage only (web-auth.ts CONSENT_KEY_STORAGE).
    if (!this.deps.auth.consentKeyValid(form.get('key') ?? ''))
      return void this.show(req, res, request, 'This browser holds no approval key for this daemon: confirm with a one-time code.', true);
    this.deps.guard.authenticate(req.socket);
    const { client_id, client_name } = request.client;
    this.deps.logger.info(
      { client_id, client_name, allowed: decision === 'allow' },
      decision === 'allow' ? 'OAuth client approved' : 'OAuth client denied',
    );
    redirect(res, this.deps.authz.decide(request, decision === 'allow'));
  }
}

/** The code in what the user pasted: the code itself, or the whole link `exai-ws open` printed. */
function codeOf(pasted: string): string {
  const text = pasted.trim();
  try {
    return new URL(text).searchParams.get('code') ?? text;
  } catch {
    return text;
  }
}

function delay(ms: number): Promise<undefined> {
  return new Promise((resolve) => setTimeout(() => resolve(undefined), ms).unref());
}

function send(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { ...PAGE_HEADERS, 'content-length': Buffer.byteLength(html) });
  res.end(html);
}

function redirect(res: ServerResponse, location: string): void {
  res.writeHead(303, { location, 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' });
  res.end();
}
