/**
 * Auto-start, idle exit, `exai-ws restart` and `status` with a stale pid file, with real
 * processes: ensureDaemon runs in its own processes (test/fixtures/ensure-daemon.ts, as shims
 * would), daemons are found by their environment in /proc, and every daemon a test lets start
 * is killed at cleanup (and has EXAI_WS_IDLE_EXIT_MS as a safety net).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type WebSocket from 'ws';
import { after, describe, test } from 'node:test';
import { fetchHealth } from '../src/local/health-client.js';
import { IdleExit } from '../src/daemon/idle-exit.js';
import { readAddressCard } from '../src/local/files.js';
import {
  CLI,
  Cleanup,
  ROOT,
  baseEnv,
  closed,
  holdsFor,
  logPath,
  makeHome,
  openSocket,
  sendHello,
  startDaemon,
  waitFor,
  within,
} from './helpers.js';
import { cliHere } from './fixtures/cli-here.js';
import { processGone } from './fixtures/hosted-servers.js';
import { coldHome, daemonsOf, healthOf, shimEnv } from './fixtures/autostarted.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const ENSURE = join(ROOT, 'dist', 'test', 'fixtures', 'ensure-daemon.js');
const linuxOnly = process.platform !== 'linux' ? 'reads /proc to find daemon processes' : false;

interface EnsureOutput {
  ok: boolean;
  started?: boolean;
  message?: string;
  pid: number;
  ms: number;
}

/** Runs ensureDaemon in a process of its own and returns what it printed. */
async function runEnsure(env: Record<string, string>, timeoutMs = 30_000): Promise<EnsureOutput> {
  const { code, stdout, stderr } = await runNode([ENSURE], env, timeoutMs);
  assert.equal(code, 0, `the ensure process failed: ${stderr}`);
  return JSON.parse(stdout) as EnsureOutput;
}

/** Runs `node ARGS`, bounded; the process is killed at cleanup if it is still there. */
function runNode(
  args: string[],
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  // 'close', not 'exit': 'exit' can come before the last of stdout has been read.
  const exited = new Promise<number | string>((resolve) => proc.once('close', (code, signal) => resolve(code ?? signal ?? -1)));
  cleanup.add(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  return within(
    exited.then((code) => ({ code, stdout, stderr })),
    timeoutMs,
    `node ${args.join(' ')}`,
  );
}

/** The pids that wrote JSON lines to the home's log: every daemon that ever ran there. */
function pidsInLog(home: string): Set<number> {
  const pids = new Set<number>();
  let text = '';
  try {
    text = readFileSync(logPath(home), 'utf8');
  } catch {
    return pids;
  }
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    const pid = (JSON.parse(line) as { pid?: unknown }).pid;
    if (typeof pid === 'number') pids.add(pid);
  }
  return pids;
}

/** A session on the daemon of `home` (its card and token), opened at once: a raw WebSocket after its hello. */
async function openSession(home: string): Promise<{ ws: WebSocket; pid: number }> {
  const card = readAddressCard(join(home, 'logs', 'ws_daemon.pid'));
  assert.ok(card && card.port > 0, `no address card with a port in ${home}`);
  const token = readFileSync(join(home, 'token'), 'utf8').trim();
  const ws = await openSocket(cleanup, { token, url: (path = '/ws') => `ws://${card.host}:${card.port}${path}` });
  assert.equal((await sendHello(ws)).ok, true);
  return { ws, pid: card.pid };
}

