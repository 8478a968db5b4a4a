/**
 * The hosted server of the CPU-per-call phase (cpu-per-call.ts): the official SDK v2's `McpServer`
 * (@modelcontextprotocol/server; the daemon opens it with `initialize`, as a 2025-11-25 server)
 * over stdio with one tool, `echo`, that answers `{ message }` with it as text at once. No files,
 * no timers, no notifications of its own, so what a call costs the daemon is the relay alone and
 * the server never makes the path wait; the SDK does on the server side what real
 * servers built on it do. Run as `node dist/bench/echo-server.js`; serves until stdin ends.
 */
import { McpServer } from '@modelcontextprotocol/server';
import { StdioServerTransport } from '@modelcontextprotocol/server/stdio';
import { z } from 'zod';

const server = new McpServer({ name: 'exai-ws-bench-echo', version: '1.0.0' });
server.registerTool(
  'echo',
  { description: 'Answers with the message it is given.', inputSchema: { message: z.string() } },
  ({ message }) => ({ content: [{ type: 'text', text: message }] }),
);
await server.connect(new StdioServerTransport());
