/**
 * The daemon's authorization server on the wire (daemon/authz/): the metadata documents, client
 * registration, the token and revocation endpoints, and what `/mcp` answers a request without
 * a credential (401 with `resource_metadata`, as the MCP authorization spec says, so that a
 * client logs in instead of giving up). CORS for loopback origins on these and on `/mcp`, so
 * that a browser-based client (the Inspector's web UI) can use them; never on the consent page.
 *
 * Every body read is bounded ({@link MAX_FORM_BYTES}); every answer is `no-store`. A token
 * issued here appears in no log line and in no answer but the token endpoint's.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { queryOf, writeJson } from '../../transport/http-wire.js';
import { RpcCode } from '../../protocol/codes.js';
import { AUTHZ_PATHS, AuthorizationServer } from '../authz/authorization-server.js';
import { isRefusal, type OAuthRefusal } from '../authz/clients.js';
import type { Grant } from '../authz/grants.js';
import type { Logger } from '../files/logger.js';
import type { Metrics } from '../files/metrics.js';
import { endAfterAnswer, jsonField, readSmallBody } from './small-body.js';
import { bearerOf } from './web-auth.js';

/**
 * `exai-ws clients`: `POST /control/clients` lists the clients that hold tokens (`{"clients": [...]}`);
 * `POST /control/clients-revoke` `{"name": NAME}` revokes every token of the clients of that
 * name or id (`{"revoked": [...]}`, 404 when none matched). Authenticated like `/control/stop`.
 */
export const CLIENTS_PATHS: ReadonlyMap<string, 'list' | 'revoke'> = new Map([
  ['/control/clients', 'list'],
  ['/control/clients-revoke', 'revoke'],
]);

/** Largest registration, token or revocation body read (a registration is well under 2 KiB). */
export const MAX_FORM_BYTES = 16 * 1024;
const WELL_KNOWN_RESOURCE = new RegExp(`^${AUTHZ_PATHS.resourceMetadata}(?:/mcp(?:/[^/]+)?)?/?$`);
const WELL_KNOWN_SERVER = new RegExp(`^${AUTHZ_PATHS.serverMetadata}/?$`);
/** Request headers a browser-based MCP client sends (CORS preflight). */
const CORS_HEADERS = 'authorization, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id, mcp-method, mcp-name';
const POST_PATHS: ReadonlySet<string> = new Set([AUTHZ_PATHS.register, AUTHZ_PATHS.token, AUTHZ_PATHS.revoke]);
const CORS_EXPOSED = 'mcp-session-id, mcp-protocol-version, www-authenticate';

export interface AuthzRoutesDeps {
  authz: AuthorizationServer;
  logger: Logger;
  metrics: Metrics;
}

export class AuthzRoutes {
  constructor(private readonly deps: AuthzRoutesDeps) {}

  /** Whether `path` is one of this file's routes (the consent page is consent-routes.ts's). */
  handles(path: string): boolean {
    return WELL_KNOWN_RESOURCE.test(path) || WELL_KNOWN_SERVER.test(path) || POST_PATHS.has(path);
  }

  /**
   * CORS for a loopback `Origin` (server.ts has refused any other) on `/mcp` and this file's
   * routes: the answer's headers, and a preflight answered here (true: nothing else to do).
   */
  cors(req: IncomingMessage, res: ServerResponse): boolean {
    const origin = req.headers.origin;
    if (origin === undefined) return false;
    res.setHeader('access-control-allow-origin', origin);
    res.setHeader('vary', 'Origin');
    res.setHeader('access-control-expose-headers', CORS_EXPOSED);
    if (req.method !== 'OPTIONS') return false;
    res.writeHead(204, {
      'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS',
      'access-control-allow-headers': CORS_HEADERS,
      'access-control-max-age': '600',
    });
    res.end();
    return true;
  }