// Every test has its own cold home (its daemons found and killed by it) and port 0, so they run side
// by side: most of their time is a daemon's timers (idle exit, resume grace, graceful stop).
describe('auto-start, idle exit, restart', { concurrency: 4 }, () => {
  test(
    'ten shims at once on a cold home: exactly one daemon, all ten served, and it outlives them; a later call finds it and starts nothing',
    { skip: linuxOnly },
    async () => {
      const home = coldHome(cleanup);
      const env = shimEnv(home);
      const results = await Promise.all(Array.from({ length: 10 }, () => runEnsure(env)));
      for (const r of results) assert.deepEqual({ ok: r.ok, message: r.message }, { ok: true, message: undefined });
      assert.equal(results.filter((r) => r.started).length, 1, 'exactly one caller started the daemon');
      const health = await healthOf(home);
      // The ten processes have exited: the daemon is not theirs to take down.
      assert.deepEqual(daemonsOf(home), [health.pid], 'one daemon process for the home');
      assert.equal(health.auto_started, true);
      assert.equal(health.idle_exit_ms, 60_000);
      // The spawn lock kept the other nine from spawning daemons that would have lost the pid lock.
      assert.deepEqual([...pidsInLog(home)], [health.pid], 'only one daemon ever ran in this home');
      await holdsFor(() => !processGone(health.pid), 'the daemon outliving the processes that started it', 300);

      // A second call, once the daemon runs, finds it and starts nothing.
      const later = await runEnsure(env);
      assert.deepEqual({ ok: later.ok, started: later.started }, { ok: true, started: false });
      assert.deepEqual(daemonsOf(home), [health.pid]);
    },
  );

  test('an auto-started daemon writes each warning once to its log, which is also its stderr', { skip: linuxOnly }, async () => {
    const home = coldHome(cleanup);
    writeFileSync(join(home, 'config.json'), JSON.stringify({ mcpServers: [] }));
    const r = await runEnsure(shimEnv(home));
    assert.equal(r.ok, true, r.message);
    await healthOf(home);
    const refused = readFileSync(logPath(home), 'utf8')
      .split('\n')
      .filter((line) => line.includes('config entry refused'));
    assert.equal(refused.length, 1, `one warning line: ${refused.join('\n')}`);
  });

  test('auto-start off and no daemon: the answer says so and how to start one, and nothing starts', { skip: linuxOnly }, async () => {
    const home = coldHome(cleanup);
    const r = await runEnsure(shimEnv(home, { EXAI_WS_AUTOSTART: '0' }));
    assert.equal(r.ok, false);
    assert.match(r.message ?? '', /no exai-ws daemon is running/);
    assert.ok(r.message?.includes(join(home, 'logs', 'ws_daemon.pid')), `the message names where it looked: ${r.message}`);
    assert.match(r.message ?? '', /auto-start is off \(EXAI_WS_AUTOSTART=0\)/);
    assert.match(r.message ?? '', /start one with: exai-ws daemon/);
    await holdsFor(() => daemonsOf(home).length === 0, 'no daemon for the home', 200);
  });

  test(
    'a daemon that cannot start: the answer names the log file, the exit code and why, before the timeout',
    { skip: linuxOnly },
    async () => {
      const home = coldHome(cleanup);
      // A token path that is a directory: the home is unusable, which only the user can fix.
      mkdirSync(join(home, 'token'));
      const r = await runEnsure(shimEnv(home, { TEST_ENSURE_TIMEOUT_MS: '20000' }));
      assert.equal(r.ok, false);
      assert.ok(r.message?.includes(logPath(home)), `the message names the log: ${r.message}`);
      assert.match(r.message ?? '', /exited with code 73 before it was ready/);
      assert.match(r.message ?? '', /token is a directory, but it must be the token file/);
      // The daemon's refusal is in the log file, where the message sends the user.
      assert.match(readFileSync(logPath(home), 'utf8'), /token is a directory, but it must be the token file/);
      assert.deepEqual(daemonsOf(home), []);
    },
  );

  test('an unusable home: the answer names the path', async () => {
    const parent = makeHome(cleanup);
    const home = join(parent, 'home-is-a-file');
    writeFileSync(home, 'not a directory');
    const r = await runEnsure(shimEnv(home));
    assert.equal(r.ok, false);
    assert.ok(r.message?.includes(home), `the message names the home: ${r.message}`);
  });

  test('an auto-started daemon exits by itself once idle, and never while a session is open or detached', { skip: linuxOnly }, async () => {
    const home = coldHome(cleanup);
    // Short timers (the daemon looks every IDLE_MS / 10): each watch below outlasts the one it tests.
    const IDLE_MS = 1_500;
    const GRACE_MS = 2_500;
    const env = shimEnv(home, { EXAI_WS_IDLE_EXIT_MS: String(IDLE_MS), EXAI_WS_RESUME_GRACE_MS: String(GRACE_MS) });
    const r = await runEnsure(env);
    assert.equal(r.ok, true);
    // The session first, before anything else can let the idle time pass.
    const { ws, pid } = await openSession(home);
    const health = await healthOf(home);
    assert.equal(health.pid, pid);
    assert.equal(health.idle_exit_ms, IDLE_MS);

    // Attached for longer than the idle time.
    await holdsFor(() => !processGone(pid), 'the daemon running while a session is open', IDLE_MS + 100);
    // Detached (the connection dropped, not closed): the session waits for its client to resume,
    // longer than the idle time, and the daemon with it.
    const droppedMs = Date.now();
    ws.terminate();
    await holdsFor(() => !processGone(pid), 'the daemon running while a session is detached', IDLE_MS + 100);

    // The session ends when its resume grace runs out; the idle time counts from there.
    await waitFor(() => processGone(pid), 'the idle daemon to exit', 20_000);
    const goneAfterMs = Date.now() - droppedMs;
    // The idle time counts from the last look that saw the session (looks are IDLE_MS / 10 apart).
    const earliestMs = GRACE_MS + IDLE_MS - IDLE_MS / 10;
    assert.ok(goneAfterMs >= earliestMs, `exited ${goneAfterMs} ms after the drop: before the grace and the idle time had passed`);
    assert.equal(readAddressCard(join(home, 'logs', 'ws_daemon.pid')), null, 'a graceful exit removes the pid file');
    assert.match(readFileSync(logPath(home), 'utf8'), /"reason":"idle".*"msg":"daemon stopped"/);
  });

  test(
    'an auto-started daemon that never got a session exits after the idle time; a session closing normally starts the wait',
    { skip: linuxOnly },
    async () => {
      const home = coldHome(cleanup);
      const settings = { EXAI_WS_IDLE_EXIT_MS: '1500' };
      const r = await runEnsure(shimEnv(home, settings));
      assert.equal(r.ok, true);
      const { pid } = await healthOf(home);
      await waitFor(() => processGone(pid), 'the unused daemon to exit', 15_000);

      const again = await runEnsure(shimEnv(home, settings));
      assert.equal(again.started, true);
      const { ws, pid: second } = await openSession(home);
      ws.close(1000);
      await closed(ws);
      await waitFor(() => processGone(second), 'the daemon to exit after its last session closed', 15_000);
    },
  );

  test('idle exit: only time with no session counts, and a session that came and went between two looks restarts it', () => {
    let nowMs = 0;
    let sessions = 0;
    let opened = 0;
    let idled = 0;
    const idle = new IdleExit({ idleMs: 10_000, busy: () => sessions > 0, opened: () => opened, onidle: () => idled++, now: () => nowMs });
    const lookAt = (ms: number) => {
      nowMs = ms;
      idle.check();
    };
    lookAt(9_000);
    // Opened and closed again before the next look: only the count of opened sessions shows it.
    opened++;
    lookAt(18_000);
    lookAt(27_000);
    assert.equal(idled, 0, 'exited although a session had just been used');
    sessions = 1;
    opened++;
    lookAt(100_000);
    assert.equal(idled, 0, 'exited while a session was open');
    sessions = 0;
    lookAt(109_000);
    assert.equal(idled, 0);
    lookAt(110_000);
    assert.equal(idled, 1, 'not idle 10 s after the last session closed');
    lookAt(200_000);
    assert.equal(idled, 1, 'onidle is called once');
  });

  test('a daemon started by hand never idles out, whatever EXAI_WS_IDLE_EXIT_MS says', async () => {
    // Were it to idle out, it would be gone 300 ms (and one look, every 50 ms) after its start.
    const daemon = await startDaemon(cleanup, { plain: true, env: { EXAI_WS_IDLE_EXIT_MS: '300' } });
    await holdsFor(() => !processGone(daemon.pid), 'the foreground daemon running', 900);
    const health = await fetchHealth('127.0.0.1', daemon.port, 5_000);
    assert.equal(health?.auto_started, false);
    assert.equal(health?.idle_exit_ms, null);
  });

  test('exai-ws restart starts a daemon when none runs, then replaces it', { skip: linuxOnly }, async () => {
    const home = coldHome(cleanup);
    const env = shimEnv(home);
    const first = await runNode([CLI, 'restart'], env);
    assert.equal(first.code, 0, first.stderr);
    const started = await healthOf(home);
    assert.match(first.stdout, new RegExp(`no daemon was running; started pid ${started.pid} on ws://127\\.0\\.0\\.1:${started.port}`));
    assert.match(first.stdout, /exits after 1 min with no session/);
    assert.equal(started.auto_started, true);

    const second = await runNode([CLI, 'restart'], env);
    assert.equal(second.code, 0, second.stderr);
    const replaced = await healthOf(home);
    assert.notEqual(replaced.pid, started.pid);
    assert.match(second.stdout, new RegExp(`daemon restarted: pid ${started.pid} -> ${replaced.pid} on ws://`));
    assert.ok(processGone(started.pid), 'the old daemon is gone');
    assert.deepEqual(daemonsOf(home), [replaced.pid]);
  });

  test('exai-ws restart replaces a daemon started by hand, which stops gracefully', { skip: linuxOnly }, async () => {
    const home = coldHome(cleanup);
    const old = await startDaemon(cleanup, { home, plain: true });
    const { code, stdout, stderr } = await runNode([CLI, 'restart'], shimEnv(home));
    assert.equal(code, 0, stderr);
    assert.equal(await within(old.exited, 5_000, 'the old daemon exit'), 0, 'the old daemon stopped gracefully');
    const health = await healthOf(home);
    assert.match(stdout, new RegExp(`pid ${old.pid} -> ${health.pid}`));
    // New settings take effect: the restarted daemon runs with this command's environment.
    assert.equal(health.auto_started, true);
  });

  test('exai-ws restart that cannot start a daemon: one line naming the log file, exit 1', { skip: linuxOnly }, async () => {
    const home = coldHome(cleanup);
    mkdirSync(join(home, 'token'));
    const { code, stdout, stderr } = await runNode([CLI, 'restart'], shimEnv(home));
    assert.equal(code, 1);
    assert.equal(stdout, '');
    assert.equal(stderr.trim().split('\n').length, 1, `one line: ${stderr}`);
    assert.ok(stderr.includes(logPath(home)), stderr);
    assert.match(stderr, /exited with code 73/);
    assert.deepEqual(daemonsOf(home), []);
  });

  // One daemon killed with -9 for both what status says and what auto-start does with its pid file.
  test('a daemon killed with -9: exai-ws status says not running, stale pid file, exit 1; auto-start takes over its pid file', async () => {
    const daemon = await startDaemon(cleanup, { home: coldHome(cleanup), plain: true });
    daemon.proc.kill('SIGKILL');
    await daemon.exited;
    const pidPath = join(daemon.home, 'logs', 'ws_daemon.pid');
    assert.equal(readAddressCard(pidPath)?.pid, daemon.pid, 'the stale card is still there');
    const env = { ...baseEnv(), EXAI_WS_HOME: daemon.home };
    const text = await runNode([CLI, 'status'], env);
    assert.equal(text.code, 1);
    assert.equal(text.stderr.trim(), `exai-ws: not running (stale pid file ${pidPath} from pid ${daemon.pid})`);
    // The same command in this process (test/fixtures/cli-here.ts): the real CLI's exit 1 is just above.
    const json = await cliHere(['status', '--json'], { EXAI_WS_HOME: daemon.home });
    assert.equal(json.code, 1);
    assert.deepEqual(JSON.parse(json.stdout), {
      schema: 1,
      status: 'down',
      error: `not running (stale pid file ${pidPath} from pid ${daemon.pid})`,
      stale_pid_file: { path: pidPath, pid: daemon.pid },
    });

    if (linuxOnly) return; // auto-start's part reads /proc to find daemon processes
    const r = await runEnsure(shimEnv(daemon.home));
    assert.deepEqual({ ok: r.ok, started: r.started }, { ok: true, started: true });
    const health = await healthOf(daemon.home);
    assert.notEqual(health.pid, daemon.pid);
  });
});
