/**
 * A client window under Node.js for Windows: the official SDK client launches the shim with the
 * command and arguments `exai-ws config claude-desktop` printed (as a user pastes them), then
 * serves a small control port on 127.0.0.1 so that the Linux test can make it list and call.
 *
 * Usage: node.exe window.js ENTRY_JSON_FILE READY_FILE. READY_FILE gets
 * `{port, connect_ms, pid}` once initialize is done; `connect_ms` runs from the start of the
 * connection (the shim's launch) to the end of initialize: a cold auto-start when no daemon ran.
 * Control: POST / with `{"op":"list"}` or `{"op":"call","name":...,"args":{...}}`; answers the
 * result, or `{"error": message}`.
 */
import { createServer } from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const [entryFile, readyFile] = process.argv.slice(2) as [string, string];
const entry = JSON.parse(readFileSync(entryFile, 'utf8')) as { command: string; args: string[] };
const env: Record<string, string> = {};
for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;

const started = performance.now();
const transport = new StdioClientTransport({ command: entry.command, args: entry.args, env, stderr: 'pipe' });
let shimStderr = '';
transport.stderr?.on('data', (chunk: Buffer) => (shimStderr = (shimStderr + chunk.toString()).slice(-20_000)));
const client = new Client({ name: 'wine-window', version: '1.0.0' });
await client.connect(transport);
const connectMs = performance.now() - started;

const server = createServer((req, res) => {
  let body = '';
  req.on('data', (chunk: Buffer) => (body += chunk.toString()));
  req.on('end', () => {
    void (async () => {
      let answer: unknown;
      try {
        const ask = JSON.parse(body) as { op: string; name?: string; args?: Record<string, unknown> };
        if (ask.op === 'list') answer = await client.listTools(undefined, { timeout: 60_000 });
        else if (ask.op === 'call')
          answer = await client.callTool({ name: ask.name ?? '', arguments: ask.args ?? {} }, undefined, { timeout: 60_000 });
        else if (ask.op === 'stderr') answer = { stderr: shimStderr };
        else if (ask.op === 'close') {
          await client.close();
          answer = { closed: true };
          setTimeout(() => process.exit(0), 50);
        } else answer = { error: `unknown op ${ask.op}` };
      } catch (error) {
        answer = { error: (error as Error).message };
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer));
    })();
  });
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  writeFileSync(readyFile, JSON.stringify({ port, connect_ms: Math.round(connectMs), pid: process.pid }));
});
