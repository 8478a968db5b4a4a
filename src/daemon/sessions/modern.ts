/**
 * The modern era (2026-07-28) of one session's requests. A modern request carries who its
 * client is and what it declared in its own `_meta`: that is read and checked here (-32602,
 * -32022), the session's context takes it, and the request then goes the way a legacy one goes
 * (the router's routing, the same servers). What only the modern wire has is answered here:
 * `server/discover`, `subscriptions/listen`, and -32601 for the methods it removed. Every
 * answer is written the modern way: `resultType`, caching hints on cacheable results, the
 * server's identity in `_meta`.
 */
import { RpcCode } from '../../protocol/codes.js';
import { ALL_VERSIONS, NAMED_METHODS, REMOVED_METHODS, modernResultHead, prependMembers, readModernMeta } from '../../protocol/eras.js';
import { clip, rpcError, type RequestId, type RpcRequest, type RpcResponse } from '../../protocol/jsonrpc.js';
import { RelayedResponse, RelayedResult } from '../../protocol/relay.js';
import { NAME, VERSION } from '../../protocol/version.js';
import type { Cancellation } from '../../hosting/cancellation.js';
import type { RouterHub } from '../../mux/hub.js';
import type { SessionContext } from '../../mux/session-context.js';
import { INSTRUCTIONS, connectSingle, daemonCapabilities, keptCapabilities } from './capabilities.js';
import { HeldCalls } from './held-calls.js';
import { STATE_PREFIX } from './request-state.js';
import { MAX_LISTENS, acknowledgement, agreedFilter, type Listens } from './listens.js';
import { PARAM_HEADERS } from '../../transport/http-modern.js';
import { headerParamsOf, paramHeadersMismatch, type HeaderParamsVerdict } from '../../hosting/x-mcp-header.js';

export interface ModernDeps {
  context: SessionContext;
  hub: RouterHub;
  listens: Listens;
  callTimeoutMs: number;
  /** Routes a request the way a legacy one goes (the router's own path). */
  route(request: RpcRequest, cancel: Cancellation): Promise<RpcResponse | null>;
}

/**
 * Listed tools' `x-mcp-header` verdicts, by the tool's `inputSchema` object: the catalog keeps a
 * server's list items until the list changes, and then lists new ones (so a new schema).
 */
const HEADER_PARAMS = new WeakMap<object, HeaderParamsVerdict>();

function headerParamsOfListed(inputSchema: unknown): HeaderParamsVerdict {
  if (typeof inputSchema !== 'object' || inputSchema === null) return headerParamsOf(inputSchema);
  let verdict = HEADER_PARAMS.get(inputSchema);
  if (verdict === undefined) HEADER_PARAMS.set(inputSchema, (verdict = headerParamsOf(inputSchema)));
  return verdict;
}

export class ModernRequests {
  private readonly deps: ModernDeps;
  /** Servers' questions held for this session's modern calls (the session asks and closes them). */
  readonly held: HeldCalls;

  constructor(deps: ModernDeps) {
    this.deps = deps;
    this.held = new HeldCalls(deps.context.id);
  }

  /** Handles one modern request; resolves null when the client cancelled it. Never rejects. */
  async handle(request: RpcRequest, cancel: Cancellation): Promise<RpcResponse | null> {
    const { id, method } = request;
    const read = readModernMeta(request.params);
    if ('error' in read) return { jsonrpc: '2.0', id, error: read.error };
    if (REMOVED_METHODS.has(method)) {
      return rpcError(id, RpcCode.METHOD_NOT_FOUND, `Method not found: ${clip(method)} is not part of protocol ${read.meta.version}`);
    }
    const { context } = this.deps;
    context.declaredModern(read.meta, keptCapabilities(read.meta.capabilities));
    if (method === 'server/discover') return this.discover(id);
    if (method === 'subscriptions/listen') return this.listen(request, cancel);
    const mismatch = await this.paramMismatch(request);
    if (mismatch !== undefined) return rpcError(id, RpcCode.HEADER_MISMATCH, `Header mismatch: ${mismatch}`);
    const state = request.params?.requestState;
    const route = () => this.deps.route(request, cancel);
    let response: RpcResponse | null;
    if (typeof state === 'string' && state.startsWith(STATE_PREFIX)) response = await this.held.resume(request, cancel, state);
    else if (NAMED_METHODS.has(method)) response = await this.held.run(request, cancel, route);
    else response = await route();
    return response === null ? null : this.written(method, response);
  }

  /**
   * A tools/call that came over HTTP: why its `Mcp-Param-*` headers disagree with its arguments
   * and the tool's `x-mcp-header` annotations (as this session lists the tool), if they do.
   */
  private async paramMismatch(request: RpcRequest): Promise<string | undefined> {
    const headers = PARAM_HEADERS.get(request);
    const name = request.params?.name;
    if (headers === undefined || typeof name !== 'string') return undefined;
    const listed = await this.deps.hub.list('tools', this.deps.context.view);
    const tool = 'items' in listed ? listed.items.find((item) => item.name === name) : undefined;
    const verdict = headerParamsOfListed(tool?.inputSchema);
    if (!verdict.ok) return undefined;
    return paramHeadersMismatch(verdict.params, request.params?.arguments, (header) => headers.get(header.toLowerCase()));
  }

