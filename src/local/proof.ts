/**
 * "No secret for a stranger" (DESIGN.md, "Security model"): before a client sends the token,
 * a hello or any client message, the listener proves that it holds this home's token, and the
 * token itself never crosses the wire. A challenge-response over the token, both ways:
 *
 *   client -> daemon   clientNonce (32 random bytes)
 *   daemon -> client   daemonNonce, daemonProof = HMAC(token, "... daemon" + address + nonces)
 *   client             checks daemonProof; only then:
 *   client -> daemon   clientProof = HMAC(token, "... client" + address + nonces), with its hello
 *                      (WebSocket) or request (HTTP, `Authorization: Exai-Proof <sn>.<cp>`)
 *
 * `address` is the `Host` the client connected to (`127.0.0.1:PORT`, lowercased): the daemon
 * takes it from the request, which it accepts only when it names one of its own addresses, so
 * a listener on another port that relays a real daemon's proof proves the wrong address. The
 * two roles use different labels, so one side's proof is never the other's.
 *
 * Node built-ins only (node:crypto): the shim bundles this file.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { urlHost } from './files.js';
import { NONCE_BYTES, NONCE_PATTERN } from '../protocol/hello.js';

/** A proof on the wire: an HMAC-SHA256 as unpadded base64url (43 characters). */
const PROOF_PATTERN = NONCE_PATTERN;
/** The HTTP authorization scheme that carries a client proof. */
export const PROOF_SCHEME = 'Exai-Proof';
/** Bumped if the proof's input ever changes: a proof of one version never passes as another's. */
const LABEL = 'exai-ws proof 1';

export type ProofRole = 'daemon' | 'client';

/** A new random nonce (base64url). */
export function newNonce(): string {
  return randomBytes(NONCE_BYTES).toString('base64url');
}

/**
 * The address a proof is bound to: the `Host` header a client sends to `host`:`port`
 * (IPv6 literals in brackets), lowercased. Clients send exactly this as their `Host`.
 */
export function proofAddress(host: string, port: number): string {
  return `${urlHost(host)}:${port}`.toLowerCase();
}

/**
 * The proof `role` gives for one exchange: HMAC-SHA256 keyed with the token over the label,
 * the role, the address and both nonces, base64url. Callers check the nonces' shape first.
 */
export function computeProof(role: ProofRole, token: string, address: string, clientNonce: string, daemonNonce: string): string {
  return createHmac('sha256', token)
    .update(`${LABEL} ${role}\n${address.toLowerCase()}\n${clientNonce}\n${daemonNonce}`)
    .digest('base64url');
}

/**
 * True when `given` is the proof `role` must give for this exchange; compared in constant time.
 * Never throws: anything that is not a well-formed proof is simply false.
 */
export function proofValid(
  given: unknown,
  role: ProofRole,
  token: string,
  address: string,
  clientNonce: string,
  daemonNonce: string,
): boolean {
  if (typeof given !== 'string' || !PROOF_PATTERN.test(given)) return false;
  const expected = Buffer.from(computeProof(role, token, address, clientNonce, daemonNonce));
  const actual = Buffer.from(given);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** The `Authorization` header value of a proven HTTP request. */
export function proofAuthorization(daemonNonce: string, clientProof: string): string {
  return `${PROOF_SCHEME} ${daemonNonce}.${clientProof}`;
}

/** The daemon nonce and client proof of an `Authorization: Exai-Proof <sn>.<cp>` header; null when it is not one. */
export function parseProofAuthorization(header: string | undefined): { daemonNonce: string; clientProof: string } | null {
  if (header === undefined || header.length > 200) return null;
  const match = /^Exai-Proof\s+([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{43})\s*$/i.exec(header);
  if (!match?.[1] || !match[2]) return null;
  return { daemonNonce: match[1], clientProof: match[2] };
}

/**
 * The one line a client says when a listener did not prove itself: it names the port, says
 * that something else holds it and that nothing was sent; `detail` says what it did instead.
 */
export function strangerMessage(host: string, port: number, detail: string): string {
  return (
    `something else holds ${urlHost(host)}:${port}: it did not prove that it is this home's exai-ws daemon ` +
    `(${detail}), so nothing was sent to it`
  );
}
