/**
 * Everything between hosted servers and the clients they ask back: sampling, elicitation and
 * roots requests, and what it takes to deliver them to the right window.
 *
 * The rule is never a guess. Over stdio a server's request names nothing of the call that
 * caused it, so a request goes to a session only when its origin is certain: the progress token
 * or related task it names, the HTTP stream it came on (see ServerLink), or the only session with
 * calls in flight to that instance. Otherwise the server gets -32012 and nobody is asked. To make
 * that rare, tools seen asking while they were the only tool in flight are learned (kept across
 * restarts, see {@link LearnedTools}) or declared (`asks_client`), and calls to them from
 * different sessions run one session at a time on the instance ({@link SessionGate}). A shared
 * server that asks for roots holds one session's roots at a time: its calls are gated the same
 * way, and the caller's roots are fetched before its call when the server holds another's.
 *
 * The one way in for a server's requests is {@link ServerRequests.answer}; the one way in for
 * sessions' calls to hosted servers is {@link ServerRequests.call}.
 */
import { basename } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RpcCode } from '../protocol/codes.js';
import type { Answer, RequestId, RpcRequest } from '../protocol/jsonrpc.js';
import type { CoreCountReason, CoreLog } from '../hosting/core-log.js';
import { notSupported, type CallOptions, type CallOutcome, type ServerRequestContext } from '../hosting/server-link.js';
import type { SessionContext } from './session-context.js';
import { SessionGate } from './session-gate.js';
import type { Upstream } from '../hosting/upstream.js';

/** The capability a client must declare to be sent each server-to-client request. */
export const REQUEST_CAPABILITY: ReadonlyMap<string, string> = new Map([
  ['sampling/createMessage', 'sampling'],
  ['elicitation/create', 'elicitation'],
  ['roots/list', 'roots'],
]);

/** Client capabilities the daemon passes on to hosted servers (it routes their requests). */
export const FORWARDED_CAPABILITIES: readonly string[] = [...new Set(REQUEST_CAPABILITY.values())];

/** How long a call waits for a shared server to fetch its session's roots. */
const ROOTS_SWITCH_WAIT_MS = 1_000;
/** Refusals are logged at most once per this long per instance (a server may ask in a loop). */
const REFUSAL_LOG_EVERY_MS = 1_000;

/** Tools of each server entry known to ask the client back, by entry name. */
export interface LearnedTools {
  tools(server: string): ReadonlySet<string>;
  /** Records one more; kept as long as the implementation keeps things (a file: across restarts). */
  learn(server: string, tool: string): void;
}

/** Bounds on what is learned, so a long-lived daemon's knowledge (and its file) stays small. */
const MAX_LEARNED_SERVERS = 1_024;
const MAX_LEARNED_TOOLS_PER_SERVER = 256;
const MAX_LEARNED_NAME_CHARS = 256;

/** Learned tools kept for the process's life (stdio mode, tests); the base of the daemon's file store. */
export class MemoryLearnedTools implements LearnedTools {
  private readonly byServer = new Map<string, Set<string>>();

  tools(server: string): ReadonlySet<string> {
    return this.byServer.get(server) ?? EMPTY;
  }

  /** Records a tool; false when it was known already or a bound leaves no room for it. */
  learn(server: string, tool: string): boolean {
    let tools = this.byServer.get(server);
    if (!tools) {
      if (this.byServer.size >= MAX_LEARNED_SERVERS) return false;
      this.byServer.set(server, (tools = new Set()));
    }
    if (tools.has(tool) || tools.size >= MAX_LEARNED_TOOLS_PER_SERVER || tool.length === 0 || tool.length > MAX_LEARNED_NAME_CHARS) {
      return false;
    }
    tools.add(tool);
    return true;
  }

  /** Every server's learned tools, sorted, as the file keeps them. */
  protected entries(): Record<string, string[]> {
    return Object.fromEntries([...this.byServer].map(([server, tools]) => [server, [...tools].sort()]));
  }
}

const EMPTY: ReadonlySet<string> = new Set();

