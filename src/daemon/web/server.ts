/**
 * The daemon's HTTP server, on loopback: WebSocket upgrades on `/` and `/ws` (hello first, then
 * JSON-RPC frames), Streamable HTTP on `/mcp` and `/mcp/NAME`, `GET /health`, `GET /metrics`
 * (Prometheus), the status page on `GET /` with its live updates on `GET /events`, and
 * `POST /auth/code` (the one-time codes `exai-ws open` hands to a browser), `POST
 * /auth/challenge` (this daemon proves it holds the token, proof.ts), `POST /auth/rotate`
 * (`exai-ws token rotate`) and `POST /control/stop` and `/control/reload` (`exai-ws stop`,
 * `restart`, `reload`; control.ts). Every request and upgrade must name the daemon's own address in
 * `Host` (DNS rebinding) and carry either no `Origin` or a loopback one (cross-site requests
 * and WebSocket hijacking): 403 otherwise. `/mcp`, `/auth/code`, `/auth/rotate` and `/control/*` take the
 * token as `Authorization: Bearer` or a proof of it as `Authorization: Exai-Proof`; `/metrics`,
 * `/` and `/events` those or the browser's session cookie (web-auth.ts): 401 otherwise.
 * `/health` answers anyone with liveness only (the pid lock and auto-start need no token) and
 * the full report to a request with a credential.
 *
 * This file routes; the WebSocket upgrade and hello are ws-upgrade.ts, the token routes
 * (`/auth/*`, `/control/*`) and the 401 answer auth-routes.ts, the `Origin` check origin.ts.
 *
 * A WebSocket opens with a hello carrying the token (or with a bearer upgrade), or with a
 * challenge: the daemon answers its proof for the `Host` the client connected to, and the
 * hello must then carry the client's proof (`auth_proof`). A bad first frame, a second
 * challenge or a hello without its proof is refused on that connection alone.
 *
 * What a party without the token can hold is bounded (connections.ts): connections that have not
 * authenticated (no authorized request yet; a WebSocket before its hello) are few, the oldest
 * giving way to new ones; descriptors are kept for the daemon's own work; request headers (or
 * an upgrade) must arrive within EXAI_WS_HEADERS_TIMEOUT_MS and a whole request, body included,
 * within EXAI_WS_BODY_TIMEOUT_MS. Node checks both deadlines every {@link CONNECTIONS_CHECK_MS};
 * they end with the request (a streamed response is not bounded, nor is an upgraded socket).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { RpcCode } from '../../protocol/codes.js';
import type { McpHttpEndpoint } from '../../transport/http.js';
import { queryOf, writeJson } from '../../transport/http-wire.js';
import { urlHost } from '../../local/files.js';
import type { DaemonConfig } from '../files/config.js';
import type { Logger } from '../files/logger.js';
import type { Metrics } from '../files/metrics.js';
import type { SessionManager } from '../sessions/sessions.js';

import type { PrometheusExporter } from './prometheus.js';
import type { StatusPage } from './status-page.js';
import { CONSENT_KEY_FRAGMENT, WebAuth } from './web-auth.js';
import { CONNECTIONS_CHECK_MS, ConnectionGuard, type DescriptorProbe } from './connections.js';
import { CONTROL_PATHS, ControlChannel, type ControlDeps } from './control.js';
import { CALLBACK_PATH, LOGIN_PATHS, LoginRoutes, type LoginRoutesDeps } from './login-routes.js';
import { LIVENESS_FIELDS, type HealthReport } from '../../local/health.js';
import { scaledMs } from '../../local/timer-scale.js';
import { AuthRoutes } from './auth-routes.js';
import { originAllowed } from './origin.js';
import { WsUpgrades } from './ws-upgrade.js';
import { AUTHZ_PATHS, AuthorizationServer } from '../authz/authorization-server.js';
import { GrantFileStore } from '../files/grant-store.js';
import { AuthzRoutes, CLIENTS_PATHS } from './authz-routes.js';
import { ConsentRoutes } from './consent-routes.js';
import { join } from 'node:path';
import type { Selection } from '../../protocol/hello.js';

export { originAllowed } from './origin.js';

export interface DaemonServerDeps {
  config: DaemonConfig;
  /** The token at start; `POST /auth/rotate` replaces it (the server keeps the current one). */
  token: string;
  manager: SessionManager;
  metrics: Metrics;
  logger: Logger;
  /** The body of `GET /health` for a request with the token or cookie. */
  health(): HealthReport;
  /** Streamable HTTP on `/mcp`. */
  mcp: McpHttpEndpoint;
  /** `GET /metrics`. */
  prometheus: Pick<PrometheusExporter, 'contentType' | 'render'>;
  /** `GET /` and `GET /events`. */
  statusPage: Pick<StatusPage, 'page' | 'events'>;
  /** The process's descriptor limit and use (default: from `/proc`, see connections.ts). */
  descriptors?: DescriptorProbe;
  /** `POST /control/stop` and `/control/reload` (control.ts). */
  control: ControlDeps;
  /** OAuth logins to `url` servers: `/control/login*`, `/control/logout`, `/oauth/callback` (login-routes.ts). */
  logins?: LoginRoutesDeps['logins'];
  /** The daemon's own authorization server (default: its grants kept in `<home>/oauth/issued.json`). */
  authz?: AuthorizationServer;
  /** How many tools the merged view lists, for the consent page. */
  toolCount?: () => Promise<number | undefined>;
}

