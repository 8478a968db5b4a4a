/**
 * WebSocket clients of the daemon for the benchmark, inside the bench process: an SDK
 * `Transport` that speaks the hello (to measure the daemon without the shim in between) and
 * raw idle sessions (hello, initialize, initialized) for the per-session memory figure.
 */
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import WebSocket from 'ws';

const HELLO = JSON.stringify({ type: 'hello', protocol: 1, client: { name: 'exai-ws-bench', version: '1.0.0' } });

function openSocket(port: number, token: string): WebSocket {
  return new WebSocket(`ws://127.0.0.1:${port}/ws`, {
    headers: { authorization: `Bearer ${token}` },
    perMessageDeflate: false,
    maxPayload: 0,
  });
}

function checkAck(text: string): void {
  const ack = JSON.parse(text) as { type?: string; ok?: boolean; error?: { code?: string; message?: string } };
  if (ack.type !== 'hello_ack' || ack.ok !== true) {
    throw new Error(`hello refused: ${ack.error?.code ?? '?'} ${ack.error?.message ?? text.slice(0, 200)}`);
  }
}

/** The SDK client's transport straight to the daemon: the shim's job, done in-process. */
export class HelloWebSocketTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  private ws: WebSocket | undefined;
  private readonly port: number;
  private readonly token: string;

  constructor(port: number, token: string) {
    this.port = port;
    this.token = token;
  }

  start(): Promise<void> {
    const ws = openSocket(this.port, this.token);
    this.ws = ws;
    return new Promise((resolve, reject) => {
      let acked = false;
      ws.once('open', () => ws.send(HELLO));
      ws.on('message', (data: Buffer) => {
        const text = data.toString('utf8');
        if (!acked) {
          try {
            checkAck(text);
          } catch (error) {
            reject(error instanceof Error ? error : new Error(String(error)));
            ws.terminate();
            return;
          }
          acked = true;
          resolve();
          return;
        }
        this.onmessage?.(JSON.parse(text) as JSONRPCMessage);
      });
      ws.on('error', (error) => {
        if (!acked) reject(error);
        else this.onerror?.(error);
      });
      ws.on('close', () => {
        if (!acked) reject(new Error('closed before hello_ack'));
        this.onclose?.();
      });
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error('not connected'));
    ws.send(JSON.stringify(message));
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.ws?.close(1000, 'bench done');
    return Promise.resolve();
  }
}

/**
 * Opens one idle MCP session over a raw socket: bearer token on the upgrade, hello, then an
 * initialize request answered by the daemon, then notifications/initialized.
 */
export function openIdleSession(port: number, token: string, timeoutMs = 10_000): Promise<WebSocket> {
  const ws = openSocket(port, token);
  return new Promise((resolve, reject) => {
    let step: 'ack' | 'init' | 'done' = 'ack';
    const fail = (error: Error) => {
      clearTimeout(timer);
      ws.terminate();
      reject(error);
    };
    const timer = setTimeout(() => fail(new Error(`session not ready within ${timeoutMs} ms (at ${step})`)), timeoutMs);
    ws.once('open', () => ws.send(HELLO));
    ws.on('message', (data: Buffer) => {
      const text = data.toString('utf8');
      try {
        if (step === 'ack') {
          checkAck(text);
          step = 'init';
          ws.send(
            JSON.stringify({
              jsonrpc: '2.0',
              id: 1,
              method: 'initialize',
              params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'exai-ws-bench-idle', version: '1.0.0' } },
            }),
          );
        } else if (step === 'init') {
          const reply = JSON.parse(text) as { id?: unknown; result?: unknown };
          if (reply.id !== 1 || reply.result === undefined) throw new Error(`unexpected initialize reply: ${text.slice(0, 200)}`);
          step = 'done';
          ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
          clearTimeout(timer);
          resolve(ws);
        }
      } catch (error) {
        fail(error as Error);
      }
    });
    ws.on('error', (error) => {
      if (step !== 'done') fail(error);
    });
    ws.on('unexpected-response', (_req, res) => fail(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
    ws.on('close', (code) => {
      if (step !== 'done') fail(new Error(`closed (${code}) at ${step}`));
    });
  });
}
