/**
 * Clients of the daemon's HTTP side, used by the pid lock, auto-start and the CLI: `GET /health`
 * liveness (tokenless), and {@link provenRequest} for everything that needs the token, which
 * first makes the listener prove it holds the token (proof.ts). Node built-ins only: the shim
 * bundles this file.
 */
import { request } from 'node:http';
import { computeProof, isNonce, newNonce, proofAddress, proofAuthorization, proofValid } from './proof.js';
import type { ReloadReport } from '../mux/hub.js';
import type { ProviderHealth } from '../builtin/providers/providers.js';
import type { ServerReport } from '../hosting/upstream.js';
import type { ConfigProblem } from '../hosting/upstream-config.js';
import type { SettingsHealth } from '../daemon/files/config.js';

export interface HealthReport {
  status: string;
  name: string;
  version: string;
  pid: number;
  host: string;
  port: number;
  started_at: string;
  uptime_s: number;
  sessions: {
    total: number;
    attached: number;
    detached: number;
    /** Open sessions by how their client is connected. */
    by_transport?: Record<'ws' | 'http' | 'stdio', number>;
    /** Idle HTTP sessions ended since start: unused for the idle time, or to make room at the session limit. */
    idle_ended?: { idle: number; session_limit: number };
    list?: SessionEntry[];
  };
  inflight: number;
  /** The log file and the stderr copy; null before the daemon opened its log. */
  log?: LogHealth | null;
  /** The metrics file (`logs/metrics.jsonl`). */
  metrics_file?: FileHealth | null;
  memory?: MemoryReport;
  /** Started by a shim or `exai-ws restart` (`EXAI_WS_AUTOSTARTED=1`). */
  auto_started?: boolean;
  /** How long it stays with no session before it exits; null: never (started by hand, or 0). */
  idle_exit_ms?: number | null;
  // Optional from here: readers (status, the page, the exporter) must also take the report of
  // a daemon of another version (a CLI upgraded while the old daemon still runs).
  /** Open WebSocket connections (sessions and connections still saying hello). */
  connections?: number;
  /**
   * Every accepted TCP connection (HTTP, WebSocket, not yet saying anything), those that have
   * not authenticated yet, and how many the descriptor limit leaves room for (null: unknown).
   */
  sockets?: { open: number; unauthenticated: number; descriptor_cap: number | null };
  /** Hosted server instances; `asks_client`: its tools known to ask the client back (run one session at a time). */
  servers?: (ServerReport & { asks_client: string[] })[];
  config?: ConfigHealth;
  providers?: ProviderHealth[];
  limits?: { max_sessions: number; max_inflight: number; max_bytes: number };
  /** The settings file (`daemon.env`) and where each setting in force came from. */
  settings?: SettingsHealth;
  /** What the user should act on (ignored client variables, a settings file others can read, ...), in words. */
  warnings?: string[];
}

/** The hosted servers' config file, as `/health` reports it. */
export interface ConfigHealth {
  path: string;
  /** False while there is no file (no hosted servers). */
  exists: boolean;
  /** The path the watcher watches (the file, or the folder it is awaited in); null: not watched. */
  watching: string | null;
  /** Entries the daemon refused. */
  problems: readonly ConfigProblem[];
  /**
   * Why the file as it is now is not in force (unreadable, not valid JSON, with line and
   * column), found at start (no hosted servers then) or by a reload (the running ones stay);
   * null when it is in force. Absent from older daemons.
   */
  error?: string | null;
  last_reload: LastReload | null;
}

/** The outcome of the last live reload, for `/health` and `exai-ws status`. */
export type LastReload = { at: string } & ({ error: string } | (ReloadReport & { file: boolean; refused: number }));

/** One open session, as `/health` lists it. */
export interface SessionEntry {
  id: string;
  transport: 'ws' | 'http' | 'stdio';
  state: string;
  client: string;
  client_version: string;
  cwd: string | null;
  age_s: number;
  inflight: number;
  /** Requests answered in this session so far. */
  requests: number;
  /** 99th percentile latency of its last 1000 answered requests, in ms; null before any. */
  p99_ms: number | null;
}

