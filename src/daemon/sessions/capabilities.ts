/**
 * Capabilities on both sides of the daemon: what it offers its clients (the same in both eras),
 * or in a one-server view what that server offers, and what of a client's declared capabilities
 * it keeps.
 */
import { RpcCode } from '../../protocol/codes.js';
import { isObject, rpcError, trySerialize, type RequestId, type RpcResponse } from '../../protocol/jsonrpc.js';
import type { RouterHub } from '../../mux/hub.js';
import type { SessionContext } from '../../mux/session-context.js';

/** What the daemon says of itself when it speaks for all its servers (`initialize`, `server/discover`). */
export const INSTRUCTIONS = 'exai-ws: one shared MCP daemon for every client on this machine.';

/**
 * What the daemon offers when it speaks for all its servers. Everything a hosted server may have
 * is always offered: a live reload can add one to a session opened before it, and a client that
 * checks capabilities (VS Code) would never list its prompts or resources otherwise. The hub
 * routes resources/subscribe (per URI).
 */
export function daemonCapabilities(): Record<string, unknown> {
  return {
    tools: { listChanged: true },
    logging: {},
    prompts: { listChanged: true },
    resources: { subscribe: true, listChanged: true },
    completions: {},
  };
}

/**
 * The server a one-server view (`single`) speaks for, started and then used by the session: its
 * own initialize result; or, when it cannot start, the -32011 that answers request `id`.
 */
export async function connectSingle(
  hub: RouterHub,
  context: SessionContext,
  single: string,
  id: RequestId,
): Promise<{ own: Record<string, unknown> } | { refused: RpcResponse }> {
  const server = hub.instanceFor(single, context.view);
  try {
    if (!server) throw new Error('no such server');
    await server.connect();
  } catch (error) {
    // One that needs a login opens all the same: the window's calls say how to log in.
    if (server && hub.logins?.need(single) !== undefined) {
      context.use(server);
      return { own: { capabilities: { tools: {} } } };
    }
    return { refused: rpcError(id, RpcCode.UPSTREAM_UNAVAILABLE, `${single}: ${(error as Error).message}`, { server: single }) };
  }
  context.use(server);
  return { own: server.initializeResult ?? {} };
}

/** The largest declared capability (serialised) the daemon keeps and passes on to servers. */
export const MAX_CAPABILITY_BYTES = 16 * 1024;

/**
 * A client's declared capabilities as the daemon keeps them: the entries whose value is an
 * object that serialises within {@link MAX_CAPABILITY_BYTES}; others count as not declared.
 * What sessions declare is passed on to shared servers when they start, so one client's
 * malformed entry (nested thousands deep, megabytes long) must not fail a server's start for
 * every session.
 */
export function keptCapabilities(declared: unknown): Record<string, unknown> | undefined {
  if (!isObject(declared)) return undefined;
  // fromEntries: a key such as `__proto__` stays an own key and touches no prototype.
  return Object.fromEntries(
    Object.entries(declared).filter(([, value]) => {
      if (!isObject(value)) return false;
      const out = trySerialize(value);
      return out.ok && out.text.length <= MAX_CAPABILITY_BYTES;
    }),
  );
}
