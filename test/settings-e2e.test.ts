/**
 * The daemon is the user's, whoever starts it (issue 20): real shims launched the way real
 * clients launch them — one with a bare environment (HOME, XDG_*, PATH), one with a conflicting
 * one (another port, other provider variables, a session limit of 1) — get one daemon that runs
 * with the user's `daemon.env`: its port, its limits and its provider (a local fake
 * OpenAI-compatible server proves which key and URL were used). A daemon started by hand lets its
 * shell's variables win over the file. A bad line of the file is named by its number and the
 * rest applies.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { readAddressCard } from '../src/local/files.js';
import type { StatusJson } from '../src/commands/status-view.js';
import { CLI, Cleanup, SHIM, closedPort, getHealth, makeHome, runCli, spawnChild, textOf, waitFor } from './helpers.js';
import { cliHere } from './fixtures/cli-here.js';
import { daemonsOf, killDaemonsOf } from './fixtures/autostarted.js';
import { FakeOpenAI } from './fixtures/fake-openai.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

/** A user's world in a temp dir: the platform variables only, as a client that passes nothing gives them. */
function userWorld(): { root: string; home: string; settings: string; bare: Record<string, string> } {
  const root = makeHome(cleanup);
  const home = join(root, 'state', 'exai-ws');
  cleanup.add(() => killDaemonsOf(home, `HOME=${root}`));
  const bare = { HOME: root, XDG_CONFIG_HOME: join(root, 'config'), XDG_STATE_HOME: join(root, 'state'), PATH: process.env.PATH ?? '' };
  const settings = join(root, 'config', 'exai-ws', 'daemon.env');
  mkdirSync(join(root, 'config', 'exai-ws'), { recursive: true });
  return { root, home, settings, bare };
}

async function fake(apiKey: string): Promise<FakeOpenAI> {
  const server = await new FakeOpenAI().start();
  server.apiKey = apiKey;
  cleanup.add(() => server.close());
  return server;
}

