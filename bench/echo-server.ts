/**
 * The hosted server of the CPU-per-call phase (cpu-per-call.ts): the official SDK's `McpServer`
 * over stdio with one tool, `echo`, that answers `{ message }` with it as text at once. No
 * files, no timers, no notifications of its own, so what a call costs the daemon is the relay
 * alone and the server never makes the path wait; the SDK does on the server side what real
 * servers built on it do. Run as `node dist/bench/echo-server.js`; serves until stdin ends.
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

const server = new McpServer({ name: 'exai-ws-bench-echo', version: '1.0.0' });
server.registerTool(
  'echo',
  { description: 'Answers with the message it is given.', inputSchema: { message: z.string() } },
  ({ message }) => ({ content: [{ type: 'text', text: message }] }),
);
await server.connect(new StdioServerTransport());
