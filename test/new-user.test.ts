/**
 * What a new user met on a first day (issue 20), where they meet it: a hosted server that cannot
 * start is a warning in `exai-ws logs --level warn` (`no-such-command: command not found`),
 * while a shared server asking for roots when it starts is not; a remote server whose host does
 * not resolve says `ENOTFOUND host`, whole, in `exai-ws status`.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ListRootsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { Cleanup, ROOT, logPath, readJsonLines, runCli, waitFor } from './helpers.js';
import { cliHere } from './fixtures/cli-here.js';
import { startHostingDaemon, waitReady } from './fixtures/hosted-servers.js';
import { connectWs } from './fixtures/ws-client.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const FILESYSTEM = join(ROOT, 'node_modules', '@modelcontextprotocol', 'server-filesystem', 'dist', 'index.js');
/** `.invalid` never resolves (RFC 6761); a machine with no resolver at all says EAI_AGAIN instead. */
const NO_HOST = 'no-such-host.invalid';

test('logs --level warn shows a server that cannot start and a host that does not resolve; startup roots refusals stay info', async () => {
  const daemon = await startHostingDaemon(cleanup, (home) => ({
    uvx: { command: 'no-such-command-xyz', args: ['mcp-server-fetch'], start: 'eager' },
    remote: { url: `http://${NO_HOST}:8080/mcp`, start: 'eager' },
    files: { command: process.execPath, args: [FILESYSTEM, home], start: 'eager' },
  }));
  await waitReady(daemon, 'files');
  // A window that offers roots, as VS Code does: the shared filesystem server is restarted to be
  // offered them, and asks for roots at once, before any call is in flight: refused, routinely.
  // (Over a direct WebSocket: the refusal is the daemon's, whatever carries the window.)
  const { client } = await connectWs(cleanup, daemon, { capabilities: { roots: { listChanged: true } } });
  client.setRequestHandler(ListRootsRequestSchema, () => ({ roots: [{ uri: `file://${daemon.home}`, name: 'home' }] }));
  const refused = await waitFor(
    () =>
      readJsonLines(logPath(daemon.home)).find((l) => l.msg === 'server request refused: requester unknown' && l.method === 'roots/list'),
    'the startup roots/list refusal in the log',
    15_000,
  );
  assert.equal(refused.level, 30, `routine, so info: ${JSON.stringify(refused)}`);
  await waitFor(
    () => readJsonLines(logPath(daemon.home)).some((l) => l.msg === 'server failed to start' && l.server === 'remote'),
    'the remote server to fail',
    15_000,
  );

  const [warn, status] = await Promise.all([
    // The log through the same command in this process (test/fixtures/cli-here.ts); the status table by the real CLI.
    cliHere(['logs', '--level', 'warn', '-n', '0'], daemon.clientEnv),
    runCli(['status'], daemon.clientEnv),
  ]);
  assert.equal(warn.code, 0, warn.stderr);
  assert.match(warn.stdout, /no-such-command-xyz: command not found \(spawn no-such-command-xyz ENOENT/);
  assert.match(warn.stdout, new RegExp(`getaddrinfo (ENOTFOUND|EAI_AGAIN) ${NO_HOST.replace(/\./g, '\\.')}`));
  assert.doesNotMatch(warn.stdout, /requester unknown/, 'a routine refusal is no warning');

  // The status table gives the cause whole, whatever the width (80 columns when not a terminal).
  assert.equal(status.code, 0, status.stderr);
  const flat = status.stdout.replace(/\s+/g, ' ');
  assert.match(
    flat,
    new RegExp(`remote failed - - shared \\d+ 0 .*fetch failed: getaddrinfo (ENOTFOUND|EAI_AGAIN) ${NO_HOST.replace(/\./g, '\\.')}`),
  );
  assert.match(flat, /uvx failed - - shared \d+ 0 server uvx could not be started: ENOENT no-such-command-xyz: command not found/);
  for (const line of status.stdout.split('\n')) assert.doesNotMatch(line, /…/, `nothing cut: ${line}`);
});
