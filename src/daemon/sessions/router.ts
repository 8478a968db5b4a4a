/**
 * The MCP-aware part of a session: answers `initialize` and `ping` itself, merges list
 * methods over the servers in the session's view, and routes calls, reads and prompts to the
 * server that owns the name. One router per session; request ids stay the session's own,
 * because each server link assigns link-local ids and the router answers with the original id.
 *
 * In a single-server view (`exai-ws shim --server NAME`) the session sees that server as if it
 * had launched it: its initialize result, its names unprefixed, and every other method passed
 * through as it is.
 *
 * It holds no state of its own: what the session is (its view, what it declared, its level, its
 * calls and subscriptions) is its {@link SessionContext}'s, which it changes through methods; the
 * hub it sees is {@link RouterHub}, lookups by view and nothing more.
 */
import { fileURLToPath } from 'node:url';
import { LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/server';
import { RpcCode } from '../../protocol/codes.js';
import {
  clip,
  isObject,
  isProgressToken,
  rpcError,
  trySerialize,
  type RpcNotification,
  type RpcRequest,
  type RpcResponse,
} from '../../protocol/jsonrpc.js';
import type { Target } from '../../mux/catalog.js';
import type { ListKind, RouterHub } from '../../mux/hub.js';
import type { SessionContext, ToolListSize } from '../../mux/session-context.js';
import { LOG_LEVELS, type LogLevel } from '../../protocol/log-levels.js';
import { LIST_CHANGED_METHODS } from '../../mux/lists.js';
import type { Cancellation } from '../../hosting/cancellation.js';
import type { CallOutcome } from '../../hosting/server-link.js';
import { NAME, VERSION } from '../../protocol/version.js';
import { RelayedResponse, RelayedResult } from '../../protocol/relay.js';
import { INSTRUCTIONS, connectSingle, daemonCapabilities, keptCapabilities } from './capabilities.js';
import { MAX_CLIENT_LABEL_CHARS, modernVersionOf } from '../../protocol/eras.js';
import type { Listens } from './listens.js';
import { ModernRequests } from './modern.js';
import type { HeldCalls } from './held-calls.js';
import { fulfilInputs, needsInput, withCallerMeta } from './input-rounds.js';
import { SEARCH_MODE_TOOLS, searchStep } from './search-mode.js';
import { loginAware } from './login-answers.js';

/** The size of each merged tools list, measured once (a changed list is a new array). */
const LIST_SIZES = new WeakMap<readonly unknown[], ToolListSize>();

/** How long the daemon waits for a client's answer to its own roots/list. */
const ROOTS_REQUEST_TIMEOUT_MS = 5_000;

export interface RouterOptions {
  /** Deadline of one forwarded request, in milliseconds. */
  callTimeoutMs: number;
  /** The session's listen streams (modern clients' change notifications). */
  listens: Listens;
}

// Maps, not object literals: a method is the client's string, and `constructor` or
// `__proto__` must find nothing rather than Object.prototype's members.
const LIST_METHODS: ReadonlyMap<string, ListKind> = new Map<string, ListKind>([
  ['tools/list', 'tools'],
  ['prompts/list', 'prompts'],
  ['resources/list', 'resources'],
  ['resources/templates/list', 'resourceTemplates'],
]);

/** Methods routed to one server, and where in params the routing key sits. */
const ROUTED: ReadonlyMap<string, { kind: ListKind; field: 'name' | 'uri'; what: string }> = new Map([
  ['tools/call', { kind: 'tools', field: 'name', what: 'tool' }],
  ['prompts/get', { kind: 'prompts', field: 'name', what: 'prompt' }],
  ['resources/read', { kind: 'resources', field: 'uri', what: 'resource' }],
  ['resources/subscribe', { kind: 'resources', field: 'uri', what: 'resource' }],
  ['resources/unsubscribe', { kind: 'resources', field: 'uri', what: 'resource' }],
] as const);

export class Router {
  private readonly context: SessionContext;
  private readonly hub: RouterHub;
  private readonly callTimeoutMs: number;
  private readonly modern: ModernRequests;

  constructor(context: SessionContext, hub: RouterHub, options: RouterOptions) {
    this.context = context;
    this.hub = hub;
    this.callTimeoutMs = options.callTimeoutMs;
    this.modern = new ModernRequests({
      context,
      hub,
      listens: options.listens,
      callTimeoutMs: options.callTimeoutMs,
      route: (request, cancel) => this.route(request, cancel),
    });
  }

  /**
   * Handles one request and resolves with its response, or null when the client cancelled it
   * (a cancelled request gets no response). Never rejects.
   */
  handle(request: RpcRequest, cancel: Cancellation): Promise<RpcResponse | null> {
    // A legacy session stays legacy; any other speaks the modern era once a request says so.
    const era = this.context.era;
    if (
      era === 'modern' ||
      (era === undefined && (request.method === 'server/discover' || modernVersionOf(request.params) !== undefined))
    ) {
      return this.modern.handle(request, cancel);
    }
    return this.route(request, cancel);
  }

  /** Servers' questions held for the session's modern calls (see HeldCalls). */
  get held(): HeldCalls {
    return this.modern.held;
  }

  /** Routes a request of either era once its era is settled. */
  private route(request: RpcRequest, cancel: Cancellation): Promise<RpcResponse | null> {
    if (request.method === 'tools/call' || request.method === 'tools/list') {
      const of = this.hub.profileOf(this.context.view);
      if ('profile' in of && of.profile?.spec.search) return this.searching(request, cancel);
    }
    // The hot path: a tool the session's merged list holds goes to its server in this turn.
    if (request.method === 'tools/call') {
      const params = request.params ?? {};
      const name = params.name;
      const target = typeof name === 'string' ? this.hub.resolveKnown?.('tools', name, this.context.view) : undefined;
      if (target) {
        const forwarded = target.name === name ? params : { ...params, name: target.name };
        return this.forward(request.id, 'tools/call', forwarded, target, cancel);
      }
    }
    return this.handleAny(request, cancel);
  }

  /** A window of a search profile: its two tools are answered here, `call_tool` routed as the call it names. */
  private async searching(request: RpcRequest, cancel: Cancellation): Promise<RpcResponse | null> {
    const step = await searchStep(request, () => this.hub.list('tools', this.context.view));
    if (step === undefined) return this.handleAny(request, cancel);
    if ('route' in step) return this.handleAny(step.route, cancel);
    if (request.method === 'tools/list') this.sized(SEARCH_MODE_TOOLS);
    return step.answer;
  }

  private async handleAny(request: RpcRequest, cancel: Cancellation): Promise<RpcResponse | null> {
    const { id, method } = request;
    const params = request.params ?? {};
    const view = this.context.view;
    switch (method) {
      case 'initialize':
        return this.initialize(id, params);
      case 'ping':
        return ok(id, {});
      case 'logging/setLevel': {
        const level = params.level;
        if (typeof level !== 'string' || !(LOG_LEVELS as readonly string[]).includes(level)) {
          return rpcError(id, RpcCode.INVALID_PARAMS, `level must be one of ${LOG_LEVELS.join(', ')}`);
        }
        this.context.setLogLevel(level as LogLevel);
        return ok(id, {});
      }
    }
    const listKind = LIST_METHODS.get(method);
    if (listKind) {
      const listed = await this.hub.list(listKind, view);
      if ('error' in listed) {
        // A one-server view of a server that needs a login: the window hears how to log in.
        const failed = view.server === undefined ? listed : await loginAware(listed, view.server, method, this.context, this.hub.logins);
        return toResponse(id, failed);
      }
      if (listKind === 'tools') this.sized(listed.items);
      return ok(id, { [listKind]: listed.items });
    }
    const route = ROUTED.get(method);
    if (route) {
      const key = params[route.field];
      if (typeof key !== 'string') {
        return rpcError(id, RpcCode.INVALID_PARAMS, `${method} needs params.${route.field} as a string`);
      }
      const target = await this.hub.resolve(route.kind, key, view);
      if (!target) return rpcError(id, RpcCode.INVALID_PARAMS, `Unknown ${route.what}: ${clip(key)}`);
      const forwarded = target.name === key ? params : { ...params, [route.field]: target.name };
      if (method === 'resources/subscribe' || method === 'resources/unsubscribe') {
        const options = { timeoutMs: this.callTimeoutMs, cancel };
        const outcome =
          method === 'resources/subscribe'
            ? await this.context.subscribe(target.server, target.name, options)
            : await this.context.unsubscribe(target.server, target.name, options);
        return toResponse(id, outcome);
      }
      return this.forward(id, method, forwarded, target, cancel);
    }
    if (method === 'completion/complete') return this.complete(id, params, cancel);
    if (view.server !== undefined) {
      const server = this.hub.instanceFor(view.server, view);
      if (server) return this.forward(id, method, params, { server, name: '' }, cancel);
    }
    return rpcError(id, RpcCode.METHOD_NOT_FOUND, `Method not found: ${clip(method)}`);
  }

  /** Notes the size of the tools list the window is sent (for status, and its client's cap). */
  private sized(tools: readonly unknown[]): void {
    let size = LIST_SIZES.get(tools);
    if (size === undefined) {
      const text = trySerialize(tools);
      LIST_SIZES.set(tools, (size = { count: tools.length, bytes: text.ok ? Buffer.byteLength(text.text) : 0 }));
    }
    this.context.listedTools(size);
  }

  /** Handles a client notification other than cancellation (the session owns that). */
  notify(notification: RpcNotification): void {
    if (notification.method === 'notifications/initialized' || notification.method === 'notifications/roots/list_changed') {
      void this.refineWorkspace();
    }
    // Servers this session uses may ask for roots again.
    if (notification.method === 'notifications/roots/list_changed') this.context.notifyUsed(notification.method);
  }

  /**
   * A client's roots say better than its working directory which project it has open: the
   * first `file:` root becomes the session's workspace (for `workspace`-scoped servers), and the
   * session is told its lists changed when that moves it to another instance.
   */
  private async refineWorkspace(): Promise<void> {
    if (!this.context.declares('roots') || !this.hub.hasWorkspaceServers) return;
    const answer = await this.context.ask('roots/list', undefined, ROOTS_REQUEST_TIMEOUT_MS);
    // The client's answer is its own data: anything but a list of roots is ignored.
    if (!('result' in answer) || !isObject(answer.result)) return;
    const roots = answer.result.roots;
    const first = Array.isArray(roots)
      ? (roots as unknown[]).find((r): r is { uri: string } => isObject(r) && typeof r.uri === 'string' && r.uri.startsWith('file:'))
      : undefined;
    if (!first) return;
    let path: string;
    try {
      path = fileURLToPath(first.uri);
    } catch {
      return;
    }
    if (!this.context.moveWorkspace(path)) return;
    for (const method of LIST_CHANGED_METHODS) this.context.tell({ jsonrpc: '2.0', method });
  }

  private forward(
    id: RpcRequest['id'],
    method: string,
    params: Record<string, unknown>,
    target: Target,
    cancel: Cancellation,
  ): Promise<RpcResponse | null> {
    const token = isObject(params._meta) ? params._meta.progressToken : undefined;
    if (token !== undefined && !isProgressToken(token)) {
      // MCP allows strings and numbers only; anything else would be echoed in every progress message.
      return Promise.resolve(
        rpcError(id, RpcCode.INVALID_PARAMS, 'Invalid params: params._meta.progressToken must be a string or a number'),
      );
    }
    const options = {
      timeoutMs: this.callTimeoutMs,
      cancel,
      related: id,
      onProgress:
        token === undefined
          ? undefined
          : (p: Record<string, unknown>) =>
              this.context.tell({ jsonrpc: '2.0', method: 'notifications/progress', params: { ...p, progressToken: token } }, id),
    };
    // A modern server hears of the calling window itself, never of the union the daemon offers;
    // so does a server not started yet (its era unknown): a legacy one's link strips the keys.
    if (this.context.era !== 'modern' && target.server.era !== 'legacy') params = withCallerMeta(params, this.context);
    const logins = this.hub.logins;
    const call = this.context.call(target.server, method, params, options);
    // A server that needs a login says so to the window at once (login-answers.ts); only a
    // server's -32011 can mean that, so a call that went through takes no extra turn.
    const answer = (outcome: CallOutcome): RpcResponse | null | Promise<RpcResponse | null> =>
      logins && outcome !== null && 'error' in outcome && outcome.error.code === RpcCode.UPSTREAM_UNAVAILABLE
        ? loginAware(outcome, target.server.name, method, this.context, logins).then((told) => toResponse(id, told))
        : toResponse(id, outcome);
    // A modern client takes a modern server's input_required itself; a legacy window is asked.
    if (this.context.era === 'modern') return call.then(answer);
    return call.then((outcome) => {
      if (outcome !== null && 'error' in outcome) return answer(outcome);
      // Only a 2026-07-28 server answers input_required (its era is known once it answered): a
      // legacy server's result, however large, is not searched for it.
      if (target.server.era !== 'modern' || !needsInput(outcome)) return toResponse(id, outcome);
      const round = { context: this.context, related: id, timeoutMs: this.callTimeoutMs };
      const recall = (retry: Record<string, unknown>) => this.context.call(target.server, method, retry, options);
      return fulfilInputs(outcome, params, { ...round, recall }).then((last) => toResponse(id, last));
    });
  }

  /** `completion/complete` names a prompt or a resource template in `ref`: route by it. */
  private async complete(id: RpcRequest['id'], params: Record<string, unknown>, cancel: Cancellation): Promise<RpcResponse | null> {
    const ref = params.ref as { type?: unknown; name?: unknown; uri?: unknown } | undefined;
    const byPrompt = ref?.type === 'ref/prompt' && typeof ref.name === 'string';
    const key = byPrompt ? ref.name : ref?.uri;
    if (typeof key !== 'string')
      return rpcError(id, RpcCode.INVALID_PARAMS, 'completion/complete needs params.ref with a prompt name or a resource uri');
    const view = this.context.view;
    const target = byPrompt
      ? await this.hub.resolve('prompts', key, view)
      : ((await this.hub.resolve('resourceTemplates', key, view)) ?? (await this.hub.resolve('resources', key, view)));
    if (!target) return rpcError(id, RpcCode.INVALID_PARAMS, `Unknown ${byPrompt ? 'prompt' : 'resource'}: ${clip(key)}`);
    const forwarded = target.name === key ? params : { ...params, ref: { ...ref, [byPrompt ? 'name' : 'uri']: target.name } };
    return this.forward(id, 'completion/complete', forwarded, target, cancel);
  }

  private async initialize(id: RpcRequest['id'], params: Record<string, unknown>): Promise<RpcResponse> {
    const asked = typeof params.protocolVersion === 'string' ? params.protocolVersion : undefined;
    const protocolVersion = asked && SUPPORTED_PROTOCOL_VERSIONS.includes(asked) ? asked : LATEST_PROTOCOL_VERSION;
    const info = params.clientInfo;
    // Kept only as short strings: the client's own data, of any shape and size, held for the
    // session's life (a hello's client label has the same limit).
    const clientInfo = isObject(info)
      ? {
          name: typeof info.name === 'string' ? info.name.slice(0, MAX_CLIENT_LABEL_CHARS) : undefined,
          version: typeof info.version === 'string' ? info.version.slice(0, MAX_CLIENT_LABEL_CHARS) : undefined,
        }
      : undefined;
    this.context.initialized(clientInfo, keptCapabilities(params.capabilities));
    const single = this.context.view.server;
    if (single !== undefined) {
      // Transparent: the session gets the server's own answer (its protocol version aside).
      const connected = await connectSingle(this.hub, this.context, single, id);
      return 'refused' in connected ? connected.refused : ok(id, { ...connected.own, protocolVersion });
    }
    return ok(id, {
      protocolVersion,
      capabilities: daemonCapabilities(),
      serverInfo: { name: NAME, version: VERSION },
      instructions: INSTRUCTIONS,
    });
  }
}

function ok(id: RpcRequest['id'], result: Record<string, unknown>): RpcResponse {
  return { jsonrpc: '2.0', id, result };
}

function toResponse(id: RpcRequest['id'], outcome: CallOutcome): RpcResponse | null {
  if (outcome === null) return null;
  // A result kept as the server's text goes out as text, the client's id spliced in.
  if (outcome instanceof RelayedResult) return new RelayedResponse(id, outcome);
  if ('error' in outcome) return { jsonrpc: '2.0', id, error: outcome.error };
  return ok(id, outcome.result);
}
