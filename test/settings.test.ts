/**
 * The settings file (daemon.env) where its logic is: parsing with line numbers, what a launcher
 * passes to the daemon it starts, the daemon's reading of file and environment, how a client
 * finds its daemon, and `exai-ws settings` writing the file.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadConfig, ConfigError } from '../src/daemon/files/config.js';
import { settingsPath } from '../src/local/config-path.js';
import { DEFAULT_PORT, defaultPort } from '../src/local/files.js';
import { discoverDaemon } from '../src/local/client-settings.js';
import { editSettingsText, launchEnv, maskValue, parseSettings, readSettings } from '../src/local/settings.js';
import { runSettingsCommand } from '../src/commands/settings.js';
import { Cleanup, baseEnv, makeHome, runCli, type CliRun } from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

/**
 * `exai-ws settings ARGS` in this process: the function the CLI calls, with the test environment
 * plus `env` (a CLI process is about 0.35 s of CPU); the real CLI is run for set, list and one
 * refusal, which show the command as a user runs it.
 */
async function settingsHere(args: string[], env: Record<string, string>): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const code = await runSettingsCommand(args, {
    env: { ...baseEnv(), ...env },
    out: (text) => (stdout += text),
    err: (text) => (stderr += text),
  });
  return { code, stdout, stderr };
}
// Each test has its own daemon, home and processes: they run side by side.
describe('settings', { concurrency: 4 }, () => {
  test('parseSettings: NAME=value lines, comments, export, quotes; every other line is named by its number', () => {
    const parsed = parseSettings(
      [
        '# keys',
        'KIMI_API_KEY=sk-plain',
        '  export GLM_API_KEY = "sk \\"quoted\\" \\\\ x"  ',
        "EXAI_OPENAI_MODELS='a b # not a comment'",
        'EXAI_WS_PORT=9000 # the port',
        '',
        'just words',
        'EXAI_WS_HOME=/elsewhere',
        'PATH=/usr/bin',
        'EXAI_WS_AUTOSTART=0',
        'LOG_LEVEL="debug',
        'EXAI_WS_PORT=9001',
      ].join('\r\n'),
    );
    assert.deepEqual(parsed.values, {
      KIMI_API_KEY: 'sk-plain',
      GLM_API_KEY: 'sk "quoted" \\ x',
      EXAI_OPENAI_MODELS: 'a b # not a comment',
      EXAI_WS_PORT: '9001',
    });
    assert.equal(parsed.lines.EXAI_WS_PORT, 12, 'the last line of a name wins, and is the one named');
    assert.deepEqual(
      parsed.problems.map((p) => p.line),
      [7, 8, 9, 10, 11],
    );
    assert.match(parsed.problems[0]?.message ?? '', /not NAME=value: just words/);
    assert.match(parsed.problems[1]?.message ?? '', /EXAI_WS_HOME says where the settings are/);
    assert.match(parsed.problems[2]?.message ?? '', /PATH is not an exai-ws setting/);
    assert.match(parsed.problems[3]?.message ?? '', /EXAI_WS_AUTOSTART is not an exai-ws setting/);
    assert.match(parsed.problems[4]?.message ?? '', /LOG_LEVEL: the quoted value is not closed/);
  });

  test('editSettingsText sets, replaces and removes one name, keeping comments and other lines; values read back the same', () => {
    const text = '# mine\nKIMI_API_KEY=old\nEXAI_WS_PORT=1\nKIMI_API_KEY=older\n';
    const set = editSettingsText(text, 'KIMI_API_KEY', 'new value with "quotes" # and \\ and\nnewline');
    assert.equal(set.split('\n').filter((l) => l.startsWith('KIMI_API_KEY=')).length, 1);
    assert.ok(set.startsWith('# mine\n'));
    assert.equal(parseSettings(set).values.KIMI_API_KEY, 'new value with "quotes" # and \\ and\nnewline');
    assert.equal(parseSettings(set).values.EXAI_WS_PORT, '1');
    const removed = editSettingsText(set, 'KIMI_API_KEY', undefined);
    assert.equal(removed, '# mine\nEXAI_WS_PORT=1\n');
    assert.equal(editSettingsText('', 'GLM_API_KEY', 'k'), 'GLM_API_KEY=k\n');
    assert.equal(maskValue('GLM_API_KEY', 'abcdefghijklmnopqrstuvwxyz'), '****wxyz');
    assert.equal(maskValue('GLM_API_KEY', 'short'), '****');
    assert.equal(maskValue('EXAI_WS_PORT', '9000'), '9000');
  });

  test("launchEnv: a launched daemon gets the caller's environment less its settings; locators and proxies pass; changed ones are named", () => {
    const { env, ignored } = launchEnv(
      {
        PATH: '/bin',
        HTTPS_PROXY: 'http://proxy',
        NODE_EXTRA_CA_CERTS: '/ca.pem',
        EXAI_WS_HOME: '/h',
        EXAI_WS_CONFIG: '/c.json',
        EXAI_WS_SETTINGS: '/s.env',
        EXAI_WS_TEST_DEFAULT_PORT: '4000',
        EXAI_WS_PORT: '9999',
        EXAI_WS_MAX_SESSIONS: '1',
        KIMI_API_KEY: 'same-as-file',
        GLM_API_KEY: 'sk-client',
        LOG_LEVEL: '',
        EXAI_WS_AUTOSTART: '1',
        EXAI_WS_RECONNECT_MS: '5',
      },
      { values: { KIMI_API_KEY: 'same-as-file' } },
    );
    assert.deepEqual(env, {
      PATH: '/bin',
      HTTPS_PROXY: 'http://proxy',
      NODE_EXTRA_CA_CERTS: '/ca.pem',
      EXAI_WS_HOME: '/h',
      EXAI_WS_CONFIG: '/c.json',
      EXAI_WS_SETTINGS: '/s.env',
      EXAI_WS_TEST_DEFAULT_PORT: '4000',
      EXAI_WS_AUTOSTARTED: '1',
      EXAI_WS_IGNORED_ENV: 'EXAI_WS_MAX_SESSIONS,EXAI_WS_PORT,GLM_API_KEY',
    });
    assert.deepEqual(ignored, ['EXAI_WS_MAX_SESSIONS', 'EXAI_WS_PORT', 'GLM_API_KEY'], 'a value equal to the file is no news');
  });

  test('loadConfig: the file, then the environment over it; bad values of the file are problems with their line, of the environment an error', () => {
    const dir = makeHome(cleanup);
    const settings = join(dir, 'daemon.env');
    writeFileSync(settings, 'EXAI_WS_MAX_SESSIONS=7\nEXAI_WS_BACKPRESSURE=0\nEXAI_WS_PORT=9100\nKIMI_API_KEY=sk-file-0123456789abcd\n');
    const base = { EXAI_WS_HOME: join(dir, 'home'), EXAI_WS_SETTINGS: settings, EXAI_WS_CONFIG: join(dir, 'none.json') };
    const fromFile = loadConfig(base);
    assert.equal(fromFile.maxSessions, 7);
    assert.equal(fromFile.maxInflight, 32, 'an invalid value of the file: the default');
    assert.deepEqual(fromFile.settings.problems, [
      { line: 2, message: 'EXAI_WS_BACKPRESSURE=0: Too small: expected number to be >=1; the default applies' },
    ]);
    assert.equal(fromFile.port, 9100);
    assert.equal(fromFile.portSource, 'file');
    assert.equal(fromFile.providers.providers.find((p) => p.id === 'kimi')?.apiKey, 'sk-file-0123456789abcd');
    const byHand = loadConfig({ ...base, EXAI_WS_MAX_SESSIONS: '3', EXAI_WS_PORT: '0' });
    assert.equal(byHand.maxSessions, 3);
    assert.equal(byHand.port, 0);
    assert.equal(byHand.portSource, 'env');
    assert.deepEqual(
      byHand.settings.values.map((v) => `${v.name}=${v.value}:${v.source}`),
      ['EXAI_WS_MAX_SESSIONS=3:env', 'EXAI_WS_PORT=0:env', 'KIMI_API_KEY=****abcd:file'],
    );
    assert.throws(() => loadConfig({ ...base, EXAI_WS_BACKPRESSURE: '0' }), ConfigError, 'a shell with a bad value is told at once');

    writeFileSync(settings, '');
    const none = loadConfig({ ...base, EXAI_WS_TEST_DEFAULT_PORT: '4321' });
    assert.equal(none.port, 4321);
    assert.equal(none.portSource, 'default');
    mkdirSync(join(dir, 'home'), { recursive: true });
    writeFileSync(join(dir, 'home', 'state.json'), JSON.stringify({ port: 4444 }));
    const remembered = loadConfig({ ...base, EXAI_WS_TEST_DEFAULT_PORT: '4321' });
    assert.equal(remembered.port, 4444);
    assert.equal(remembered.portSource, 'state');
  });

  test('settingsPath: EXAI_WS_SETTINGS, else XDG_CONFIG_HOME, else the platform folder; EXAI_WS_CONFIG does not move it', () => {
    assert.equal(settingsPath({ EXAI_WS_SETTINGS: '/x/s.env', XDG_CONFIG_HOME: '/c' }, 'linux'), '/x/s.env');
    assert.equal(settingsPath({ XDG_CONFIG_HOME: '/c', EXAI_WS_CONFIG: '/elsewhere/servers.json' }, 'linux'), '/c/exai-ws/daemon.env');
    assert.equal(
      settingsPath({ APPDATA: 'C:\\Users\\u\\AppData\\Roaming' }, 'win32'),
      join('C:\\Users\\u\\AppData\\Roaming', 'exai-ws', 'daemon.env'),
    );
  });

  test("discoverDaemon: the card, else daemon.env's port, else the remembered port, else the default; a client's variables never", () => {
    const dir = makeHome(cleanup);
    const home = join(dir, 'home');
    const settings = join(dir, 'daemon.env');
    mkdirSync(join(home, 'logs'), { recursive: true });
    writeFileSync(join(home, 'token'), `${'f'.repeat(43)}\n`);
    const client = {
      EXAI_WS_HOME: home,
      EXAI_WS_SETTINGS: settings,
      EXAI_WS_PORT: '1111',
      EXAI_WS_TOKEN: 'c'.repeat(40),
      EXAI_WS_HOST: '::1',
    };
    assert.equal(defaultPort({}), DEFAULT_PORT);
    assert.deepEqual(discoverDaemon({ ...client, EXAI_WS_TEST_DEFAULT_PORT: '2222' }), {
      host: '127.0.0.1',
      port: 2222,
      token: 'f'.repeat(43),
      source: 'default',
    });
    writeFileSync(join(home, 'state.json'), JSON.stringify({ port: 3333 }));
    assert.equal(discoverDaemon(client).port, 3333);
    assert.equal(discoverDaemon(client).source, 'state');
    writeFileSync(settings, `EXAI_WS_PORT=4444\nEXAI_WS_TOKEN=${'s'.repeat(40)}\n`);
    assert.deepEqual(discoverDaemon(client), { host: '127.0.0.1', port: 4444, token: 's'.repeat(40), source: 'settings' });
    writeFileSync(
      join(home, 'logs', 'ws_daemon.pid'),
      JSON.stringify({ pid: 1, host: '127.0.0.1', port: 5555, version: '0', started_at: '' }),
    );
    assert.equal(discoverDaemon(client).port, 5555);
    assert.equal(discoverDaemon(client).source, 'pidfile');
    assert.equal(discoverDaemon(client, { shell: true }).token, 'c'.repeat(40), "a command typed in a shell takes that shell's token");
  });

  test('exai-ws settings: set writes 0600 and masks keys, list shows lines and problems, unset removes; a bad name or value exits 2', async () => {
    const dir = makeHome(cleanup);
    const settings = join(dir, 'config', 'daemon.env');
    const env = { EXAI_WS_HOME: join(dir, 'home'), EXAI_WS_SETTINGS: settings };
    const set = await runCli(['settings', 'set', 'KIMI_API_KEY=sk-secret-value-0123456789', 'EXAI_WS_MAX_SESSIONS=50'], env);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /KIMI_API_KEY=\*\*\*\*6789 written to .*daemon\.env/);
    assert.match(set.stdout, /when it next starts/);
    assert.ok(!set.stdout.includes('sk-secret-value'), 'the key is never printed');
    if (process.platform !== 'win32') assert.equal(statSync(settings).mode & 0o777, 0o600);
    assert.deepEqual(readSettings(settings).values, { KIMI_API_KEY: 'sk-secret-value-0123456789', EXAI_WS_MAX_SESSIONS: '50' });

    writeFileSync(settings, `${readFileSync(settings, 'utf8')}oops\n`);
    chmodSync(settings, 0o644);
    const listed = await runCli(['settings', 'list'], env);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /KIMI_API_KEY=\*\*\*\*6789 {2}\(line 1\)/);
    assert.match(listed.stdout, /line 3 not taken: not NAME=value: oops/);
    assert.match(listed.stdout, /others can read this file/);
    assert.ok(!listed.stdout.includes('sk-secret-value'));

    const unset = await settingsHere(['unset', 'KIMI_API_KEY'], env);
    assert.equal(unset.code, 0, unset.stderr);
    assert.equal(readSettings(settings).values.KIMI_API_KEY, undefined);
    if (process.platform !== 'win32') assert.equal(statSync(settings).mode & 0o777, 0o600, 'made private again');

    for (const [i, [args, why]] of (
      [
        [['settings', 'set', 'EXAI_WS_MAX_SESSIONS=many'], /EXAI_WS_MAX_SESSIONS=many: /],
        [['settings', 'set', 'PATH=/bin'], /PATH is not an exai-ws setting/],
        [['settings', 'set', 'EXAI_WS_HOME=/x'], /EXAI_WS_HOME says where the settings are/],
        [['settings', 'set', 'EXAI_WS_HOST=10.0.0.1'], /not a loopback address/],
        [['settings', 'frob'], /unknown action 'frob'/],
        [['settings', 'set', 'novalue'], /'novalue' is not NAME=value/],
      ] as const
    ).entries()) {
      // The first through the real CLI (exit 2 as a user sees it), the others in this process.
      const run = i === 0 ? await runCli([...args], env) : await settingsHere(args.slice(1), env);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, why);
    }
    assert.equal(readSettings(settings).values.EXAI_WS_MAX_SESSIONS, '50', 'a refused set writes nothing');
  });
});
