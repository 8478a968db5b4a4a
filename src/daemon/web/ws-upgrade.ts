/**
 * The WebSocket side of the daemon's HTTP server (server.ts): the upgrade on `/` and `/ws`,
 * checked like a plain request (Host, Origin, an optional bearer), then the opening on the
 * socket: an optional challenge (the daemon's proof for the `Host` the client connected to),
 * then the hello with the token or the client's proof, then its session. A bad first frame, a
 * second challenge or a hello without its proof is refused on that connection alone. Sockets
 * missing a heartbeat pong are terminated.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { CloseCode, helloErrorClose, type HelloErrorCode } from '../../protocol/codes.js';
import { checkOpening, type Hello, type HelloAck, type ProofFrame } from '../../protocol/hello.js';
import { NAME, VERSION } from '../../protocol/version.js';
import { computeProof, newNonce, proofValid } from '../../local/proof.js';
import { tokensEqual } from '../../local/token.js';
import { WsTransport } from '../../transport/ws.js';
import type { DaemonConfig } from '../files/config.js';
import type { Logger } from '../files/logger.js';
import type { Metrics } from '../files/metrics.js';
import type { SessionManager } from '../sessions/sessions.js';
import type { Session } from '../sessions/session.js';
import type { ConnectionGuard } from './connections.js';
import { originAllowed } from './origin.js';
import type { WebAuth } from './web-auth.js';

const WS_PATHS = new Set(['/', '/ws']);

export interface WsUpgradeDeps {
  config: DaemonConfig;
  manager: SessionManager;
  metrics: Metrics;
  logger: Logger;
  /** The server's token keeper (the current token, after rotations). */
  auth: WebAuth;
  /** The server's connection guard: a socket is authenticated once its hello is accepted. */
  guard: ConnectionGuard;
  /** The `Host` names this daemon (server.ts). */
  hostAllowed(req: IncomingMessage): boolean;
  /** False once the server stopped accepting (shutdown): upgrades get 503, hellos `shutting_down`. */
  accepting(): boolean;
}

/** The WebSocket connections of the daemon: their upgrade, opening, heartbeat and count. */
export class WsUpgrades {
  private readonly deps: WsUpgradeDeps;
  private readonly wss: WebSocketServer;
  private readonly sockets = new Set<WebSocket>();
  private readonly awaitingPong = new WeakSet<WebSocket>();
  private readonly auth: WebAuth;
  private readonly guard: ConnectionGuard;
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(deps: WsUpgradeDeps) {
    this.deps = deps;
    this.auth = deps.auth;
    this.guard = deps.guard;
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: deps.config.maxBytes,
      perMessageDeflate: false,
      clientTracking: false,
    });
  }

  /** Open WebSocket connections, with or without a session. */
  get count(): number {
    return this.sockets.size;
  }

  /** Pings every socket each `intervalMs`; one that missed the last pong is terminated. */
  startHeartbeat(intervalMs: number): void {
    this.heartbeat = setInterval(() => this.beat(), intervalMs);
    this.heartbeat.unref();
  }

  /** Resolves when every WebSocket has closed, terminating stragglers after `timeoutMs`; stops the heartbeat. */
  async waitForSockets(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const ws of this.sockets) ws.terminate();
    if (this.heartbeat) clearInterval(this.heartbeat);
  }

  private get accepting(): boolean {
    return this.deps.accepting();
  }

  private hostAllowed(req: IncomingMessage): boolean {
    return this.deps.hostAllowed(req);
  }

  /** The HTTP server's `upgrade` event. */
  onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
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
