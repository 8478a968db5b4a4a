/**
 * The server both legs of bench/modern-latency.ts call: the official v2 SDK's own HTTP handler
 * (`createMcpHandler` from @modelcontextprotocol/server, 2026-07-28 only: a 2025 request is
 * refused) with one tool, `echo {text}` answering `echo: <text>`, served by `node:http` on
 * 127.0.0.1 at a port the kernel picks, through a small Node-to-web bridge written here.
 *
 * Run as its own process: `node dist/bench/modern-echo-server.js`; it writes `listening <port>`
 * on stdout once it listens (the endpoint is `/mcp`) and serves until killed.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import { z } from 'zod';
import { webListener } from '../test/fixtures/conformance-web.js';

function build(): McpServer {
  const server = new McpServer({ name: 'bench-modern-echo', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.registerTool(
    'echo',
    { description: 'Answers with the text it was given.', inputSchema: z.object({ text: z.string() }) },
    ({ text }) => ({
      content: [{ type: 'text', text: `echo: ${text}` }],
    }),
  );
  return server;
}

const handler = createMcpHandler(build, { legacy: 'reject' });

const http = createServer(
  webListener((request) => {
    if (new URL(request.url).pathname !== '/mcp') return Promise.resolve(new Response(null, { status: 404 }));
    return handler.fetch(request);
  }),
);
http.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${(http.address() as AddressInfo).port}\n`);
});