  handle(path: string, req: IncomingMessage, res: ServerResponse): void {
    const origin = originOf(req);
    if (WELL_KNOWN_RESOURCE.test(path) || WELL_KNOWN_SERVER.test(path)) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return writeJson(res, 405, { error: 'method not allowed' });
      req.resume();
      const resource = `${path.slice(AUTHZ_PATHS.resourceMetadata.length) || '/mcp'}${queryPart(req.url)}`;
      const document = WELL_KNOWN_SERVER.test(path)
        ? AuthorizationServer.serverMetadata(origin)
        : AuthorizationServer.resourceMetadata(origin, resource);
      return writeJson(res, 200, document);
    }
    if (req.method !== 'POST') return writeJson(res, 405, { error: 'method not allowed' });
    readSmallBody(req, MAX_FORM_BYTES, (body) => {
      if (body === null) {
        endAfterAnswer(req, res);
        return writeJson(res, 413, { error: 'invalid_request', error_description: `the body is over ${MAX_FORM_BYTES} bytes` });
      }
      if (path === AUTHZ_PATHS.register) return this.onRegister(body, res);
      const form = formOf(req, body);
      if (form === null)
        return writeJson(res, 400, { error: 'invalid_request', error_description: 'send application/x-www-form-urlencoded' });
      if (path === AUTHZ_PATHS.revoke) {
        const token = form.get('token');
        if (!token) return writeJson(res, 400, { error: 'invalid_request', error_description: 'send token' });
        this.deps.authz.grants.revokeToken(token);
        res.writeHead(200, { 'cache-control': 'no-store', 'content-length': 0 });
        return res.end();
      }
      this.onToken(form, basicClientId(req.headers.authorization), res);
    });
  }

  /**
   * The grant of the `Authorization: Bearer` access token of a `/mcp` request, or the 401 sent
   * (null): `WWW-Authenticate` names the resource metadata, and `invalid_token` when a token was
   * sent that is not (or no longer) good, so that the client refreshes or logs in again.
   */
  mcpGrant(req: IncomingMessage, res: ServerResponse): Grant | null {
    const bearer = bearerOf(req.headers.authorization);
    const verdict = bearer === undefined ? 'missing' : this.deps.authz.grants.verify(bearer);
    if (typeof verdict === 'object') return verdict;
    this.deps.metrics.authFailures++;
    const origin = originOf(req);
    // The metadata of the very URL asked (RFC 9728 3.3: its `resource` must be that URL).
    const path = (req.url ?? '/mcp').split('?')[0] ?? '/mcp';
    const metadata = `${origin}${AUTHZ_PATHS.resourceMetadata}${path}${queryPart(req.url)}`;
    // Only visible ASCII in a header (setHeader throws on less), and no quote to end the value early.
    const quoted = metadata.replace(/[^\x21-\x7e]|["\\]/g, (c) => encodeURIComponent(c));
    const challenge = [`Bearer resource_metadata="${quoted}"`, `scope="mcp"`];
    if (verdict !== 'missing')
      challenge.push(
        `error="invalid_token"`,
        `error_description="${verdict === 'expired' ? 'the access token expired' : 'the access token is not valid'}"`,
      );
    res.setHeader('connection', 'close');
    res.setHeader('www-authenticate', challenge.join(', '));
    writeJson(res, 401, {
      jsonrpc: '2.0',
      id: null,
      error: {
        code: RpcCode.INVALID_REQUEST,
        message:
          'Unauthorized: log in with OAuth (this daemon is its own authorization server), or send Authorization: Bearer <token> (the token file in EXAI_WS_HOME)',
      },
    });
    return null;
  }

  /** An authenticated `POST /control/clients*` (server.ts checked method and credential). */
  onClients(action: 'list' | 'revoke', req: IncomingMessage, res: ServerResponse): void {
    readSmallBody(req, MAX_FORM_BYTES, (body) => {
      if (body === null) res.setHeader('connection', 'close');
      const { authz, logger } = this.deps;
      if (action === 'list') return writeJson(res, 200, { clients: authz.holders() });
      const name = jsonField(body, 'name');
      if (name === undefined) return writeJson(res, 400, { error: 'send {"name": "..."}' });
      const revoked = authz.revoke(name);
      if (revoked.length === 0) return writeJson(res, 404, { error: `no client named ${name} holds a token`, clients: authz.holders() });
      logger.info({ clients: revoked.map((c) => ({ client_id: c.client_id, client_name: c.client_name })) }, 'OAuth client tokens revoked');
      writeJson(res, 200, { revoked });
    });
  }

  private onRegister(body: string, res: ServerResponse): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      return writeJson(res, 400, { error: 'invalid_client_metadata', error_description: 'the body is not JSON' });
    }
    const answer = this.deps.authz.register(parsed);
    if (isRefusal(answer)) return writeJson(res, answer.error === 'temporarily_unavailable' ? 503 : 400, answer);
    // Debug: anyone may register (a line each would be a line at their will); an approval is logged at info.
    this.deps.logger.debug({ client_id: answer.client_id, client_name: answer.client_name }, 'OAuth client registered');
    writeJson(res, 201, answer);
  }

  private onToken(form: URLSearchParams, basicId: string | undefined, res: ServerResponse): void {
    const answer = this.deps.authz.token(form, basicId);
    if (isRefusal(answer)) return writeJson(res, refusalStatus(answer), answer);
    res.setHeader('pragma', 'no-cache');
    writeJson(res, 200, answer);
  }
}

/** `?QUERY` of a request URL, or '' (a profile's `/mcp?profile=NAME` is another resource URL). */
function queryPart(url: string | undefined): string {
  const query = queryOf(url);
  return query === '' ? '' : `?${query}`;
}

/** The daemon's origin as this request named it (`Host` was checked against the daemon's own). */
export function originOf(req: IncomingMessage): string {
  return `http://${(req.headers.host ?? '').toLowerCase()}`;
}

function refusalStatus(answer: OAuthRefusal): number {
  return answer.error === 'invalid_client' ? 401 : 400;
}

function formOf(req: IncomingMessage, body: string): URLSearchParams | null {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') return null;
  return new URLSearchParams(body);
}

/** The client id of `Authorization: Basic` (a public client may send one with an empty secret). */
function basicClientId(authorization: string | undefined): string | undefined {
  const encoded = /^Basic\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
  if (encoded === undefined) return undefined;
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  try {
    return decodeURIComponent(colon < 0 ? decoded : decoded.slice(0, colon));
  } catch {
    return undefined;
  }
}
