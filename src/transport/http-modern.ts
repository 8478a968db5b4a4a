/**
 * Streamable HTTP in the modern era (2026-07-28) on `/mcp` and `/mcp/NAME`: no session, each
 * POST is one request whose answer is its response (plain JSON, or an SSE stream when
 * notifications of that request go first). The request's headers must say what its body says
 * (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`: -32020 and 400 otherwise), its `_meta` must
 * carry the version and the client's capabilities (-32602 / -32022 and 400).
 *
 * Each request is served by a session of its own, opened for it and ended once it is answered:
 * the same kind of session WebSocket and legacy HTTP clients get, so routing, quotas and server
 * questions work the same. Closing the response before the answer cancels the request (the
 * modern era's cancellation), and so does the end of a `subscriptions/listen` stream.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RpcCode } from '../protocol/codes.js';
import { MODERN_ERROR_CODES, MODERN_VERSIONS, NAMED_METHODS, modernVersionOf, readModernMeta } from '../protocol/eras.js';
import { clip, isObject, rpcError, type Classified, type RpcErrorObject, type RpcRequest } from '../protocol/jsonrpc.js';
import type { ByteBudget } from './byte-budget.js';
import { HttpTransport, type SsePolling } from './http-transport.js';
import { header } from './http-wire.js';
import type { HttpSessionHost, OpenSession } from './http-session.js';
import type { Selection } from '../protocol/hello.js';

interface Parked {
  readonly session: HttpSessionHost;
  readonly transport: HttpTransport;
  readonly timer: NodeJS.Timeout;
}

/**
 * The `Mcp-Param-*` headers a modern request came with, by the request (names in lower case):
 * the daemon checks them against the called tool's annotations (sessions/modern.ts).
 */
export const PARAM_HEADERS = new WeakMap<RpcRequest, ReadonlyMap<string, string>>();

/** Sessions kept for the retry of a call answered `input_required`, at most. */
export const MAX_PARKED_SESSIONS = 256;

/** How the endpoint tells a call held for its retry (the daemon's requestState, read by the sessions' side). */
export interface HeldStates {
  /** The held call an answer's `requestState` names, when the daemon issued it. */
  issued(answer: string): string | undefined;
  /** The held call a retry's `requestState` names, when the daemon issued it. */
  named(request: RpcRequest): string | undefined;
}

export interface ModernHttpOptions {
  sse: SsePolling;
  /** Calls held for their retry; none are kept without it. */
  held?: HeldStates | undefined;
  /** How long a session waits for the retry of its held call, at most, in milliseconds. */
  parkMs: number;
  eventBudget: ByteBudget;
  open(selection: Selection, client: { name: string; version: string }): OpenSession;
  /** Ends a request's session once it is answered or its client went away. */
  end(session: HttpSessionHost): void;
  /** Answers a refused request with `status` and `body` (and counts it, as the endpoint counts its own). */
  refuse(res: ServerResponse, status: number, body: object): void;
}

/** The stateless endpoint: one session per request, none kept between requests. */
export class ModernHttp {
  private readonly options: ModernHttpOptions;
  /** Requests being served, for shutdown. */
  private readonly running = new Set<HttpTransport>();
  /** Sessions whose call is held for its retry, by the held call. */
  private readonly parked = new Map<string, Parked>();

  constructor(options: ModernHttpOptions) {
    this.options = options;
  }

  /** Serves one parsed POST body whose `MCP-Protocol-Version` names the modern era. */
  message(req: IncomingMessage, res: ServerResponse, server: Selection, c: Classified): void {
    if (c.kind === 'notification') {
      // The modern HTTP wire defines no client notification (cancelling is closing the stream).
      res.writeHead(202).end();
      return;
    }
    if (c.kind !== 'request') {
      return this.options.refuse(res, 400, rpcError(null, RpcCode.INVALID_REQUEST, 'Bad Request: a POST carries one JSON-RPC request'));
    }
    const request = c.message;
    const checked = checkRequest(req, request);
    if ('error' in checked) return this.options.refuse(res, 400, { jsonrpc: '2.0', id: request.id, error: checked.error });
    if (request.method === 'tools/call') PARAM_HEADERS.set(request, paramHeadersOf(req));
    const key = this.options.held?.named(request);
    const parked = key === undefined ? undefined : this.parked.get(key);
    if (parked && key !== undefined) {
      // The retry of a held call goes to the session that holds it.
      this.parked.delete(key);
      clearTimeout(parked.timer);
      return this.serve(res, parked.session, parked.transport, c);
    }
    const info = checked.clientInfo;
    const opened = this.options.open(server, { name: info?.name ?? 'unknown', version: info?.version ?? 'unknown' });
    if (!opened.ok) return this.options.refuse(res, opened.status, rpcError(request.id, opened.code, opened.message));
    const session = opened.session;
    const transport = new HttpTransport(session.id, 0, (t) => this.running.delete(t), this.options.sse, this.options.eventBudget);
    this.running.add(transport);
    session.attach(transport);
    this.serve(res, session, transport, c);
  }

