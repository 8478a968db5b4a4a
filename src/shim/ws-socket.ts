/**
 * The link's socket over a real `ws` WebSocket to the daemon's `/ws` endpoint. The upgrade
 * carries no credential (the link proves the daemon first, in band, see link.ts), and its
 * `Host` is exactly the address the proofs are bound to (proof.ts `proofAddress`).
 */
import WebSocket from 'ws';
import { corkUntilTick, rawSocketOf } from '../transport/cork.js';
import { proofAddress } from '../local/proof.js';
import type { LinkSocket, SocketFactory } from './link.js';
import { wsUrl } from './link.js';

export const connectWebSocket: SocketFactory = (address, events, timeoutMs): LinkSocket => {
  const ws = new WebSocket(wsUrl(address), {
    headers: { host: proofAddress(address.host, address.port) },
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
