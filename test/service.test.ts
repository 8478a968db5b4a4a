/**
 * `exai-ws service install|uninstall|status`: the real CLI writes the systemd unit (or launchd
 * agent) into a temporary config home with the service manager disabled; the unit's command
 * line, run the way systemd runs it, starts a daemon; the launchd plist and the manager steps
 * are checked in-process with a recording manager, so no test ever starts a real service.
 */
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { DAEMON_NODE_OPTIONS } from '../src/local/daemon-launch.js';
import { readAddressCard } from '../src/local/files.js';
import { runServiceCommand, type ManagerResult } from '../src/commands/service.js';
import {
  LAUNCHD_LABEL,
  launchdPlist,
  parsePlistProgramArguments,
  parseUnitExecStart,
  systemdUnit,
  type ServiceSpec,
} from '../src/commands/service-files.js';
import { CLI, Cleanup, getHealth, makeHome, spawnChild, startDaemon, waitFor, runCli, type CliRun } from './helpers.js';
import { cliHere } from './fixtures/cli-here.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const TOKEN = 'service-test-token-0123456789abcdef';
const EXPECTED_COMMAND = [process.execPath, ...DAEMON_NODE_OPTIONS, CLI, 'daemon'];

/** The real CLI: for what only its process shows (exit codes, stdout against stderr, the dispatch). */
function cli(args: string[], env: Record<string, string>): Promise<CliRun> {
  return runCli(args, env, 30_000);
}

/** A user's world in a temp dir: HOME, XDG_CONFIG_HOME and the daemon's home, manager off. */
function userEnv(root: string): Record<string, string> {
  return {
    HOME: root,
    XDG_CONFIG_HOME: join(root, 'config'),
    EXAI_WS_HOME: join(root, 'state'),
    EXAI_WS_CONFIG: join(root, 'servers.json'),
    // The user's own settings file in XDG_CONFIG_HOME, not the tests' unreadable one.
    EXAI_WS_SETTINGS: '',
    EXAI_WS_SERVICE_MANAGER: 'none',
  };
}

function serviceFile(root: string): string {
  return process.platform === 'darwin'
    ? join(root, 'Library', 'LaunchAgents', `${LAUNCHD_LABEL}.plist`)
    : join(root, 'config', 'systemd', 'user', 'exai-ws.service');
}

/** `Environment="NAME=value"` lines of a unit, unquoted as systemd reads them. */
function unitEnvironment(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^Environment="((?:[^"\\]|\\.)*)"$/.exec(line);
    if (!m) continue;
    const assignment = (m[1] as string).replace(/\\(.)/g, '$1').replace(/%%/g, '%');
    const eq = assignment.indexOf('=');
    env[assignment.slice(0, eq)] = assignment.slice(eq + 1);
  }
  return env;
}

