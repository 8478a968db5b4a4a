/**
 * One MCP client connection from the daemon to one server (the built-in server over an
 * in-memory transport, later the user's hosted servers). Many sessions share a link: each
 * call gets a link-local request id and progress token, so replies and progress find their
 * way back to the caller and never to another session. The ids are random (request-ids.ts):
 * an answer under an id no call is waiting for (a server's off-by-one, a duplicate) is dropped
 * and reported (`onstray`), never given to another call.
 */
import type { JSONRPCMessage, Transport } from '@modelcontextprotocol/client';
import { RpcCode } from '../protocol/codes.js';
import { classify, serializeFailure, type Answer, type RequestId, type RpcNotification, type RpcRequest } from '../protocol/jsonrpc.js';
import { GLOBAL_TIMERS, PendingRequests } from '../protocol/pending.js';
import { RelayedResult, scanSuccess } from '../protocol/relay.js';
import { PROBE_TIMEOUT_MS, type CallOptions, type CallOutcome, type ServerLinkOptions } from './call.js';
import { CLIENT_INFO, openEra, type HandshakePort } from './handshake.js';
import { isLineTransport, type LineTransport } from './line-transport.js';
import { unusedId } from './request-ids.js';
import { RequestOrigins, isRequestId, type ServerRequestContext } from './request-origin.js';
import { LEGACY_VERSION, withoutModernMeta, type Era } from './modern.js';
import { ModernSession, type ModernPort } from './modern-link.js';
import { answerOf, errorText } from './link-answers.js';

export { notSupported } from './link-answers.js';

export type { CallOptions, CallOutcome, ServerLinkOptions } from './call.js';
export type { ServerRequestContext } from './request-origin.js';

/** Answers one server-to-client request (sampling, elicitation, roots). Never rejects. */
export type ServerRequestHandler = (request: RpcRequest, context: ServerRequestContext) => Promise<Answer>;

export type LinkState = 'new' | 'starting' | 'ready' | 'closed';

interface Pending {
  resolve: (outcome: CallOutcome) => void;
  onProgress: ((params: Record<string, unknown>) => void) | undefined;
  cleanup: (() => void) | undefined;
  origin: string | undefined;
  related: RequestId | undefined;
}

/**
 * Ids of calls given up on (cancelled, timed out) remembered per link: a server may answer one
 * after all, which is no stray, and a new call must not get its id while it may.
 */
const MAX_ABANDONED = 1_024;

export class ServerLink {
  readonly name: string;
  state: LinkState = 'new';
  /** The server's initialize result, once ready. */
  initializeResult: Record<string, unknown> | undefined;
  /** Server notifications other than progress (list_changed, logging, ...). */
  onnotification: ((message: RpcNotification) => void) | undefined;
  /** Fired once when the link closes, for whatever reason. */
  onclose: (() => void) | undefined;
  /** Answers sampling, elicitation and roots requests; without it they are refused. */
  onrequest: ServerRequestHandler | undefined;
  /** An answer came under an id no call is waiting for: it was dropped. */
  onstray: ((id: unknown) => void) | undefined;

  private readonly transport: Transport;
  /** The transport's line interface, when it has one (a child process): see {@link LineTransport}. */
  private readonly lines: LineTransport | undefined;
  private readonly options: Required<Omit<ServerLinkOptions, 'streamOf'>>;
  /** Which era the link speaks, once started: `modern` (2026-07-28) or `legacy` (initialize). */
  era: Era | undefined;
  /** The era the server spoke at its last start (Upstream remembers it): a legacy one is not probed first. */
  eraHint: Era | undefined;
  /** The modern era's side of the link, when it speaks it. */
  private modern: ModernSession | undefined;
  /** Who caused a server's request (the tasks the link's calls created among it). */
  private readonly origins: RequestOrigins;