export interface ServerRequestsOptions {
  /** The open sessions, by id. */
  contexts: ReadonlyMap<string, SessionContext>;
  learned: LearnedTools;
  /** Bounds a client's answer to one server request, in milliseconds. */
  requestTimeoutMs: number;
  log?: CoreLog;
  /** Counts an event (`origin_unknown`) for the metrics. */
  count?: (reason: CoreCountReason) => void;
}

/** One session's call to an instance, from routing until its answer. */
interface Tracked {
  readonly session: string;
  /** The server's own tool name, for `tools/call`. */
  readonly tool: string | undefined;
  /** The session's own id of the request this call serves. */
  readonly related: RequestId | undefined;
  /** False while it waits at the gate: the server cannot have heard of it. */
  active: boolean;
}

/** What this module keeps per server instance. */
interface Instance {
  readonly calls: Set<Tracked>;
  readonly gate: SessionGate;
  /** It asked for roots once: it holds one session's roots from then on. */
  asksRoots: boolean;
  /** The session whose roots it got last. */
  rootsOf: string | undefined;
  /** While set, its next roots/list is this session's (its call waits for it). */
  rootsWanted: { session: string; answered: () => void } | undefined;
  /** Refusals since the last one logged, and when that was. */
  refusals: { unlogged: number; loggedAtMs: number };
}

export class ServerRequests {
  private readonly options: ServerRequestsOptions;
  private readonly instances = new WeakMap<Upstream, Instance>();

  constructor(options: ServerRequestsOptions) {
    this.options = options;
  }

  /**
   * Makes one call of a session to a server: tracked as the session's while in flight, through
   * the gate when the tool (or the server's roots) needs it, after the server fetched this
   * session's roots when it holds another's. Never rejects.
   */
  call(
    context: SessionContext,
    server: Upstream,
    method: string,
    params: Record<string, unknown> | undefined,
    options: CallOptions,
  ): Promise<CallOutcome> {
    const instance = this.instance(server);
    const tool = method === 'tools/call' && typeof params?.name === 'string' ? params.name : undefined;
    if (this.gated(server, instance, tool)) return this.gatedCall(context, server, instance, tool, method, params, options);
    // Not gated: straight to the server, in this turn. (No roots to switch either: switchRoots
    // acts only on shared servers that ask for roots, and all their calls are gated.)
    const tracked: Tracked = { session: context.id, tool, related: options.related, active: true };
    context.use(server);
    instance.calls.add(tracked);
    const { cancel, onProgress, related } = options;
    const call = server.call(method, params, {
      timeoutMs: Math.max(1, options.timeoutMs),
      cancel,
      onProgress,
      related,
      origin: context.id,
    });
    return call.then(
      (outcome) => {
        instance.calls.delete(tracked);
        return outcome;
      },
      (error: unknown) => {
        instance.calls.delete(tracked);
        throw error;
      },
    );
  }

  /** A call through the session gate (see {@link call}). */
  private async gatedCall(
    context: SessionContext,
    server: Upstream,
    instance: Instance,
    tool: string | undefined,
    method: string,
    params: Record<string, unknown> | undefined,
    options: CallOptions,
  ): Promise<CallOutcome> {
    const tracked: Tracked = { session: context.id, tool, related: options.related, active: false };
    const startedMs = Date.now();
    context.use(server);
    instance.calls.add(tracked);
    let gated = false;
    try {
      const entry = await instance.gate.enter(context.id, options.cancel, options.timeoutMs);
      if (entry === 'cancelled') return null;
      if (entry === 'timeout') return waitedTooLong(server, options.timeoutMs);
      gated = true;
      tracked.active = true;
      if (context.declares('roots')) await this.switchRoots(server, instance, context.id);
      const timeoutMs = Math.max(1, options.timeoutMs - (Date.now() - startedMs));
      return await server.call(method, params, { ...options, timeoutMs, origin: context.id });
    } finally {
      instance.calls.delete(tracked);
      if (gated) instance.gate.leave();
    }
  }

