/**
 * The status page on `GET /` and its live feed on `GET /events` (server-sent events): the
 * same picture as `exai-ws status`, for a browser. The server routes authenticated requests
 * here (bearer token or the page cookie, see web-auth.ts); this module only answers them.
 *
 * The document is self-contained: its style and script are inline, allowed by a per-response
 * CSP nonce, and the policy forbids everything else but `connect-src 'self'` (the feed).
 * Report data reaches the DOM only as text (client names, working directories and server
 * errors are strings other programs choose).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

import { statusDocument } from './status-page-document.js';
import type { HealthReport } from '../../local/health.js';

export interface StatusPageSources {
  /** The full health report (what an authenticated `GET /health` answers). */
  health: () => HealthReport;
}

export interface StatusPageOptions {
  /** How often the report is checked for changes while a feed is open. */
  intervalMs?: number;
  /** Feeds open at once; one more is answered 503. */
  maxClients?: number;
  /** How often an idle feed gets an SSE comment, so proxies and the browser keep it open. */
  heartbeatMs?: number;
  /**
   * Bytes a feed may have waiting in its socket before it is dropped (a client that stopped
   * reading). Never less than two reports: one large report in flight is not a slow client.
   */
  maxBufferedBytes?: number;
}

export const DEFAULT_STATUS_INTERVAL_MS = 1_000;
export const DEFAULT_STATUS_MAX_CLIENTS = 16;
export const DEFAULT_STATUS_HEARTBEAT_MS = 15_000;
export const DEFAULT_STATUS_MAX_BUFFERED_BYTES = 1024 * 1024;
/** What the browser waits before it reconnects a feed that broke (the SSE `retry:` field). */
const RECONNECT_MS = 2_000;

/** Headers every answer of this module carries. */
const COMMON_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
} as const;

export class StatusPage {
  private readonly sources: StatusPageSources;
  private readonly intervalMs: number;
  private readonly maxClients: number;
  private readonly heartbeatMs: number;
  private readonly maxBufferedBytes: number;
  private readonly clients = new Set<ServerResponse>();
  private ticker: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  /** The last report sent, as sent: a new one goes out only when it differs. */
  private lastJson: string | undefined;
  private closed = false;

  constructor(sources: StatusPageSources, options: StatusPageOptions = {}) {
    this.sources = sources;
    this.intervalMs = positive(options.intervalMs, DEFAULT_STATUS_INTERVAL_MS, 'intervalMs');
    this.maxClients = positive(options.maxClients, DEFAULT_STATUS_MAX_CLIENTS, 'maxClients');
    this.heartbeatMs = positive(options.heartbeatMs, DEFAULT_STATUS_HEARTBEAT_MS, 'heartbeatMs');
    this.maxBufferedBytes = positive(options.maxBufferedBytes, DEFAULT_STATUS_MAX_BUFFERED_BYTES, 'maxBufferedBytes');
  }

  /** Feeds open now. */
  get clientCount(): number {
    return this.clients.size;
  }

  /** Answers the HTML document (HEAD: its headers). The caller has checked the method and auth. */
  page(req: IncomingMessage, res: ServerResponse): void {
    const nonce = randomBytes(18).toString('base64');
    const body = statusDocument(nonce);
    res.writeHead(200, {
      ...COMMON_HEADERS,
      'content-type': 'text/html; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'content-security-policy': [
        "default-src 'none'",
        `script-src 'nonce-${nonce}'`,
        `style-src 'nonce-${nonce}'`,
        "connect-src 'self'",
        'img-src data:',
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
      ].join('; '),
      'x-frame-options': 'DENY',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  /**
   * Opens a feed: the report at once, then each time it changes (checked every `intervalMs`),
   * and a comment every `heartbeatMs`. 503 when `maxClients` feeds are open or the page is
   * closed. The feed ends on {@link close}, when the client goes, or when the client stops
   * reading and its backlog passes `maxBufferedBytes`.
   */
  events(req: IncomingMessage, res: ServerResponse): void {
    if (this.closed || this.clients.size >= this.maxClients) {
      const body = this.closed ? 'the daemon is shutting down\n' : `too many status feeds open (${this.maxClients})\n`;
      res.writeHead(503, { ...COMMON_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'retry-after': '5' });
      res.end(body);
      return;
    }
    res.writeHead(200, {
      ...COMMON_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      connection: 'keep-alive',
    });
    req.socket.setNoDelay(true);
    this.clients.add(res);
    const drop = () => this.clients.delete(res);
    res.once('close', drop);
    req.once('close', drop);
    // A new feed gets the current report even when it equals the last one sent.
    const json = this.report();
    this.write(res, `retry: ${RECONNECT_MS}\n\n${event(json)}`, json.length);
    this.lastJson ??= json;
    this.startTimers();
  }

  /** Ends every feed and refuses new ones. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopTimers();
    for (const res of this.clients) res.end();
    this.clients.clear();
  }

  private report(): string {
    return JSON.stringify(this.sources.health());
  }

  private startTimers(): void {
    if (this.ticker) return;
    this.ticker = setInterval(() => this.tick(), this.intervalMs);
    this.heartbeat = setInterval(() => this.broadcast(': heartbeat\n\n', 0), this.heartbeatMs);
    // A page left open in a browser must not keep a closing daemon alive.
    this.ticker.unref();
    this.heartbeat.unref();
  }

  private stopTimers(): void {
    clearInterval(this.ticker);
    clearInterval(this.heartbeat);
    this.ticker = undefined;
    this.heartbeat = undefined;
    this.lastJson = undefined;
  }

  private tick(): void {
    if (this.clients.size === 0) return this.stopTimers();
    const json = this.report();
    if (json === this.lastJson) return;
    this.lastJson = json;
    this.broadcast(event(json), json.length);
  }

  private broadcast(chunk: string, reportChars: number): void {
    for (const res of this.clients) this.write(res, chunk, reportChars);
    if (this.clients.size === 0) this.stopTimers();
  }

  /** Writes to one feed, or drops it when it has not read what it was sent before. */
  private write(res: ServerResponse, chunk: string, reportChars: number): void {
    const limit = Math.max(this.maxBufferedBytes, 2 * reportChars);
    if (res.writableLength > limit || res.destroyed || res.writableEnded) {
      this.clients.delete(res);
      res.destroy();
      return;
    }
    res.write(chunk);
  }
}

/** One SSE message. JSON.stringify never emits a raw line break, so it fits one `data:` line. */
function event(json: string): string {
  return `data: ${json}\n\n`;
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new TypeError(`StatusPage: ${name} must be a positive number, got ${value}`);
  return value;
}
