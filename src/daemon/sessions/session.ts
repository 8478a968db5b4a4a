/**
 * One client's MCP session. It outlives its socket: while detached (socket gone, within the
 * resume grace) its requests keep running and their messages are held, to be delivered in
 * order when a client attaches with the same session id.
 *
 * What goes out to the client (backpressure, held frames, the frames kept for a lossless
 * resume) is its {@link Outbox}'s business.
 *
 * One object per session: its state is private, read through getters and changed through
 * methods. It owns its outbox, its router, its requests in flight and queued, the requests it
 * sent the client on servers' behalf (a {@link PendingRequests}: -32001 past their deadline,
 * -32000 when the session ends), its resume grace timer, and its {@link SessionContext} (the
 * core's side: view, declared capabilities, log level, servers used, subscriptions; kept in mux/
 * because the multiplexer reads it and must not import daemon/). {@link Session.close} releases
 * all of it.
 *
 * Flow control (in flight, queued, refused with -32010) is its {@link RequestFlow}'s.
 */
import { RpcCode } from '../../protocol/codes.js';
import { parseMessage, type RequestId, type Answer, type Classified, type RpcRequest, type RpcResponse } from '../../protocol/jsonrpc.js';
import type { LogLevel } from '../../protocol/log-levels.js';
import { PendingRequests } from '../../protocol/pending.js';
import { RelayedResponse } from '../../protocol/relay.js';
import type { Hub, RouterHub } from '../../mux/hub.js';
import type { ClientInfo, Era, SessionContext, SessionOpening, ToolListSize } from '../../mux/session-context.js';
import type { ToolCapLookup } from '../../hosting/tool-caps-config.js';
import type { Upstream } from '../../hosting/upstream.js';
import type { DaemonConfig } from '../files/config.js';
import type { Cancellation } from '../../hosting/cancellation.js';
import { RequestFlow, toolOf } from './flow.js';
import { Outbox, type AttachOptions } from './outbox.js';
import type { Transport, TransportKind } from '../../transport/transport.js';
import type { ByteBudget } from '../../transport/byte-budget.js';
import type { Logger } from '../files/logger.js';
import type { CloseReason, Metrics } from '../files/metrics.js';
import { LatencyRing } from './latency-ring.js';
import { Router } from './router.js';
import { Listens } from './listens.js';
import { serializeFor } from './unsendable.js';
import { ClientWindow, type WindowToolsReport } from './client-window.js';

export type { AttachOptions } from './outbox.js';
export { NOTIFY_DROP_BYTES, OUTPUT_HIGH_WATER_BYTES, OUTPUT_LOW_WATER_BYTES } from './outbox.js';
export { RETRY_AFTER_MS } from './flow.js';

export type SessionState = 'attached' | 'detached' | 'closed';

/** What a session needs of the hub: its own context, and the lookups its router makes. */
export type SessionHub = RouterHub & Pick<Hub, 'openSession'>;

export interface SessionDeps {
  hub: SessionHub;
  config: DaemonConfig;
  metrics: Metrics;
  logger: Logger;
  /** Asks the owner to end this session (hold overflow). */
  expire(session: Session, reason: CloseReason): void;
  /** Held messages of every detached session together (`EXAI_WS_HOLD_TOTAL_MAX_BYTES`). */
  holdBudget?: ByteBudget;
  /** The cap of a client by its clientInfo name (the `client_tool_caps` in force); absent: no caps. */
  toolCap?: ToolCapLookup;
}

export interface ClientLabel {
  readonly name: string;
  readonly version: string;
}

/** How a session opened (from its hello): what it sees, and the client process, when known. */
export interface SessionOpeningOptions extends SessionOpening {
  /** The client's process id, when its hello named one this daemon can see. */
  pid?: number | undefined;
}

export class Session {
  readonly id: string;
  readonly createdAtMs = Date.now();
  /** This session's answered requests: how many, and the latency of the latest ones (for its p99). */
  readonly latency = new LatencyRing();

  private readonly deps: SessionDeps;
  private readonly context: SessionContext;
  private readonly router: Router;
  private readonly outbox: Outbox;
  /** Its initialize and its tools lists, as the log and `/health` see them. */
  private readonly window: ClientWindow;
  private label: ClientLabel;
  private clientPid: number | undefined;
  private current: SessionState = 'detached';
  private transportKind: TransportKind = 'ws';
  private readonly flow: RequestFlow;
  /** A modern client's listen streams: the only way change notifications reach it. */
  private readonly listens = new Listens((text, method, related) => {
    if (this.outbox.admitNotification(method)) this.outbox.send(text, related);
  });
  /** Requests sent to the client on a server's behalf, by id, until it answers. */
  private readonly asked = new PendingRequests<RequestId, (outcome: Answer) => void>();
  private nextAskedId = 1;
  /** While detached: ends the session when the resume grace passes. */
  private graceTimer: NodeJS.Timeout | undefined;

