/**
 * A server link's life with a 2026-07-28 server, once `server/discover` showed it is one (see
 * ServerLink): the same calls and notifications the rest of the daemon makes to a 2025 server,
 * said the modern way.
 *
 * - Every request gets the modern `_meta` (modern.ts: `withModernMeta`).
 * - What the era removed is answered here: `ping` becomes a `server/discover` (the server's
 *   answer is still the proof it is alive), `logging/setLevel` is remembered and sent with each
 *   later request as `io.modelcontextprotocol/logLevel`, `resources/subscribe` and
 *   `resources/unsubscribe` change the URIs of the listen stream. Client notifications other
 *   than `notifications/cancelled` have no meaning to the server and are not sent.
 * - List changes and resource updates come on one `subscriptions/listen` request, kept open for
 *   the link's life: opened with what the server's capabilities offer, opened again (bounded
 *   backoff) when it ends, and its notifications handed on as a 2025 server's would be.
 */
import type { CallOptions, CallOutcome } from './call.js';
import { Cancellation } from './cancellation.js';
import { RpcCode } from '../protocol/codes.js';
import { isObject, type RpcNotification } from '../protocol/jsonrpc.js';
import { MetaKey } from '../protocol/eras.js';
import { initializeResultOf, listenFilter, withModernMeta, withoutMetaKeys, type ModernDefaults } from './modern.js';

/** What a modern session needs of its link. */
export interface ModernPort {
  /** Sends one request as it is given (no era handling) and resolves with its outcome. */
  send(method: string, params: Record<string, unknown> | undefined, options: CallOptions): Promise<CallOutcome>;
  /** Sends one notification as it is given. */
  sendNotification(method: string, params?: Record<string, unknown>): void;
  /** Hands a server notification on to the link's listener. */
  emit(notification: RpcNotification): void;
  /** False once the link closed: nothing is opened again. */
  readonly open: boolean;
}

/** The waits before the listen stream is opened again after it ended (the last one repeats). */
export const LISTEN_BACKOFF_MS: readonly number[] = Object.freeze([100, 500, 1_000, 2_000, 5_000, 10_000, 30_000]);

/** How long the daemon's `ping`, said as `server/discover`, may take. */
const PING_TIMEOUT_MS = 30_000;

export class ModernSession {
  /** The initialize result the server's DiscoverResult stands for. */
  readonly initializeResult: Record<string, unknown>;

  private readonly capabilities: Record<string, unknown>;
  private logLevel: string | undefined;
  private readonly uris = new Set<string>();
  /** The open listen request's cancellation; undefined when none is open. */
  private listening: Cancellation | undefined;
  private failures = 0;
  private reopenTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly port: ModernPort,
    private readonly defaults: ModernDefaults,
    discover: Record<string, unknown>,
    private readonly backoffMs: readonly number[] = LISTEN_BACKOFF_MS,
  ) {
    this.initializeResult = initializeResultOf(discover);
    this.capabilities = this.initializeResult.capabilities as Record<string, unknown>;
  }

  /** Listen requests in flight (0 or 1): not calls anyone waits for. */
  get listens(): number {
    return this.listening === undefined ? 0 : 1;
  }

  /** One call of the daemon's, said the modern way. Never rejects. */
  call(method: string, params: Record<string, unknown> | undefined, options: CallOptions): Promise<CallOutcome> {
    switch (method) {
      case 'ping':
        return this.port
          .send('server/discover', this.meta(undefined), { ...options, timeoutMs: Math.min(options.timeoutMs, PING_TIMEOUT_MS) })
          .then((outcome) => (outcome !== null && 'result' in outcome ? { result: {} } : outcome));
      case 'logging/setLevel':
        this.logLevel = typeof params?.level === 'string' ? params.level : undefined;
        return Promise.resolve({ result: {} });
      case 'resources/subscribe':
      case 'resources/unsubscribe':
        return Promise.resolve(this.subscription(method, params));
      default:
        return this.port.send(method, this.meta(params), options);
    }
  }

  /** A client notification: only a cancellation means something to a modern server. */
  notify(method: string, params?: Record<string, unknown>): void {
    if (method === 'notifications/cancelled') this.port.sendNotification(method, params);
  }

  /**
   * A server notification: the listen stream's acknowledgment is taken here (the stream
   * works: its backoff starts over); any other is handed on without the subscription's id.
   */
  receive(notification: RpcNotification): void {
    const params = notification.params;
    if (notification.method === 'notifications/subscriptions/acknowledged') {
      this.failures = 0;
      return;
    }
    const cleaned = withoutMetaKeys(params, (key) => key === MetaKey.SUBSCRIPTION_ID);
    this.port.emit(cleaned === params ? notification : { ...notification, params: cleaned });
  }

  /** Opens the listen stream, if the server offers anything to listen for. */
  listen(): void {
    if (this.closed || !this.port.open || this.listening) return;
    const filter = listenFilter(this.capabilities, this.uris);
    if (!filter) return;
    const cancel = new Cancellation();
    this.listening = cancel;
    void this.port.send('subscriptions/listen', this.meta({ notifications: filter }), { timeoutMs: Infinity, cancel }).then(() => {
      if (this.listening === cancel) this.listening = undefined;
      // Ended by the daemon (closed, or opened anew with other URIs): nothing to do here.
      if (cancel.aborted || this.closed || !this.port.open) return;
      this.reopenLater();
    });
  }

  /** Ends the listen stream for good. */
  close(): void {
    this.closed = true;
    clearTimeout(this.reopenTimer);
    this.listening?.abort('the link closed');
    this.listening = undefined;
  }

  private reopenLater(): void {
    const delay = this.backoffMs[Math.min(this.failures, this.backoffMs.length - 1)] ?? 0;
    this.failures++;
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = undefined;
      this.listen();
    }, delay);
    this.reopenTimer.unref();
  }

  /** A subscription changed: the listen stream is opened anew with the URIs now wanted. */
  private subscription(method: string, params: Record<string, unknown> | undefined): CallOutcome {
    const resources = this.capabilities.resources;
    if (!isObject(resources) || resources.subscribe !== true)
      return { error: { code: RpcCode.METHOD_NOT_FOUND, message: `${method} is not supported by this server` } };
    const uri = params?.uri;
    if (typeof uri !== 'string') return { error: { code: RpcCode.INVALID_PARAMS, message: 'Invalid params: uri must be a string' } };
    const had = this.uris.has(uri);
    if (method === 'resources/subscribe') this.uris.add(uri);
    else this.uris.delete(uri);
    if (had !== this.uris.has(uri)) {
      this.listening?.abort('the subscriptions changed');
      this.listening = undefined;
      this.listen();
    }
    return { result: {} };
  }

  private meta(params: Record<string, unknown> | undefined): Record<string, unknown> {
    return withModernMeta(params, this.defaults, this.logLevel);
  }
}
