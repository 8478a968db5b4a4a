/**
 * The 2026-07-28 ("modern") era of MCP as the daemon, a client of hosted servers, speaks it: no
 * `initialize` handshake; every request carries the protocol version, the client's capabilities
 * and its identity in `params._meta`; `server/discover` tells what a server is. These are the
 * era's words and rules, with no I/O: which era a probe's answer shows, the `_meta` a request
 * gets (or loses, for a 2025 server), the initialize result a discovery stands for, and the
 * notification filter of a `subscriptions/listen` stream.
 */
import { RpcCode } from '../protocol/codes.js';
import { LEGACY_VERSION, MODERN_ERROR_CODES, MODERN_VERSION, MetaKey, RESERVED_META_PREFIX, type Era } from '../protocol/eras.js';
import { isObject, type Answer } from '../protocol/jsonrpc.js';

export { LEGACY_VERSION, MODERN_VERSION, type Era };

/** A config entry's `protocol`: one era only, or `auto` (probe with server/discover, fall back to initialize). */
export const PROTOCOL_SETTINGS = Object.freeze([LEGACY_VERSION, MODERN_VERSION, 'auto'] as const);
export type ProtocolSetting = (typeof PROTOCOL_SETTINGS)[number];

/** What the daemon says of itself in a modern request when the caller's params say nothing. */
export interface ModernDefaults {
  readonly capabilities: Readonly<Record<string, unknown>>;
  readonly clientInfo: Readonly<Record<string, unknown>>;
}

/**
 * `params` with the modern `_meta`: the protocol version always; the client capabilities and
 * identity the caller put there (the calling window's own) kept, else the link's defaults; the
 * log level when one was asked for. The caller's object is not changed.
 */
export function withModernMeta(
  params: Record<string, unknown> | undefined,
  defaults: ModernDefaults,
  logLevel?: string,
): Record<string, unknown> {
  const given = isObject(params?._meta) ? params._meta : {};
  const meta: Record<string, unknown> = {
    ...given,
    [MetaKey.PROTOCOL_VERSION]: MODERN_VERSION,
    [MetaKey.CLIENT_CAPABILITIES]: isObject(given[MetaKey.CLIENT_CAPABILITIES])
      ? given[MetaKey.CLIENT_CAPABILITIES]
      : defaults.capabilities,
    [MetaKey.CLIENT_INFO]: isObject(given[MetaKey.CLIENT_INFO]) ? given[MetaKey.CLIENT_INFO] : defaults.clientInfo,
  };
  if (logLevel !== undefined && given[MetaKey.LOG_LEVEL] === undefined) meta[MetaKey.LOG_LEVEL] = logLevel;
  return { ...params, _meta: meta };
}

/** A key the modern era reserves in `_meta` (`io.modelcontextprotocol/*`). */
function isReservedKey(key: string): boolean {
  return key.startsWith(RESERVED_META_PREFIX);
}

/**
 * `params` for a 2025 server: the `io.modelcontextprotocol/*` keys of `_meta` (which mean nothing
 * to it) removed, and `_meta` itself when nothing else was in it. Unchanged (the same object)
 * when there was nothing to remove.
 */
export function withoutModernMeta(params: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  return withoutMetaKeys(params, isReservedKey);
}

/**
 * `params` with the `_meta` keys that `drop` picks removed, and `_meta` itself when nothing else
 * was in it. Unchanged (the same object) when there was nothing to remove.
 */
export function withoutMetaKeys(
  params: Record<string, unknown> | undefined,
  drop: (key: string) => boolean,
): Record<string, unknown> | undefined {
  const meta = params?._meta;
  if (!isObject(meta)) return params;
  const keys = Object.keys(meta);
  if (!keys.some(drop)) return params;
  const kept = Object.fromEntries(keys.filter((key) => !drop(key)).map((key) => [key, meta[key]]));
  const { _meta: _dropped, ...rest } = params as Record<string, unknown>;
  return Object.keys(kept).length > 0 ? { ...rest, _meta: kept } : rest;
}

/** What a `server/discover` probe showed: a modern server (its DiscoverResult), a legacy one, or one the daemon cannot speak to. */
export type ProbeVerdict =
  | { readonly era: 'modern'; readonly discover: Record<string, unknown> }
  | { readonly era: 'legacy'; readonly why: string }
  | { readonly era: 'none'; readonly why: string };

