/**
 * The yardstick for `/mcp` (bench/http.ts): the official SDK's own Streamable HTTP server,
 * `McpServer` + `StreamableHTTPServerTransport` with stateful sessions (one server and one
 * transport per session, the SDK's documented pattern), on a plain `node:http` server bound to
 * 127.0.0.1 on a port the kernel picks. Each session's server is exai-ws's own built-in server
 * (`createBuiltinServer`), so the tool called is the daemon's `version`, registered the same way.
 * Like the daemon it checks a bearer token and the Host header (the SDK's DNS rebinding
 * protection), so neither side skips work the other does.
 *
 * Run as its own process: `node dist/bench/sdk-http-server.js` with `BENCH_TOKEN` set
 * (`BENCH_JSON_RESPONSE=1`: the SDK's `enableJsonResponse`, plain JSON answers instead of its
 * default SSE stream per POST); it writes `listening <port>` on stdout once it listens and
 * serves until killed.
 */
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createBuiltinServer } from '../src/builtin/builtin.js';

const token = process.env.BENCH_TOKEN ?? '';
if (token.length < 16) throw new Error('BENCH_TOKEN (16 characters or more) is required');
const expected = Buffer.from(`Bearer ${token}`);
const enableJsonResponse = process.env.BENCH_JSON_RESPONSE === '1';
const startedAtMs = Date.now();
const sessions = new Map<string, StreamableHTTPServerTransport>();

function authorized(req: IncomingMessage): boolean {
  const got = Buffer.from(req.headers.authorization ?? '');
  return got.length === expected.length && timingSafeEqual(got, expected);
}

function refuse(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32600, message } }));
}

async function handle(req: IncomingMessage, res: ServerResponse, port: number): Promise<void> {
  if ((req.url ?? '').split('?')[0] !== '/mcp') return refuse(res, 404, 'not found');
  if (!authorized(req)) return refuse(res, 401, 'unauthorized');
  const id = req.headers['mcp-session-id'];
  if (typeof id === 'string') {
    const transport = sessions.get(id);
    if (!transport) return refuse(res, 404, 'session not found');
    return transport.handleRequest(req, res);
  }
  // No session id: only an initialize may open one (the transport answers anything else with 400).
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    enableJsonResponse,
    enableDnsRebindingProtection: true,
    allowedHosts: [`127.0.0.1:${port}`, `localhost:${port}`],
    onsessioninitialized: (sessionId) => void sessions.set(sessionId, transport),
  });
  transport.onclose = () => {
    if (transport.sessionId) sessions.delete(transport.sessionId);
  };
  const server = createBuiltinServer({ startedAtMs });
  await server.connect(transport);
  await transport.handleRequest(req, res);
  if (!transport.sessionId) await server.close();
}

const http = createServer((req, res) => {
  handle(req, res, (http.address() as AddressInfo).port).catch((error: unknown) => {
    if (!res.headersSent) refuse(res, 500, error instanceof Error ? error.message : String(error));
    else res.destroy();
  });
});
http.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${(http.address() as AddressInfo).port}\n`);
});
