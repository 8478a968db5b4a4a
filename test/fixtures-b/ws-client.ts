/**
 * The official SDK client over a direct WebSocket to the daemon (bearer token, hello, then
 * JSON-RPC frames), in the test's own process: a window for tests whose property is the
 * daemon's (routing, sharing, sessions), not the shim's, without starting a shim process.
 * Tests of the shim itself use the real shim (test/helpers.ts `connectShim`).
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import WebSocket from 'ws';
import type { Cleanup, DaemonHandle } from '../helpers.js';

/** A Transport over one WebSocket whose hello was accepted; frames after it are JSON-RPC messages. */
class DaemonSocketTransport implements Transport {
  onmessage?: (message: JSONRPCMessage) => void;
  onclose?: () => void;
  onerror?: (error: Error) => void;
  private closed = false;

  constructor(private readonly ws: WebSocket) {}

  start(): Promise<void> {
    this.ws.on('message', (data: Buffer) => {
      let message: JSONRPCMessage;
      try {
        message = JSON.parse(data.toString('utf8')) as JSONRPCMessage;
      } catch (error) {
        this.onerror?.(error as Error);
        return;
      }
      this.onmessage?.(message);
    });
    this.ws.on('error', (error) => this.onerror?.(error));
    this.ws.on('close', () => this.fireClose());
    return Promise.resolve();
  }

  send(message: JSONRPCMessage): Promise<void> {
    return new Promise((resolve, reject) => this.ws.send(JSON.stringify(message), (error) => (error ? reject(error) : resolve())));
  }

  close(): Promise<void> {
    // 1000: the client ends its session on purpose, as a shim whose stdin ended does.
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    else this.ws.terminate();
    this.fireClose();
    return Promise.resolve();
  }

  private fireClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.onclose?.();
  }
}

export interface WsWindow {
  client: Client;
  /** The session id the daemon gave in its hello_ack. */
  sessionId: string;
  ws: WebSocket;
}

/**
 * Opens a WebSocket to `daemon` with its token, sends a hello naming the client (`name`), and
 * connects an SDK client over it (initialize included). Closed at cleanup.
 */
export async function connectWs(
  cleanup: Cleanup,
  daemon: Pick<DaemonHandle, 'url' | 'token'>,
  options: { name?: string; capabilities?: Record<string, unknown>; server?: string } = {},
): Promise<WsWindow> {
  const name = options.name ?? 'exai-ws-test';
  const ws = new WebSocket(daemon.url(), { headers: { authorization: `Bearer ${daemon.token}` }, maxPayload: 0 });
  cleanup.add(() => ws.terminate());
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const ack = await new Promise<Record<string, unknown>>((resolve, reject) => {
    ws.once('message', (data: Buffer) => resolve(JSON.parse(data.toString('utf8')) as Record<string, unknown>));
    ws.once('close', (code) => reject(new Error(`closed (${code}) before the hello_ack`)));
    ws.send(
      JSON.stringify({
        type: 'hello',
        protocol: 1,
        client: { name, version: '1.0.0' },
        ...(options.server !== undefined ? { server: options.server } : {}),
      }),
    );
  });
  if (ack.ok !== true) throw new Error(`hello refused: ${JSON.stringify(ack)}`);
  const client = new Client({ name, version: '1.0.0' }, { capabilities: options.capabilities ?? {} });
  cleanup.add(() => client.close());
  await client.connect(new DaemonSocketTransport(ws));
  return { client, sessionId: ack.session_id as string, ws };
}
