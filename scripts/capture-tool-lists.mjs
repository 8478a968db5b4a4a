/**
 * Captures the tools lists of the three reference servers (server-everything, server-memory,
 * server-filesystem, from node_modules) into test/fixtures/tool-lists/three-servers.json, the
 * snapshot the tool search test and bench rank over (issue 25). Each server is started with the
 * v1 SDK client over stdio, listed once (every page), and closed; the tools are written as
 * listed, under the server names the daemon would prefix them with.
 *
 * `node scripts/capture-tool-lists.mjs` from the repository root. Run it again after upgrading
 * a server; the query set (test/fixtures/tool-queries.json) names tools by their exposed names.
 */
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import process from 'node:process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { format, resolveConfig } from 'prettier';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'test', 'fixtures', 'tool-lists', 'three-servers.json');

/**
 * The script a package's bin runs: npm links it into node_modules/.bin, and the link leads to the
 * file itself (run with this `node`, so no shell or `.cmd` wrapper is involved).
 * @param {string} bin
 * @returns {string}
 */
function binOf(bin) {
  return realpathSync(join(ROOT, 'node_modules', '.bin', bin));
}

/**
 * Every tool a server lists, following nextCursor.
 * @param {string} server
 * @param {string[]} args
 * @param {Record<string, string>} [env] added to the SDK's default environment
 * @returns {Promise<unknown[]>}
 */
async function listTools(server, args, env = {}) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args,
    env: { ...getDefaultEnvironment(), ...env },
    stderr: 'ignore',
  });
  const client = new Client({ name: 'exai-ws-capture-tool-lists', version: '1.0.0' });
  await client.connect(transport);
  try {
    /** @type {unknown[]} */
    const tools = [];
    /** @type {string | undefined} */
    let cursor;
    do {
      const page = await client.listTools(cursor === undefined ? {} : { cursor });
      tools.push(...page.tools);
      cursor = page.nextCursor;
    } while (cursor !== undefined);
    process.stderr.write(`${server}: ${tools.length} tools\n`);
    return tools;
  } finally {
    await client.close();
  }
}

const scratch = mkdtempSync(join(tmpdir(), 'exai-ws-capture-'));
try {
  const lists = [
    { server: 'everything', tools: await listTools('everything', [binOf('mcp-server-everything'), 'stdio']) },
    {
      server: 'memory',
      // server-memory keeps its graph in this file; a scratch one keeps the capture from touching a real one.
      tools: await listTools('memory', [binOf('mcp-server-memory')], { MEMORY_FILE_PATH: join(scratch, 'memory.jsonl') }),
    },
    { server: 'fs', tools: await listTools('fs', [binOf('mcp-server-filesystem'), scratch]) },
  ];
  // Written as the formatter writes it, so that `npm run lint` (prettier --check) passes after a capture.
  const options = await resolveConfig(OUT);
  writeFileSync(OUT, await format(JSON.stringify(lists), { ...options, filepath: OUT }));
  process.stderr.write(`wrote ${OUT}\n`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
