/**
 * The daemon's files, end to end against real daemon processes: a token file left empty or
 * malformed is replaced; a home whose paths have the wrong type gives one clear line and exit
 * 73, never a stack trace; the pid lock blocks a start only for a real exai-ws daemon (a card
 * whose pid was reused by another program is taken over), and daemons started at once leave
 * exactly one running; a real crash exits loudly and removes the pid file. Unit tests over the
 * pure parts (token check, command-line check, liveness over real processes) sit beside them.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ExitCode } from '../src/commands/exit-codes.js';
import { HomeError } from '../src/local/home.js';
import { cardIsLive, isDaemonCommandLine, processCommandLine } from '../src/local/pidfile.js';
import { ensureToken } from '../src/local/token.js';
import { retryBusy } from '../src/local/whole-file.js';
import { inspectTokenFile, isValidToken, readAddressCard, readTokenFile, type AddressCard } from '../src/local/files.js';
import {
  baseEnv,
  Cleanup,
  CLI,
  getHealth,
  logPath,
  makeHome,
  spawnDaemon,
  startDaemon,
  textOf,
  waitFor,
  within,
  type DaemonHandle,
} from './helpers.js';
import { connectWs } from './fixtures/ws-client.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const STACK_LINE = /^\s+at /m;

function pidPath(home: string): string {
  return join(home, 'logs', 'ws_daemon.pid');
}

function nonEmptyLines(text: string): string[] {
  return text.split('\n').filter((l) => l.trim().length > 0);
}

function card(pid: number, port = 0): AddressCard {
  return { pid, host: '127.0.0.1', port, version: '0.0.0', started_at: new Date().toISOString() };
}

function writeCard(home: string, c: AddressCard): void {
  mkdirSync(join(home, 'logs'), { recursive: true });
  writeFileSync(pidPath(home), `${JSON.stringify(c)}\n`);
}

/** A long-lived process, killed at cleanup; `argv0` replaces its name (what ps shows). */
async function spawnSleeper(argv0?: string): Promise<ChildProcess> {
  const proc = argv0 === undefined ? spawn('sleep', ['60']) : spawn('bash', ['-c', `exec -a '${argv0}' sleep 60`]);
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  cleanup.add(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
  });
  assert.ok(proc.pid);
  const pid = proc.pid;
  // Until bash has exec'd, the command line is bash's own.
  await waitFor(() => (processCommandLine(pid) ?? '').startsWith(argv0 ?? 'sleep'), 'the sleeper to start');
  return proc;
}

/**
 * A client holding the token file's token, read as a shim reads it (`readTokenFile`), gets a
 * tool answer: the token file works. A direct WebSocket window, not a shim process: the
 * property is the daemon's (the token it writes is the one it accepts).
 */
async function assertTokenWorks(daemon: DaemonHandle): Promise<void> {
  const token = readTokenFile(join(daemon.home, 'token'));
  assert.ok(token !== null, 'the token file holds a token');
  const { client } = await connectWs(cleanup, { url: (path?: string) => daemon.url(path), token });
  const result = await client.callTool({ name: 'echo', arguments: { text: 'through the token file' } });
  assert.equal(textOf(result), 'through the token file');
}

/** Asserts the token file now holds a new valid private token the daemon did not print or log. */
async function assertTokenReplaced(daemon: DaemonHandle, old: Buffer): Promise<void> {
  const path = join(daemon.home, 'token');
  const token = readTokenFile(path);
  assert.ok(token !== null && isValidToken(token), `the token file holds no valid token: ${JSON.stringify(readFileSync(path, 'latin1'))}`);
  assert.notDeepEqual(readFileSync(path), old);
  assert.equal(statSync(path).mode & 0o777, 0o600, 'the token file is private');
  assert.deepEqual(
    readdirSync(daemon.home).filter((n) => n.endsWith('.tmp')),
    [],
    'no temp file left behind',
  );
  await assertTokenWorks(daemon);
  const log = readFileSync(logPath(daemon.home), 'utf8');
  assert.match(log, /token file held no usable token: replaced/, 'the replacement is logged');
  assert.ok(!log.includes(token), 'the token is in the log');
  assert.ok(!daemon.stderr().includes(token), 'the token is on stderr');
}

