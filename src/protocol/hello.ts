/**
 * The hello handshake, protocol version 1 (DESIGN.md, "WebSocket protocol"). Validation is
 * hand-written so the shim can use this module without loading a schema library at start-up.
 *
 * A connection opens with a hello, or first with a challenge (proof.ts): the client sends
 * {@link ChallengeFrame}, the daemon answers {@link ProofFrame}, and the client's hello then
 * carries `auth_proof` instead of a token. A daemon older than the challenge answers it with a
 * `not_hello` refusal, which tells a new client whom to update.
 */
import type { HelloErrorCode } from './codes.js';

/** Random bytes in a nonce. */
export const NONCE_BYTES = 32;
/** A nonce on the wire: {@link NONCE_BYTES} bytes as unpadded base64url (43 characters). */
export const NONCE_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** True for a well-formed nonce: exactly what a proof's `newNonce` makes (so no huge or odd input is ever hashed). */
export function isNonce(value: unknown): value is string {
  return typeof value === 'string' && NONCE_PATTERN.test(value);
}

export const PROTOCOL_VERSION = 1;
export const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{3,64}$/;

/** What a window sees, as its hello or its `/mcp` URL chose: one server alone, a profile, or (neither) everything. */
export type Selection = Pick<Hello, 'server' | 'profile'>;

export interface Hello {
  type: 'hello';
  protocol: number;
  session_id?: string;
  /** The token itself: from clients that do not challenge (older shims, hand-written clients). */
  auth_token?: string;
  /** After a challenge, and only then: the client's proof (proof.ts) that it holds the token. */
  auth_proof?: string;
  client?: { name?: string; version?: string };
  cwd?: string;
  /** Reserved for `exai-ws shim --server NAME` (hosted servers). */
  server?: string;
  /** `exai-ws shim --profile NAME`: the config profile the window sees (not with `server`). */
  profile?: string;
  /**
   * The client's own process id (integer > 0). The daemon uses it only to notice a client that
   * died: after an abnormal close, a pid that no longer exists ends the session at once.
   */
  pid?: number;
  /**
   * True: the client sends {@link AckFrame}s after the hello_ack, and the daemon keeps the frames
   * it sent until they are acked, so that a resume can replay what a lost connection dropped.
   */
  acks?: boolean;
  /**
   * Only with `session_id`, on a resume: how many JSON-RPC frames the client received from the
   * daemon in this session (frames after hello_acks, counted over all its connections, from 0).
   */
  received?: number;
}

/**
 * Client -> daemon, only on a connection whose hello had `acks: true`, after the hello_ack:
 * the client has received `received` frames of this session; the daemon may drop the frames
 * it kept up to that one. Not JSON-RPC, never answered. Sent exactly in this shape.
 */
export interface AckFrame {
  type: 'ack';
  received: number;
}

export interface HelloLimits {
  max_inflight: number;
  max_bytes: number;
}

export type HelloAck =
  | {
      type: 'hello_ack';
      ok: true;
      session_id: string;
      resumed: boolean;
      daemon: { name: string; version: string; pid: number };
      limits: HelloLimits;
      /** Frames re-sent from the kept buffer on this resume (0 when none). */
      replayed?: number;
      /**
       * True when the daemon takes ack frames on this connection (the hello asked for them). A
       * client sends acks only then: a daemon older than acks would answer each with -32600.
       */
      acks?: boolean;
    }
  | { type: 'hello_ack'; ok: false; error: { code: HelloErrorCode; message: string } };

/** Client -> daemon, instead of a first hello: "prove that you hold the token" (proof.ts). */
export interface ChallengeFrame {
  type: 'challenge';
  /** The client's nonce: 32 random bytes, base64url. */
  nonce: string;
}

/** Daemon -> client, the answer to a {@link ChallengeFrame}. */
export interface ProofFrame {
  type: 'proof';
  /** The daemon's nonce: 32 random bytes, base64url. */
  nonce: string;
  /** The daemon's proof over the address the client connected to and both nonces. */
  proof: string;
}

/** A first frame the daemon refuses, and why. */
export type OpeningRefusal = {
  ok: false;
  code: Extract<HelloErrorCode, 'bad_hello' | 'not_hello' | 'unsupported_protocol'>;
  message: string;
};

export type HelloCheck = { ok: true; hello: Hello } | OpeningRefusal;

/** What a connection's first frame is: a hello, a challenge, or a refusal. */
export type OpeningCheck = { ok: true; hello: Hello } | { ok: true; challenge: ChallengeFrame } | OpeningRefusal;

const optionalString = (v: unknown, max: number): boolean => v === undefined || (typeof v === 'string' && v.length <= max);
const optionalCount = (v: unknown, min: number): boolean => v === undefined || (Number.isSafeInteger(v) && (v as number) >= min);

