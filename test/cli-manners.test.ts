/**
 * The command line as a new user meets it: `--help` of every command only prints its usage
 * (a running daemon is left alone), unknown options and commands exit 2 naming them, the README
 * lists what `--help` lists and nothing else, a port in use is one line, the status page and
 * `/health` keep the daemon's state to those holding the token, and the shutdown is logged in
 * order.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { parseCommand } from '../src/local/args.js';
import { COMMANDS, commandSpec } from '../src/local/specs.js';
import {
  Cleanup,
  ROOT,
  baseEnv,
  getHealth,
  makeHome,
  pool,
  spawnDaemon,
  startDaemon,
  textOf,
  waitFor,
  runCli,
  type DaemonHandle,
} from './helpers.js';
import { connectWs } from './fixtures/ws-client.js';
import { cliHere } from './fixtures/cli-here.js';

const run = promisify(execFile);
const cleanup = new Cleanup();
after(() => cleanup.run());

async function get(port: number, path: string, headers: Record<string, string> = {}, method = 'GET') {
  return fetch(`http://127.0.0.1:${port}${path}`, { method, headers, redirect: 'manual' });
}

// The tests run side by side: most of their time is waiting on processes and timers.
describe('CLI manners', { concurrency: 3 }, () => {
  // One daemon for these two, one after another: --help first (it asserts the daemon has had no
  // session and no reload, and that nothing was written to its home), then the token test, which
  // opens the one session it counts. Neither stops the daemon or changes its config.
  describe('on one daemon, one test at a time', { concurrency: 1 }, () => {
    let shared: Promise<DaemonHandle> | undefined;
    const sharedDaemon = (): Promise<DaemonHandle> => (shared ??= startDaemon(cleanup));

    test('--help of every command prints its usage and does nothing else: the running daemon stays as it was', async () => {
      const daemon = await sharedDaemon();
      const configFile = join(daemon.home, 'servers.json');
      const env = { ...daemon.clientEnv, EXAI_WS_CONFIG: configFile, EXAI_WS_SERVICE_MANAGER: 'none', XDG_CONFIG_HOME: daemon.home };
      const before = await getHealth(daemon);
      // Each command with the arguments it would otherwise act on: the help flag still wins.
      const argsOf = (name: string, flag: string) =>
        name === 'import' ? ['import', '--from', 'vscode', flag] : name === 'service' ? ['service', 'install', flag] : [name, flag];
      // `--help` of every command through the real CLI; `-h` is the same flag to the parser the CLI
      // runs first (local/args.ts): for every command it parses as help, and one `-h` (of the command
      // that would do most harm) runs through the real CLI. A CLI process costs about 0.15 s of CPU.
      for (const spec of COMMANDS) {
        const [, ...rest] = argsOf(spec.name, '-h');
        assert.deepEqual(parseCommand(spec, rest), { help: true }, `${spec.name} -h parses as --help`);
      }
      // Three CLI processes at a time: each only reads its arguments, and each is checked on its own.
      const runs = [...COMMANDS.map((spec) => argsOf(spec.name, '--help')), ['stop', '-h']];
      await pool(runs.length, 3, async (n) => {
        const args = runs[n] as string[];
        const spec = commandSpec(args[0] as string);
        const out = await runCli(args, env);
        assert.equal(out.code, 0, `${args.join(' ')}: exit ${out.code}: ${out.stderr}`);
        assert.equal(out.stdout, `${spec?.usage}\n`, `${args.join(' ')} prints its usage and nothing else`);
        assert.equal(out.stderr, '', `${args.join(' ')} writes nothing on stderr`);
      });
      const now = await getHealth(daemon);
      assert.equal(now.pid, before.pid, 'stop/restart --help left the daemon running');
      assert.equal(daemon.proc.exitCode, null);
      assert.equal(now.sessions.total, 0, 'shim/stdio --help opened no session');
      assert.equal((now.config as { last_reload: unknown }).last_reload, null, 'reload --help did not reload');
      assert.equal(existsSync(configFile), false, 'import --help wrote no config');
      assert.equal(existsSync(join(daemon.home, 'systemd')), false, 'service install --help wrote no unit');
      const log = readFileSync(join(daemon.home, 'logs', 'ws_daemon.log'), 'utf8');
      assert.doesNotMatch(log, /daemon stopping|session opened/);
    });

    test('/health without the token is liveness only; the page, /events and /metrics need the token or a cookie from a one-time code', async () => {
      const daemon = await sharedDaemon();
      const { client } = await connectWs(cleanup, daemon, { name: 'secret-window' });
      await client.callTool({ name: 'version', arguments: {} });

      const open = (await (await get(daemon.port, '/health')).json()) as Record<string, unknown>;
      assert.equal(open.status, 'ok');
      assert.equal(open.pid, daemon.pid);
      assert.equal(open.sessions, undefined, 'no session list (client names, folders) without the token');
      assert.ok(!JSON.stringify(open).includes('secret-window'));
      const full = await getHealth(daemon);
      assert.equal(full.sessions.total, 1);

      for (const path of ['/', '/events', '/metrics']) {
        const refused = await get(daemon.port, path);
        assert.equal(refused.status, 401, path);
        assert.equal(refused.headers.get('www-authenticate'), 'Bearer');
        const wrong = await get(daemon.port, path, { cookie: 'exai_ws_session=made-up' });
        assert.equal(wrong.status, 401, `${path} with a made-up cookie`);
        await wrong.body?.cancel();
        await refused.body?.cancel();
      }
      const bearer = await get(daemon.port, '/metrics', { authorization: `Bearer ${daemon.token}` });
      assert.equal(bearer.status, 200);
      await bearer.body?.cancel();

      // Codes only for the token holder; each good once.
      assert.equal((await get(daemon.port, '/auth/code', {}, 'POST')).status, 401);
      assert.equal((await get(daemon.port, '/auth/code', { authorization: `Bearer ${daemon.token}` })).status, 405);
      const issued = (await (await get(daemon.port, '/auth/code', { authorization: `Bearer ${daemon.token}` }, 'POST')).json()) as {
        code: string;
        url: string;
        expires_in_s: number;
      };
      assert.equal(issued.url, `http://127.0.0.1:${daemon.port}/?code=${issued.code}`);
      assert.equal(issued.expires_in_s, 60);
      const redeemed = await get(daemon.port, `/?code=${encodeURIComponent(issued.code)}`);
      assert.equal(redeemed.status, 303);
      assert.match(redeemed.headers.get('location') ?? '', /^\/#consent=[\w-]{40,}$/);
      const setCookie = redeemed.headers.get('set-cookie') ?? '';
      assert.match(setCookie, /^exai_ws_session=[\w-]{40,}; /);
      assert.match(setCookie, /; HttpOnly/);
      assert.match(setCookie, /; SameSite=Strict/);
      const cookie = setCookie.split(';')[0] as string;
      for (const path of ['/', '/metrics', '/health']) {
        const ok = await get(daemon.port, path, { cookie });
        assert.equal(ok.status, 200, `${path} with the cookie`);
        if (path === '/health') assert.equal(((await ok.json()) as { sessions: { total: number } }).sessions.total, 1);
        else await ok.body?.cancel();
      }
      const again = await get(daemon.port, `/?code=${encodeURIComponent(issued.code)}`);
      assert.equal(again.status, 401, 'a code is good once');
      assert.equal(again.headers.get('set-cookie'), null);
      await again.body?.cancel();
      // Another site's page cannot use the cookie: Origin is checked before anything else.
      const foreign = await get(daemon.port, '/', { cookie, origin: 'http://evil.example' });
      assert.equal(foreign.status, 403);
      await foreign.body?.cancel();
    });
  });

  test('an unknown option exits 2 naming it, for every command; so does an unknown command or a missing value', async () => {
    const home = makeHome(cleanup);
    const env = { EXAI_WS_HOME: home, EXAI_WS_PORT: '0', EXAI_WS_AUTOSTART: '0' };
    // Every command's parser (the one the CLI runs first, local/args.ts) refuses it by name; the real
    // CLI prints that with the usage and exits 2 for a plain command, the shim (whose bundle
    // parses again) and one that parses its own arguments (service).
    for (const spec of COMMANDS) {
      assert.deepEqual(parseCommand(spec, ['--jsn']), { error: "unknown option '--jsn'" }, spec.name);
    }
    for (const name of ['status', 'shim', 'service']) {
      const spec = commandSpec(name);
      assert.ok(spec, name);
      const out = await runCli([name, '--jsn'], env);
      assert.equal(out.code, 2, `${name} --jsn: exit ${out.code}: ${out.stderr}`);
      assert.match(out.stderr, new RegExp(`^exai-ws ${name}: unknown option '--jsn'\n`), name);
      assert.ok(out.stderr.includes(spec.usage), `${name}: the usage follows the error`);
      assert.equal(out.stdout, '');
    }
    const extra = await runCli(['status', 'now'], env);
    assert.equal(extra.code, 2);
    assert.match(extra.stderr, /exai-ws status: unexpected argument 'now'/);
    const missing = await runCli(['shim', '--server'], env);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /exai-ws shim: --server needs a value/);
    const valued = await runCli(['status', '--json=yes'], env);
    assert.equal(valued.code, 2);
    assert.match(valued.stderr, /--json takes no value/);
    const command = await runCli(['stauts'], env);
    assert.equal(command.code, 2);
    assert.match(command.stderr, /unknown command 'stauts'/);
    const option = await runCli(['--jsn'], env);
    assert.equal(option.code, 2);
    assert.match(option.stderr, /unknown option '--jsn'/);
    // The shim bundle run on its own (what client configs launch) parses the same way.
    const shim = await run(process.execPath, [join(ROOT, 'dist', 'shim.cjs'), '--frob'], { env: { ...baseEnv(), ...env } }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(shim.code, 2);
    assert.match(shim.stderr, /exai-ws shim: unknown option '--frob'/);
  });

  test('the README lists every command and option that --help does, and no other', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = /\n## Commands\n([\s\S]*?)\n## /.exec(readme)?.[1];
    assert.ok(section, 'the README has a Commands section');
    const rows = section.split('\n').filter((line) => line.startsWith('| `exai-ws '));
    const documented = new Map<string, string>();
    for (const row of rows) {
      const name = /^\| `exai-ws ([a-z]+)/.exec(row)?.[1];
      if (name === undefined) continue; // `exai-ws --help`
      documented.set(name, (documented.get(name) ?? '') + row);
    }
    const help = COMMANDS.filter((c) => c.name !== 'help');
    assert.deepEqual([...documented.keys()].sort(), help.map((c) => c.name).sort(), 'the same commands');
    for (const spec of help) {
      const row = documented.get(spec.name) as string;
      const inHelp = Object.keys(spec.options ?? {}).map((o) => `--${o}`);
      const inReadme = [...new Set(row.match(/(?<![\w-])--[a-z][a-z-]*/g) ?? [])];
      assert.deepEqual(inReadme.sort(), inHelp.sort(), `${spec.name}: the README names the options its --help does`);
      for (const option of inHelp) assert.ok(spec.usage.includes(option), `${spec.name} --help explains ${option}`);
    }
  });

  test('a port in use is one line naming the port and EXAI_WS_PORT, exit 1', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    cleanup.add(() => blocker.close());
    const port = (blocker.address() as AddressInfo).port;
    const { exited, stderr } = spawnDaemon(cleanup, { env: { EXAI_WS_PORT: String(port) } });
    const code = await exited;
    assert.equal(code, 1);
    const lines = stderr().trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${stderr()}`);
    assert.match(lines[0] as string, new RegExp(`^exai-ws: port ${port} is already in use .*EXAI_WS_PORT`));
  });

  test('the shutdown is logged in order, with a session open: "daemon stopping" before "daemon stopped"', async () => {
    const daemon = await startDaemon(cleanup);
    // A window without a shim: the property is the daemon's log, and a direct WebSocket holds a session as a shim does.
    const { client } = await connectWs(cleanup, daemon);
    assert.match(textOf(await client.callTool({ name: 'version', arguments: {} })), /exai-ws/);
    // The command in this process (test/fixtures/cli-here.ts): the log's order is the daemon's.
    const out = await cliHere(['stop'], daemon.clientEnv);
    assert.equal(out.code, 0, out.stderr);
    await daemon.exited;
    const log = readFileSync(join(daemon.home, 'logs', 'ws_daemon.log'), 'utf8');
    const messages = log
      .trim()
      .split('\n')
      .map((line) => (JSON.parse(line) as { msg: string }).msg);
    const stopping = messages.indexOf('daemon stopping');
    const stopped = messages.indexOf('daemon stopped');
    assert.ok(stopping >= 0 && stopped >= 0, messages.join(' | '));
    assert.ok(stopping < stopped, messages.join(' | '));
    assert.equal(stopped, messages.length - 1, `"daemon stopped" is the last line: ${messages.join(' | ')}`);
    assert.ok(
      messages.slice(stopping).some((m) => /session (closed|ended)/.test(m)),
      `the session's end is logged between them: ${messages.join(' | ')}`,
    );
    await waitFor(() => !existsSync(join(daemon.home, 'logs', 'ws_daemon.pid')), 'the pid file removed');
    assert.equal(commandSpec('stop')?.name, 'stop');
  });
});
