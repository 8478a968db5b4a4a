/**
 * The yardstick for `/mcp` (bench/http.ts): the official SDK's own Streamable HTTP server, the
 * SDK v2's `WebStandardStreamableHTTPServerTransport` with stateful sessions (one server and one
 * transport per session, the SDK's documented pattern), on a plain `node:http` server bound to
 * 127.0.0.1 on a port the kernel picks, through the Node-to-web bridge of the v2 test servers
 * (test/fixtures/conformance-web.ts). Each session's server is exai-ws's own built-in server
 * (`createBuiltinServer`, an SDK 1.x `McpServer`), so the tool called is the daemon's `version`,
 * registered the same way. Like the daemon it checks a bearer token and the Host header (the
 * SDK's `hostHeaderValidationResponse`, its DNS rebinding protection), so neither side skips
 * work the other does.
 *
 * Run as its own process: `node dist/bench/sdk-http-server.js` with `BENCH_TOKEN` set
 * (`BENCH_JSON_RESPONSE=1`: the SDK's `enableJsonResponse`, plain JSON answers instead of its
 * default SSE stream per POST); it writes `listening <port>` on stdout once it listens and
 * serves until killed.
 */
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostHeaderValidationResponse, WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/server';
import { createBuiltinServer } from '../src/builtin/builtin.js';
import { webListener } from '../test/fixtures/conformance-web.js';

const token = process.env.BENCH_TOKEN ?? '';
if (token.length < 16) throw new Error('BENCH_TOKEN (16 characters or more) is required');
const expected = Buffer.from(`Bearer ${token}`);
const enableJsonResponse = process.env.BENCH_JSON_RESPONSE === '1';
const startedAtMs = Date.now();
const sessions = new Map<string, WebStandardStreamableHTTPServerTransport>();

function authorized(request: Request): boolean {
  const got = Buffer.from(request.headers.get('authorization') ?? '');
  return got.length === expected.length && timingSafeEqual(got, expected);
}

function refuse(status: number, message: string): Response {
  return Response.json({ jsonrpc: '2.0', id: null, error: { code: -32600, message } }, { status });
}

async function handle(request: Request): Promise<Response> {
  if (new URL(request.url).pathname !== '/mcp') return refuse(404, 'not found');
  if (!authorized(request)) return refuse(401, 'unauthorized');
  const badHost = hostHeaderValidationResponse(request, ['127.0.0.1', 'localhost']);
  if (badHost) return badHost;
  const id = request.headers.get('mcp-session-id');
  if (id !== null) {
    const transport = sessions.get(id);
    if (!transport) return refuse(404, 'session not found');
    return transport.handleRequest(request);
  }
  // No session id: only an initialize may open one (the transport answers anything else with 400).
  const transport = new WebStandardStreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    enableJsonResponse,
    onsessioninitialized: (sessionId) => void sessions.set(sessionId, transport),
  });
  transport.onclose = () => {
    if (transport.sessionId) sessions.delete(transport.sessionId);
  };
  const server = createBuiltinServer({ startedAtMs });
  await server.connect(transport);
  const response = await transport.handleRequest(request);
  if (!transport.sessionId) await server.close();
  return response;
}

const http = createServer(webListener(handle));
http.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${(http.address() as AddressInfo).port}\n`);
});