// ---------------------------------------------------------------------------------------------
// Unit tests over the pure parts.

// Each test has its own home and daemon on port 0 (nothing shared but this file's cleanup), so they run side
// by side: most of their time is waiting on processes and timers.
describe('files, token and pid lock', { concurrency: 3 }, () => {
  test('token check: only 16-1024 visible ASCII characters count as a token', () => {
    assert.equal(isValidToken('6mP0V0yzEpyWxwAHgfjnZgvAtH433aJVJqDG3TRFeYs'), true);
    assert.equal(isValidToken('x'.repeat(16)), true);
    assert.equal(isValidToken('x'.repeat(1024)), true);
    const long = 'x'.repeat(16);
    const bad = [
      '',
      ' ',
      'x'.repeat(15),
      'x'.repeat(1025),
      `two ${long}`,
      `tab\t${long}`,
      `nul\u0000${long}`,
      `caf\u00e9${long}`,
      '\ufffd'.repeat(20),
    ];
    for (const token of bad) {
      assert.equal(isValidToken(token), false, JSON.stringify(token));
    }
    const dir = makeHome(cleanup);
    const file = join(dir, 'token');
    assert.deepEqual(inspectTokenFile(file), { state: 'missing' });
    writeFileSync(file, '');
    assert.deepEqual(inspectTokenFile(file), { state: 'invalid', reason: 'empty' });
    writeFileSync(file, ' \n\t\n');
    assert.deepEqual(inspectTokenFile(file), { state: 'invalid', reason: 'empty' });
    writeFileSync(file, Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x41, 0x0a]));
    assert.deepEqual(inspectTokenFile(file), { state: 'invalid', reason: 'malformed' });
    assert.equal(readTokenFile(file), null, 'a shim treats a malformed file as no token');
    writeFileSync(file, '  good-token_1234567\n');
    assert.deepEqual(inspectTokenFile(file), { state: 'ok', token: 'good-token_1234567' });
    rmSync(file);
    mkdirSync(file);
    assert.equal(inspectTokenFile(file).state, 'unreadable');
  });

  test('ensureToken: creates, keeps, replaces a bad file atomically, and refuses a directory', () => {
    const dir = makeHome(cleanup);
    const file = join(dir, 'token');
    const made = ensureToken(file, undefined);
    assert.equal(made.written, 'created');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(ensureToken(file, undefined), { token: made.token, written: null }, 'a good token is kept');
    assert.deepEqual(ensureToken(file, 'from-env'), { token: 'from-env', written: null }, 'EXAI_WS_TOKEN wins and writes nothing');
    writeFileSync(file, '');
    const replaced = ensureToken(file, undefined);
    assert.equal(replaced.written, 'replaced_empty');
    assert.notEqual(replaced.token, made.token);
    assert.equal(readTokenFile(file), replaced.token);
    writeFileSync(file, 'not a token\n', { mode: 0o644 });
    const again = ensureToken(file, undefined);
    assert.equal(again.written, 'replaced_malformed');
    assert.equal(statSync(file).mode & 0o777, 0o600, 'the replacement is private');
    assert.deepEqual(
      readdirSync(dir).filter((n) => n !== 'token'),
      [],
      'no temp file left behind',
    );
    rmSync(file);
    mkdirSync(file);
    assert.throws(
      () => ensureToken(file, undefined),
      (error: unknown) => error instanceof HomeError && error.path === file,
    );
  });

  test('command-line check: the daemon title and the CLI run as `daemon` count, nothing else does', () => {
    for (const daemon of [
      'exai-ws daemon',
      'exai-ws daemon 60',
      '/usr/bin/node /usr/lib/node_modules/exai-ws/dist/src/cli.js daemon',
      'node dist/src/cli.js daemon',
      '/usr/local/bin/node /usr/local/bin/exai-ws daemon',
    ]) {
      assert.equal(isDaemonCommandLine(daemon), true, daemon);
    }
    for (const other of [
      '',
      'sleep 60',
      'node /usr/lib/node_modules/exai-ws/dist/shim.cjs',
      'node /usr/lib/node_modules/exai-ws/dist/src/cli.js shim',
      'node /usr/lib/node_modules/exai-ws/dist/src/cli.js status',
      'vim /home/me/.local/state/exai-ws/logs/ws_daemon.log',
      'my-exai-ws daemon',
      'node cli.jsx daemon',
    ]) {
      assert.equal(isDaemonCommandLine(other), false, other);
    }
  });

  test('liveness over real processes: a reused pid is stale, a daemon-looking process is live', async () => {
    const dead = spawn(process.execPath, ['-e', '']);
    await within(new Promise((resolve) => dead.once('exit', resolve)), 10_000, 'the short-lived child');
    assert.ok(dead.pid);
    assert.equal(await cardIsLive(card(dead.pid)), false, 'a dead pid');

    const sleeper = await spawnSleeper();
    assert.equal(await cardIsLive(card(sleeper.pid ?? -1)), false, 'port 0, pid reused by `sleep`');

    const titled = await spawnSleeper('exai-ws daemon');
    assert.equal(await cardIsLive(card(titled.pid ?? -1)), true, 'port 0, a process titled like a daemon');

    // The real CLI, stopped at once so it never answers: its command line is the CLI's (or its
    // title, if it got that far), so it still counts as a daemon starting.
    const home = makeHome(cleanup);
    const cli = spawn(process.execPath, [CLI, 'daemon'], {
      env: { ...baseEnv(), EXAI_WS_HOME: home, EXAI_WS_PORT: '0' },
      stdio: 'ignore',
    });
    cli.kill('SIGSTOP');
    const cliExited = new Promise((resolve) => cli.once('exit', resolve));
    cleanup.add(async () => {
      cli.kill('SIGKILL');
      await cliExited;
    });
    assert.ok(cli.pid);
    await waitFor(() => isDaemonCommandLine(processCommandLine(cli.pid ?? -1) ?? ''), 'the stopped CLI command line');
    assert.equal(await cardIsLive(card(cli.pid)), true, 'port 0, a stopped `cli.js daemon`');
    assert.equal(await cardIsLive(card(sleeper.pid ?? -1, 1)), false, 'a port that does not answer, pid reused by `sleep`');

    // A port answered by a daemon with another pid: the card's process left it, whatever it is now.
    const other = await startDaemon(cleanup);
    assert.equal(await cardIsLive(card(other.pid, other.port)), true, 'the daemon answering as itself');
    assert.equal(await cardIsLive(card(titled.pid ?? -1, other.port)), false, 'a daemon-looking pid whose port another daemon answers');

    // Where no command line can be read, a young port-0 card is trusted and an old one is not.
    const unknown = { commandLine: () => null };
    assert.equal(await cardIsLive(card(sleeper.pid ?? -1), unknown), true);
    const old = { ...card(sleeper.pid ?? -1), started_at: new Date(Date.now() - 10 * 60_000).toISOString() };
    assert.equal(await cardIsLive(old, unknown), false);
  });

  // ---------------------------------------------------------------------------------------------
  // The token file, end to end.

  test('an empty token file (a start that died on a full disk) is replaced and a client holding it connects', async () => {
    const home = makeHome(cleanup);
    writeFileSync(join(home, 'token'), '', { mode: 0o600 });
    const daemon = await startDaemon(cleanup, { home });
    await assertTokenReplaced(daemon, Buffer.alloc(0));
  });

  test('a malformed token file (binary garbage, whitespace, several words) is replaced and a client holding it connects', async () => {
    const garbage = [Buffer.from([0x00, 0xff, 0x13, 0x37, 0x80, 0x0a, 0xc3]), Buffer.from('   \n\t \n'), Buffer.from('two words\n')];
    // Three homes, three daemons, side by side.
    await Promise.all(
      garbage.map(async (old) => {
        const home = makeHome(cleanup);
        writeFileSync(join(home, 'token'), old, { mode: 0o600 });
        const daemon = await startDaemon(cleanup, { home });
        await assertTokenReplaced(daemon, old);
      }),
    );
  });

  // ---------------------------------------------------------------------------------------------
  // A home the daemon cannot use: one line, exit 73, no stack.

  /** Runs a plain `exai-ws daemon` that is expected to refuse; resolves with its exit code and stderr. */
  async function refusedStart(
    home: string,
    extra: { uid?: number; gid?: number; config?: string } = {},
  ): Promise<{ code: number | string; stderr: string }> {
    const proc = spawn(process.execPath, [CLI, 'daemon'], {
      env: { ...baseEnv(), EXAI_WS_HOME: home, EXAI_WS_PORT: '0', ...(extra.config ? { EXAI_WS_CONFIG: extra.config } : {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(extra.uid === undefined ? {} : { uid: extra.uid, gid: extra.gid }),
    });
    let stderr = '';
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    proc.stdout.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | string>((resolve) => proc.once('close', (code, signal) => resolve(code ?? signal ?? -1)));
    cleanup.add(() => proc.kill('SIGKILL'));
    const code = await within(exited, 20_000, 'the daemon to refuse');
    return { code, stderr };
  }

  function assertOneClearLine(result: { code: number | string; stderr: string }, path: string, what: RegExp): void {
    assert.equal(result.code, ExitCode.HOME, `exit code; stderr:\n${result.stderr}`);
    assert.doesNotMatch(result.stderr, STACK_LINE, 'a stack trace on stderr');
    const lines = nonEmptyLines(result.stderr);
    assert.equal(lines.length, 1, `expected one stderr line, got:\n${result.stderr}`);
    assert.ok(lines[0]?.includes(path), `the line names ${path}: ${lines[0]}`);
    assert.match(lines[0] ?? '', what);
  }

  test('a home path of the wrong type gives one clear line, exit 73 and no stack trace', async () => {
    const tokenDir = makeHome(cleanup);
    mkdirSync(join(tokenDir, 'token'));
    const pidDir = makeHome(cleanup);
    mkdirSync(pidPath(pidDir), { recursive: true });
    const logsFile = makeHome(cleanup);
    writeFileSync(join(logsFile, 'logs'), 'not a directory');
    const parent = makeHome(cleanup);
    const homeFile = join(parent, 'home');
    writeFileSync(homeFile, 'not a directory');

    // Four homes, four daemons refusing side by side.
    const [token, pid, logs, home] = await Promise.all([tokenDir, pidDir, logsFile, homeFile].map((h) => refusedStart(h)));
    assertOneClearLine(token!, join(tokenDir, 'token'), /is a directory.*token file.*remove it/);
    assertOneClearLine(pid!, pidPath(pidDir), /is a directory.*pid file.*remove it/);
    assertOneClearLine(logs!, join(logsFile, 'logs'), /is a file.*must be the logs directory.*move it away/);
    assertOneClearLine(home!, homeFile, /is a file.*home \(EXAI_WS_HOME\) must be a directory/);
    assert.equal(readFileSync(homeFile, 'utf8'), 'not a directory', 'the file is left as it was');
  });

  test('an unwritable home gives one clear line, exit 73 and no stack trace', async (t) => {
    if (process.platform === 'win32') return t.skip('no POSIX permissions');
    const parent = mkdtempSync(join(tmpdir(), 'exai-ws-test-'));
    cleanup.add(() => rmSync(parent, { recursive: true, force: true }));
    chmodSync(parent, 0o755);
    const home = join(parent, 'home');
    mkdirSync(home, { mode: 0o555 });
    chmodSync(home, 0o555);
    // Root may write anywhere: run the daemon as `nobody` so the mode counts.
    const asNobody = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const result = await refusedStart(home, { ...asNobody, config: join(parent, 'no-config.json') });
    assertOneClearLine(result, join(home, 'logs'), /no permission to write/);
  });

  // ---------------------------------------------------------------------------------------------
  // The pid lock.

  test('a port-0 card naming a live unrelated process (a reused pid) is taken over', async () => {
    const sleeper = await spawnSleeper();
    const home = makeHome(cleanup);
    writeCard(home, card(sleeper.pid ?? -1));
    const daemon = await startDaemon(cleanup, { home }); // waits for a card naming the new daemon
    assert.equal(readAddressCard(pidPath(home))?.pid, daemon.pid);
    assert.equal((await getHealth(daemon)).pid, daemon.pid);
    assert.equal(sleeper.exitCode, null, 'the unrelated process is left alone');
    assert.equal(sleeper.signalCode, null, 'the unrelated process is left alone');
    await assertTokenWorks(daemon);
  });

  // Also holds what test/lifecycle.test.ts's "a second daemon on the same home is refused, naming
  // the running one; the first keeps serving" held (merged here: one pair of daemons for both).
  test('a second daemon on the same home is refused with one line and exit 1; the first keeps running and serving', async () => {
    const first = await startDaemon(cleanup, { plain: true });
    const second = spawnDaemon(cleanup, { home: first.home, plain: true });
    const code = await within(second.exited, 20_000, 'the second daemon to exit');
    assert.equal(code, ExitCode.FAILURE);
    const lines = nonEmptyLines(second.stderr());
    assert.equal(lines.length, 1, `expected one stderr line, got:\n${second.stderr()}`);
    assert.match(lines[0] ?? '', new RegExp(`already running: pid ${first.pid} on 127\\.0\\.0\\.1:${first.port}\\b`));
    assert.equal(readAddressCard(pidPath(first.home))?.pid, first.pid, 'the card still names the first daemon');
    const health = await getHealth(first);
    assert.equal(health.status, 'ok');
    assert.equal(health.pid, first.pid);
    const { client } = await connectWs(cleanup, first);
    assert.match(textOf(await client.callTool({ name: 'version', arguments: {} })), /exai-ws/, 'the first still serves a window');
  });

  test('a port-0 card naming a live process that is an exai-ws daemon still blocks a start', async () => {
    const starting = await spawnSleeper('exai-ws daemon'); // a daemon still binding, as ps sees it
    const home = makeHome(cleanup);
    const blocking = card(starting.pid ?? -1);
    writeCard(home, blocking);
    const second = spawnDaemon(cleanup, { home });
    const code = await within(second.exited, 20_000, 'the daemon to refuse');
    assert.equal(code, ExitCode.FAILURE, second.stderr());
    const lines = nonEmptyLines(second.stderr());
    assert.equal(lines.length, 1, `expected one stderr line, got:\n${second.stderr()}`);
    assert.match(lines[0] ?? '', new RegExp(`already running: pid ${blocking.pid} \\(still starting\\)`));
    assert.deepEqual(readAddressCard(pidPath(home)), blocking, 'the card is left as it was');
  });

  /**
   * Starts `n` daemons on one home at once and waits until all but one have exited; asserts the
   * one left is running and named by the card, and returns it with the others' results.
   */
  async function raceDaemons(
    home: string,
    n: number,
  ): Promise<{ winner: DaemonHandle; losers: { code: number | string; stderr: string }[] }> {
    const racers = Array.from({ length: n }, () => spawnDaemon(cleanup, { home }));
    const codes = new Map<number, number | string>();
    racers.forEach((r, i) => void r.exited.then((code) => codes.set(i, code)));
    const report = () => racers.map((r, i) => `${String(codes.get(i) ?? 'running')}: ${r.stderr()}`).join('\n');
    await waitFor(() => codes.size >= n - 1, `all but one of ${n} daemons to exit`, 30_000).catch((error: Error) => {
      throw new Error(`${error.message}:\n${report()}`);
    });
    const running = racers.filter((_, i) => !codes.has(i));
    assert.equal(running.length, 1, `exactly one daemon must be left running:\n${report()}`);
    const win = running[0];
    assert.ok(win?.proc.pid);
    const c = await waitFor(() => {
      const now = readAddressCard(pidPath(home));
      return now && now.port > 0 ? now : null;
    }, 'the winner to publish its port');
    assert.equal(c.pid, win.proc.pid, 'the card names the daemon left running');
    const winner: DaemonHandle = {
      home,
      port: c.port,
      pid: c.pid,
      token: readFileSync(join(home, 'token'), 'utf8').trim(),
      proc: win.proc,
      clientEnv: { EXAI_WS_HOME: home },
      stderr: win.stderr,
      exited: win.exited,
      url: (path = '/ws') => `ws://127.0.0.1:${c.port}${path}`,
    };
    const losers = racers.flatMap((r, i) => (codes.has(i) ? [{ code: codes.get(i) ?? -1, stderr: r.stderr() }] : []));
    return { winner, losers };
  }

  test('daemons started at once on a fresh home: exactly one runs, and all agree on one token', async () => {
    const home = makeHome(cleanup);
    const { winner, losers } = await raceDaemons(home, 4);
    for (const loser of losers) {
      assert.equal(loser.code, ExitCode.FAILURE, loser.stderr);
      assert.match(loser.stderr, /already running/);
    }
    assert.equal((await getHealth(winner)).pid, winner.pid);
    await assertTokenWorks(winner);
  });

  test('daemons started at once over a stale card: exactly one takes it over', async () => {
    const sleeper = await spawnSleeper();
    const home = makeHome(cleanup);
    writeCard(home, card(sleeper.pid ?? -1));
    writeFileSync(join(home, 'token'), ''); // and an empty token left behind
    const { winner, losers } = await raceDaemons(home, 4);
    for (const loser of losers) {
      assert.equal(loser.code, ExitCode.FAILURE, loser.stderr);
      assert.match(loser.stderr, /already running/);
    }
    assert.equal((await getHealth(winner)).pid, winner.pid);
    assert.equal(existsSync(`${pidPath(home)}.takeover`), false, 'the takeover mutex is gone');
    await assertTokenWorks(winner);
  });

  // ---------------------------------------------------------------------------------------------
  // A real crash.

  test('an uncaught exception ends the daemon loudly: exit 70, the stack on stderr, the pid file removed', async () => {
    const daemon = await startDaemon(cleanup);
    const { client } = await connectWs(cleanup, daemon);
    // The daemon may die before or after the answer reaches the client.
    await client.callTool({ name: 'crash', arguments: {} }).catch(() => undefined);
    const code = await within(daemon.exited, 20_000, 'the crashed daemon to exit');
    assert.equal(code, ExitCode.CRASH, daemon.stderr());
    assert.match(daemon.stderr(), /daemon crashed .*fixture crash: thrown on purpose/);
    assert.match(daemon.stderr(), STACK_LINE, 'the stack is on stderr');
    assert.equal(existsSync(pidPath(daemon.home)), false, 'the pid file is removed');
    assert.match(readFileSync(logPath(daemon.home), 'utf8'), /"msg":"daemon crashed"/, 'the crash is in the log');
    // The next start is not blocked.
    const next = await startDaemon(cleanup, { home: daemon.home });
    assert.equal((await getHealth(next)).pid, next.pid);
  });

  test('on Windows a file name refused as busy (deleted while open elsewhere, a virus scanner) is retried; elsewhere it fails at once', () => {
    const busy = (times: number) => {
      let calls = 0;
      return {
        step: () => {
          calls++;
          if (calls <= times) throw Object.assign(new Error('EPERM: operation not permitted'), { code: 'EPERM' });
          return calls;
        },
        calls: () => calls,
      };
    };
    const windows = busy(3);
    assert.equal(retryBusy(windows.step, 'win32'), 4);
    const linux = busy(1);
    assert.throws(() => retryBusy(linux.step, 'linux'), /EPERM/);
    assert.equal(linux.calls(), 1);
    // Not forever: a name that stays refused fails once the retry time is over.
    const stuck = busy(Infinity);
    assert.throws(() => retryBusy(stuck.step, 'win32', 100), /EPERM/);
    assert.ok(stuck.calls() > 1);
    // Other errors are not retried.
    assert.throws(() =>
      retryBusy(() => {
        throw Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' });
      }, 'win32'),
    );
  });
});
