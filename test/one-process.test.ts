/**
 * `exai-ws daemon` is one process: the pid a user or a supervisor started is the daemon (the
 * pid in the address card, the one `/health` and `version` name), with nothing in between; its
 * start line says where clients connect. Killed outright, it leaves no hosted server behind: the
 * watchdog (hosting/watchdog.ts) ends them within the usual stop ladder.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { readAddressCard } from '../src/local/files.js';
import { CLI, Cleanup, baseEnv, getHealth, makeHome, spawnChild, textOf, waitFor, within } from './helpers.js';
import { descendants, memoryEntry, processGone, waitReady } from './fixtures/hosted-servers.js';
import { connectWs } from './fixtures/ws-client.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const linuxOnly = process.platform === 'linux' ? {} : { skip: 'reads /proc' };
/** The watchdog's ladder: SIGTERM at once, SIGKILL 2 s later; what the issue allows for all of it. */
const STOP_LADDER_MS = 6_000;

test('`exai-ws daemon` is the pid in the card; after kill -9 of it no hosted server process is left within 6 s', linuxOnly, async () => {
  const home = makeHome(cleanup);
  const config = join(home, 'config.json');
  writeFileSync(config, JSON.stringify({ mcpServers: { memory: memoryEntry(home) } }));
  const env = { ...baseEnv(), EXAI_WS_HOME: home, EXAI_WS_PORT: '0', EXAI_WS_CONFIG: config };
  // As a user types it: no Node options, nothing that would tell it how it was started.
  const daemon = spawnChild(cleanup, process.execPath, [CLI, 'daemon'], { env });
  const card = await waitFor(() => {
    if (daemon.proc.exitCode !== null) throw new Error(`the daemon exited: ${daemon.stderr()}`);
    const c = readAddressCard(join(home, 'logs', 'ws_daemon.pid'));
    return c && c.port > 0 ? c : null;
  }, 'the address card');
  assert.equal(card.pid, daemon.proc.pid, 'the process started is the daemon');

  // The start line says where clients connect and how to get an entry.
  await waitFor(() => daemon.stderr().includes('daemon listening'), 'the start line');
  assert.match(
    daemon.stderr(),
    new RegExp(
      `^exai-ws: daemon listening on ws://127\\.0\\.0\\.1:${card.port} and http://127\\.0\\.0\\.1:${card.port}/mcp \\(pid ${card.pid}, .*\`exai-ws config CLIENT\``,
      'm',
    ),
  );

  // A window over a direct WebSocket, at the port and with the token of the card's home: which
  // process answers is the daemon's to show.
  const token = readFileSync(join(home, 'token'), 'utf8').trim();
  const shim = await connectWs(cleanup, { token, url: (path = '/ws') => `ws://127.0.0.1:${card.port}${path}` });
  const version = JSON.parse(textOf(await shim.client.callTool({ name: 'version', arguments: {} }))) as { pid: number };
  assert.equal(version.pid, daemon.proc.pid, 'the daemon answering is the process started');
  // The hosted server starts at its first call.
  const graph = await shim.client.callTool({ name: 'memory__read_graph', arguments: {} });
  assert.notEqual(graph.isError, true, JSON.stringify(graph));
  const memory = await waitReady({ port: card.port, token }, 'memory');
  assert.equal((await getHealth({ port: card.port, token })).pid, daemon.proc.pid);
  const hosted = [memory.pid, ...descendants(memory.pid)];
  cleanup.add(() => {
    for (const pid of hosted) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone, as it should be
      }
    }
  });
  assert.ok(!processGone(memory.pid), 'the hosted server runs');

  const killedAt = Date.now();
  daemon.proc.kill('SIGKILL');
  assert.equal(await within(daemon.exited, 2_000, 'the daemon to die'), 'SIGKILL');
  await waitFor(
    () => hosted.every(processGone),
    `every hosted server process gone: ${hosted.filter((pid) => !processGone(pid)).join(', ')}`,
    STOP_LADDER_MS,
  );
  assert.ok(Date.now() - killedAt <= STOP_LADDER_MS + 500);
});
