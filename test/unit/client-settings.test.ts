/**
 * The client side's settings (src/local/client-settings.ts): one precedence for home, host, port
 * and token, each with where it came from. Files only, no daemon: each row of the table builds a
 * home and a settings file, then resolves.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { discoverDaemon, portValue, resolveClientSettings, type ClientSettings } from '../../src/local/client-settings.js';
import { DEFAULT_HOST, type AddressCard } from '../../src/local/files.js';

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const FILE_TOKEN = 'f'.repeat(43);
const SETTINGS_TOKEN = 's'.repeat(40);
const SHELL_TOKEN = 'c'.repeat(40);

interface Layout {
  /** daemon.env's lines. */
  settings?: string[];
  /** state.json's port. */
  statePort?: number;
  /** The address card's host and port. */
  card?: { host: string; port: number };
  /** The token file's text; null: no file. */
  tokenFile?: string | null;
}

/** A home and a settings file laid out as asked, and the environment of a client that names them. */
function layout(l: Layout): { env: NodeJS.ProcessEnv; home: string; settings: string } {
  const dir = mkdtempSync(join(tmpdir(), 'exai-ws-client-settings-'));
  dirs.push(dir);
  const home = join(dir, 'home');
  const settings = join(dir, 'daemon.env');
  mkdirSync(join(home, 'logs'), { recursive: true });
  if (l.settings) writeFileSync(settings, `${l.settings.join('\n')}\n`);
  if (l.statePort !== undefined) writeFileSync(join(home, 'state.json'), JSON.stringify({ port: l.statePort }));
  if (l.card) writeFileSync(join(home, 'logs', 'ws_daemon.pid'), JSON.stringify({ pid: 1, ...l.card, version: '0', started_at: '' }));
  const tokenFile = l.tokenFile === undefined ? `${FILE_TOKEN}\n` : l.tokenFile;
  if (tokenFile !== null) writeFileSync(join(home, 'token'), tokenFile);
  return { env: { EXAI_WS_HOME: home, EXAI_WS_SETTINGS: settings, EXAI_WS_TEST_DEFAULT_PORT: '2222' }, home, settings };
}

/** A client's own variables: never taken for host and port; the token only from a shell. */
const CLIENT_VARS = { EXAI_WS_HOST: '::1', EXAI_WS_PORT: '1111', EXAI_WS_TOKEN: SHELL_TOKEN };

type Row = [what: string, layout: Layout, expected: Pick<ClientSettings, 'host' | 'hostSource' | 'port' | 'portSource'>];

const ADDRESS_ROWS: Row[] = [
  ['nothing anywhere: the defaults', {}, { host: DEFAULT_HOST, hostSource: 'default', port: 2222, portSource: 'default' }],
  ['state.json over the default', { statePort: 3333 }, { host: DEFAULT_HOST, hostSource: 'default', port: 3333, portSource: 'state' }],
  [
    "daemon.env's port and host over state.json",
    { statePort: 3333, settings: ['EXAI_WS_PORT=4444', 'EXAI_WS_HOST=localhost'] },
    { host: 'localhost', hostSource: 'settings', port: 4444, portSource: 'settings' },
  ],
  [
    "daemon.env's port 0 (any port each start) is not an address: state.json",
    { statePort: 3333, settings: ['EXAI_WS_PORT=0'] },
    { host: DEFAULT_HOST, hostSource: 'default', port: 3333, portSource: 'state' },
  ],
  [
    "daemon.env's port that is not a port is passed over",
    { settings: ['EXAI_WS_PORT=70000'] },
    { host: DEFAULT_HOST, hostSource: 'default', port: 2222, portSource: 'default' },
  ],
  [
    'the address card over everything',
    { statePort: 3333, settings: ['EXAI_WS_PORT=4444', 'EXAI_WS_HOST=localhost'], card: { host: '127.0.0.2', port: 5555 } },
    { host: '127.0.0.2', hostSource: 'pidfile', port: 5555, portSource: 'pidfile' },
  ],
  [
    'a card still binding (port 0) is no address',
    { settings: ['EXAI_WS_PORT=4444'], card: { host: '127.0.0.2', port: 0 } },
    { host: DEFAULT_HOST, hostSource: 'default', port: 4444, portSource: 'settings' },
  ],
];

for (const [what, l, expected] of ADDRESS_ROWS) {
  test(`host and port: ${what}; a client's own EXAI_WS_HOST and EXAI_WS_PORT never count`, () => {
    const { env } = layout(l);
    for (const shell of [false, true]) {
      const got = resolveClientSettings({ ...env, ...CLIENT_VARS }, { shell });
      assert.deepEqual({ host: got.host, hostSource: got.hostSource, port: got.port, portSource: got.portSource }, expected);
      assert.equal(got.shellPort, 1111, "the shell's port is reported, not taken");
    }
  });
}

