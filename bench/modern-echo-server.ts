/**
 * The server both legs of bench/modern-latency.ts call: the official v2 SDK's own HTTP handler
 * (`createMcpHandler` from @modelcontextprotocol/server, 2026-07-28 only: a 2025 request is
 * refused) with one tool, `echo {text}` answering `echo: <text>`, served by `node:http` on
 * 127.0.0.1 at a port the kernel picks, through a small Node-to-web bridge written here.
 *
 * Run as its own process: `node dist/bench/modern-echo-server.js`; it writes `listening <port>`
 * on stdout once it listens (the endpoint is `/mcp`) and serves until killed.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import { z } from 'zod';

/** Bodies past this are refused: the bench sends a few hundred bytes per request. */
const BODY_LIMIT_BYTES = 1024 * 1024;

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

async function readBody(req: IncomingMessage): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > BODY_LIMIT_BYTES) return null;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** The web `Request` for a Node request: every header as sent, aborted when the client goes first. */
function toWebRequest(req: IncomingMessage, res: ServerResponse, body: Buffer): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) headers.append(name, one);
  }
  const gone = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) gone.abort();
  });
  const method = req.method ?? 'GET';
  const withBody = method !== 'GET' && method !== 'HEAD';
  return new Request(`http://127.0.0.1${req.url ?? '/'}`, {
    method,
    headers,
    body: withBody ? new Uint8Array(body) : undefined,
    signal: gone.signal,
  });
}

/** Writes the web `Response` out, streaming its body (SSE included) until either side ends. */
async function writeWebResponse(res: ServerResponse, response: Response): Promise<void> {
  res.writeHead(response.status, Object.fromEntries(response.headers.entries()));
  if (response.body === null) return void res.end();
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const stop = () => void reader.cancel().catch(() => undefined);
  res.once('close', stop);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || res.destroyed) break;
      res.write(value);
    }
  } finally {
    res.off('close', stop);
    res.end();
  }
}

async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if ((req.url ?? '').split('?')[0] !== '/mcp') {
    res.writeHead(404).end();
    return;
  }
  const body = await readBody(req);
  if (body === null) {
    res.writeHead(413).end();
    return;
  }
  await writeWebResponse(res, await handler.fetch(toWebRequest(req, res, body)));
}

const http = createServer((req, res) => {
  serve(req, res).catch(() => {
    if (!res.headersSent) res.writeHead(500).end();
    else res.destroy();
  });
});
http.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${(http.address() as AddressInfo).port}\n`);
});
