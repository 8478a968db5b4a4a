/**
 * The set of servers behind the router, and the merged view sessions see: tools and prompts
 * of hosted servers carry a `<server>__` prefix, the built-in server's keep bare names,
 * resources keep their URIs. Lists are cached per server and dropped on `list_changed`.
 */
import { RpcCode } from '../protocol/codes.js';
import type { RpcErrorObject, RpcNotification } from '../protocol/jsonrpc.js';
import type { ServerLink } from './server-link.js';

export const PREFIX_SEPARATOR = '__';

/** A list method the hub merges, and how its items are named. */
export type ListKind = 'tools' | 'prompts' | 'resources' | 'resourceTemplates';

interface ListSpec {
  method: string;
  /** The result key holding the items. */
  key: string;
  /** The capability a server must declare to be asked. */
  capability: string;
  /** Item field that gets the server prefix, or null when items keep their own names. */
  prefixed: 'name' | null;
  /** Item field routing follows-up calls back to its server. */
  routeBy: 'name' | 'uri' | 'uriTemplate';
  changed: string | null;
}

const LISTS: Readonly<Record<ListKind, ListSpec>> = Object.freeze({
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

export interface HostedServer {
  link: ServerLink;
  /** Prefix for tool and prompt names; null for bare names (the built-in server). */
  prefix: string | null;
}

type Item = Record<string, unknown>;

interface Merged {
  items: Item[];
  /** Session-visible name or URI -> the server and its own name. */
  index: Map<string, { server: HostedServer; name: string }>;
}

/** What the hub's merged list call resolves to. */
export type ListOutcome = { items: Item[] } | { error: RpcErrorObject };

export class Hub {
  /** Fired with the list kind whose merged view changed, to tell every session. */
  onlistchanged: ((notification: RpcNotification) => void) | undefined;

  private readonly servers: HostedServer[];
  private readonly cache = new Map<ListKind, Promise<Merged>>();
  private readonly listTimeoutMs: number;

  constructor(servers: HostedServer[], options: { listTimeoutMs: number }) {
    this.servers = servers;
    this.listTimeoutMs = options.listTimeoutMs;
    for (const server of servers) {
      server.link.onnotification = (n) => this.fromServer(n);
    }
  }

  /** Starts every server link; rejects when one cannot start. */
  async start(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.link.start()));
  }

  /** Closes every server link. Idempotent. */
  async close(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.link.close()));
  }

  get links(): readonly ServerLink[] {
    return this.servers.map((s) => s.link);
  }

  /** True when some server declares the capability (`tools`, `prompts`, `resources`, ...). */
  hasCapability(name: string): boolean {
    return this.servers.some((s) => capabilityOf(s.link, name) !== undefined);
  }

  /** The merged list for one kind, across all servers that declare it. */
  async list(kind: ListKind): Promise<ListOutcome> {
    try {
      return { items: (await this.merged(kind)).items };
    } catch (error) {
      this.cache.delete(kind);
      return { error: asRpcError(error) };
    }
  }

  /** Resolves a session-visible tool or prompt name, or resource URI, to its server. */
  async resolve(kind: ListKind, key: string): Promise<{ server: HostedServer; name: string } | undefined> {
    const merged = await this.merged(kind).catch(() => undefined);
    let hit = merged?.index.get(key);
    if (!hit && kind === 'resources') {
      // A URI from a resource template is not in resources/list: send it to the only server offering resources.
      const offering = this.servers.filter((s) => capabilityOf(s.link, 'resources') !== undefined);
      if (offering.length === 1 && offering[0]) hit = { server: offering[0], name: key };
    }
    return hit;
  }

  private merged(kind: ListKind): Promise<Merged> {
    let cached = this.cache.get(kind);
    if (!cached) {
      cached = this.build(kind);
      this.cache.set(kind, cached);
    }
    return cached;
  }

  private async build(kind: ListKind): Promise<Merged> {
    const spec = LISTS[kind];
    const asking = this.servers.filter((s) => capabilityOf(s.link, spec.capability) !== undefined);
    const lists = await Promise.all(asking.map((s) => this.fetchAll(s, spec)));
    const items: Item[] = [];
    const index = new Map<string, { server: HostedServer; name: string }>();
    asking.forEach((server, i) => {
      for (const item of lists[i] ?? []) {
        const own = String(item[spec.routeBy] ?? '');
        let visible = own;
        let shown = item;
        if (spec.prefixed && server.prefix !== null) {
          visible = `${server.prefix}${PREFIX_SEPARATOR}${own}`;
          shown = { ...item, [spec.prefixed]: visible };
        }
        if (index.has(visible)) continue; // first server wins a clash; the other stays reachable by prefix
        index.set(visible, { server, name: own });
        items.push(shown);
      }
    });
    return { items, index };
  }

  private async fetchAll(server: HostedServer, spec: ListSpec): Promise<Item[]> {
    const items: Item[] = [];
    let cursor: unknown;
    for (let page = 0; page < 100; page++) {
      const outcome = await server.link.call(spec.method, cursor === undefined ? {} : { cursor }, { timeoutMs: this.listTimeoutMs });
      if (outcome === null) break;
      if ('error' in outcome) throw new ListError(outcome.error);
      const got = outcome.result[spec.key];
      if (Array.isArray(got)) items.push(...(got as Item[]));
      cursor = outcome.result.nextCursor;
      if (typeof cursor !== 'string' || cursor.length === 0) break;
    }
    return items;
  }

  private fromServer(n: RpcNotification): void {
    for (const [kind, spec] of Object.entries(LISTS) as [ListKind, ListSpec][]) {
      if (spec.changed === n.method) this.cache.delete(kind);
    }
    if (n.method.endsWith('/list_changed')) this.onlistchanged?.({ jsonrpc: '2.0', method: n.method });
  }
}

class ListError extends Error {
  constructor(readonly rpc: RpcErrorObject) {
    super(rpc.message);
  }
}

function asRpcError(error: unknown): RpcErrorObject {
  if (error instanceof ListError) return error.rpc;
  return { code: RpcCode.INTERNAL_ERROR, message: error instanceof Error ? error.message : String(error) };
}

function capabilityOf(link: ServerLink, name: string): unknown {
  const caps = link.initializeResult?.capabilities as Record<string, unknown> | undefined;
  return caps?.[name];
}
