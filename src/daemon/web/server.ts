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
import { WebSocketServer, type WebSocket } from 'ws';
import { CloseCode, RpcCode, helloErrorClose, type HelloErrorCode } from '../../protocol/codes.js';
import type { McpHttpEndpoint } from '../../transport/http.js';
import { writeJson } from '../../transport/http-wire.js';
import { checkOpening, type Hello, type HelloAck, type ProofFrame } from '../../protocol/hello.js';
import { urlHost } from '../../local/files.js';
import { computeProof, newNonce, proofValid } from '../../local/proof.js';
import { isNonce } from '../../protocol/hello.js';
import { NAME, VERSION } from '../../protocol/version.js';
import type { DaemonConfig } from '../files/config.js';
import type { Logger } from '../files/logger.js';
import type { Metrics } from '../files/metrics.js';
import type { SessionManager } from '../sessions/sessions.js';
import type { Session } from '../sessions/session.js';
import { rotateTokenFile, tokensEqual } from '../../local/token.js';
import { WsTransport } from '../../transport/ws.js';

import type { PrometheusExporter } from './prometheus.js';
import type { StatusPage } from './status-page.js';
import { WebAuth } from './web-auth.js';
import { CONNECTIONS_CHECK_MS, ConnectionGuard, type DescriptorProbe } from './connections.js';
import { CONTROL_PATHS, ControlChannel, type ControlAction, type ControlDeps } from './control.js';
import { readSmallBody } from './small-body.js';
import { LIVENESS_FIELDS, type HealthReport } from '../../local/health.js';

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
}

const WS_PATHS = new Set(['/', '/ws']);
/** Largest body `POST /auth/challenge` reads (`{"nonce":"..."}` is 56 bytes). */
const MAX_CHALLENGE_BODY_BYTES = 1024;
/** `/mcp`, or `/mcp/NAME` for one hosted server alone. */
const MCP_PATH = /^\/mcp(?:\/([^/]+))?\/?$/;
/** A failure to accept (EMFILE past the reserve) is logged at most this often. */
const ACCEPT_ERROR_LOG_MS = 10_000;
const REQUEST_TIMEOUT_RESPONSE = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n';

/**
 * No `Origin` (editors, CLI clients) or a loopback one, any scheme port: a web page elsewhere
 * must not reach the daemon through the user's browser.
 */
export function originAllowed(origin: string | undefined): boolean {
  if (origin === undefined) return true;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  return url.hostname === '127.0.0.1' || url.hostname === 'localhost' || url.hostname === '[::1]';
}

export class DaemonServer {
  private readonly deps: DaemonServerDeps;
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  private readonly sockets = new Set<WebSocket>();
  private readonly awaitingPong = new WeakSet<WebSocket>();
  private heartbeat: NodeJS.Timeout | undefined;
  private accepting = true;
  private allowedHosts = new Set<string>();
  private readonly auth: WebAuth;
  private readonly guard: ConnectionGuard;
  private readonly control: ControlChannel;
  /** The request each socket is on now: a request timeout is a body timeout while it is being received. */
  private readonly current = new WeakMap<Duplex, { req: IncomingMessage; res: ServerResponse }>();
  private acceptErrorLoggedAtMs = -Infinity;
  port = 0;