/**
 * Judges the answer to a `server/discover` probe by the spec's rules of backward compatibility:
 * a DiscoverResult naming 2026-07-28 is a modern server; a recognized modern error is a modern
 * server too, never a reason to fall back (unless all it supports is a 2025 version); any other
 * error, or no answer (`undefined`), is a legacy server.
 */
export function judgeProbe(answer: Answer | undefined): ProbeVerdict {
  if (answer === undefined) return { era: 'legacy', why: 'no answer to server/discover' };
  if ('result' in answer) {
    const versions = answer.result.supportedVersions;
    if (Array.isArray(versions) && versions.includes(MODERN_VERSION)) return { era: 'modern', discover: answer.result };
    return { era: 'legacy', why: `server/discover named no ${MODERN_VERSION} among ${JSON.stringify(versions ?? null)}` };
  }
  const { code, message } = answer.error;
  if (!MODERN_ERROR_CODES.has(code)) return { era: 'legacy', why: `server/discover: ${message} (${code})` };
  const supported = supportedVersions(answer.error.data);
  const legacyOnly = supported.length > 0 && !supported.includes(MODERN_VERSION) && supported.some(isLegacyVersion);
  if (code === RpcCode.UNSUPPORTED_PROTOCOL_VERSION && legacyOnly)
    return { era: 'legacy', why: `the server supports ${supported.join(', ')}` };
  return { era: 'none', why: `server/discover was refused: ${message} (${code})${supportedNote(answer.error.data)}` };
}

/** The versions a -32022 refusal's `data.supported` lists (its strings; none when it lists nothing). */
export function supportedVersions(data: unknown): string[] {
  return isObject(data) && Array.isArray(data.supported) ? data.supported.filter((v) => typeof v === 'string') : [];
}

/** ` (it supports 2026-07-28)` when a refusal names the versions the server speaks, else nothing. */
export function supportedNote(data: unknown): string {
  const supported = supportedVersions(data);
  return supported.length > 0 ? ` (it supports ${supported.join(', ')})` : '';
}

/** A dated version before 2026 (2024-11-05, 2025-03-26, 2025-06-18, 2025-11-25): a handshake era. */
function isLegacyVersion(version: string): boolean {
  return /^20(1\d|2[0-5])-\d\d-\d\d$/.test(version);
}

/**
 * The initialize result a DiscoverResult stands for, so that whatever reads a server's
 * capabilities, identity and instructions reads a modern server's as a legacy one's.
 */
export function initializeResultOf(discover: Record<string, unknown>): Record<string, unknown> {
  const meta = isObject(discover._meta) ? discover._meta : {};
  const serverInfo = isObject(meta[MetaKey.SERVER_INFO]) ? meta[MetaKey.SERVER_INFO] : { name: 'unknown', version: 'unknown' };
  const result: Record<string, unknown> = {
    protocolVersion: MODERN_VERSION,
    capabilities: isObject(discover.capabilities) ? discover.capabilities : {},
    serverInfo,
  };
  if (typeof discover.instructions === 'string') result.instructions = discover.instructions;
  return result;
}

/**
 * The `notifications` filter of a `subscriptions/listen` request: every list change the
 * server's capabilities offer, and updates of the resources subscribed to (when it offers
 * subscriptions). Undefined when there is nothing to listen for.
 */
export function listenFilter(capabilities: Record<string, unknown>, uris: Iterable<string>): Record<string, unknown> | undefined {
  const filter: Record<string, unknown> = {};
  const offers = (name: string, flag: string) => {
    const capability = capabilities[name];
    return isObject(capability) && capability[flag] === true;
  };
  if (offers('tools', 'listChanged')) filter.toolsListChanged = true;
  if (offers('prompts', 'listChanged')) filter.promptsListChanged = true;
  if (offers('resources', 'listChanged')) filter.resourcesListChanged = true;
  const subscribed = [...uris];
  if (offers('resources', 'subscribe') && subscribed.length > 0) filter.resourceSubscriptions = subscribed;
  return Object.keys(filter).length > 0 ? filter : undefined;
}

/**
 * A value for the `Mcp-Name` and `Mcp-Param-*` headers: as it is when it is plain visible ASCII
 * (inner spaces and tabs allowed, none at either end) and does not itself look like the
 * sentinel, else the spec's Base64 sentinel `=?base64?...?=` of its UTF-8.
 */
export function headerValue(value: string): string {
  const sentinel = value.startsWith('=?base64?') && value.endsWith('?=');
  if (!sentinel && /^[!-~](?:[ \t!-~]*[!-~])?$/.test(value)) return value;
  return `=?base64?${Buffer.from(value, 'utf8').toString('base64')}?=`;
}
