/**
 * The list methods the hub merges, how their items are named and routed, and the small pieces
 * the merging uses (list errors, URI template matching).
 */
import { RpcCode } from '../protocol/codes.js';
import type { RpcErrorObject } from '../protocol/jsonrpc.js';
import type { Upstream } from '../hosting/upstream.js';
import type { LocalErrorCode } from '../local/errors.js';

/** A list method the hub merges, and how its items are named. */
export type ListKind = 'tools' | 'prompts' | 'resources' | 'resourceTemplates';

export interface ListSpec {
  method: string;
  /** The result key holding the items. */
  key: string;
  /** The capability a server must declare to be asked. */
  capability: string;
  /** Item field that gets the server prefix, or null when items keep their own names. */
  prefixed: 'name' | null;
  /** Item field routing follow-up calls back to its server. */
  routeBy: 'name' | 'uri' | 'uriTemplate';
  changed: string;
}

export const LISTS: Readonly<Record<ListKind, ListSpec>> = Object.freeze({
  tools: {
    method: 'tools/list',
    key: 'tools',
    capability: 'tools',
    prefixed: 'name',
    routeBy: 'name',
    changed: 'notifications/tools/list_changed',
  },
  prompts: {
    method: 'prompts/list',
    key: 'prompts',
    capability: 'prompts',
    prefixed: 'name',
    routeBy: 'name',
    changed: 'notifications/prompts/list_changed',
  },
  resources: {
    method: 'resources/list',
    key: 'resources',
    capability: 'resources',
    prefixed: null,
    routeBy: 'uri',
    changed: 'notifications/resources/list_changed',
  },
  resourceTemplates: {
    method: 'resources/templates/list',
    key: 'resourceTemplates',
    capability: 'resources',
    prefixed: null,
    routeBy: 'uriTemplate',
    changed: 'notifications/resources/list_changed',
  },
});

export class ListError extends Error {
  readonly code = 'ELIST' satisfies LocalErrorCode;
  constructor(readonly rpc: RpcErrorObject) {
    super(rpc.message);
  }
}

export class UnavailableError extends Error {
  readonly code = 'EUNAVAILABLE' satisfies LocalErrorCode;
  constructor(
    readonly server: Upstream,
    message: string,
  ) {
    super(`${server.name}: ${message}`);
  }
}

export function asRpcError(error: unknown): RpcErrorObject {
  if (error instanceof ListError) return error.rpc;
  if (error instanceof UnavailableError)
    return { code: RpcCode.UPSTREAM_UNAVAILABLE, message: error.message, data: { server: error.server.name } };
  return { code: RpcCode.INTERNAL_ERROR, message: error instanceof Error ? error.message : String(error) };
}

/** A regular expression for an RFC 6570 URI template (levels 1-2 are enough to route by). */
export function templatePattern(template: string): RegExp {
  let source = '^';
  let last = 0;
  for (const match of template.matchAll(/\{([^}]*)\}/g)) {
    source += escapeRegExp(template.slice(last, match.index));
    const expr = match[1] ?? '';
    source += expr.startsWith('+') || expr.startsWith('#') ? '.*' : '[^/?#]*';
    last = (match.index ?? 0) + match[0].length;
  }
  return new RegExp(`${source}${escapeRegExp(template.slice(last))}$`);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The notifications that tell a client to list tools, prompts and resources again. */
export const LIST_CHANGED_METHODS = Object.freeze([
  'notifications/tools/list_changed',
  'notifications/prompts/list_changed',
  'notifications/resources/list_changed',
]);
