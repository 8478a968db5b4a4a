/**
 * The daemon's token routes (server.ts): `POST /auth/code` (the one-time codes `exai-ws open`
 * hands to a browser), `POST /auth/challenge` (this daemon proves it holds the token, proof.ts),
 * `POST /auth/rotate` (`exai-ws token rotate`), `POST /control/stop` and `/control/reload`
 * (control.ts), and the 401 answer every route without a credential gets.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { writeJson } from '../../transport/http-wire.js';
import { isNonce } from '../../protocol/hello.js';
import { urlHost } from '../../local/files.js';
import { rotateTokenFile } from '../../local/token.js';
import type { DaemonConfig } from '../files/config.js';
import type { Logger } from '../files/logger.js';
import type { Metrics } from '../files/metrics.js';
import type { ConnectionGuard } from './connections.js';
import type { ControlAction, ControlChannel } from './control.js';
import { endAfterAnswer, readSmallBody } from './small-body.js';
import { escapeHtml } from './html.js';
import type { WebAuth } from './web-auth.js';

/** Largest body `POST /auth/challenge` reads (`{"nonce":"..."}` is 56 bytes). */
const MAX_CHALLENGE_BODY_BYTES = 1024;

export interface AuthRoutesDeps {
  config: DaemonConfig;
  metrics: Metrics;
  logger: Logger;
  auth: WebAuth;
  guard: ConnectionGuard;
  control: ControlChannel;
  /** The port the server listens on (for `/auth/code`'s URL). */
  port(): number;
}

export class AuthRoutes {
  private readonly deps: AuthRoutesDeps;
  private readonly auth: WebAuth;
  private readonly guard: ConnectionGuard;
  private readonly control: ControlChannel;

  constructor(deps: AuthRoutesDeps) {
    this.deps = deps;
    this.auth = deps.auth;
    this.guard = deps.guard;
    this.control = deps.control;
  }

  private get port(): number {
    return this.deps.port();
  }

  /** `POST /auth/code` with the token or a proof: a one-time code for `exai-ws open`'s URL. */
  onAuthCode(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'POST') return writeJson(res, 405, { error: 'method not allowed' });
    if (this.auth.tokenCredential(req) === null) return this.unauthorized(res, 'json');
    this.guard.authenticate(req.socket);
    req.resume();
    const { code, expiresInS } = this.auth.issueCode();
    writeJson(res, 200, { code, url: `http://${urlHost(this.deps.config.host)}:${this.port}/?code=${code}`, expires_in_s: expiresInS });
  }

  /**
   * `POST /auth/challenge` `{"nonce": CLIENT_NONCE}`: this daemon's nonce and proof for the
   * address in `Host`, good for one request with `Authorization: Exai-Proof` (web-auth.ts).
   * Anyone may ask (a client asks before it sends anything of value); the answer reveals
   * nothing a client could use as its own proof.
   */
  onChallenge(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'POST') return writeJson(res, 405, { error: 'method not allowed' });
    const hint = 'send {"nonce": "<32 random bytes, base64url>"}';
    readSmallBody(req, MAX_CHALLENGE_BODY_BYTES, (body) => {
      if (body === null) {
        endAfterAnswer(req, res);
        return writeJson(res, 413, { error: 'body too large', hint });
      }
      let nonce: unknown;
      try {
        nonce = (JSON.parse(body) as { nonce?: unknown } | null)?.nonce;
      } catch {
        nonce = undefined;
      }
      if (!isNonce(nonce)) return writeJson(res, 400, { error: 'bad challenge', hint });
      writeJson(res, 200, this.auth.answerChallenge(nonce, req.headers.host ?? ''));
    });
  }

  /**
   * `POST /auth/rotate` with the token or a proof (`exai-ws token rotate`): a new token, written
   * to the token file (whole, 0600) and taken at once. Open sessions go on; new connections,
   * reconnects and HTTP requests need the new token, the old one is refused from now on. A
   * token from the environment (`EXAI_WS_TOKEN`) is not this daemon's to change: 409.
   */
  onRotate(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'POST') return writeJson(res, 405, { error: 'method not allowed' });
    if (this.auth.tokenCredential(req) === null) return this.unauthorized(res, 'json');
    this.guard.authenticate(req.socket);
    req.resume();
    const { config, logger } = this.deps;
    if (config.token !== undefined) {
      return writeJson(res, 409, {
        error: 'token_from_environment',
        message: 'the daemon takes its token from EXAI_WS_TOKEN, not from the token file: change it where EXAI_WS_TOKEN is set',
      });
    }
    let token: string;
    try {
      token = rotateTokenFile(config.paths.token);
    } catch (error) {
      logger.warn({ err: (error as Error).message, path: config.paths.token }, 'token rotation failed: the old token stays');
      return writeJson(res, 500, { error: 'write_failed', message: (error as Error).message });
    }
    this.auth.setToken(token);
    logger.info({ path: config.paths.token }, 'token rotated: the old token is refused from now on');
    writeJson(res, 200, { ok: true, path: config.paths.token });
  }

  /** `POST /control/stop` and `/control/reload`: authenticated as `/auth/rotate` is, then control.ts. */
  onControl(action: ControlAction, req: IncomingMessage, res: ServerResponse): void {
    this.onAuthenticated(req, res, () => this.control.handle(action, req, res));
  }

  /** A `POST` route of the token's (`/control/*`): `then` runs once the method and the credential passed. */
  onAuthenticated(req: IncomingMessage, res: ServerResponse, then: () => void): void {
    if (req.method !== 'POST') return writeJson(res, 405, { error: 'method not allowed' });
    if (this.auth.tokenCredential(req) === null) return this.unauthorized(res, 'json');
    this.guard.authenticate(req.socket);
    then();
  }

  /** 401, as JSON, plain text or a page telling the user how to log in; the connection is not kept. */
  unauthorized(res: ServerResponse, kind: 'json' | 'text' | 'html', why?: string): void {
    this.deps.metrics.authFailures++;
    // Not kept alive: a connection without the token holds no descriptor past its answer.
    res.setHeader('connection', 'close');
    res.setHeader('www-authenticate', 'Bearer');
    res.setHeader('cache-control', 'no-store');
    const hint = 'run `exai-ws open` for a link that logs this browser in, or send Authorization: Bearer <token>';
    if (kind === 'json') return writeJson(res, 401, { error: 'unauthorized', hint });
    if (kind === 'text') {
      res.writeHead(401, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`Unauthorized: ${why ? `${why}; ` : ''}${hint}\n`);
      return;
    }
    res.writeHead(401, {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
      'x-content-type-options': 'nosniff',
    });
    res.end(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>exai-ws: log in</title>` +
        `<style>body{font:16px system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}code{background:#8882;padding:.1em .3em}</style></head>` +
        `<body><h1>exai-ws</h1><p>${why ? `${escapeHtml(why[0]?.toUpperCase() + why.slice(1))}. ` : ''}This page shows the daemon's sessions and servers, ` +
        `so it needs a login: run <code>exai-ws open</code> in a terminal and follow the link it prints.</p></body></html>`,
    );
  }
}