/** Checks a frame that must be a hello. Never throws. */
export function checkHello(text: string): HelloCheck {
  const value = parseObject(text);
  return typeof value === 'string' ? { ok: false, code: 'bad_hello', message: value } : checkHelloValue(value);
}

/**
 * Checks the first frame of a connection: a challenge (only its shape: the daemon answers it)
 * or a hello. Never throws.
 */
export function checkOpening(text: string): OpeningCheck {
  const value = parseObject(text);
  if (typeof value === 'string') return { ok: false, code: 'bad_hello', message: value };
  if (value.type !== 'challenge') return checkHelloValue(value);
  if (!isNonce(value.nonce)) {
    return { ok: false, code: 'bad_hello', message: 'challenge.nonce must be 32 random bytes as base64url (43 characters)' };
  }
  return { ok: true, challenge: { type: 'challenge', nonce: value.nonce } };
}

/** The nonce and proof of a {@link ProofFrame}; null when `text` is not one (a client's check). Never throws. */
export function parseProofFrame(text: string): { nonce: string; proof: string } | null {
  const value = parseObject(text);
  if (typeof value === 'string' || value.type !== 'proof' || !isNonce(value.nonce) || typeof value.proof !== 'string') return null;
  return { nonce: value.nonce, proof: value.proof };
}

/** A JSON object, or why the text is not one. */
function parseObject(text: string): Record<string, unknown> | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return 'hello is not valid JSON';
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'hello must be a JSON object';
  return value as Record<string, unknown>;
}

function checkHelloValue(h: Record<string, unknown>): HelloCheck {
  if (h.type !== 'hello') {
    return { ok: false, code: 'not_hello', message: 'the first frame must be {"type":"hello",...} (or {"type":"challenge",...})' };
  }
  if (typeof h.protocol !== 'number' || !Number.isInteger(h.protocol)) {
    return { ok: false, code: 'bad_hello', message: 'hello.protocol must be an integer' };
  }
  if (h.protocol !== PROTOCOL_VERSION) {
    return {
      ok: false,
      code: 'unsupported_protocol',
      message: `hello protocol ${h.protocol} is not supported; this daemon speaks ${PROTOCOL_VERSION}`,
    };
  }
  if (h.session_id !== undefined && (typeof h.session_id !== 'string' || !SESSION_ID_PATTERN.test(h.session_id))) {
    return { ok: false, code: 'bad_hello', message: 'hello.session_id must be 3-64 characters of [A-Za-z0-9_-]' };
  }
  if (
    !optionalString(h.auth_token, 4096) ||
    !optionalString(h.cwd, 4096) ||
    !optionalString(h.server, 256) ||
    !optionalString(h.profile, 256)
  ) {
    return { ok: false, code: 'bad_hello', message: 'hello.auth_token, hello.cwd, hello.server and hello.profile must be strings' };
  }
  if (!optionalString(h.auth_proof, 256)) {
    return { ok: false, code: 'bad_hello', message: 'hello.auth_proof must be a string (the proof, base64url)' };
  }
  if (!optionalCount(h.pid, 1)) {
    return { ok: false, code: 'bad_hello', message: 'hello.pid must be a positive integer (the client process id)' };
  }
  if (h.acks !== undefined && typeof h.acks !== 'boolean') {
    return { ok: false, code: 'bad_hello', message: 'hello.acks must be true or false' };
  }
  if (!optionalCount(h.received, 0)) {
    return { ok: false, code: 'bad_hello', message: 'hello.received must be a non-negative integer (frames received so far)' };
  }
  if (h.received !== undefined && h.session_id === undefined) {
    return { ok: false, code: 'bad_hello', message: 'hello.received is only meaningful on a resume: it needs hello.session_id' };
  }
  const client = h.client;
  if (client !== undefined) {
    if (client === null || typeof client !== 'object' || Array.isArray(client)) {
      return { ok: false, code: 'bad_hello', message: 'hello.client must be an object' };
    }
    const c = client as Record<string, unknown>;
    if (!optionalString(c.name, 256) || !optionalString(c.version, 256)) {
      return { ok: false, code: 'bad_hello', message: 'hello.client.name and version must be strings' };
    }
  }
  return { ok: true, hello: h as unknown as Hello };
}

/** How every ack frame starts: the cheap test that sends a frame to {@link parseAck}, not to JSON-RPC. */
export const ACK_PREFIX = '{"type":"ack"';
/** Exactly `{"type":"ack","received":N}`, N a plain non-negative integer of at most 16 digits. */
const ACK_FRAME = /^\{"type":"ack","received":(0|[1-9][0-9]{0,15})\}$/;

/** The count an ack frame carries, or undefined when `text` is not exactly an ack frame. Never throws. */
export function parseAck(text: string): number | undefined {
  if (!text.startsWith(ACK_PREFIX)) return undefined;
  const match = ACK_FRAME.exec(text);
  if (!match) return undefined;
  const n = Number(match[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}
