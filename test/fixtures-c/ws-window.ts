/**
 * The official SDK client over a direct WebSocket to the daemon, like test/fixtures-b/ws-client.ts
 * `connectWs`, with what that one cannot give: any hello field a shim sends (`cwd`: the working
 * directory an editor window started its shim in) and handlers set before initialize (a client
 * that answers roots must have its handler when the daemon first asks). For tests whose property
 * is the daemon's (scopes, routing); the shim's own hello is tested with the real shim.
 * (A shared helper could take both options; this file is not one, to leave fixtures-b alone.)
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import WebSocket from 'ws';
import type { Cleanup, DaemonHandle } from '../helpers.js';

/** A Transport over one WebSocket whose hello was accepted: every later frame is one JSON-RPC message. */
class HelloedSocket implements Transport {
  onmessage?: (message: JSONRPCMessage) => void;
  onclose?: () => void;
  onerror?: (error: Error) => void;
  private closed = false;

  constructor(private readonly ws: WebSocket) {}

  start(): Promise<void> {
    this.ws.on('message', (data: Buffer) => {
      try {
        this.onmessage?.(JSON.parse(data.toString('utf8')) as JSONRPCMessage);
      } catch (error) {
        this.onerror?.(error as Error);
      }
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

export interface WsWindowOptions {
  name?: string;
  capabilities?: Record<string, unknown>;
  /** Hello fields beside type, protocol and client (`cwd`, `server`). */
  hello?: Record<string, unknown>;
  /** Called with the client before it connects (request and notification handlers). */
  prepare?: (client: Client) => void;
}

/** Opens a WebSocket to `daemon` with its token, sends the hello, and initializes an SDK client over it; closed at cleanup. */
export async function connectWsWindow(
  cleanup: Cleanup,
  daemon: Pick<DaemonHandle, 'url' | 'token'>,
  options: WsWindowOptions = {},
): Promise<Client> {
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
    ws.send(JSON.stringify({ type: 'hello', protocol: 1, client: { name, version: '1.0.0' }, ...options.hello }));
  });
  if (ack.ok !== true) throw new Error(`hello refused: ${JSON.stringify(ack)}`);
  const client = new Client({ name, version: '1.0.0' }, { capabilities: options.capabilities ?? {} });
  options.prepare?.(client);
  cleanup.add(() => client.close());
  await client.connect(new HelloedSocket(ws));
  return client;
}