// Each test has its own HOME, XDG_CONFIG_HOME and daemon home in a temp dir, so they run side
// by side.
describe('service install', { concurrency: 3 }, () => {
  test(
    'service install writes a unit that runs this Node with the daemon options, this CLI and `daemon`; status reports it; uninstall removes it',
    { skip: process.platform === 'win32' },
    async () => {
      const root = makeHome(cleanup);
      const env = {
        ...userEnv(root),
        EXAI_WS_PORT: '0',
        EXAI_WS_BACKPRESSURE: '7',
        EXAI_WS_TOKEN: TOKEN,
        KIMI_API_KEY: 'sk-kimi-secret-value',
      };
      const file = serviceFile(root);

      const installed = await cli(['service', 'install'], env);
      assert.equal(installed.code, 0, installed.stdout + installed.stderr);
      assert.ok(existsSync(file), `${file} was written`);
      const text = readFileSync(file, 'utf8');
      const command = process.platform === 'darwin' ? parsePlistProgramArguments(text) : parseUnitExecStart(text);
      assert.deepEqual(command, EXPECTED_COMMAND);
      assert.ok(!text.includes(TOKEN), 'the token never goes into the service file');
      assert.ok(!text.includes('sk-kimi-secret-value'), 'provider keys never go into the service file');
      assert.doesNotMatch(
        text,
        /EXAI_WS_BACKPRESSURE|EXAI_WS_PORT/,
        "the shell's settings are not the service's: the daemon reads daemon.env",
      );
      assert.ok(text.includes(join(root, 'config', 'exai-ws', 'daemon.env')), 'the unit names the settings file the daemon reads');
      assert.match(installed.stdout, new RegExp(`wrote: ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      assert.match(installed.stdout, /service manager: skipped \(EXAI_WS_SERVICE_MANAGER=none\)/);
      assert.match(
        installed.stdout,
        process.platform === 'darwin' ? /launchctl bootstrap gui\/\d+ / : /systemctl --user enable exai-ws\.service/,
      );
      assert.match(
        installed.stdout,
        /not copied: EXAI_WS_BACKPRESSURE, EXAI_WS_PORT, EXAI_WS_TOKEN, KIMI_API_KEY from this shell: the daemon takes its settings from .*daemon\.env only; keep them with: exai-ws settings set EXAI_WS_BACKPRESSURE=\.\.\./,
      );

      // install ran as a user runs it; the rest of the cycle runs the same command in this process.
      const status = await cliHere(['service', 'status'], env);
      assert.equal(status.code, 0, status.stdout);
      assert.match(status.stdout, /^installed: /m);
      assert.ok(status.stdout.includes(`runs: ${process.execPath}`) && status.stdout.includes(`${CLI} daemon`), status.stdout);
      assert.match(status.stdout, /daemon: none runs/);

      const removed = await cliHere(['service', 'uninstall'], env);
      assert.equal(removed.code, 0, removed.stdout);
      assert.ok(!existsSync(file), 'uninstall removed the file');
      assert.match(removed.stdout, /^removed: /m);
      const after = await cliHere(['service', 'status'], env);
      assert.equal(after.code, 1);
      assert.match(after.stdout, /not installed/);
    },
  );

  test(
    'the unit, run the way systemd runs it (its ExecStart and Environment only), serves the configured home',
    { skip: process.platform !== 'linux' },
    async () => {
      const root = makeHome(cleanup);
      const env = { ...userEnv(root), EXAI_WS_TOKEN: TOKEN };
      // The service's daemon takes its settings from the user's settings file, never from the unit.
      mkdirSync(join(root, 'config', 'exai-ws'), { recursive: true });
      writeFileSync(join(root, 'config', 'exai-ws', 'daemon.env'), 'EXAI_WS_PORT=0\nEXAI_WS_BACKPRESSURE=7\n', { mode: 0o600 });
      const installed = await cliHere(['service', 'install'], env);
      assert.equal(installed.code, 0, installed.stdout);
      const text = readFileSync(serviceFile(root), 'utf8');
      const [program, ...args] = parseUnitExecStart(text) ?? [];
      const unitEnv = unitEnvironment(text);
      assert.equal(unitEnv.EXAI_WS_HOME, join(root, 'state'));
      assert.equal(unitEnv.EXAI_WS_TOKEN, undefined);
      // What a user manager adds: HOME and little else; the daemon makes its own token file.
      const { proc, stderr } = spawnChild(cleanup, program as string, args, {
        env: { HOME: root, ...unitEnv },
        stdio: ['ignore', 'ignore', 'pipe'],
        cwd: root,
      });
      const card = await waitFor(
        () => {
          if (proc.exitCode !== null) throw new Error(`the service's daemon exited: ${stderr()}`);
          const c = readAddressCard(join(root, 'state', 'logs', 'ws_daemon.pid'));
          return c && c.port > 0 && c.pid === proc.pid ? c : null;
        },
        'the service daemon address card',
        15_000,
      );
      const health = await getHealth({ port: card.port, token: readFileSync(join(root, 'state', 'token'), 'utf8').trim() });
      assert.equal(health.pid, proc.pid);
      assert.equal(health.auto_started, false, 'a service daemon is not auto-started, so it never exits when idle');
      assert.equal(health.limits?.max_inflight, 7, "the settings file's EXAI_WS_BACKPRESSURE applies");
      assert.deepEqual(
        health.settings?.values.map((v) => `${v.name}:${v.source}`),
        ['EXAI_WS_BACKPRESSURE:file', 'EXAI_WS_PORT:file'],
      );
      assert.ok(existsSync(join(root, 'state', 'token')), 'the daemon made its token in the configured home');
    },
  );

  test('install says so when a daemon already runs for the home', { skip: process.platform === 'win32' }, async () => {
    const daemon = await startDaemon(cleanup, { plain: true });
    const root = makeHome(cleanup);
    const out = await cliHere(['service', 'install'], { ...userEnv(root), EXAI_WS_HOME: daemon.home });
    assert.equal(out.code, 0, out.stdout);
    assert.match(out.stdout, new RegExp(`a daemon already runs \\(pid ${daemon.pid} on port ${daemon.port}\\)`));
  });

  /** A service manager that records every command and answers from a script. */
  function recordingManager(answer: (command: string, args: readonly string[]) => Partial<ManagerResult> = () => ({})) {
    const calls: string[] = [];
    const manager = (command: string, args: readonly string[]): ManagerResult => {
      calls.push([command, ...args].join(' '));
      return { status: 0, stdout: '', stderr: '', ...answer(command, args) };
    };
    return { calls, manager };
  }

  function capture() {
    let text = '';
    return { stdout: { write: (t: string) => (text += t) }, text: () => text };
  }

  test('macOS: install writes the launchd agent and bootstraps it in the gui domain; uninstall boots it out', async () => {
    const root = makeHome(cleanup);
    const { calls, manager } = recordingManager((_command, args) =>
      args[0] === 'bootout' && calls.length === 1 ? { status: 3, stderr: 'Boot-out failed: 3: No such process' } : {},
    );
    const out = capture();
    const env = { ...userEnv(root), PATH: '/opt/homebrew/bin:/usr/bin:/bin' };
    const io = { stdout: out.stdout, env, platform: 'darwin' as const, userHome: root, uid: 501, manager, waitForDaemon: false };
    assert.equal(await runServiceCommand(['install'], io), 0, out.text());
    const file = join(root, 'Library', 'LaunchAgents', `${LAUNCHD_LABEL}.plist`);
    assert.deepEqual(calls, [
      `launchctl bootout gui/501/${LAUNCHD_LABEL}`,
      `launchctl enable gui/501/${LAUNCHD_LABEL}`,
      `launchctl bootstrap gui/501 ${file}`,
    ]);
    assert.match(out.text(), /ran: launchctl bootout .*nothing to undo/, 'a job not loaded yet is not a failure');
    const plist = readFileSync(file, 'utf8');
    assert.deepEqual(parsePlistProgramArguments(plist), EXPECTED_COMMAND);
    assert.match(plist, /<key>Label<\/key>\s*<string>local\.exai-ws\.daemon<\/string>/);
    assert.match(plist, /<key>RunAtLoad<\/key>\s*<true\/>/);
    assert.match(
      plist,
      /<key>KeepAlive<\/key>\s*<dict>\s*<key>SuccessfulExit<\/key>\s*<false\/>/,
      'restarted when it fails, not after a clean stop',
    );
    assert.match(
      plist,
      /<key>PATH<\/key>\s*<string>\/opt\/homebrew\/bin:\/usr\/bin:\/bin<\/string>/,
      "the shell's PATH, so npx finds node",
    );
    assert.ok(existsSync(join(root, 'state', 'logs')), 'the log folder launchd writes into exists');

    calls.length = 0;
    assert.equal(await runServiceCommand(['uninstall'], io), 0);
    assert.deepEqual(calls, [`launchctl bootout gui/501/${LAUNCHD_LABEL}`]);
    assert.ok(!existsSync(file));
  });

  /** What a Linux user's `exai-ws service` sees, with the service manager recorded instead of run. */
  function linuxIo(root: string, out: ReturnType<typeof capture>, manager: ReturnType<typeof recordingManager>['manager']) {
    return { stdout: out.stdout, env: userEnv(root), platform: 'linux' as const, userHome: root, uid: 1000, manager, waitForDaemon: false };
  }

  test('Linux: install reloads, enables and (re)starts the unit; an unchanged unit is only enabled; uninstall disables it', async () => {
    const root = makeHome(cleanup);
    const { calls, manager } = recordingManager();
    const out = capture();
    const io = linuxIo(root, out, manager);
    assert.equal(await runServiceCommand(['install'], io), 0, out.text());
    assert.deepEqual(calls, [
      'systemctl --user daemon-reload',
      'systemctl --user enable exai-ws.service',
      'systemctl --user restart exai-ws.service',
    ]);
    assert.match(out.text(), /enabled: exai-ws\.service starts the daemon at login/);
    calls.length = 0;
    assert.equal(await runServiceCommand(['install'], io), 0);
    assert.deepEqual(
      calls,
      ['systemctl --user daemon-reload', 'systemctl --user enable --now exai-ws.service'],
      'a running service with the same file is left running',
    );
    calls.length = 0;
    assert.equal(await runServiceCommand(['uninstall'], io), 0);
    assert.deepEqual(calls, ['systemctl --user disable --now exai-ws.service', 'systemctl --user daemon-reload']);
    assert.ok(!existsSync(join(root, 'config', 'systemd', 'user', 'exai-ws.service')));
  });

  test('Linux without a systemd user session: the unit is still written and the commands to run are printed', async () => {
    const root = makeHome(cleanup);
    const { calls, manager } = recordingManager(() => ({ status: 1, stderr: 'Failed to connect to bus: No medium found\n' }));
    const out = capture();
    const io = linuxIo(root, out, manager);
    assert.equal(await runServiceCommand(['install'], io), 1);
    assert.equal(calls.length, 1, 'it stops at the first step that fails');
    assert.ok(existsSync(join(root, 'config', 'systemd', 'user', 'exai-ws.service')));
    assert.match(
      out.text(),
      /the service manager is not available here \(Failed to connect to bus: No medium found\); once it is, run:\n {2}systemctl --user daemon-reload\n {2}systemctl --user enable exai-ws\.service\n {2}systemctl --user restart exai-ws\.service\n/,
    );

    const noSystemctl = recordingManager(() => ({
      status: null,
      error: Object.assign(new Error('spawn systemctl ENOENT'), { code: 'ENOENT' }),
    }));
    const out2 = capture();
    assert.equal(await runServiceCommand(['status'], { ...io, stdout: out2.stdout, manager: noSystemctl.manager }), 0);
    assert.match(out2.text(), /service manager: not available \(systemctl is not installed\)/);
  });

  test('Linux without a systemd user session: uninstall still removes the unit and its enable link, and says what it did', async () => {
    const root = makeHome(cleanup);
    const out = capture();
    // Installed while a user manager ran: the unit and the link `enable` made.
    const installing = recordingManager();
    assert.equal(await runServiceCommand(['install'], linuxIo(root, out, installing.manager)), 0, out.text());
    const unit = join(root, 'config', 'systemd', 'user', 'exai-ws.service');
    const wants = join(root, 'config', 'systemd', 'user', 'default.target.wants');
    mkdirSync(wants, { recursive: true });
    symlinkSync(unit, join(wants, 'exai-ws.service'));

    // Now from a login with no user bus (a container, ssh): every systemctl fails.
    const noBus = recordingManager(() => ({ status: 1, stderr: 'Failed to connect to bus: No medium found\n' }));
    const removed = capture();
    assert.equal(await runServiceCommand(['uninstall'], linuxIo(root, removed, noBus.manager)), 0, removed.text());
    assert.deepEqual(noBus.calls, ['systemctl --user disable --now exai-ws.service'], 'asked once, then done without it');
    assert.ok(!existsSync(unit), 'the unit file is gone');
    assert.equal(lstatOrNull(join(wants, 'exai-ws.service')), null, 'the enable link is gone');
    assert.match(
      removed.text(),
      /^not run: systemctl --user disable --now exai-ws\.service \(the service manager is not available here: Failed to connect to bus: No medium found\)$/m,
    );
    assert.match(removed.text(), new RegExp(`^removed: ${escape(join(wants, 'exai-ws.service'))} \\(what disable would remove\\)$`, 'm'));
    assert.match(removed.text(), new RegExp(`^removed: ${escape(unit)}$`, 'm'));
    assert.match(removed.text(), /the service does not start again; .*`exai-ws stop` ends it/);

    // Without systemctl at all: the same.
    assert.equal(await runServiceCommand(['install'], linuxIo(root, capture(), recordingManager().manager)), 0);
    const missing = recordingManager(() => ({
      status: null,
      error: Object.assign(new Error('spawn systemctl ENOENT'), { code: 'ENOENT' }),
    }));
    const gone = capture();
    assert.equal(await runServiceCommand(['uninstall'], linuxIo(root, gone, missing.manager)), 0, gone.text());
    assert.ok(!existsSync(unit));
    assert.match(gone.text(), /not run: .*\(the service manager is not available here: systemctl is not installed\)/);

    // A manager that answers and refuses is still a failure: the file stays for the user to retry.
    assert.equal(await runServiceCommand(['install'], linuxIo(root, capture(), recordingManager().manager)), 0);
    const refusing = recordingManager(() => ({ status: 1, stderr: 'Access denied\n' }));
    assert.equal(await runServiceCommand(['uninstall'], linuxIo(root, capture(), refusing.manager)), 1);
    assert.ok(existsSync(unit), 'kept when the manager refused');
  });

  function lstatOrNull(path: string): unknown {
    try {
      return lstatSync(path);
    } catch {
      return null;
    }
  }

  function escape(text: string): string {
    return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }

  test('odd paths survive both formats: spaces, quotes, %, $, & and <', () => {
    const spec: ServiceSpec = {
      program: '/opt/my node/bin/node',
      args: ['--max-semi-space-size=4', `/home/o'brien/100% "exai" $HOME & <ws>/dist/src/cli.js`, 'daemon'],
      env: [['EXAI_WS_HOME', '/home/a b/%h/$x']],
      home: '/home/a b/state',
    };
    assert.deepEqual(parseUnitExecStart(systemdUnit(spec)), [spec.program, ...spec.args]);
    assert.deepEqual(unitEnvironment(systemdUnit(spec)), { EXAI_WS_HOME: '/home/a b/%h/$x' });
    assert.deepEqual(parsePlistProgramArguments(launchdPlist(spec, LAUNCHD_LABEL, '/home/a')), [spec.program, ...spec.args]);
    assert.throws(() => systemdUnit({ ...spec, args: ['a\nExecStartPre=/bin/evil'] }), TypeError);
  });

  test('bad usage exits 2 with the usage line', async () => {
    const root = makeHome(cleanup);
    const out = await cli(['service', 'frobnicate'], userEnv(root));
    assert.equal(out.code, 2);
    assert.match(out.stderr, /unknown action 'frobnicate'/);
    assert.match(out.stderr, /usage: exai-ws service install\|uninstall\|status/);
    const help = await cli(['--help'], {});
    assert.match(help.stdout, /\n {2}service\s/);
    assert.match(help.stdout, /\n {2}config\s/);
  });

  test("install moves the keys of an earlier version's service.env into daemon.env; the daemon warns while one is left", async () => {
    const root = makeHome(cleanup);
    const env = userEnv(root);
    const legacy = join(root, 'service.env'); // beside the servers file (EXAI_WS_CONFIG), where earlier versions put it
    const settings = join(root, 'config', 'exai-ws', 'daemon.env');
    writeFileSync(legacy, '# keys\nKIMI_API_KEY=sk-from-service-env-0123\nEXAI_WS_BACKPRESSURE=9\n', { mode: 0o600 });
    mkdirSync(join(root, 'config', 'exai-ws'), { recursive: true });
    writeFileSync(settings, 'EXAI_WS_BACKPRESSURE=5\n', { mode: 0o600 });
    const { loadConfig } = await import('../src/daemon/files/config.js');
    assert.equal(loadConfig({ ...env, EXAI_WS_SETTINGS: settings }).settings.legacy_service_env, legacy, 'the daemon sees the old file');

    const installed = await cliHere(['service', 'install'], env);
    assert.equal(installed.code, 0, installed.stdout + installed.stderr);
    assert.match(installed.stdout, /moved: .*service\.env -> .*daemon\.env: KIMI_API_KEY/);
    assert.match(installed.stdout, /kept .*daemon\.env's own EXAI_WS_BACKPRESSURE/);
    const text = readFileSync(settings, 'utf8');
    assert.match(text, /^KIMI_API_KEY=sk-from-service-env-0123$/m, 'the key moved');
    assert.match(text, /^EXAI_WS_BACKPRESSURE=5$/m, "daemon.env's own value stays");
    assert.ok(!existsSync(legacy) && existsSync(`${legacy}.moved`), 'the old file is renamed, so nothing reads it');
    if (process.platform !== 'win32') assert.equal(statSync(settings).mode & 0o777, 0o600);
    assert.equal(loadConfig({ ...env, EXAI_WS_SETTINGS: settings }).settings.legacy_service_env, null);
  });
});