  constructor(id: string, client: ClientLabel, deps: SessionDeps, opening: SessionOpeningOptions = {}) {
    this.id = id;
    this.label = client;
    this.clientPid = opening.pid;
    this.deps = deps;
    this.outbox = new Outbox({
      holdMaxBytes: deps.config.holdMaxBytes,
      metrics: deps.metrics,
      logger: deps.logger,
      sessionId: id,
      overflow: () => deps.expire(this, 'hold_overflow'),
      holdBudget: deps.holdBudget,
    });
    this.context = deps.hub.openSession(id, { server: opening.server, profile: opening.profile, cwd: opening.cwd }, this);
    this.window = new ClientWindow(id, this.context, deps);
    this.router = new Router(this.context, deps.hub, { callTimeoutMs: deps.config.callTimeoutMs, listens: this.listens });
    this.flow = new RequestFlow({
      maxInflight: deps.config.maxInflight,
      queueLimit: deps.config.queueLimit,
      metrics: deps.metrics,
      run: (request, cancel) => this.run(request, cancel),
      answer: (request, receivedMs, response) => this.answer(request, receivedMs, response),
    });
  }

  get state(): SessionState {
    return this.current;
  }

  /** The client as its hello named it. */
  get client(): ClientLabel {
    return this.label;
  }

  /** The client's process id, when its hello named one this daemon can see. */
  get pid(): number | undefined {
    return this.clientPid;
  }

  /** How the client is connected (its last transport's kind). */
  get kind(): TransportKind {
    return this.transportKind;
  }

  /** The client's working directory, from its hello. */
  get cwd(): string | undefined {
    return this.context.cwd;
  }

  /** The MCP client's own name and version, once it sent initialize. */
  get clientInfo(): ClientInfo | undefined {
    return this.context.clientInfo;
  }

  /** The era its client speaks, once its first request said. */
  get era(): Era | undefined {
    return this.context.era;
  }

  /** The log level the client asked for (logging/setLevel); undefined: every message. */
  get logLevel(): LogLevel | undefined {
    return this.context.logLevel;
  }

  /** The profile in force, the size of its last tools list and its client's cap, for `/health`. */
  get windowTools(): WindowToolsReport {
    return this.window.report();
  }

  /** True when this session's view includes the server (by name, or an instance). */
  sees(server: string | Upstream): boolean {
    return this.context.sees(server);
  }

  get inflightCount(): number {
    return this.flow.inflightCount;
  }

  get queuedCount(): number {
    return this.flow.queuedCount;
  }

  /** The attached transport, or null while detached. */
  get transport(): Transport | null {
    return this.outbox.transport;
  }

  /** JSON-RPC frames written to this session's sockets so far (the last sequence number). */
  get sentCount(): number {
    return this.outbox.sentCount;
  }

  /**
   * A new connection took the session over or resumed it: the resume grace stops, and the
   * client is as its hello names it now. The connection attaches once its hello_ack is sent.
   */
  resumedBy(client: ClientLabel, pid: number | undefined): void {
    clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this.label = client;
    this.clientPid = pid;
  }

  /**
   * The session's transport went away and it may be resumed: it ends (`expire`) unless a
   * client attaches within `graceMs`.
   */
  awaitResume(graceMs: number, expire: () => void): void {
    clearTimeout(this.graceTimer);
    this.graceTimer = setTimeout(expire, graceMs);
    this.graceTimer.unref();
  }

  /** See {@link Outbox.resumable}. */
  resumable(received: number): boolean {
    return this.outbox.resumable(received);
  }

  /**
   * Binds a transport: the kept frames after `options.received` are written again, then every
   * held message, in order. Returns how many kept frames were written again.
   */
  attach(transport: Transport, options: AttachOptions = {}): number {
    clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this.current = 'attached';
    this.transportKind = transport.kind;
    return this.outbox.attach(transport, options);
  }

  /** Unbinds the transport if it is still this session's; messages are held from now on. */
  detach(transport: Transport): boolean {
    if (!this.outbox.detach(transport)) return false;
    if (this.current === 'attached') this.current = 'detached';
    return true;
  }

  /** Handles one text frame from the client. Bad input costs only its own reply. */
  receive(text: string): void {
    if (this.current === 'closed') return;
    // Before JSON-RPC parsing: a malformed ack is an invalid message like any other.
    if (this.outbox.takeAck(text)) return;
    this.take(parseMessage(text));
  }

  /** Handles one message already parsed and classified (a transport that parses its input). */
  take(c: Classified): void {
    if (this.current === 'closed') return;
    switch (c.kind) {
      case 'invalid':
        this.deps.metrics.reject('invalid_message');
        this.send(c.reply, c.reply.id ?? undefined);
        return;
      case 'request':
        this.flow.admit(c.message, performance.now());
        return;
      case 'notification':
        if (c.message.method === 'notifications/cancelled') {
          this.flow.cancel(c.message.params?.requestId);
        } else {
          this.router.notify(c.message);
        }
        return;
      case 'response': {
        // A reply to a request a server sent through this session (sampling, elicitation, roots).
        const id = c.message.id;
        const resolve = id === null ? undefined : this.asked.settle(id);
        resolve?.('error' in c.message ? { error: c.message.error } : { result: c.message.result });
        return;
      }
    }
  }

