/**
 * The link's socket over a real `ws` WebSocket to the daemon's `/ws` endpoint. The token goes
 * on the upgrade as a bearer header (never in the URL); without one the hello goes without it
 * and the daemon, if any, answers why it refuses.
 */
import WebSocket from 'ws';
import { corkUntilTick, rawSocketOf } from '../protocol/cork.js';
import type { LinkSocket, SocketFactory } from './link.js';
import { wsUrl } from './link.js';

export const connectWebSocket: SocketFactory = (address, events, timeoutMs): LinkSocket => {
  const ws = new WebSocket(wsUrl(address), {
    headers: address.token === null ? {} : { authorization: `Bearer ${address.token}` },
    perMessageDeflate: false,
    handshakeTimeout: timeoutMs,
    // The daemon's own limit applies; the shim passes on whatever the daemon sends.
    maxPayload: 0,
  });
  ws.on('open', () => events.open());
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary) events.message(data.toString('utf8'), data.length);
  });
  ws.on('unexpected-response', (_request, response) => {
    ws.terminate();
    events.rejected(response.statusCode ?? 0);
  });
  ws.on('error', (error: NodeJS.ErrnoException) => events.error(error.code ?? error.message));
  ws.on('close', (code: number, reason: Buffer) => events.close(code, reason.toString()));
  return {
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
    send(text, done) {
      // Frames sent in one tick leave in one write (see cork.ts).
      corkUntilTick(rawSocketOf(ws));
      ws.send(text, done && (() => done()));
    },
    close: (code, reason) => ws.close(code, reason),
    terminate: () => ws.terminate(),
    pause: () => ws.pause(),
    resume: () => ws.resume(),
  };
};