  /**
   * Answers one server-to-client request of a hosted server instance, through the session that
   * certainly caused it, or refuses. Never rejects.
   */
  async answer(server: Upstream, request: RpcRequest, link: ServerRequestContext): Promise<Answer> {
    // A Map: the method is the server's string, and `constructor` must not find Object.prototype's.
    const capability = REQUEST_CAPABILITY.get(request.method);
    if (capability === undefined) return notSupported(request.method);
    const roots = request.method === 'roots/list';
    if (roots && server.scope === 'workspace' && server.scopeKey) {
      // A workspace instance's root is its workspace: no window needs to be asked.
      return { result: { roots: [{ uri: pathToFileURL(server.scopeKey).href, name: basename(server.scopeKey) }] } };
    }
    const instance = this.instance(server);
    if (roots) instance.asksRoots = true;
    const wanted = roots ? instance.rootsWanted : undefined;
    try {
      const candidates = this.candidates(instance, link);
      // Roots are asked for at start and on changes, not by a tool: the roots gate covers them.
      if (link.origin === undefined && !roots) this.learn(server, instance, request.method);
      const origin =
        server.scope === 'session' ? server.scopeKey : (link.origin ?? (candidates.size === 1 ? first(candidates) : undefined));
      if (origin === undefined) return this.refuse(server, instance, request.method, candidates.size);
      const context = this.options.contexts.get(origin);
      if (!context || context.closed) {
        return { error: { code: RpcCode.CONNECTION_CLOSED, message: 'the window that caused this request has closed' } };
      }
      const related = link.origin !== undefined ? link.related : this.onlyCall(instance, origin);
      if (!context.declares(capability)) {
        context.lacks(capability, related);
        return {
          error: {
            code: RpcCode.METHOD_NOT_FOUND,
            message: `the client (${context.clientName}) did not declare the ${capability} capability`,
          },
        };
      }
      const answer = await context.ask(request.method, request.params, this.options.requestTimeoutMs, related);
      if (roots && 'result' in answer) instance.rootsOf = origin;
      return answer;
    } finally {
      // After the answer is on its way to the server, so it arrives before the waiting call.
      if (wanted) setImmediate(wanted.answered);
    }
  }

  /** What the daemon declares to a hosted server: the forwarded capabilities at least one session has. */
  declared(): Record<string, unknown> {
    const union: Record<string, unknown> = {};
    for (const context of this.options.contexts.values()) {
      for (const name of FORWARDED_CAPABILITIES) {
        if (union[name] === undefined && context.capabilities?.[name] !== undefined) union[name] = context.capabilities[name];
      }
    }
    return union;
  }

  /**
   * A session declared client capabilities: each running hosted server among `servers` that
   * was started without one of them (so it may have left out the tools that need it) is renewed
   * to be offered them, once it has no call in flight; its sessions then get `list_changed`.
   */
  offer(capabilities: Readonly<Record<string, unknown>> | undefined, servers: Iterable<Upstream>): void {
    const offered = FORWARDED_CAPABILITIES.filter((name) => capabilities?.[name] !== undefined);
    if (offered.length === 0) return;
    for (const server of servers) {
      const declared = server.declaredCapabilities;
      if (!declared || offered.every((name) => declared[name] !== undefined)) continue;
      // Never cut calls short: calls in flight finish on the old process.
      server.renewWhenIdle(`a client offers ${offered.filter((n) => declared[n] === undefined).join(', ')}`);
    }
  }

  /** The server's tools that ask the client back, declared and learned, for reports. */
  asksClient(server: Upstream): string[] {
    return [...new Set([...server.asksClient, ...this.options.learned.tools(server.name)])].sort();
  }

  /** Sessions that may have caused a request now: those with calls past the gate, or sent on the link. */
  private candidates(instance: Instance, link: ServerRequestContext): Set<string> {
    const sessions = new Set(link.callers);
    for (const call of instance.calls) if (call.active) sessions.add(call.session);
    return sessions;
  }

  /** The request of the session's one active call to the instance, if it has exactly one. */
  private onlyCall(instance: Instance, session: string): RequestId | undefined {
    let found: Tracked | undefined;
    for (const call of instance.calls) {
      if (!call.active || call.session !== session) continue;
      if (found) return undefined;
      found = call;
    }
    return found?.related;
  }