/** `/mcp`, or `/mcp/NAME` for one hosted server alone. */
const MCP_PATH = /^\/mcp(?:\/([^/]+))?\/?$/;
/** A failure to accept (EMFILE past the reserve) is logged at most this often. */
const ACCEPT_ERROR_LOG_MS = 10_000;
const REQUEST_TIMEOUT_RESPONSE = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n';

export class DaemonServer {
  private readonly deps: DaemonServerDeps;
  private readonly http: Server;
  private readonly ws: WsUpgrades;
  private readonly routes: AuthRoutes;
  private readonly logins: LoginRoutes;
  private readonly oauth: AuthzRoutes;
  private readonly consent: ConsentRoutes;
  /** The daemon's own authorization server (`exai-ws clients`). */
  readonly authz: AuthorizationServer;
  private accepting = true;
  private allowedHosts = new Set<string>();
  private readonly auth: WebAuth;
  private readonly guard: ConnectionGuard;
  /** The request each socket is on now: a request timeout is a body timeout while it is being received. */
  private readonly current = new WeakMap<Duplex, { req: IncomingMessage; res: ServerResponse }>();
  private acceptErrorLoggedAtMs = -Infinity;
  port = 0;

  constructor(deps: DaemonServerDeps) {
    this.deps = deps;
    const { config, metrics, logger } = deps;
    this.auth = new WebAuth(deps.token);
    this.guard = new ConnectionGuard({
      maxUnauthenticated: config.maxUnauthenticated,
      fdReserve: config.fdReserve,
      descriptors: deps.descriptors,
      reject: (reason) => metrics.reject(reason),
      log: (level, details, message) => logger[level](details, message),
    });
    this.routes = new AuthRoutes({
      config,
      metrics,
      logger,
      auth: this.auth,
      guard: this.guard,
      control: new ControlChannel(deps.control),
      port: () => this.port,
    });
    this.logins = new LoginRoutes({ logins: deps.logins ?? (() => undefined), logger });
    this.authz = deps.authz ?? new AuthorizationServer({ store: new GrantFileStore(join(config.paths.oauth, 'issued.json'), logger) });
    this.oauth = new AuthzRoutes({ authz: this.authz, logger, metrics });
    this.consent = new ConsentRoutes({
      authz: this.authz,
      auth: this.auth,
      guard: this.guard,
      logger,
      toolCount: deps.toolCount ?? (() => Promise.resolve(undefined)),
    });
    this.ws = new WsUpgrades({
      config,
      manager: deps.manager,
      metrics,
      logger,
      auth: this.auth,
      guard: this.guard,
      hostAllowed: (req) => this.hostAllowed(req),
      accepting: () => this.accepting,
    });
    this.http = createServer(
      {
        // Node's defaults (60 s, 300 s, checked every 30 s) let a party without the token hold
        // a connection, and its descriptor, for over a minute: a flood kept up outlasts the limit.
        headersTimeout: config.headersTimeoutMs,
        requestTimeout: config.bodyTimeoutMs,
        connectionsCheckingInterval: scaledMs(CONNECTIONS_CHECK_MS, config.timerScale),
      },
      (req, res) => this.onRequest(req, res),
    );
    this.http.on('connection', (socket: Socket) => this.guard.admit(socket));
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.ws.onUpgrade(req, socket, head));
    this.http.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => this.onClientError(error, socket));
    // Accepting can fail (EMFILE, ENFILE) while the server goes on listening: an unheard 'error'
    // would end the daemon. A bind failure is listen()'s to report.
    this.http.on('error', (error: NodeJS.ErrnoException) => {
      if (!this.http.listening) return;
      metrics.reject('accept_failed');
      if (Date.now() - this.acceptErrorLoggedAtMs < ACCEPT_ERROR_LOG_MS) return;
      this.acceptErrorLoggedAtMs = Date.now();
      logger.warn({ err: error.message, code: error.code }, 'accepting a connection failed; the daemon goes on listening');
    });
  }

  /**
   * Binds the loopback address on `port` (default: the configured one); resolves with the bound
   * port. A failed bind (EADDRINUSE) leaves the server unbound: it may be called again with
   * another port (daemon.ts binds a port of the home's own so, see own-port.ts).
   */
  listen(port: number = this.deps.config.port): Promise<number> {
    const { host } = this.deps.config;
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.off('error', reject);
        const address = this.http.address();
        this.port = typeof address === 'object' && address ? address.port : port;
        this.allowedHosts = new Set([`${urlHost(host)}:${this.port}`, `localhost:${this.port}`]);
        if (this.deps.config.heartbeatMs > 0) this.ws.startHeartbeat(this.deps.config.heartbeatMs);
        resolve(this.port);
      });
    });
  }

  /** Stops listening; new connections and upgrades are refused from now on. */
  stopAccepting(): void {
    this.accepting = false;
    this.guard.close();
    this.http.close();
    this.http.closeIdleConnections();
  }

  /** Resolves when every WebSocket has closed, terminating stragglers after `timeoutMs`. */
  async waitForSockets(timeoutMs: number): Promise<void> {
    await this.ws.waitForSockets(timeoutMs);
    this.http.closeAllConnections();
  }

  get connectionCount(): number {
    return this.ws.count;
  }

  /** Open connections (HTTP and WebSocket), those not authenticated yet, and the descriptor cap. */
  get connections(): { open: number; unauthenticated: number; descriptorCap: number | undefined } {
    return { ...this.guard.counts, descriptorCap: this.guard.descriptorCap };
  }

  /**
   * A malformed request, or one past its deadline (Node's check): the socket is closed, with a
   * 408 when nothing of a response was sent on it yet.
   */
  private onClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
    if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      const current = this.current.get(socket);
      const receiving = current !== undefined && !current.req.complete;
      this.deps.metrics.reject(receiving ? 'body_timeout' : 'headers_timeout');
      // Debug: anyone may start a request (`/auth/challenge`), so a line each is a line at their will; counted above.
      if (receiving) this.deps.logger.debug({ path: current.req.url }, 'request body not complete in time: connection closed');
      // Nothing of a response on the wire yet (none, the last one done, or this one unsent).
      if (socket.writable && (!current || current.res.writableEnded || !current.res.headersSent)) socket.write(REQUEST_TIMEOUT_RESPONSE);
    }
    socket.destroy();
  }

  private hostAllowed(req: IncomingMessage): boolean {
    const host = req.headers.host?.toLowerCase();
    return host !== undefined && this.allowedHosts.has(host);
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    this.current.set(req.socket, { req, res });
    const send = (status: number, body: unknown) => writeJson(res, status, body);
    // JSON-RPC error bodies, so that an MCP client over HTTP reads them like any other refusal.
    const forbidden = (message: string) =>
      send(403, { jsonrpc: '2.0', id: null, error: { code: RpcCode.INVALID_REQUEST, message: `Forbidden: ${message}` } });
    if (!this.hostAllowed(req)) return forbidden('Host must name this daemon (127.0.0.1:PORT or localhost:PORT)');
    if (!originAllowed(req.headers.origin)) return forbidden('only loopback origins may call the daemon');
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const mcp = MCP_PATH.exec(path);
    const oauth = this.oauth.handles(path);
    // CORS for loopback origins (browser-based clients), never for the pages or the token's routes.
    if ((mcp || oauth) && this.oauth.cors(req, res)) return;
    if (oauth) return this.oauth.handle(path, req, res);
    if (path === AUTHZ_PATHS.authorize) return this.consent.handle(req, res);
    if (mcp) {
      // The daemon's token (or a proof of it), else an access token of its authorization server.
      if (this.auth.tokenCredential(req) === null && this.oauth.mcpGrant(req, res) === null) return;
      this.guard.authenticate(req.socket);
      if (!this.accepting)
        return send(503, { jsonrpc: '2.0', id: null, error: { code: RpcCode.CONNECTION_CLOSED, message: 'daemon is shutting down' } });
      let selection: Selection;
      try {
        selection = mcpSelection(mcp[1], req.url ?? '');
      } catch {
        return send(404, { error: 'not found' });
      }
      return this.deps.mcp.handle(req, res, selection);
    }
    if (path === '/health') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, { error: 'method not allowed' });
      const report = this.deps.health();
      if (this.auth.credential(req)) {
        this.guard.authenticate(req.socket);
        return send(200, report);
      }
      return send(200, Object.fromEntries(LIVENESS_FIELDS.map((key) => [key, report[key]])));
    }
    if (path === '/auth/code') return this.routes.onAuthCode(req, res);
    if (path === '/auth/challenge') return this.routes.onChallenge(req, res);
    if (path === '/auth/rotate') return this.routes.onRotate(req, res);
    const control = CONTROL_PATHS.get(path);
    if (control !== undefined) return this.routes.onControl(control, req, res);
    const login = LOGIN_PATHS.get(path);
    if (login !== undefined) return this.routes.onAuthenticated(req, res, () => this.logins.handle(login, req, res));
    if (path === CALLBACK_PATH) return this.logins.onCallback(req, res);
    const clients = CLIENTS_PATHS.get(path);
    if (clients !== undefined) return this.routes.onAuthenticated(req, res, () => this.oauth.onClients(clients, req, res));
    if (path === '/metrics' || path === '/events' || path === '/') return this.onPage(req, res, path);
    send(404, {
      error: 'not found',
      hint: 'WebSocket on / or /ws, Streamable HTTP on /mcp, GET /health, GET /metrics, the status page on /',
    });
  }
  /** `/metrics`, the status page and its event stream: the token or the browser's cookie. */
  private onPage(req: IncomingMessage, res: ServerResponse, path: string): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') return writeJson(res, 405, { error: 'method not allowed' });
    const query = new URLSearchParams(queryOf(req.url));
    const code = path === '/' ? query.get('code') : null;
    if (code !== null) {
      const cookie = this.auth.redeem(code);
      if (cookie === null) return this.routes.unauthorized(res, 'html', 'this link was used already or has expired');
      this.guard.authenticate(req.socket);
      // The code leaves the address bar (and the history) at once; the consent key rides in the
      // fragment, which the page keeps in its origin's storage (web-auth.ts CONSENT_KEY_STORAGE).
      res.writeHead(303, {
        location: `/${CONSENT_KEY_FRAGMENT}${this.auth.issueConsentKey()}`,
        'set-cookie': this.auth.setCookieHeader(cookie),
        'cache-control': 'no-store',
        'referrer-policy': 'no-referrer',
      });
      res.end();
      return;
    }
    if (!this.auth.credential(req)) return this.routes.unauthorized(res, path === '/' ? 'html' : 'text');
    this.guard.authenticate(req.socket);
    if (path === '/') return this.deps.statusPage.page(req, res);
    if (path === '/events') return this.deps.statusPage.events(req, res);
    this.deps.prometheus.render().then(
      (body) => {
        res.writeHead(200, { 'content-type': this.deps.prometheus.contentType, 'cache-control': 'no-store' });
        res.end(body);
      },
      (error: unknown) => {
        this.deps.logger.warn({ err: (error as Error).message }, 'metrics scrape failed');
        if (!res.headersSent) writeJson(res, 500, { error: 'metrics could not be rendered' });
        else res.destroy();
      },
    );
  }
}

/**
 * What an `/mcp` URL asks for: `/mcp/NAME` one hosted server alone, `?profile=NAME` a profile
 * of the config (the session manager refuses an unknown one, and both together). Throws on a
 * malformed escape.
 */
function mcpSelection(name: string | undefined, url: string): Selection {
  const selection: Selection = {};
  if (name !== undefined) selection.server = decodeURIComponent(name);
  const profile = new URLSearchParams(queryOf(url)).get('profile');
  if (profile !== null) selection.profile = profile;
  return selection;
}
