/**
 * A window on the wire without a shim process: a raw WebSocket to the daemon whose hello and MCP
 * initialize are done (test/helpers.ts `openSession`), read frame by frame. For tests that look
 * at the exact messages a session gets (ids, progress, what comes before a response) where the
 * property is the daemon's; tests of the shim itself drive the real shim (`spawnShim`).
 */
import type WebSocket from 'ws';
import { nextJson, openSession, type Cleanup, type DaemonHandle, type Message } from '../helpers.js';

export interface RawWindow {
  ws: WebSocket;
  /** Sends one JSON-RPC message (a frame). */
  send(message: Record<string, unknown>): void;
  /** The next frame, parsed; rejects after `timeoutMs`. */
  next(timeoutMs?: number): Promise<Message>;
}

/** Opens a session (hello, initialize, initialized) on `daemon`; closed at cleanup. */
export async function openRawWindow(
  cleanup: Cleanup,
  daemon: Pick<DaemonHandle, 'url' | 'token'>,
  options: { capabilities?: Record<string, unknown>; clientName?: string } = {},
): Promise<RawWindow> {
  const { ws } = await openSession(cleanup, daemon, options);
  return {
    ws,
    send: (message) => ws.send(JSON.stringify(message)),
    next: async (timeoutMs = 5_000) => await nextJson(ws, timeoutMs),
  };
}

/** Reads frames until the response with this id; returns it and everything before it. */
export async function readUntilReply(
  window: RawWindow,
  id: unknown,
  timeoutMs = 10_000,
): Promise<{ response: Message; before: Message[] }> {
  const before: Message[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const message = await window.next(Math.max(1, deadline - Date.now()));
    if (message.method === undefined && message.id === id) return { response: message, before };
    before.push(message);
  }
}
