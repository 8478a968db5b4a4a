/**
 * The two eras of MCP on the wire. The legacy era (2025-11-25 and before) opens a session with
 * `initialize`; the modern era (2026-07-28) has no session: every request carries its protocol
 * version, the client's capabilities and, optionally, its identity and log level in
 * `params._meta`, and every result says `resultType`. This file reads and writes the modern
 * fields; it decides nothing about routing.
 */
import { RpcCode } from './codes.js';
import { isObject, type RpcErrorObject } from './jsonrpc.js';
import { LOG_LEVELS, type LogLevel } from './log-levels.js';

/** The modern revision the daemon serves. */
export const MODERN_VERSION = '2026-07-28';
/** The newest legacy revision: the one the daemon asks servers for, and the one that names the legacy era. */
export const LEGACY_VERSION = '2025-11-25';
/** Modern revisions the daemon serves, newest first. */
export const MODERN_VERSIONS: readonly string[] = [MODERN_VERSION];
/** Legacy revisions the daemon serves (by `initialize`), newest first. */
export const LEGACY_VERSIONS: readonly string[] = [LEGACY_VERSION, '2025-06-18', '2025-03-26', '2024-11-05'];

/** Which era a client or a server speaks: `legacy` (initialize, 2025-11-25 and before) or `modern` (2026-07-28). */
export type Era = 'legacy' | 'modern';
/** The eras, as metric labels list them. */
export const ERAS: readonly Era[] = Object.freeze(['modern', 'legacy']);
/** Each era by the revision that names it, as `/health` and the status views write it. */
export const ERA_VERSION = Object.freeze({ modern: MODERN_VERSION, legacy: LEGACY_VERSION } as const);
/** Every revision, as `server/discover` and -32022 list them. */
export const ALL_VERSIONS: readonly string[] = [...MODERN_VERSIONS, ...LEGACY_VERSIONS];

/** The reserved `_meta` keys of the modern era. */
export const MetaKey = Object.freeze({
  PROTOCOL_VERSION: 'io.modelcontextprotocol/protocolVersion',
  CLIENT_CAPABILITIES: 'io.modelcontextprotocol/clientCapabilities',
  CLIENT_INFO: 'io.modelcontextprotocol/clientInfo',
  LOG_LEVEL: 'io.modelcontextprotocol/logLevel',
  SERVER_INFO: 'io.modelcontextprotocol/serverInfo',
  SUBSCRIPTION_ID: 'io.modelcontextprotocol/subscriptionId',
});

/** The prefix of every key the specification reserves in `_meta`. */
export const RESERVED_META_PREFIX = 'io.modelcontextprotocol/';

/** Methods of the legacy era that the modern wire no longer has: -32601 (HTTP 404) there. */
export const REMOVED_METHODS: ReadonlySet<string> = new Set([
  'initialize',
  'ping',
  'logging/setLevel',
  'resources/subscribe',
  'resources/unsubscribe',
]);

/**
 * The methods whose request names a tool, prompt or resource, and the `params` field that names
 * it: the field the `Mcp-Name` header mirrors. They are also the requests a server may answer
 * with `input_required`.
 */
export const NAMED_METHODS: ReadonlyMap<string, 'name' | 'uri'> = new Map([
  ['tools/call', 'name'],
  ['prompts/get', 'name'],
  ['resources/read', 'uri'],
] as const);

/**
 * JSON-RPC errors only the modern era has (HeaderMismatch, MissingRequiredClientCapability,
 * UnsupportedProtocolVersion): the modern wire answers them with HTTP 400 rather than 200, and an
 * answer with one of them comes from a modern server, whatever else it says.
 */
export const MODERN_ERROR_CODES: ReadonlySet<number> = new Set([
  RpcCode.HEADER_MISMATCH,
  RpcCode.MISSING_CLIENT_CAPABILITY,
  RpcCode.UNSUPPORTED_PROTOCOL_VERSION,
]);

/** Results that carry caching hints (`ttlMs`, `cacheScope`) in the modern era. */
export const CACHEABLE_METHODS: ReadonlySet<string> = new Set([
  'server/discover',
  'tools/list',
  'prompts/list',
  'resources/list',
  'resources/templates/list',
  'resources/read',
]);