/** An SDK client over a real shim process started with exactly `env` (nothing of this test's own). */
async function window(env: Record<string, string>, name: string): Promise<Client> {
  const transport = new StdioClientTransport({ command: process.execPath, args: [SHIM], env, stderr: 'pipe' });
  const client = new Client({ name, version: '1.0.0' });
  cleanup.add(() => client.close());
  await client.connect(transport);
  return client;
}
// Each test has its own daemon, home and processes: they run side by side.
describe('settings end to end', { concurrency: true }, () => {
  test("shims launched with a bare and with a conflicting environment share one daemon that runs with daemon.env's port, limits and provider", async () => {
    const { home, settings, bare } = userWorld();
    const port = await closedPort();
    const provider = await fake('sk-from-daemon-env-0123456789');
    const wrong = await fake('sk-from-a-client');
    writeFileSync(
      settings,
      [
        '# the user settings',
        `EXAI_WS_PORT=${port}`,
        'EXAI_WS_MAX_SESSIONS=7',
        'EXAI_WS_IDLE_EXIT_MS=60000',
        `EXAI_OPENAI_BASE_URL=${provider.url}`,
        'EXAI_OPENAI_API_KEY="sk-from-daemon-env-0123456789"',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    // The conflicting client opens first, so that it is the one whose shim starts the daemon.
    const conflicting = {
      ...bare,
      EXAI_WS_PORT: String(await closedPort()),
      EXAI_WS_MAX_SESSIONS: '1',
      EXAI_OPENAI_BASE_URL: wrong.url,
      EXAI_OPENAI_API_KEY: 'sk-from-a-client',
      KIMI_API_KEY: 'sk-kimi-from-a-client',
    };
    const first = await window(conflicting, 'conflicting-client');
    const second = await window(bare, 'bare-client');
    const third = await window(conflicting, 'conflicting-client-2');

    const card = readAddressCard(join(home, 'logs', 'ws_daemon.pid'));
    assert.ok(card, 'the daemon published its card in the default home');
    assert.equal(card.port, port, "the daemon listens on daemon.env's port, not the client's");
    assert.deepEqual(daemonsOf(home, `HOME=${bare.HOME}`), [card.pid], 'one daemon for every client');
    const token = readFileSync(join(home, 'token'), 'utf8').trim();
    const health = await getHealth({ port, token });
    assert.equal(health.sessions.total, 3, 'all three windows are sessions of that daemon (a limit of 1 would refuse two)');
    assert.equal(health.limits?.max_sessions, 7, "daemon.env's session limit");
    assert.deepEqual(
      health.settings?.values.map((v) => [v.name, v.source, v.value]),
      [
        ['EXAI_OPENAI_API_KEY', 'file', '****6789'],
        ['EXAI_OPENAI_BASE_URL', 'file', provider.url],
        ['EXAI_WS_IDLE_EXIT_MS', 'file', '60000'],
        ['EXAI_WS_MAX_SESSIONS', 'file', '7'],
        ['EXAI_WS_PORT', 'file', String(port)],
      ],
    );
    assert.deepEqual(health.settings?.ignored_env, [
      'EXAI_OPENAI_API_KEY',
      'EXAI_OPENAI_BASE_URL',
      'EXAI_WS_MAX_SESSIONS',
      'EXAI_WS_PORT',
      'KIMI_API_KEY',
    ]);
    const warning = health.warnings?.find((w) => w.includes('passed'));
    assert.ok(warning, `a warning names the ignored variables: ${JSON.stringify(health.warnings)}`);
    assert.match(warning, /exai-ws settings set KIMI_API_KEY=\.\.\./);
    assert.ok(!JSON.stringify(health).includes('sk-from-a-client') && !JSON.stringify(health).includes('sk-kimi-from-a-client'));

    const answers = await Promise.all(
      [first, second, third].map((client) => client.callTool({ name: 'chat', arguments: { prompt: 'ping', model: 'auto' } })),
    );
    for (const answer of answers) assert.ok(!answer.isError, textOf(answer));
    assert.equal(provider.requests.length, 3, "every chat went to daemon.env's provider, with its key");
    assert.equal(wrong.requests.length, 0, "no chat went to a client's provider");

    // What the user sees: where each setting came from, and the warning.
    // The table by the real CLI; the JSON from the same command in this process (test/fixtures/cli-here.ts).
    const [status, table] = await Promise.all([
      cliHere(['status', '--json'], { ...bare, EXAI_WS_SETTINGS: '' }),
      runCli(['status'], { ...bare, EXAI_WS_SETTINGS: '' }),
    ]);
    assert.equal(status.code, 0, status.stderr);
    const json = JSON.parse(status.stdout) as StatusJson;
    assert.equal(json.settings?.path, settings);
    assert.ok(json.warnings.some((w) => w.includes('KIMI_API_KEY')));
    assert.match(table.stdout, /EXAI_WS_MAX_SESSIONS=7 {2}\(daemon\.env\)/);
    assert.match(table.stdout, /EXAI_OPENAI_API_KEY=\*\*\*\*6789/);
    const log = readFileSync(join(home, 'logs', 'ws_daemon.log'), 'utf8');
    assert.match(log, /"level":40.*passed EXAI_OPENAI_API_KEY, EXAI_OPENAI_BASE_URL, EXAI_WS_MAX_SESSIONS, EXAI_WS_PORT, KIMI_API_KEY/);
    assert.ok(!log.includes('sk-from-a-client') && !log.includes('sk-from-daemon-env'), 'no key in the log');
  });

  test("exai-ws daemon started by hand: the shell's variables win over daemon.env, the file's others apply, and status says which came from where", async () => {
    const { home, settings, bare } = userWorld();
    writeFileSync(settings, 'EXAI_WS_MAX_SESSIONS=7\nEXAI_WS_BACKPRESSURE=5\nEXAI_WS_PORT=1\n', { mode: 0o600 });
    const daemon = spawnChild(cleanup, process.execPath, [CLI, 'daemon'], {
      env: { ...bare, EXAI_WS_PORT: '0', EXAI_WS_MAX_SESSIONS: '3' },
    });
    const card = await waitFor(() => {
      if (daemon.proc.exitCode !== null) throw new Error(`the daemon exited: ${daemon.stderr()}`);
      const c = readAddressCard(join(home, 'logs', 'ws_daemon.pid'));
      return c && c.port > 0 ? c : null;
    }, 'the daemon card');
    const health = await getHealth({ port: card.port, token: readFileSync(join(home, 'token'), 'utf8').trim() });
    assert.equal(health.limits?.max_sessions, 3, 'the shell wins');
    assert.equal(health.limits?.max_inflight, 5, "the file's other settings apply");
    assert.deepEqual(
      health.settings?.values.map((v) => `${v.name}:${v.source}`),
      ['EXAI_WS_BACKPRESSURE:file', 'EXAI_WS_MAX_SESSIONS:env', 'EXAI_WS_PORT:env'],
    );
    assert.deepEqual(health.settings?.ignored_env, [], 'nothing is ignored by hand');
    assert.deepEqual(health.warnings, []);
  });

  test('a bad line of daemon.env is named by its number in status and the log; the other lines apply, and the daemon starts', async () => {
    const { home, settings, bare } = userWorld();
    const port = await closedPort();
    writeFileSync(
      settings,
      [
        'EXAI_WS_MAX_SESSIONS=7',
        'this is not a setting',
        'EXAI_WS_BACKPRESSURE=lots',
        'EXAI_WS_HOST=10.0.0.1',
        'EXAI_WS_FROBNICATE=1',
        `EXAI_WS_PORT=${port}`,
        'EXAI_WS_IDLE_EXIT_MS=60000',
        '',
      ].join('\n'),
      { mode: 0o644 },
    );
    const client = await window(bare, 'bad-lines');
    const version = await client.callTool({ name: 'version', arguments: {} });
    assert.ok(!version.isError, textOf(version));
    const status = await cliHere(['status', '--json'], { ...bare, EXAI_WS_SETTINGS: '' });
    assert.equal(status.code, 0, status.stderr);
    const json = JSON.parse(status.stdout) as StatusJson;
    assert.equal(json.daemon.port, port);
    assert.equal(json.daemon.host, '127.0.0.1', 'a non-loopback host from the file is refused; loopback applies');
    assert.deepEqual(
      json.settings?.problems.map((p) => p.line),
      [2, 3, 4, 5],
    );
    assert.match(json.settings?.problems[1]?.message ?? '', /EXAI_WS_BACKPRESSURE=lots: .*the default applies/);
    assert.match(json.settings?.problems[3]?.message ?? '', /EXAI_WS_FROBNICATE is not a setting/);
    assert.ok(json.warnings.some((w) => w.includes(`${settings} line 2: not NAME=value`)));
    const health = await getHealth({ port, token: readFileSync(join(home, 'token'), 'utf8').trim() });
    assert.equal(health.limits?.max_sessions, 7, 'the good lines apply');
    assert.equal(health.limits?.max_inflight, 32, 'the bad value falls back to the default');
    const log = readFileSync(join(home, 'logs', 'ws_daemon.log'), 'utf8');
    assert.match(log, /line 3: EXAI_WS_BACKPRESSURE=lots/);
  });
});