test('the token: the shell (a command typed) over daemon.env over the token file; a shim never takes a client variable', () => {
  const { env } = layout({ settings: [`EXAI_WS_TOKEN=${SETTINGS_TOKEN}`] });
  const client = { ...env, EXAI_WS_TOKEN: SHELL_TOKEN };
  assert.deepEqual(pick(resolveClientSettings(client, { shell: true })), {
    token: SHELL_TOKEN,
    tokenSource: 'shell',
    tokenFile: undefined,
  });
  assert.deepEqual(pick(resolveClientSettings(client)), { token: SETTINGS_TOKEN, tokenSource: 'settings', tokenFile: undefined });
  const plain = layout({});
  assert.deepEqual(pick(resolveClientSettings({ ...plain.env, EXAI_WS_TOKEN: SHELL_TOKEN })), {
    token: FILE_TOKEN,
    tokenSource: 'file',
    tokenFile: { state: 'ok', token: FILE_TOKEN },
  });
  // An empty value names nothing: the next source counts.
  const empty = layout({ settings: ['EXAI_WS_TOKEN='] });
  assert.equal(resolveClientSettings({ ...empty.env, EXAI_WS_TOKEN: '' }, { shell: true }).tokenSource, 'file');
});

test('the token file holding none: token null, and what the file held, for the notes', () => {
  assert.deepEqual(pick(resolveClientSettings(layout({ tokenFile: null }).env)), {
    token: null,
    tokenSource: 'file',
    tokenFile: { state: 'missing' },
  });
  assert.deepEqual(pick(resolveClientSettings(layout({ tokenFile: '\n' }).env)).tokenFile, { state: 'invalid', reason: 'empty' });
  assert.deepEqual(pick(resolveClientSettings(layout({ tokenFile: 'two words here, and more' }).env)).tokenFile, {
    state: 'invalid',
    reason: 'malformed',
  });
});

test('the home: EXAI_WS_HOME, else the default; the settings file read is the one EXAI_WS_SETTINGS names', () => {
  const { env, home, settings } = layout({});
  const named = resolveClientSettings(env);
  assert.equal(named.paths.home, home);
  assert.equal(named.homeSource, 'env');
  assert.equal(named.settingsPath, settings);
  // The platform's state folder, moved into the test's own folder (XDG_STATE_HOME on Linux).
  const fallback = resolveClientSettings({ ...env, EXAI_WS_HOME: '', XDG_STATE_HOME: join(home, 'state') });
  assert.equal(fallback.homeSource, 'default');
  assert.notEqual(fallback.paths.home, home);
});

test("a caller that checked the card's daemon passes the card that counts: null, a dead daemon's card is passed over", () => {
  const { env } = layout({ statePort: 3333, card: { host: '127.0.0.2', port: 5555 } });
  const dead = resolveClientSettings(env, { card: null });
  assert.equal(dead.portSource, 'state');
  assert.equal(dead.card, null);
  const card: AddressCard = { pid: 7, host: '127.0.0.3', port: 6666, version: '0', started_at: '' };
  const live = resolveClientSettings(env, { card });
  assert.deepEqual([live.host, live.port, live.portSource, live.card], ['127.0.0.3', 6666, 'pidfile', card]);
});

test('settingsPort: what daemon.env names, 0 included, whether or not it won', () => {
  const { env } = layout({ settings: ['EXAI_WS_PORT=0'], card: { host: '127.0.0.1', port: 5555 } });
  assert.equal(resolveClientSettings(env).settingsPort, 0);
  assert.equal(resolveClientSettings(layout({}).env).settingsPort, undefined);
  assert.deepEqual(['', ' ', '80', ' 80 ', '-1', '65536', '1.5', 'x', undefined].map(portValue), [
    undefined,
    undefined,
    80,
    80,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
  ]);
});

test('discoverDaemon is resolveClientSettings as a shim needs it: host, port, token and the port source', () => {
  const { env } = layout({ settings: ['EXAI_WS_PORT=4444', `EXAI_WS_TOKEN=${SETTINGS_TOKEN}`] });
  assert.deepEqual(discoverDaemon({ ...env, ...CLIENT_VARS }), {
    host: DEFAULT_HOST,
    port: 4444,
    token: SETTINGS_TOKEN,
    source: 'settings',
  });
  assert.equal(discoverDaemon({ ...env, ...CLIENT_VARS }, { shell: true }).token, SHELL_TOKEN);
});

function pick(s: ClientSettings): Pick<ClientSettings, 'token' | 'tokenSource' | 'tokenFile'> {
  return { token: s.token, tokenSource: s.tokenSource, tokenFile: s.tokenFile };
}
