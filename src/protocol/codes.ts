/**
 * Wire codes shared by the daemon, the shim and their tests. Numeric JSON-RPC codes and
 * WebSocket close codes cross the wire; keep them apart from local string error codes.
 */

/** JSON-RPC error codes (DESIGN.md, "MCP session semantics"). */
export const RpcCode = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  CONNECTION_CLOSED: -32000,
  REQUEST_TIMEOUT: -32001,
  OVER_CAPACITY: -32010,
  UPSTREAM_UNAVAILABLE: -32011,
  /** A server's "resource not found" in the legacy era; the modern era answers -32602 instead. */
  LEGACY_RESOURCE_NOT_FOUND: -32002,
  /** To a hosted server: which window caused its sampling, elicitation or roots request is not certain. */
  ORIGIN_UNKNOWN: -32012,
  /** 2026-07-28: the HTTP headers do not match the body, or a required one is missing (HTTP 400). */
  HEADER_MISMATCH: -32020,
  /** 2026-07-28: the request needs a client capability its `_meta` did not declare (HTTP 400). */
  MISSING_CLIENT_CAPABILITY: -32021,
  /** 2026-07-28: the protocol version asked for is not served; `data.supported` lists what is (HTTP 400). */
  UNSUPPORTED_PROTOCOL_VERSION: -32022,
});

/** WebSocket close codes (DESIGN.md, "WebSocket protocol"). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  UNSUPPORTED_DATA: 1003,
  INVALID_PAYLOAD: 1007,
  MESSAGE_TOO_BIG: 1009,
  BAD_HELLO: 4000,
  NOT_HELLO: 4001,
  HELLO_TIMEOUT: 4002,
  UNAUTHORIZED: 4003,
  UNSUPPORTED_PROTOCOL: 4004,
  SESSION_LIMIT: 4008,
  SESSION_CLOSED: 4009,
  SUPERSEDED: 4010,
});

/** String codes carried in a refused hello_ack's `error.code`. */
export type HelloErrorCode = 'bad_hello' | 'not_hello' | 'unauthorized' | 'unsupported_protocol' | 'session_limit' | 'shutting_down';

/** The close code that goes with each refused-hello error code. */
export const helloErrorClose: Readonly<Record<HelloErrorCode, number>> = Object.freeze({
  bad_hello: CloseCode.BAD_HELLO,
  not_hello: CloseCode.NOT_HELLO,
  unauthorized: CloseCode.UNAUTHORIZED,
  unsupported_protocol: CloseCode.UNSUPPORTED_PROTOCOL,
  session_limit: CloseCode.SESSION_LIMIT,
  shutting_down: CloseCode.GOING_AWAY,
});