  constructor(deps: DaemonServerDeps) {
    this.deps = deps;
    const { config, metrics, logger } = deps;
    this.auth = new WebAuth(deps.token);
    this.control = new ControlChannel(deps.control);
    this.guard = new ConnectionGuard({
      maxUnauthenticated: config.maxUnauthenticated,
      fdReserve: config.fdReserve,
      descriptors: deps.descriptors,
      reject: (reason) => metrics.reject(reason),
      log: (level, details, message) => logger[level](details, message),
    });
    this.http = createServer(
      {
        // Node's defaults (60 s, 300 s, checked every 30 s) let a party without the token hold
        // a connection, and its descriptor, for over a minute: a flood kept up outlasts the limit.
        headersTimeout: config.headersTimeoutMs,
        requestTimeout: config.bodyTimeoutMs,
        connectionsCheckingInterval: CONNECTIONS_CHECK_MS,
      },
      (req, res) => this.onRequest(req, res),
    );
    this.http.on('connection', (socket: Socket) => this.guard.admit(socket));
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
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
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: deps.config.maxBytes,
      perMessageDeflate: false,
      clientTracking: false,
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
        if (this.deps.config.heartbeatMs > 0) {
          this.heartbeat = setInterval(() => this.beat(), this.deps.config.heartbeatMs);
          this.heartbeat.unref();
        }
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
    const deadline = Date.now() + timeoutMs;
    while (this.sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const ws of this.sockets) ws.terminate();
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.http.closeAllConnections();
  }