  /** The client capabilities this link declared to the server at initialize. */
  get declaredCapabilities(): Readonly<Record<string, unknown>> {
    return this.options.capabilities;
  }
  /** Calls sent and not yet answered, with their deadlines (-32001) and fail-all on close (-32011). */
  private readonly pending = new PendingRequests<RequestId, Pending>(GLOBAL_TIMERS, { sharedDeadlines: true });
  /** Ids of calls given up on, oldest first (see MAX_ABANDONED). */
  private readonly abandoned = new Set<RequestId>();
  private starting: Promise<void> | undefined;
  /** The transport error that ended the link, for what its calls are told (`ENOTFOUND host`). */
  private lostBecause: string | undefined;

  constructor(name: string, transport: Transport, options: ServerLinkOptions = {}) {
    this.name = name;
    this.transport = transport;
    this.lines = isLineTransport(transport) ? transport : undefined;
    this.options = {
      capabilities: options.capabilities ?? {},
      isFatal: options.isFatal ?? (() => false),
      protocol: options.protocol ?? LEGACY_VERSION,
      probeTimeoutMs: options.probeTimeoutMs ?? PROBE_TIMEOUT_MS,
    };
    this.origins = new RequestOrigins(options.streamOf);
  }

  /**
   * Opens the transport and runs the initialize handshake. Idempotent; rejects if it fails. It
   * sets no deadline of its own: its owner (Upstream, `initTimeoutMs`) bounds the whole start and
   * closes the link when it passes, so the reason recorded is the deadline.
   */
  start(): Promise<void> {
    this.starting ??= this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<void> {
    this.state = 'starting';
    this.transport.onmessage = (message) => this.receive(message);
    if (this.lines) this.lines.online = (line) => this.relay(line);
    this.transport.onclose = () => this.handleClose();
    this.transport.onerror = (error) => {
      // Most transport errors surface as a close or as failed calls; a lost connection closes the link.
      if (this.options.isFatal(error)) {
        this.lostBecause ??= errorText(error);
        void this.close();
      }
    };
    await this.transport.start();
    const port = this.port();
    let opened: Awaited<ReturnType<typeof openEra>>;
    try {
      const { protocol: setting, capabilities, probeTimeoutMs } = this.options;
      opened = await openEra(port, { setting, hint: this.eraHint, capabilities, probeTimeoutMs });
    } catch (error) {
      // A server that answered with its refusal (a modern-only one names the versions it
      // supports) is stopped without waiting: the caller learns the refusal, not the exit this
      // close causes. A link that failed (the process exiting on its own) is closed first, so
      // that its exit and the last of its stderr are in when the caller says why.
      if ((error as { answered?: unknown }).answered === true) void this.close();
      else await this.close();
      throw error;
    }
    this.era = opened.era;
    if (opened.era === 'modern') {
      this.modern = new ModernSession(port, { capabilities: this.options.capabilities, clientInfo: CLIENT_INFO }, opened.discover);
      this.initializeResult = this.modern.initializeResult;
    } else {
      this.initializeResult = opened.initializeResult;
    }
    this.state = 'ready';
    this.modern?.listen();
  }

  /** What the era's helpers (handshake.ts, modern-link.ts) may do with this link. */
  private port(): HandshakePort & ModernPort {
    const open = () => this.state !== 'closed';
    return {
      name: this.name,
      send: (method, params, options) => this.send(method, params, options),
      sendNotification: (method, params) => this.sendNotification(method, params),
      emit: (notification) => this.onnotification?.(notification),
      get open() {
        return open();
      },
    };
  }

  /**
   * Sends one request and resolves with its outcome, in the era the server speaks: a modern
   * server gets the modern `_meta` (and what the era removed is said its way, modern-link.ts);
   * a legacy one gets none of the `io.modelcontextprotocol/*` keys. Never rejects: see {@link send}.
   */
  call(method: string, params: Record<string, unknown> | undefined, options: CallOptions): Promise<CallOutcome> {
    if (this.modern) return this.modern.call(method, params, options);
    return this.send(method, this.era === 'legacy' ? withoutModernMeta(params) : params, options);
  }

  /**
   * Sends one request as it is given and resolves with its outcome. Never rejects: a closed
   * link, a send failure or the deadline (none when `timeoutMs` is Infinity) become error
   * outcomes with the codes in DESIGN.md.
   */
  private send(method: string, params: Record<string, unknown> | undefined, options: CallOptions): Promise<CallOutcome> {
    if (this.state === 'closed') return Promise.resolve(this.unavailable('server connection is closed'));
    const id = unusedId(options.related, (candidate) => this.pending.has(candidate) || this.abandoned.has(candidate));
    let sendParams = params;
    const token = (params?._meta as Record<string, unknown> | undefined)?.progressToken;
    if (token !== undefined && options.onProgress) {
      // The server sees only link-local tokens; the caller maps progress back to its own.
      sendParams = { ...params, _meta: { ...(params?._meta as object), progressToken: id } };
    }
    return new Promise<CallOutcome>((resolve) => {
      const cancel = options.cancel;
      // Never sent: the server must not hear a cancellation for a request it never got.
      if (cancel?.aborted) {
        resolve(null);
        return;
      }
      const entry: Pending = {
        resolve,
        onProgress: options.onProgress,
        cleanup: undefined,
        origin: options.origin,
        related: options.related,
      };
      const deadline = Number.isFinite(options.timeoutMs)
        ? {
            ms: options.timeoutMs,
            onexpire: () => {
              this.abandon(id, entry, 'request timed out');
              resolve({ error: { code: RpcCode.REQUEST_TIMEOUT, message: `request timed out after ${options.timeoutMs} ms` } });
            },
          }
        : undefined;
      this.pending.add(id, entry, deadline);
      if (cancel) {
        entry.cleanup = cancel.onAbort(() => {
          if (this.take(id) === undefined) return;
          this.abandon(id, undefined, cancel.reason ?? 'cancelled by the client');
          resolve(null);
        });
      }
      const message = sendParams === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params: sendParams };
      const failed = (error: unknown) => this.sendFailed(id, error);
      if (this.lines === undefined) return void this.transport.send(message as JSONRPCMessage).catch(failed);
      let text: string;
      try {
        text = JSON.stringify(message);
      } catch (error) {
        return failed(error);
      }
      this.lines.sendText(text, failed);
    });
  }

