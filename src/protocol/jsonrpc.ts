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

function isId(value: unknown): value is RequestId {
  return typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value));
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
  const id = isId(msg.id) ? msg.id : null;
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
