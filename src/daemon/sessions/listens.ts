/**
 * A modern client's `subscriptions/listen` streams (2026-07-28): which change notifications each
 * one asked for and the daemon agreed to. A modern client gets a server's change notifications
 * only here, each tagged with the id of the listen request it belongs to; nothing else reaches it
 * unasked (log messages and list changes outside a listen stream are dropped).
 */
import { idKey, isObject, type RequestId } from '../../protocol/jsonrpc.js';
import { MetaKey } from '../../protocol/eras.js';

/** The notification filter of one listen stream, as the daemon agreed to it. */
export interface ListenFilter {
  toolsListChanged?: true;
  promptsListChanged?: true;
  resourcesListChanged?: true;
  resourceSubscriptions?: string[];
}

/** Listen streams one session may hold at once (each is a request in flight). */
export const MAX_LISTENS = 8;
/** Resource URIs one listen stream may name. */
export const MAX_LISTEN_URIS = 256;
/** The longest URI a listen stream may name, in characters. */
const MAX_URI_CHARS = 4096;

const FLAG_OF: ReadonlyMap<string, 'toolsListChanged' | 'promptsListChanged' | 'resourcesListChanged'> = new Map([
  ['notifications/tools/list_changed', 'toolsListChanged'],
  ['notifications/prompts/list_changed', 'promptsListChanged'],
  ['notifications/resources/list_changed', 'resourcesListChanged'],
] as const);

/** What of a client's requested filter the daemon honours (every list kind; URIs within bounds). */
export function agreedFilter(requested: unknown): ListenFilter {
  const asked = isObject(requested) ? requested : {};
  const filter: ListenFilter = {};
  if (asked.toolsListChanged === true) filter.toolsListChanged = true;
  if (asked.promptsListChanged === true) filter.promptsListChanged = true;
  if (asked.resourcesListChanged === true) filter.resourcesListChanged = true;
  if (Array.isArray(asked.resourceSubscriptions)) {
    const uris = (asked.resourceSubscriptions as unknown[]).filter((u): u is string => typeof u === 'string' && u.length <= MAX_URI_CHARS);
    filter.resourceSubscriptions = [...new Set(uris)].slice(0, MAX_LISTEN_URIS);
  }
  return filter;
}

interface Listen {
  readonly id: RequestId;
  readonly filter: ListenFilter;
  /** Ends the stream gracefully (its request gets its complete result). */
  readonly end: () => void;
}

export class Listens {
  private readonly streams = new Map<string, Listen>();
  /** Sends one notification's text on the stream of listen request `related`. */
  private readonly send: (text: string, method: string, related: RequestId) => void;

  constructor(send: (text: string, method: string, related: RequestId) => void) {
    this.send = send;
  }

  get size(): number {
    return this.streams.size;
  }

  add(id: RequestId, filter: ListenFilter, end: () => void): void {
    this.streams.set(idKey(id), { id, filter, end });
  }

  remove(id: RequestId): void {
    this.streams.delete(idKey(id));
  }

  /** Delivers a server's change notification to every listen stream that asked for it; false when none did. */
  deliver(text: string, method: string): boolean {
    if (this.streams.size === 0) return false;
    const flag = FLAG_OF.get(method);
    if (flag === undefined && method !== 'notifications/resources/updated') return false;
    const message = parsed(text);
    if (message === undefined) return false;
    let uri: string | undefined;
    if (flag === undefined) {
      uri = uriOf(message);
      if (uri === undefined) return false;
    }
    let delivered = false;
    for (const listen of this.streams.values()) {
      const wanted = flag !== undefined ? listen.filter[flag] === true : listen.filter.resourceSubscriptions?.includes(uri as string);
      if (!wanted) continue;
      this.send(tagged(message, listen.id), method, listen.id);
      delivered = true;
    }
    return delivered;
  }

  /** Ends every stream gracefully (shutdown, the session closing). */
  endAll(): void {
    for (const listen of [...this.streams.values()]) listen.end();
    this.streams.clear();
  }
}

/** The acknowledgement that opens a listen stream, tagged with its id. */
export function acknowledgement(id: RequestId, filter: ListenFilter): object {
  return {
    jsonrpc: '2.0',
    method: 'notifications/subscriptions/acknowledged',
    params: { _meta: { [MetaKey.SUBSCRIPTION_ID]: id }, notifications: filter },
  };
}

function parsed(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return isObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function uriOf(message: Record<string, unknown>): string | undefined {
  const params = message.params;
  return isObject(params) && typeof params.uri === 'string' ? params.uri : undefined;
}

/** The notification's text with `_meta[subscriptionId]` set to the listen request's id. */
function tagged(message: Record<string, unknown>, id: RequestId): string {
  const params = isObject(message.params) ? message.params : {};
  const meta = isObject(params._meta) ? params._meta : {};
  return JSON.stringify({ ...message, params: { ...params, _meta: { ...meta, [MetaKey.SUBSCRIPTION_ID]: id } } });
}