  get connectionCount(): number {
    return this.sockets.size;
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
    if (mcp) {
      if (this.auth.tokenCredential(req) === null) {
        this.deps.metrics.authFailures++;
        res.setHeader('connection', 'close');
        res.setHeader('www-authenticate', 'Bearer');
        return send(401, {
          jsonrpc: '2.0',
          id: null,
          error: {
            code: RpcCode.INVALID_REQUEST,
            message: 'Unauthorized: send Authorization: Bearer <token> (the token file in EXAI_WS_HOME)',
          },
        });
      }
      this.guard.authenticate(req.socket);
      if (!this.accepting)
        return send(503, { jsonrpc: '2.0', id: null, error: { code: RpcCode.CONNECTION_CLOSED, message: 'daemon is shutting down' } });
      let server: string | undefined;
      try {
        server = mcp[1] === undefined ? undefined : decodeURIComponent(mcp[1]);
      } catch {
        return send(404, { error: 'not found' });
      }
      return this.deps.mcp.handle(req, res, server);
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
    if (path === '/auth/code') return this.onAuthCode(req, res);
    if (path === '/auth/challenge') return this.onChallenge(req, res);
    if (path === '/auth/rotate') return this.onRotate(req, res);
    const control = CONTROL_PATHS.get(path);
    if (control !== undefined) return this.onControl(control, req, res);
    if (path === '/metrics' || path === '/events' || path === '/') return this.onPage(req, res, path);
    send(404, {
      error: 'not found',
      hint: 'WebSocket on / or /ws, Streamable HTTP on /mcp, GET /health, GET /metrics, the status page on /',
    });
  }

  /** `POST /auth/code` with the token or a proof: a one-time code for `exai-ws open`'s URL. */
  private onAuthCode(req: IncomingMessage, res: ServerResponse): void {
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
  private onChallenge(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'POST') return writeJson(res, 405, { error: 'method not allowed' });
    const hint = 'send {"nonce": "<32 random bytes, base64url>"}';
    readSmallBody(req, MAX_CHALLENGE_BODY_BYTES, (body) => {
      if (body === null) {
        // The rest of the body is not read: the connection ends with this answer.
        res.setHeader('connection', 'close');
        res.once('finish', () => req.destroy());
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
  private onRotate(req: IncomingMessage, res: ServerResponse): void {
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
  private onControl(action: ControlAction, req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'POST') return writeJson(res, 405, { error: 'method not allowed' });
    if (this.auth.tokenCredential(req) === null) return this.unauthorized(res, 'json');
    this.guard.authenticate(req.socket);
    this.control.handle(action, req, res);
  }

  /** `/metrics`, the status page and its event stream: the token or the browser's cookie. */
  private onPage(req: IncomingMessage, res: ServerResponse, path: string): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') return writeJson(res, 405, { error: 'method not allowed' });
    const query = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
    const code = path === '/' ? query.get('code') : null;
    if (code !== null) {
      const cookie = this.auth.redeem(code);
      if (cookie === null) return this.unauthorized(res, 'html', 'this link was used already or has expired');
      this.guard.authenticate(req.socket);
      // The code leaves the address bar (and the history) at once.
      res.writeHead(303, { location: '/', 'set-cookie': this.auth.setCookieHeader(cookie), 'cache-control': 'no-store' });
      res.end();
      return;
    }
    if (!this.auth.credential(req)) return this.unauthorized(res, path === '/' ? 'html' : 'text');
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

  private unauthorized(res: ServerResponse, kind: 'json' | 'text' | 'html', why?: string): void {
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

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', destroyOnError);
    const refuse = (status: number, reason: string) => this.refuseUpgrade(socket, status, reason, req.socket.remoteAddress);
    // Host and Origin first, as for plain requests: a foreign page learns nothing else.
    if (!this.hostAllowed(req)) return refuse(403, 'Forbidden');
    if (!originAllowed(req.headers.origin)) return refuse(403, 'Forbidden');
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (!WS_PATHS.has(path)) return refuse(404, 'Not Found');
    if (!this.accepting) return refuse(503, 'Service Unavailable');
    let preauthorized = false;
    if (req.headers.authorization !== undefined) {
      if (this.auth.tokenCredential(req) === null) {
        this.deps.metrics.authFailures++;
        return refuse(401, 'Unauthorized');
      }
      preauthorized = true;
      this.guard.authenticate(socket);
    }
    // hostAllowed above: the Host is one of this daemon's own addresses.
    this.upgrade(req, socket, head, preauthorized, (req.headers.host ?? '').toLowerCase());
  }

  /**
   * Completes an accepted upgrade. Its own scope, so the callback `ws` keeps for the life of
   * the connection does not hold the upgrade request and its headers (about 1 KB a session).
   */
  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, preauthorized: boolean, address: string): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, socket, preauthorized, address));
  }

  private refuseUpgrade(socket: Duplex, status: number, reason: string, remote: string | undefined): void {
    const body = `${reason}\n`;
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    this.deps.logger.warn({ status, reason, remote }, 'upgrade refused');
  }

  /**
   * One WebSocket: the opening (an optional challenge, then the hello) and then its session.
   * `address` is the `Host` it was opened with, what a proof is bound to; `socket` is its
   * connection, authenticated once the hello is accepted.
   */
  private onConnection(ws: WebSocket, socket: Duplex, preauthorized: boolean, address: string): void {
    const { config, manager, metrics, logger } = this.deps;
    this.sockets.add(ws);
    const transport = new WsTransport(ws);
    let session: Session | undefined;
    /** Set once the client challenged: its hello must carry the matching proof. */
    let challenge: { clientNonce: string; daemonNonce: string } | undefined;
    ws.on('pong', () => this.awaitingPong.delete(ws));
    ws.on('error', (error) => logger.debug({ session_id: session?.id, err: error.message }, 'socket error'));
    const helloTimer = setTimeout(() => {
      metrics.reject('hello_timeout');
      transport.close(CloseCode.HELLO_TIMEOUT, `no hello within ${config.helloTimeoutMs} ms`);
    }, config.helloTimeoutMs);
    const refuseHello = (code: HelloErrorCode, message: string) => {
      clearTimeout(helloTimer);
      metrics.reject(code);
      const ack: HelloAck = { type: 'hello_ack', ok: false, error: { code, message } };
      transport.send(JSON.stringify(ack), undefined);
      transport.close(helloErrorClose[code], closeReason(message));
    };
    transport.onbytes = (bytes) => (metrics.bytesIn += bytes);
    transport.onbinary = () => metrics.reject('binary_frame');
    transport.onmessage = (text) => {
      if (session) {
        // A superseded connection's last frames are not the session's any more.
        if (session.transport === transport) session.receive(text);
        return;
      }
      if (!transport.open) return; // refused or timed out already
      const check = checkOpening(text);
      if (!check.ok) return refuseHello(check.code, check.message);
      if ('challenge' in check) {
        if (challenge) return refuseHello('bad_hello', 'one challenge per connection: after the proof, send the hello');
        const daemonNonce = newNonce();
        challenge = { clientNonce: check.challenge.nonce, daemonNonce };
        const proof = computeProof('daemon', this.auth.token, address, challenge.clientNonce, daemonNonce);
        const frame: ProofFrame = { type: 'proof', nonce: daemonNonce, proof };
        transport.send(JSON.stringify(frame), undefined);
        return;
      }
      const refusal = this.helloRefusal(check.hello, preauthorized, challenge, address);
      if (refusal) {
        if (refusal.code === 'unauthorized') metrics.authFailures++;
        return refuseHello(refusal.code, refusal.message);
      }
      if (!this.accepting) return refuseHello('shutting_down', 'daemon is shutting down');
      const opened = manager.open(check.hello);
      if (!opened.ok) return refuseHello(opened.code, opened.message);
      clearTimeout(helloTimer);
      this.guard.authenticate(socket);
      session = opened.session;
      const ack: HelloAck = {
        type: 'hello_ack',
        ok: true,
        session_id: session.id,
        resumed: opened.resumed,
        daemon: { name: NAME, version: VERSION, pid: process.pid },
        limits: { max_inflight: config.maxInflight, max_bytes: config.maxBytes },
        replayed: opened.replayed,
        acks: check.hello.acks === true,
      };
      // The ack goes out ahead of the kept and held messages the attach below delivers.
      transport.send(JSON.stringify(ack), undefined);
      session.attach(transport, { acks: check.hello.acks === true, received: opened.received });
    };
    transport.onclose = (code) => {
      clearTimeout(helloTimer);
      this.sockets.delete(ws);
      if (session) manager.transportClosed(session, transport, code);
    };
  }

  /**
   * Why a hello may not open a session, or null when it may. After a challenge, only the
   * client's proof counts; without one, the bearer upgrade or the token in the hello.
   */
  private helloRefusal(
    hello: Hello,
    preauthorized: boolean,
    challenge: { clientNonce: string; daemonNonce: string } | undefined,
    address: string,
  ): { code: HelloErrorCode; message: string } | null {
    if (challenge) {
      if (hello.auth_proof === undefined) return { code: 'unauthorized', message: 'a hello after a challenge must carry auth_proof' };
      const valid = proofValid(hello.auth_proof, 'client', this.auth.token, address, challenge.clientNonce, challenge.daemonNonce);
      return valid ? null : { code: 'unauthorized', message: 'wrong proof' };
    }
    if (hello.auth_proof !== undefined) return { code: 'bad_hello', message: 'hello.auth_proof needs a challenge first' };
    if (preauthorized) return null;
    const given = hello.auth_token;
    if (given === undefined) return { code: 'unauthorized', message: 'a token is required' };
    return tokensEqual(given, this.auth.token) ? null : { code: 'unauthorized', message: 'wrong token' };
  }

  private beat(): void {
    for (const ws of this.sockets) {
      if (this.awaitingPong.has(ws)) {
        this.deps.logger.info('heartbeat missed: terminating socket');
        ws.terminate();
        continue;
      }
      this.awaitingPong.add(ws);
      ws.ping();
    }
  }
}

/** Longest WebSocket close reason, in bytes (RFC 6455: 125 bytes of payload minus the code). */
const MAX_CLOSE_REASON_BYTES = 123;

/**
 * A close reason cut to what a close frame can carry. The message may quote the client's own
 * text (a server name): `ws` throws on a reason past 123 bytes, so it is cut by bytes, on a
 * character boundary, never by characters.
 */
function closeReason(message: string): string {
  if (Buffer.byteLength(message) <= MAX_CLOSE_REASON_BYTES) return message;
  let cut = '';
  for (const char of message) {
    if (Buffer.byteLength(cut + char) > MAX_CLOSE_REASON_BYTES) break;
    cut += char;
  }
  return cut;
}

function destroyOnError(this: Duplex): void {
  this.destroy();
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