  /** A call's request could not be sent: its caller gets why, unless it was answered already. */
  private sendFailed(id: RequestId, error: unknown): void {
    const done = this.take(id);
    if (error instanceof RangeError) {
      // JSON.stringify gave up on the caller's params (nested too deeply, too large): the
      // caller's fault, and the server never saw it.
      done?.resolve({
        error: {
          code: RpcCode.INVALID_PARAMS,
          message: `Invalid params: the request cannot be sent to ${this.name}: ${serializeFailure(error)}`,
        },
      });
      return;
    }
    const failed = this.unavailable(`send failed: ${errorText(error)}`);
    // A local error's code goes with it (ELOGIN_NEEDED: the handshake does not fall back then).
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && failed && 'error' in failed) failed.error.data = { server: this.name, cause: code };
    done?.resolve(failed);
  }

  /** Sends a notification to the server (a modern one gets only what its era knows); dropped silently once the link is closed. */
  notify(method: string, params?: Record<string, unknown>): void {
    if (this.modern) this.modern.notify(method, params);
    else this.sendNotification(method, params);
  }

  private sendNotification(method: string, params?: Record<string, unknown>): void {
    if (this.state === 'closed') return;
    const message = params === undefined ? { jsonrpc: '2.0', method } : { jsonrpc: '2.0', method, params };
    this.transport.send(message as JSONRPCMessage).catch(() => undefined);
  }

  /** Requests sent and not yet answered (a modern server's listen stream is none: nobody waits for it). */
  get inflight(): number {
    return this.pending.size - (this.modern?.listens ?? 0);
  }

  /** Closes the transport; every pending call resolves with -32011. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    await this.transport.close().catch(() => undefined);
    this.handleClose();
  }

  private handleClose(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.modern?.close();
    const closed = this.unavailable(`server connection closed${this.lostBecause ? `: ${this.lostBecause}` : ''}`);
    this.pending.failAll((entry) => {
      entry.cleanup?.();
      entry.resolve(closed);
    });
    this.onclose?.();
  }

  private unavailable(message: string): CallOutcome {
    return { error: { code: RpcCode.UPSTREAM_UNAVAILABLE, message: `${this.name}: ${message}`, data: { server: this.name } } };
  }

  /** Takes a call's entry out (its answer came, or its send failed) and stops its deadline and cancellation. */
  private take(id: RequestId): Pending | undefined {
    const entry = this.pending.settle(id);
    entry?.cleanup?.();
    return entry;
  }

  /**
   * A call given up on (deadline, the caller's cancellation), already out of the table: the
   * server is told to cancel it, and a late answer to it is no stray.
   */
  private abandon(id: RequestId, expired: Pending | undefined, reason: string): void {
    expired?.cleanup?.();
    this.abandoned.add(id);
    if (this.abandoned.size > MAX_ABANDONED) this.abandoned.delete(this.abandoned.values().next().value as RequestId);
    this.notify('notifications/cancelled', { requestId: id, reason });
  }

  /**
   * A server's line, before it is parsed: a plain success response to a call in flight is relayed
   * as its text (protocol/relay.ts). Anything else (errors, strays, tasks) is left to {@link receive}: false.
   */
  private relay(line: string): boolean {
    const head = scanSuccess(line);
    if (head === undefined) return false;
    const entry = this.pending.get(head.id);
    // A task's owner is remembered from the parsed result (see receive).
    if (entry === undefined || (head.task && entry.origin !== undefined)) return false;
    this.take(head.id);
    entry.resolve(new RelayedResult(line.slice(head.start, head.end)));
    return true;
  }

  private receive(raw: unknown): void {
    const c = classify(raw);
    switch (c.kind) {
      case 'response': {
        const id = c.message.id;
        const entry = isRequestId(id) ? this.take(id) : undefined;
        if (!entry) {
          // A late reply to a call given up on is the server's right; anything else answers no one.
          if (!(isRequestId(id) && this.abandoned.delete(id))) this.onstray?.(id);
          return;
        }
        const answer = answerOf(this.name, c.message);
        if (entry.origin !== undefined && 'result' in answer) this.origins.remember(answer.result, entry.origin);
        entry.resolve(answer);
        return;
      }
      case 'notification': {
        const n = c.message;
        if (n.method === 'notifications/progress') {
          const token = n.params?.progressToken;
          if (isRequestId(token)) this.pending.get(token)?.onProgress?.(n.params ?? {});
          return;
        }
        if (this.modern) this.modernNotification(n);
        else this.onnotification?.(n);
        return;
      }
      case 'request':
        this.answerServerRequest(c.message);
        return;
      case 'invalid':
        return;
    }
  }

  /**
   * A modern server's notification. Its `notifications/cancelled` ends the request it names (a
   * listen stream the server tears down): that call is answered with an error.
   */
  private modernNotification(n: RpcNotification): void {
    const id = n.params?.requestId;
    if (n.method !== 'notifications/cancelled' || !isRequestId(id)) return void this.modern?.receive(n);
    const reason = typeof n.params?.reason === 'string' ? `: ${n.params.reason}` : '';
    this.take(id)?.resolve(this.unavailable(`the server cancelled the request${reason}`));
  }

  private answerServerRequest(request: RpcRequest): void {
    const send = (body: Answer) =>
      this.transport.send({ jsonrpc: '2.0', id: request.id, ...body }).catch((error: unknown) => {
        // The client's answer (its own data) could not be serialised: the server still gets one answer.
        if (!(error instanceof RangeError)) return;
        const failed = { code: RpcCode.INTERNAL_ERROR, message: `the client's answer cannot be sent: ${serializeFailure(error)}` };
        return this.transport.send({ jsonrpc: '2.0', id: request.id, error: failed }).catch(() => undefined);
      });
    if (request.method === 'ping') {
      void send({ result: {} });
      return;
    }
    if (!this.onrequest) {
      void send({ error: { code: RpcCode.METHOD_NOT_FOUND, message: `${request.method} is not supported by this client` } });
      return;
    }
    void this.onrequest(request, this.origins.of(request, this.pending))
      .catch((error: unknown): Answer => ({
        error: { code: RpcCode.INTERNAL_ERROR, message: `internal error: ${error instanceof Error ? error.message : String(error)}` },
      }))
      .then(send);
  }
}