  private gated(server: Upstream, instance: Instance, tool: string | undefined): boolean {
    // A session instance has one session; a workspace instance's roots are its own.
    if (server.scope === 'session') return false;
    if (server.scope === 'shared' && instance.asksRoots) return true;
    return tool !== undefined && this.marked(server, tool);
  }

  private marked(server: Upstream, tool: string): boolean {
    return server.asksClient.includes('*') || server.asksClient.includes(tool) || this.options.learned.tools(server.name).has(tool);
  }

  /** A request while calls to only one tool are in flight: that tool asks the client. */
  private learn(server: Upstream, instance: Instance, method: string): void {
    if (server.scope === 'session') return;
    let tool: string | undefined;
    for (const call of instance.calls) {
      if (!call.active) continue;
      if (call.tool === undefined || (tool !== undefined && call.tool !== tool)) return;
      tool = call.tool;
    }
    if (tool === undefined || this.marked(server, tool)) return;
    this.options.learned.learn(server.name, tool);
    this.options.log?.('tool asks the client', { server: server.name, tool, method });
  }

  private refuse(server: Upstream, instance: Instance, method: string, sessions: number): Answer {
    this.options.count?.('origin_unknown');
    const refusals = instance.refusals;
    const now = Date.now();
    if (now - refusals.loggedAtMs >= REFUSAL_LOG_EVERY_MS) {
      const earlier = refusals.unlogged > 0 ? { refused_since_last_line: refusals.unlogged } : {};
      // A server asking for roots with no call in flight (at its start, as server-filesystem
      // does) is routine: it is given a window's roots before that window's calls instead
      // (switchRoots). Anything else refused may be a tool that failed for it: worth a warning.
      const routine = method === 'roots/list' && sessions === 0;
      this.options.log?.(
        'server request refused: requester unknown',
        { server: server.name, method, sessions, ...earlier },
        routine ? undefined : 'warn',
      );
      refusals.unlogged = 0;
      refusals.loggedAtMs = now;
    } else {
      refusals.unlogged++;
    }
    const why =
      sessions === 0 ? `no window has a call in flight to ${server.name}` : `${sessions} windows have calls in flight to ${server.name}`;
    return {
      error: {
        code: RpcCode.ORIGIN_UNKNOWN,
        message: `the requester could not be determined: ${why}; exai-ws does not guess (the next calls of this tool run one window at a time)`,
        data: { server: server.name },
      },
    };
  }

  /**
   * Before a session's call to a shared server that holds another session's roots (or none it
   * accepted), tells the server the roots changed and waits (briefly) until it fetched this
   * session's. A server that never asked for roots is left alone.
   */
  private switchRoots(server: Upstream, instance: Instance, session: string): Promise<void> | undefined {
    if (server.scope !== 'shared' || !instance.asksRoots || instance.rootsOf === session || server.state !== 'ready') return undefined;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ROOTS_SWITCH_WAIT_MS);
      function done(): void {
        clearTimeout(timer);
        if (instance.rootsWanted?.answered === done) instance.rootsWanted = undefined;
        resolve();
      }
      instance.rootsWanted = { session, answered: done };
      server.notify('notifications/roots/list_changed');
    });
  }

  private instance(server: Upstream): Instance {
    let instance = this.instances.get(server);
    if (!instance) {
      instance = {
        calls: new Set(),
        gate: new SessionGate(),
        asksRoots: false,
        rootsOf: undefined,
        rootsWanted: undefined,
        refusals: { unlogged: 0, loggedAtMs: 0 },
      };
      this.instances.set(server, instance);
    }
    return instance;
  }
}

function first<T>(items: Set<T>): T | undefined {
  for (const item of items) return item;
  return undefined;
}

function waitedTooLong(server: Upstream, timeoutMs: number): Answer {
  return {
    error: {
      code: RpcCode.REQUEST_TIMEOUT,
      message: `request timed out after ${timeoutMs} ms waiting for another window's calls to ${server.name} (its tools ask the client back and run one window at a time)`,
      data: { server: server.name },
    },
  };
}
