/**
 * The `requestState` the daemon issues when it holds a legacy server's question for a modern
 * client (2026-07-28, multi round-trip requests). The client must hand it back unchanged on its
 * retry; it is signed (HMAC-SHA256 with a key made at the daemon's start, so a state from a
 * daemon that has since restarted fails verification too) and names what it was issued for:
 * the held call, the session it was issued to, the request it answers (method and name) and its
 * expiry. Anything else presented is refused with the reason.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** Every state the daemon issues starts so; a state without it is a server's own, passed on untouched. */
export const STATE_PREFIX = 'exai-ws.1.';

/** This daemon's signing key: made once per process, never written anywhere. */
const KEY = randomBytes(32);

/** What a state binds. */
export interface StateClaims {
  /** The held call. */
  readonly held: string;
  /** The session it was issued to. */
  readonly session: string;
  /** The request it answers: its method and its tool, prompt or resource. */
  readonly method: string;
  readonly name: string;
  /** Past this (epoch milliseconds) it is refused. */
  readonly expiresMs: number;
}

function mac(body: string): Buffer {
  return createHmac('sha256', KEY).update(body).digest();
}

export function issueState(claims: StateClaims): string {
  const body = Buffer.from(JSON.stringify([claims.held, claims.session, claims.method, claims.name, claims.expiresMs])).toString(
    'base64url',
  );
  return `${STATE_PREFIX}${body}.${mac(body).toString('base64url')}`;
}

/** The held call a state names, read without verifying it (to find the session that holds it). */
export function heldOf(state: string): string | undefined {
  return readClaims(state)?.held;
}

/**
 * Verifies a state for a retry made on `session` for `method` and `name`, at `nowMs`: its
 * claims, or why it is refused.
 */
export function verifyState(
  state: string,
  expected: { session: string; method: string; name: string },
  nowMs = Date.now(),
): { claims: StateClaims } | { refused: string } {
  const [body, signature] = state.slice(STATE_PREFIX.length).split('.');
  if (!state.startsWith(STATE_PREFIX) || body === undefined || signature === undefined) return { refused: 'it is malformed' };
  const given = Buffer.from(signature, 'base64url');
  const wanted = mac(body);
  if (given.length !== wanted.length || !timingSafeEqual(given, wanted)) {
    return { refused: 'its signature does not verify (it was changed, or issued by an earlier run of the daemon)' };
  }
  const claims = readClaims(state);
  if (claims === undefined) return { refused: 'it is malformed' };
  if (claims.expiresMs <= nowMs) return { refused: 'it has expired' };
  if (claims.session !== expected.session) return { refused: 'it was issued to another connection' };
  if (claims.method !== expected.method || claims.name !== expected.name) {
    return { refused: `it was issued for another request (${claims.method} ${claims.name})` };
  }
  return { claims };
}

function readClaims(state: string): StateClaims | undefined {
  if (!state.startsWith(STATE_PREFIX)) return undefined;
  const body = state.slice(STATE_PREFIX.length).split('.')[0] ?? '';
  try {
    const value: unknown = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    if (!Array.isArray(value) || value.length !== 5) return undefined;
    const [held, session, method, name, expiresMs] = value as unknown[];
    if (typeof held !== 'string' || typeof session !== 'string' || typeof method !== 'string' || typeof name !== 'string') return undefined;
    if (typeof expiresMs !== 'number') return undefined;
    return { held, session, method, name, expiresMs };
  } catch {
    return undefined;
  }
}

/** How the `/mcp` endpoint tells the calls this daemon holds for a retry (see ModernHttp). */
export const HELD_STATES = Object.freeze({
  issued(answer: string): string | undefined {
    // Most answers hold no state of the daemon's: they are not searched.
    if (!answer.includes(STATE_PREFIX)) return undefined;
    const state = /"requestState":"(exai-ws\.1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)"/.exec(answer)?.[1];
    return state === undefined ? undefined : heldOf(state);
  },
  named(request: { params?: Record<string, unknown> }): string | undefined {
    const state = request.params?.requestState;
    return typeof state === 'string' ? heldOf(state) : undefined;
  },
});