/** One best-effort JSONL file: lines it took, lines it dropped, its rotation. */
export interface FileHealth {
  path: string;
  written_lines: number;
  /** Lines lost: write errors (full disk, permissions, I/O), oversized lines, a full buffer. */
  dropped_lines: number;
  rotations: number;
  last_error: { code: string; message: string; at: string } | null;
  /** True while writes fail; writing is retried about once a second. */
  failing: boolean;
  max_bytes: number;
  /** Rotated generations kept beside the current file. */
  files: number;
}

export interface LogHealth extends Omit<FileHealth, 'path'> {
  /** Log calls whose arguments could not be serialised (a short stand-in line was logged). */
  unserializable_calls: number;
  /** Warning lines that could not be copied to stderr. */
  stderr_dropped_lines: number;
}

export interface MemoryReport {
  heap_used_bytes: number;
  heap_total_bytes: number;
  /** Null when the resident size could not be read. */
  rss_bytes: number | null;
}

/** What `/health` tells anyone, token or not: enough to find and probe the daemon. */
export const LIVENESS_FIELDS = [
  'status',
  'name',
  'version',
  'pid',
  'host',
  'port',
  'started_at',
  'uptime_s',
  'auto_started',
  'idle_exit_ms',
] as const satisfies readonly (keyof HealthReport)[];

export type Liveness = Pick<HealthReport, (typeof LIVENESS_FIELDS)[number]>;

/** True when the daemon took the proof and answered the full report, not liveness only. */
export function isFullReport(report: Liveness): report is HealthReport {
  return typeof (report as Partial<HealthReport>).sessions === 'object';
}

/**
 * Fetches the full `/health` report through a proven request ({@link provenRequest}); null
 * when nothing answers in time, the listener does not prove it holds `token`, or the answer is
 * no full report.
 */
export async function fetchFullHealth(host: string, port: number, timeoutMs: number, token: string | null): Promise<HealthReport | null> {
  const reply = await provenRequest({ host, port, token }, { method: 'GET', path: '/health', timeoutMs });
  if (!reply.ok || reply.status !== 200) return null;
  const body = reply.body as Liveness | null;
  return body !== null && typeof body === 'object' && typeof body.pid === 'number' && isFullReport(body) ? body : null;
}

/**
 * Fetches `/health` without any credential: liveness only, which anyone may ask for (the pid
 * lock and auto-start need it). Null when nothing answers in time or the answer is not a
 * health report.
 */
export async function fetchHealth(host: string, port: number, timeoutMs: number): Promise<Liveness | null> {
  const reply = await httpJson({ host, port, method: 'GET', path: '/health', timeoutMs, maxBytes: MAX_REPLY_BYTES });
  if ('error' in reply || reply.status !== 200) return null;
  const body = reply.body as Liveness | null;
  return body !== null && typeof body === 'object' && typeof body.pid === 'number' ? body : null;
}

// ---- proven requests (proof.ts) ------------------------------------------------------------

/** Where a proven request goes, and the token the listener must prove it holds (null: none known). */
export interface ProvenTarget {
  host: string;
  port: number;
  token: string | null;
}

/** Why a proven request was not made or not answered. */
export type ProofFailure =
  /** No token to check a proof with: nothing was sent. */
  | 'no_token'
  /** Nothing answered the challenge in time (refused, reset, timed out). */
  | 'unreachable'
  /** Something answered but did not prove it holds the token: nothing but the nonce was sent. */
  | 'unproven'
  /** The daemon proved itself but did not take the client's proof (its token changed meanwhile). */
  | 'refused';

export type ProvenReply =
  | { ok: true; status: number; body: unknown }
  | {
      ok: false;
      failure: ProofFailure;
      /** Why, in a few words (for `unproven`: what the listener answered instead of a proof). */
      detail: string;
      /** For `unproven`: `POST /auth/challenge` was answered 404, as a daemon older than proofs does. */
      noChallenge?: boolean;
    };

/** Largest answer read from the daemon (a full `/health` with thousands of sessions fits). */
const MAX_REPLY_BYTES = 64 * 1024 * 1024;
/** Largest answer read to a challenge: a proof is a few dozen bytes. */
const MAX_CHALLENGE_REPLY_BYTES = 4096;

