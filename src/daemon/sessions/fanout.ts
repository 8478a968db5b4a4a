/**
 * Where notifications from shared servers go: `list_changed` to every session that sees the
 * server, `resources/updated` only to the sessions subscribed to that URI, log messages to the
 * sessions whose own level lets them through, anything else to the sessions that use the
 * server. (Server-to-client requests are mux/server-requests.ts's business.)
 */
import type { Hub } from '../../mux/hub.js';
import { LOG_LEVELS, type LogLevel } from '../../protocol/log-levels.js';
import { trySerialize, type RpcNotification } from '../../protocol/jsonrpc.js';
import type { Session } from './session.js';

export interface SessionDirectory {
  list(): Iterable<Session>;
  get(id: string): Session | undefined;
  /** A server notification that cannot be serialised: dropped once, counted and logged. */
  unsendable(notification: RpcNotification, reason: string): void;
}

/** Installs the hub's fan-out callbacks. */
export function wireFanout(hub: Hub, sessions: SessionDirectory): void {
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
    for (const session of sessions.list()) if (server === null || session.sees(server)) session.sendNotification(text, n.method);
  };

  hub.onservernotification = (server, n) => {
    const text = wire(n);
    if (text === undefined) return;
    if (n.method === 'notifications/resources/updated') {
      const uri = n.params?.uri;
      if (typeof uri !== 'string') return;
      for (const id of hub.subscribers(server, uri)) sessions.get(id)?.sendNotification(text, n.method);
      return;
    }
    if (n.method === 'notifications/message') {
      const rank = LOG_LEVELS.indexOf(n.params?.level as LogLevel);
      for (const session of sessions.list()) {
        if (!session.sees(server)) continue;
        const own = session.logLevel;
        if (own === undefined || rank < 0 || rank >= LOG_LEVELS.indexOf(own)) session.sendNotification(text, n.method);
      }
      return;
    }
    // Anything else concerns the sessions that use this server.
    for (const id of server.userIds) sessions.get(id)?.sendNotification(text, n.method);
  };
}