  /**
   * Sends a request to the client on a server's behalf and resolves with its answer: the
   * client's result or error, -32001 past `timeoutMs`, -32000 if the session ends first.
   */
  request(method: string, params: Record<string, unknown> | undefined, timeoutMs: number, related?: RequestId): Promise<Answer> {
    if (this.current === 'closed')
      return Promise.resolve({ error: { code: RpcCode.CONNECTION_CLOSED, message: 'the client session is closed' } });
    // A modern client is never asked: the question waits for its call's retry.
    if (this.context.era === 'modern') return this.router.held.question(method, params, timeoutMs, related);
    const id = `exai-ws-${this.nextAskedId++}`;
    return new Promise((resolve) => {
      this.asked.add(id, resolve, {
        ms: timeoutMs,
        onexpire: () =>
          resolve({ error: { code: RpcCode.REQUEST_TIMEOUT, message: `the client did not answer ${method} within ${timeoutMs} ms` } }),
      });
      const sent = this.send(params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params }, related);
      if (!sent && this.asked.settle(id)) {
        resolve({
          error: { code: RpcCode.INTERNAL_ERROR, message: `${method} cannot be sent to the client: its params cannot be serialised` },
        });
      }
    });
  }

  /** The client was sent its tools list (see ClientPeer.listedTools): the first over its cap is logged. */
  listedTools(size: ToolListSize): void {
    this.window.listed(size);
  }

  /** A server's question was refused for want of `capability` (see ClientPeer.lacks): a modern call says so. */
  lacks(capability: string, related: RequestId | undefined): void {
    if (this.context.era === 'modern') this.router.held.lacks(capability, related);
  }

  /**
   * Sends one message to the client, or holds it while detached. A message that cannot be
   * serialised costs only itself: a response becomes a -32603 error for the same id, anything
   * else is dropped (counted as `unserializable`, logged at warn) and false is returned. A
   * notification is also dropped (false) while the client's socket holds more than
   * {@link NOTIFY_DROP_BYTES} it has not read. `related`: the client request it belongs to.
   */
  send(message: object, related?: RequestId): boolean {
    const method = (message as { method?: unknown }).method;
    const notification = (message as { id?: unknown }).id === undefined;
    if (notification && !this.outbox.admitNotification(method)) return false;
    const out = serializeFor(this.deps, this.id, message);
    if (out === undefined) return false;
    // A modern client hears of changes only on the listen streams that asked for them.
    if (notification && related === undefined && this.context.era === 'modern') return this.listens.deliver(out.text, String(method));
    this.outbox.send(out.text, related);
    return true;
  }

  /**
   * Sends one notification already serialised (the fan-out serialises once for every session);
   * dropped, and false returned, while the client leaves more than {@link NOTIFY_DROP_BYTES}
   * unread.
   */
  sendNotification(text: string, method: string): boolean {
    if (this.context.era === 'modern') return this.listens.deliver(text, method);
    if (!this.outbox.admitNotification(method)) return false;
    this.outbox.send(text);
    return true;
  }

  /** Stops taking new work: queued and new requests are answered -32000 from now on. */
  drain(reason: string): void {
    // Listen streams end gracefully: their requests get a complete result, and do not hold the drain.
    this.listens.endAll();
    this.flow.drain(reason);
  }

  /** Answers every request still running with -32000 and cancels it at its server. */
  abortInflight(reason: string): void {
    this.flow.abortInflight(reason);
  }

  /**
   * Ends the session and releases everything it holds: running requests are cancelled at their
   * servers (nobody is left to answer), questions to the client are answered -32000, the resume
   * grace stops, held and kept frames go, the core forgets it (servers kept up, subscriptions,
   * log level, session-scoped servers), and the transport, if any, is closed with `code`.
   * Idempotent.
   */
  close(code: number, reason: string): void {
    if (this.current === 'closed') return;
    this.current = 'closed';
    clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this.flow.close(reason);
    const transport = this.outbox.close();
    this.asked.failAll((resolve) =>
      resolve({ error: { code: RpcCode.CONNECTION_CLOSED, message: `the client session closed: ${reason}` } }),
    );
    this.router.held.close(reason);
    this.context.close();
    transport?.close(code, reason);
  }

  /** Runs one request through the router (the flow's `run`); `initialize` is logged. */
  private run(request: RpcRequest, cancel: Cancellation): Promise<RpcResponse | null> {
    if (request.method === 'initialize') this.window.initialized(request.params);
    return this.router.handle(request, cancel);
  }

  private answer(request: RpcRequest, receivedMs: number, response: RpcResponse): void {
    const out = response instanceof RelayedResponse ? { text: response.text, replaced: false } : serializeFor(this.deps, this.id, response);
    const isError = out === undefined || out.replaced || 'error' in response;
    // Method and tool names are the client's strings: Metrics keeps its own series only for
    // names the daemon knows and counts the rest as `other`, so a client cannot grow it.
    const latencyMs = performance.now() - receivedMs;
    this.deps.metrics.request(request.method, toolOf(request), latencyMs, isError, this.context.era);
    this.latency.add(latencyMs);
    if (out) this.outbox.send(out.text, request.id);
  }
}