/** What one modern request declared about its client, read from its `_meta`. */
export interface ModernMeta {
  readonly version: string;
  readonly capabilities: Record<string, unknown>;
  readonly clientInfo: { readonly name: string | undefined; readonly version: string | undefined } | undefined;
  /** Undefined: the request gets no log notifications at all. */
  readonly logLevel: LogLevel | undefined;
}

/** The longest client name or version kept from a request (its `_meta`, or `initialize`), in characters. */
export const MAX_CLIENT_LABEL_CHARS = 256;

/** The modern protocol version a request names in `_meta`, or undefined for a legacy request. */
export function modernVersionOf(params: Record<string, unknown> | undefined): string | undefined {
  const meta = params?._meta;
  if (!isObject(meta)) return undefined;
  const version = meta[MetaKey.PROTOCOL_VERSION];
  return typeof version === 'string' ? version : undefined;
}

/**
 * Reads and checks a modern request's `_meta`: the version must be one the daemon serves
 * (-32022, listing them), the client's capabilities must be an object (-32602); client info
 * and log level are optional, and a malformed one counts as absent.
 */
export function readModernMeta(params: Record<string, unknown> | undefined): { meta: ModernMeta } | { error: RpcErrorObject } {
  const meta = isObject(params?._meta) ? params._meta : {};
  const version = meta[MetaKey.PROTOCOL_VERSION];
  if (typeof version !== 'string') {
    return { error: { code: RpcCode.INVALID_PARAMS, message: `Invalid params: _meta["${MetaKey.PROTOCOL_VERSION}"] is required` } };
  }
  if (!MODERN_VERSIONS.includes(version)) return { error: unsupportedVersion(version) };
  const capabilities = meta[MetaKey.CLIENT_CAPABILITIES];
  if (!isObject(capabilities)) {
    return {
      error: { code: RpcCode.INVALID_PARAMS, message: `Invalid params: _meta["${MetaKey.CLIENT_CAPABILITIES}"] is required (an object)` },
    };
  }
  const info = meta[MetaKey.CLIENT_INFO];
  const label = (value: unknown) => (typeof value === 'string' ? value.slice(0, MAX_CLIENT_LABEL_CHARS) : undefined);
  const clientInfo = isObject(info) ? { name: label(info.name), version: label(info.version) } : undefined;
  const level = meta[MetaKey.LOG_LEVEL];
  const logLevel = typeof level === 'string' && (LOG_LEVELS as readonly string[]).includes(level) ? (level as LogLevel) : undefined;
  return { meta: { version, capabilities, clientInfo, logLevel } };
}

/** -32022: the version asked for is not served; `data` lists what is. */
export function unsupportedVersion(requested: string): RpcErrorObject {
  return {
    code: RpcCode.UNSUPPORTED_PROTOCOL_VERSION,
    message: `Unsupported protocol version: ${requested.slice(0, 40)}`,
    data: { supported: [...ALL_VERSIONS], requested: requested.slice(0, 40) },
  };
}

/** Fields the daemon adds in front of a modern result; the server's own, written after, win. */
export function modernResultHead(method: string, serverInfo: { name: string; version: string }): Record<string, unknown> {
  const head: Record<string, unknown> = { resultType: 'complete' };
  // What the daemon lists and reads depends on the window (its workspace, its route, its
  // token): never for a shared cache, and fresh only until a change notification says so.
  if (CACHEABLE_METHODS.has(method)) Object.assign(head, { ttlMs: 0, cacheScope: 'private' });
  head._meta = { [MetaKey.SERVER_INFO]: serverInfo };
  return head;
}

/**
 * A result's JSON text with `head`'s members written first. JSON.parse keeps the last of
 * duplicate keys, so whatever the server wrote itself (a modern server's own `resultType`,
 * `ttlMs`, `_meta`) still wins; nothing is parsed.
 */
export function prependMembers(text: string, head: Record<string, unknown>): string {
  const open = text.indexOf('{');
  const inner = JSON.stringify(head).slice(1, -1);
  if (open < 0 || inner === '') return text;
  const rest = text.slice(open + 1);
  return `{${inner}${/^\s*\}/.test(rest) ? '' : ','}${rest}`;
}
