/**
 * Clients of the daemon's HTTP side, used by the pid lock, auto-start and the CLI: `GET /health`
 * liveness (tokenless), and {@link provenRequest} for everything that needs the token, which
 * first makes the listener prove it holds the token (proof.ts). Node built-ins only: the shim
 * bundles this file.
 */
import { request } from 'node:http';
import { computeProof, newNonce, proofAddress, proofAuthorization, proofValid } from './proof.js';
import { isNonce } from '../protocol/hello.js';
import { isFullReport, type HealthReport, type Liveness } from './health.js';

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