  /** Ends every request being served (shutdown closed their sessions first). */
  close(): void {
    for (const { timer } of this.parked.values()) clearTimeout(timer);
    this.parked.clear();
    for (const transport of [...this.running]) transport.close(1001, 'daemon shutting down');
  }

  private serve(res: ServerResponse, session: HttpSessionHost, transport: HttpTransport, c: Classified & { kind: 'request' }): void {
    const id = c.message.id;
    let answered = false;
    const finish = () => {
      if (!transport.open) return;
      this.options.end(session);
      transport.close(1000, 'request answered');
    };
    transport.onanswered = (_id, text) => {
      answered = true;
      const key = this.options.held?.issued(text);
      // A call held for its retry keeps its session (and so its server's waiting question).
      if (key !== undefined && this.parked.size < MAX_PARKED_SESSIONS) return this.park(key, session, transport, finish);
      finish();
    };
    transport.expect(id, res, {}, false, statusOf);
    res.once('close', () => {
      if (answered) return;
      // The client closed the stream before the answer: that cancels the request.
      session.take({ kind: 'notification', message: { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id } } });
      finish();
    });
    session.take(c);
  }

  private park(key: string, session: HttpSessionHost, transport: HttpTransport, finish: () => void): void {
    const timer = setTimeout(() => {
      if (this.parked.get(key)?.transport === transport) this.parked.delete(key);
      finish();
    }, this.options.parkMs);
    timer.unref();
    this.parked.set(key, { session, transport, timer });
  }
}

/** A request's `Mcp-Param-*` headers, by lower-case name. */
function paramHeadersOf(req: IncomingMessage): ReadonlyMap<string, string> {
  const found = new Map<string, string>();
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith('mcp-param-') && value !== undefined) found.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  return found;
}

/** True when `version` names the modern era. */
export function isModernVersion(version: string | undefined): boolean {
  return version !== undefined && MODERN_VERSIONS.includes(version);
}

/**
 * The checks of a modern request before it is served: its `_meta` (version, capabilities), and
 * its headers against its body. Returns the client's identity, or the error to answer with 400.
 */
export function checkRequest(
  req: IncomingMessage,
  request: RpcRequest,
): { clientInfo: { name?: string | undefined; version?: string | undefined } | undefined } | { error: RpcErrorObject } {
  const mismatch = (message: string) => ({ error: { code: RpcCode.HEADER_MISMATCH, message: `Header mismatch: ${message}` } });
  const version = header(req, 'mcp-protocol-version');
  const named = modernVersionOf(request.params);
  if (named !== undefined && named !== version) {
    return mismatch(`MCP-Protocol-Version ${clip(String(version), 40)} does not match the body's ${clip(named, 40)}`);
  }
  const read = readModernMeta(request.params);
  if ('error' in read) return read;
  const method = header(req, 'mcp-method');
  if (method === undefined) return mismatch('the Mcp-Method header is required');
  if (method !== request.method) return mismatch(`Mcp-Method ${clip(method, 80)} does not match the body's ${clip(request.method, 80)}`);
  const field = NAMED_METHODS.get(request.method);
  if (field !== undefined) {
    const raw = header(req, 'mcp-name');
    if (raw === undefined) return mismatch(`the Mcp-Name header is required for ${request.method}`);
    const name = decodeHeaderValue(raw);
    const body = isObject(request.params) ? request.params[field] : undefined;
    if (name === undefined || name !== body) {
      return mismatch(`Mcp-Name ${clip(raw, 80)} does not match the body's params.${field}`);
    }
  }
  return { clientInfo: read.meta.clientInfo };
}

/** Base64 with its padding, whole quanta only. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * A header value as the modern wire encodes it (`Mcp-Name`, `Mcp-Param-*`): plain visible ASCII,
 * or `=?base64?...?=` of its UTF-8 bytes; undefined when it is neither.
 */
export function decodeHeaderValue(raw: string): string | undefined {
  if (!/^[\t\x20-\x7e]*$/.test(raw)) return undefined;
  const sentinel = /^=\?base64\?(.*)\?=$/.exec(raw);
  if (sentinel === null) return raw;
  const inner = sentinel[1] ?? '';
  if (!BASE64.test(inner)) return undefined;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(inner, 'base64'));
  } catch {
    return undefined;
  }
}

/** The HTTP status of a modern response sent as plain JSON: 404 for an unknown method, 400 for the wire's own errors. */
function statusOf(text: string): number {
  // Errors are short: a long answer (a result) is not searched.
  if (text.length > 8192 || !text.includes('"error"')) return 200;
  try {
    const code = (JSON.parse(text) as { error?: { code?: unknown } }).error?.code;
    if (code === RpcCode.METHOD_NOT_FOUND) return 404;
    return typeof code === 'number' && MODERN_ERROR_CODES.has(code) ? 400 : 200;
  } catch {
    return 200;
  }
}