/**
 * One HTTP request to the daemon that sends nothing of value before the listener proved it
 * holds `target.token` (proof.ts): first `POST /auth/challenge` with a fresh nonce; the answer's
 * proof is checked for the address connected to; only then the request itself goes, with
 * `Authorization: Exai-Proof <daemon nonce>.<client proof>` (good once). Both requests name the
 * address in `Host` exactly as the proof binds it. `timeoutMs` applies to each of the two
 * requests. Never rejects.
 */
export async function provenRequest(
  target: ProvenTarget,
  request: { method: 'GET' | 'POST'; path: string; body?: unknown; timeoutMs: number },
): Promise<ProvenReply> {
  const { host, port, token } = target;
  if (token === null) return { ok: false, failure: 'no_token', detail: 'no token to check its proof with' };
  const address = proofAddress(host, port);
  const clientNonce = newNonce();
  const asked = await httpJson({
    host,
    port,
    method: 'POST',
    path: '/auth/challenge',
    body: { nonce: clientNonce },
    timeoutMs: request.timeoutMs,
    maxBytes: MAX_CHALLENGE_REPLY_BYTES,
  });
  if ('error' in asked) {
    return asked.error === 'not_http'
      ? { ok: false, failure: 'unproven', detail: 'it does not answer HTTP' }
      : { ok: false, failure: 'unreachable', detail: asked.error };
  }
  const answer = asked.body as { nonce?: unknown; proof?: unknown } | null;
  if (asked.status !== 200 || answer === null || typeof answer !== 'object' || !isNonce(answer.nonce)) {
    return {
      ok: false,
      failure: 'unproven',
      detail: `it answered the challenge with HTTP ${asked.status}${asked.status === 200 ? ' and no proof' : ''}`,
      noChallenge: asked.status === 404,
    };
  }
  if (!proofValid(answer.proof, 'daemon', token, address, clientNonce, answer.nonce)) {
    return { ok: false, failure: 'unproven', detail: 'its proof does not match the token' };
  }
  const clientProof = computeProof('client', token, address, clientNonce, answer.nonce);
  const reply = await httpJson({
    host,
    port,
    method: request.method,
    path: request.path,
    body: request.body,
    timeoutMs: request.timeoutMs,
    maxBytes: MAX_REPLY_BYTES,
    authorization: proofAuthorization(answer.nonce, clientProof),
  });
  if ('error' in reply) return { ok: false, failure: 'unreachable', detail: reply.error };
  if (reply.status === 401) return { ok: false, failure: 'refused', detail: 'the daemon did not take the proof (HTTP 401)' };
  return { ok: true, status: reply.status, body: reply.body };
}

type HttpReply = { status: number; body: unknown } | { error: string };

/**
 * One request with a JSON body (or none), `Host` set to the proof's address form; the answer's
 * body parsed as JSON (null when it is not JSON). `error`: the socket's error code, `timeout`,
 * `too_large`, or `not_http` when the listener answered something that is not HTTP.
 */
function httpJson(options: {
  host: string;
  port: number;
  method: string;
  path: string;
  body?: unknown;
  timeoutMs: number;
  maxBytes: number;
  authorization?: string;
}): Promise<HttpReply> {
  return new Promise((resolve) => {
    const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
    const headers: Record<string, string | number> = { host: proofAddress(options.host, options.port) };
    if (payload) headers['content-type'] = 'application/json';
    if (payload || options.method !== 'GET') headers['content-length'] = payload?.length ?? 0;
    if (options.authorization) headers.authorization = options.authorization;
    let settled = false;
    const done = (reply: HttpReply) => {
      if (settled) return;
      settled = true;
      resolve(reply);
    };
    const req = request(
      { host: options.host, port: options.port, path: options.path, method: options.method, timeout: options.timeoutMs, headers },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > options.maxBytes) {
            req.destroy();
            done({ error: 'too_large' });
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => {
          let body: unknown = null;
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            // Not JSON: callers treat a null body like any other wrong answer.
          }
          done({ status: res.statusCode ?? 0, body });
        });
        res.on('error', () => done({ error: 'reset' }));
      },
    );
    req.on('timeout', () => {
      req.destroy();
      done({ error: 'timeout' });
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      // A listener that answers with something that is not HTTP fails the parser.
      done({ error: error.code?.startsWith('HPE_') ? 'not_http' : (error.code ?? error.message) });
    });
    req.end(payload);
  });
}
