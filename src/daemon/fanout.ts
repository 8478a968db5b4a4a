/**
 * Where messages from shared servers go: `list_changed` to every session that sees the server,
 * `resources/updated` only to the sessions subscribed to that URI, log messages to the sessions
 * whose own level lets them through, and server-to-client requests (sampling, elicitation,
 * roots) to the one session whose call caused them, if its client declared the capability.
 */
import { basename } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RpcCode } from '../protocol/codes.js';
import type { Hub } from '../core/hub.js';
import { LOG_LEVELS, type LogLevel } from '../core/interests.js';
import { trySerialize, type RpcNotification } from '../protocol/jsonrpc.js';
import type { Session } from './session.js';

/** The capability a client must declare to be sent each server-to-client request. */
export const REQUEST_CAPABILITY: ReadonlyMap<string, string> = new Map([
  ['sampling/createMessage', 'sampling'],
  ['elicitation/create', 'elicitation'],
  ['roots/list', 'roots'],
]);

export interface SessionDirectory {
  list(): Iterable<Session>;
  get(id: string): Session | undefined;
  /** A server notification that cannot be serialised: dropped once, counted and logged. */
  unsendable(notification: RpcNotification, reason: string): void;
}

/** Installs the hub's fan-out callbacks. `requestTimeoutMs` bounds a client's answer to a server request. */
export function wireFanout(hub: Hub, sessions: SessionDirectory, requestTimeoutMs: number): void {
  /** The notification's wire text, serialised once for every session it goes to. */
  const wire = (n: RpcNotification): string | undefined => {
    const out = trySerialize(n);
    if (out.ok) return out.text;
    sessions.unsendable(n, out.reason);
    return undefined;
  };

  hub.onlistchanged = (n, server) => {
    const text = wire(n);
    if (text === undefined) return;
    for (const session of sessions.list()) if (hub.sees(session.router.view, server)) session.sendNotification(text, n.method);
  };

  hub.onservernotification = (server, n) => {
    const text = wire(n);
    if (text === undefined) return;
    if (n.method === 'notifications/resources/updated') {
      const uri = n.params?.uri;
      if (typeof uri !== 'string') return;
      for (const id of hub.interests.subscribers(server, uri)) sessions.get(id)?.sendNotification(text, n.method);
      return;
    }
    if (n.method === 'notifications/message') {
      const rank = LOG_LEVELS.indexOf(n.params?.level as LogLevel);
      for (const session of sessions.list()) {
        if (!hub.sees(session.router.view, server)) continue;
        const own = session.router.logLevel;
        if (own === undefined || rank < 0 || rank >= LOG_LEVELS.indexOf(own)) session.sendNotification(text, n.method);
      }
      return;
    }
    // Anything else concerns the sessions that use this server.
    for (const id of server.users) sessions.get(id)?.sendNotification(text, n.method);
  };

  hub.onserverrequest = async (server, request, context) => {
    // A Map: the method is the server's string, and `constructor` must not find Object.prototype's.
    const capability = REQUEST_CAPABILITY.get(request.method);
    if (capability === undefined) {
      return { error: { code: RpcCode.METHOD_NOT_FOUND, message: `${request.method} is not supported by this client` } };
    }
    if (request.method === 'roots/list' && server.scope === 'workspace' && server.scopeKey) {
      // A workspace instance's root is its workspace: no window needs to be asked.
      return { result: { roots: [{ uri: pathToFileURL(server.scopeKey).href, name: basename(server.scopeKey) }] } };
    }
    // The caller: the only session with a call in flight; among several, the one whose call
    // carries the progress token the request names, else the most recent; with none, the last.
    // A session-scoped instance has exactly one session.
    const wanted = request.method === 'roots/list' ? server.rootsWanted : undefined;
    const id =
      server.scope === 'session' ? server.scopeKey : (wanted?.session ?? context.byToken ?? context.callers[0] ?? server.lastCaller);
    const session = id === undefined ? undefined : sessions.get(id);
    if (!session) {
      if (request.method === 'roots/list') return { result: { roots: [] } };
      return { error: { code: RpcCode.CONNECTION_CLOSED, message: 'no client session is there to answer this request' } };
    }
    if (session.router.clientCapabilities?.[capability] === undefined) {
      return {
        error: {
          code: RpcCode.METHOD_NOT_FOUND,
          message: `the client (${session.client.name}) did not declare the ${capability} capability`,
        },
      };
    }
    const answer = await session.request(request.method, request.params, requestTimeoutMs);
    if (request.method === 'roots/list') {
      server.rootsOf = session.id;
      // After the answer is on its way to the server, so it arrives before the waiting call.
      if (wanted) setImmediate(wanted.answered);
    }
    return answer;
  };
}

/** What the daemon declares to a hosted server: the client capabilities at least one session has. */
export function unionCapabilities(sessions: Iterable<Session>): Record<string, unknown> {
  const union: Record<string, unknown> = {};
  for (const session of sessions) {
    const caps = session.router.clientCapabilities;
    if (!caps) continue;
    for (const name of REQUEST_CAPABILITY.values()) {
      if (caps[name] !== undefined && union[name] === undefined) union[name] = caps[name];
    }
  }
  return union;
}