  /** The daemon's identity and what it offers; for a one-server view, that server's own. */
  private async discover(id: RequestId): Promise<RpcResponse> {
    const single = this.deps.context.view.server;
    let offered: Record<string, unknown> = {
      capabilities: daemonCapabilities(),
      instructions: INSTRUCTIONS,
    };
    if (single !== undefined) {
      const connected = await connectSingle(this.deps.hub, this.deps.context, single, id);
      if ('refused' in connected) return connected.refused;
      const { own } = connected;
      offered = {
        capabilities: own.capabilities ?? {},
        ...(typeof own.instructions === 'string' ? { instructions: own.instructions } : {}),
      };
    }
    const result = { ...modernResultHead('server/discover', this.serverInfo()), supportedVersions: [...ALL_VERSIONS], ...offered };
    return { jsonrpc: '2.0', id, result };
  }

  /**
   * Opens a listen stream: acknowledged at once, then the change notifications it agreed to,
   * until the client cancels it (no response then) or the session ends it (a complete result).
   * Resource subscriptions are taken at their servers for the stream's life.
   */
  private async listen(request: RpcRequest, cancel: Cancellation): Promise<RpcResponse | null> {
    const { id } = request;
    const { context, hub, listens } = this.deps;
    if (listens.size >= MAX_LISTENS) {
      return rpcError(id, RpcCode.OVER_CAPACITY, `Over capacity: at most ${MAX_LISTENS} listen streams per session`);
    }
    const filter = agreedFilter(request.params?.notifications);
    const taken: { server: Parameters<SessionContext['subscribe']>[0]; uri: string }[] = [];
    const options = { timeoutMs: this.deps.callTimeoutMs, cancel };
    for (const uri of filter.resourceSubscriptions ?? []) {
      const target = (await hub.resolve('resources', uri, context.view)) ?? (await hub.resolve('resourceTemplates', uri, context.view));
      if (!target) continue;
      const outcome = await context.subscribe(target.server, uri, options);
      if (outcome !== null && 'result' in outcome) taken.push({ server: target.server, uri });
    }
    if (filter.resourceSubscriptions) filter.resourceSubscriptions = taken.map((t) => t.uri);
    if (cancel.aborted) return this.released(taken, null);
    return new Promise((resolve) => {
      let ended = false;
      const end = (response: RpcResponse | null) => {
        if (ended) return;
        ended = true;
        listens.remove(id);
        resolve(this.released(taken, response));
      };
      context.tell(acknowledgement(id, filter), id);
      listens.add(id, filter, () => end(this.written('subscriptions/listen', { jsonrpc: '2.0', id, result: {} })));
      cancel.onAbort(() => end(null));
    });
  }

  private released(taken: { server: Parameters<SessionContext['subscribe']>[0]; uri: string }[], response: RpcResponse | null) {
    for (const { server, uri } of taken) void this.deps.context.unsubscribe(server, uri, { timeoutMs: this.deps.callTimeoutMs });
    return response;
  }

  private serverInfo(): { name: string; version: string } {
    const single = this.deps.context.view.server;
    if (single !== undefined) {
      const info = this.deps.hub.instanceFor(single, this.deps.context.view)?.initializeResult?.serverInfo as
        { name?: unknown; version?: unknown } | undefined;
      if (typeof info?.name === 'string' && typeof info.version === 'string') return { name: info.name, version: info.version };
    }
    return { name: NAME, version: VERSION };
  }

  /** A response as the modern era writes it: `resultType`, caching hints, the server's identity. */
  private written(method: string, response: RpcResponse): RpcResponse {
    if ('error' in response) {
      if (method === 'resources/read' && response.error.code === RpcCode.LEGACY_RESOURCE_NOT_FOUND) {
        return { ...response, error: { ...response.error, code: RpcCode.INVALID_PARAMS } };
      }
      return response;
    }
    const head = modernResultHead(method, this.serverInfo());
    if (response instanceof RelayedResponse) {
      const text = response.relayed.text;
      // An interim result of a modern server is never cacheable: only its own fields go (a
      // result with no caching hints has none to drop, and its text is not searched).
      if (head.ttlMs !== undefined && text.includes('"input_required"')) {
        delete head.ttlMs;
        delete head.cacheScope;
      }
      return new RelayedResponse(response.id, new RelayedResult(prependMembers(text, head)));
    }
    const result = response.result;
    if (head.ttlMs !== undefined && result.resultType === 'input_required') {
      delete head.ttlMs;
      delete head.cacheScope;
    }
    const meta = typeof result._meta === 'object' && result._meta !== null ? result._meta : {};
    return { ...response, result: { ...head, ...result, _meta: { ...(head._meta as object), ...meta } } };
  }
}
