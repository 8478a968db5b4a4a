/**
 * Minimal JSON-RPC 2.0 message model. The daemon forwards messages it does not understand
 * untouched, so these types describe only the fields it routes on.
 */
import { RpcCode } from './codes.js';

export type RequestId = string | number;

export interface RpcRequest {
  jsonrpc: '2.0';
  id: RequestId;
  method: string;
  params?: Record<string, unknown>;
}

export interface RpcNotification {
  jsonrpc: '2.0';
  method: string;
  params?: Record<string, unknown>;
}

export interface RpcErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

export interface RpcSuccess {
  jsonrpc: '2.0';
  id: RequestId;
  result: Record<string, unknown>;
}

export interface RpcFailure {
  jsonrpc: '2.0';
  id: RequestId | null;
  error: RpcErrorObject;
}

export type RpcResponse = RpcSuccess | RpcFailure;

/** The body of a response without its envelope: what a call or a request to a client comes to. */
export type Answer = { result: Record<string, unknown> } | { error: RpcErrorObject };
export type RpcMessage = RpcRequest | RpcNotification | RpcResponse;

/** What one parsed frame or line turned out to be. `invalid` carries the reply to send. */
export type Classified =
  | { kind: 'request'; message: RpcRequest }
  | { kind: 'notification'; message: RpcNotification }
  | { kind: 'response'; message: RpcResponse }
  | { kind: 'invalid'; reply: RpcFailure };

/** A JSON-RPC request id: a string or a finite number, its type kept. */
export function isRequestId(value: unknown): value is RequestId {
  return typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value));
}

/**
 * A numeric id is answered only when the number the daemon read is the number the client
 * wrote: past 2^53 - 1, JSON.parse rounds (9007199254740993 reads as 9007199254740992), so an
 * echo would name a request the client never sent. Such ids are refused, never rounded.
 */
function exactId(value: RequestId): boolean {
  return typeof value === 'string' || Math.abs(value) <= Number.MAX_SAFE_INTEGER;
}

/** MCP: a progress token is a string or a number. */
export function isProgressToken(value: unknown): value is string | number {
  return isRequestId(value); // the same two types as a request id
}

/** A plain JSON object (not null, not an array). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A string cut to `max` characters for error messages and logs, marked when cut. */
export function clip(text: string, max = 200): string {
  return text.length <= max ? text : `${text.slice(0, max)}... (${text.length} characters)`;
}

export type Serialized = { ok: true; text: string } | { ok: false; reason: string };

/**
 * Serialises one message for the wire. Never throws: data parsed from JSON can still fail to
 * serialise (JSON.parse reads nesting of any depth, JSON.stringify recurses and runs out of
 * stack at a few thousand levels; a string past V8's limit), and that must cost only the
 * message, not the process.
 */
export function trySerialize(message: unknown): Serialized {
  try {
    return { ok: true, text: JSON.stringify(message) };
  } catch (error) {
    return { ok: false, reason: serializeFailure(error) };
  }
}

/** Why JSON.stringify (or a transport that runs it) failed, in words a user can act on. */
export function serializeFailure(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  if (/call stack/i.test(message)) return 'it is nested too deeply to serialise';
  if (/string length/i.test(message)) return 'it is too large to serialise';
  return `it cannot be serialised (${message})`;
}

/** Builds an error response. `id` is null when the request's id could not be read. */
export function rpcError(id: RequestId | null, code: number, message: string, data?: unknown): RpcFailure {
  const error: RpcErrorObject = data === undefined ? { code, message } : { code, message, data };
  return { jsonrpc: '2.0', id, error };
}

/**
 * Parses one frame of text into a classified message. Never throws: bad input becomes an
 * `invalid` result whose reply names what was wrong, so only that message is lost.
 */
export function parseMessage(text: string): Classified {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: 'invalid', reply: rpcError(null, RpcCode.PARSE_ERROR, 'Parse error: not valid JSON') };
  }
  return classify(value);
}

/** Classifies an already-parsed JSON value (see {@link parseMessage}). */
export function classify(value: unknown): Classified {
  if (Array.isArray(value)) {
    return {
      kind: 'invalid',
      reply: rpcError(null, RpcCode.INVALID_REQUEST, 'Invalid request: JSON-RPC batches are not supported by MCP'),
    };
  }
  if (value === null || typeof value !== 'object') {
    return { kind: 'invalid', reply: rpcError(null, RpcCode.INVALID_REQUEST, 'Invalid request: not a JSON object') };
  }
  const msg = value as Record<string, unknown>;
  const id = isRequestId(msg.id) && exactId(msg.id) ? msg.id : null;
  if (isRequestId(msg.id) && !exactId(msg.id)) {
    return {
      kind: 'invalid',
      reply: rpcError(
        null,
        RpcCode.INVALID_REQUEST,
        'Invalid request: a numeric id must lie within +-(2^53 - 1) to be answered exactly (JSON numbers lose precision past it); use a string id',
      ),
    };
  }
  if (msg.jsonrpc !== '2.0') {
    return { kind: 'invalid', reply: rpcError(id, RpcCode.INVALID_REQUEST, 'Invalid request: jsonrpc must be "2.0"') };
  }
  if (msg.params !== undefined && (msg.params === null || typeof msg.params !== 'object')) {
    return { kind: 'invalid', reply: rpcError(id, RpcCode.INVALID_REQUEST, 'Invalid request: params must be an object') };
  }
  if (typeof msg.method === 'string') {
    if (msg.id === undefined) return { kind: 'notification', message: msg as unknown as RpcNotification };
    if (id === null) {
      return { kind: 'invalid', reply: rpcError(null, RpcCode.INVALID_REQUEST, 'Invalid request: id must be a string or number') };
    }
    return { kind: 'request', message: msg as unknown as RpcRequest };
  }
  if (msg.method === undefined && (id !== null || msg.id === null) && ('result' in msg || 'error' in msg)) {
    return { kind: 'response', message: msg as unknown as RpcResponse };
  }
  return { kind: 'invalid', reply: rpcError(id, RpcCode.INVALID_REQUEST, 'Invalid request: no method, result or error') };
}

/** A key that keeps number and string ids apart (1 and "1" are different requests). */
export function idKey(id: RequestId): string {
  return typeof id === 'number' ? `n${id}` : `s${id}`;
}
