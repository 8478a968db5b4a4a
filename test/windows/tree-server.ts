/**
 * A hosted MCP server for the Windows tests that starts a grandchild, as servers that shell out
 * do: a Node.js process that only waits, with `TREE_MARKER` in its command line so that the test
 * finds it from Linux (the first argument: the marker). Tools: `pids` ({pid, grandchild}), `argv`
 * (the arguments it was started with), `crash` (exits with status 1 at once, leaving the
 * grandchild behind unless something ends it). Prints nothing but MCP.
 */
import { spawn } from 'node:child_process';
import { McpServer, type CallToolResult } from '@modelcontextprotocol/server';
import { StdioServerTransport } from '@modelcontextprotocol/server/stdio';
import { z } from 'zod';

const marker = process.argv[2] ?? 'exai-ws-tree';
// Detached: a plain child would sit in the job Node itself puts its children in and die with this
// process whatever the daemon does; detached, only the daemon's own ending of the tree reaches it.
const grandchild = spawn(process.execPath, ['-e', 'setInterval(() => {}, 60000)', `${marker}-grandchild`], {
  stdio: 'ignore',
  detached: true,
  windowsHide: true,
});
grandchild.unref();

const server = new McpServer({ name: 'tree', version: '1.0.0' });
const unused = { unused: z.string().optional() };
server.registerTool('pids', { description: 'This process and its grandchild.', inputSchema: unused }, (): CallToolResult => ({
  content: [{ type: 'text', text: JSON.stringify({ pid: process.pid, grandchild: grandchild.pid }) }],
}));
server.registerTool('argv', { description: 'The arguments this process was started with.', inputSchema: unused }, (): CallToolResult => ({
  content: [{ type: 'text', text: JSON.stringify(process.argv.slice(2)) }],
}));
server.registerTool('crash', { description: 'Exits with status 1 right after answering.', inputSchema: unused }, (): CallToolResult => {
  setTimeout(() => process.exit(1), 50);
  return { content: [{ type: 'text', text: 'crashing' }] };
});
await server.connect(new StdioServerTransport());
