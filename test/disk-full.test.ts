/**
 * Logging can never stop the daemon: a full disk under EXAI_WS_HOME (a real 512 KiB tmpfs),
 * a broken stderr, or a log call with an object that cannot be serialised costs log lines
 * (counted in /health), never the service; writing resumes once space is freed, and log and
 * metrics files rotate by size so a long-lived daemon cannot fill a disk by itself.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { LineFile, RETRY_MS } from '../src/daemon/files/line-file.js';
import { createLogger } from '../src/daemon/files/logger.js';
import {
  Cleanup,
  connectShim,
  getHealth,
  logPath,
  makeHome,
  metricsPath,
  openSocket,
  readJsonLines,
  sendHello,
  startDaemon,
  textOf,
  waitFor,
  within,
  type DaemonHandle,
} from './helpers.js';
import { cliHere } from './fixtures/cli-here.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

/** CAP_SYS_ADMIN, which `mount` needs, in this process's effective capabilities. */
function canMount(): boolean {
  const line = readFileSync('/proc/self/status', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('CapEff:'));
  return line !== undefined && (BigInt(`0x${line.slice(7).trim()}`) & (1n << 21n)) !== 0n;
}

const mountSkip =
  process.platform !== 'linux'
    ? 'tmpfs mounts need Linux'
    : process.getuid?.() !== 0 || !canMount()
      ? 'this environment cannot mount (not root, or no CAP_SYS_ADMIN)'
      : false;
if (mountSkip) process.stderr.write(`disk-full.test: skipping the tmpfs test: ${mountSkip}\n`);

/** Mounts a small tmpfs; unmounted (lazily if busy) at cleanup. A failing mount fails the test. */
function mountTmpfs(sizeKb: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'exai-ws-diskfull-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKb}k,mode=0700`, 'tmpfs', dir], { stdio: 'pipe' });
  cleanup.add(() => {
    try {
      execFileSync('umount', [dir], { stdio: 'pipe' });
    } catch {
      execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
    }
  });
  return dir;
}

/** Writes a filler file until the disk says ENOSPC; returns its path. */
function fillDisk(dir: string): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'a');
  try {
    for (const size of [64 * 1024, 1024, 1]) {
      const chunk = Buffer.alloc(size, 0x2e);
      for (;;) {
        try {
          writeSync(fd, chunk);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
          break;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

/** One whole client: a real shim under the SDK client, initialize, a `version` call, close. */
async function useOnce(daemon: DaemonHandle): Promise<void> {
  const { client } = await within(connectShim(cleanup, daemon), 15_000, 'a shim session on a full disk');
  const result = await within(client.callTool({ name: 'version', arguments: {} }), 10_000, 'the version tool');
  assert.match(textOf(result), /exai-ws/);
  await client.close();
}
/**
 * A session with no shim: a raw WebSocket says hello (answered at once) and closes; the daemon
 * logs its opening and closing. Used where the test needs log lines written, not a whole client.
 */
async function rawSession(daemon: DaemonHandle): Promise<void> {
  const ws = await openSocket(cleanup, daemon);
  assert.equal((await sendHello(ws)).ok, true);
  await new Promise<void>((resolve) => {
    ws.once('close', () => resolve());
    ws.close(1000);
  });
}

// Each test (or describe) has its own daemon, home and processes: they run side by side.
describe('a full disk', { concurrency: true }, () => {
  test(
    'a full disk drops and counts log lines while the daemon keeps serving; writing resumes when space is freed',
    { skip: mountSkip },
    async () => {
      const home = mountTmpfs(512);
      const daemon = await startDaemon(cleanup, { home, env: { EXAI_WS_METRICS_INTERVAL_MS: '200' } });
      await useOnce(daemon);
      const filler = fillDisk(home);

      // New sessions keep working while lines are being dropped (the first lines may still fit in
      // the log file's last page): raw sessions (hello, close) until both files drop lines, then a
      // whole client (a shim, initialize, a call) once they do. A shim per round was a process
      // start per round for log lines a raw session writes as well.
      // Bounded by time as well as count: the metrics file is written every 200 ms whatever the
      // sessions do, and 40 quick rounds could end before its first write on the full disk.
      const deadline = Date.now() + 15_000;
      for (let i = 0; i < 400 && Date.now() < deadline; i++) {
        await rawSession(daemon);
        const health = await getHealth(daemon);
        if ((health.log?.dropped_lines ?? 0) > 0 && (health.metrics_file?.dropped_lines ?? 0) > 0) break;
      }
      await useOnce(daemon);
      const full = await getHealth(daemon);
      assert.equal(full.status, 'ok');
      assert.ok(full.log && full.log.dropped_lines > 0, `log lines dropped on a full disk: ${JSON.stringify(full.log)}`);
      assert.equal(full.log.last_error?.code, 'ENOSPC');
      assert.ok(full.metrics_file && full.metrics_file.dropped_lines > 0, `metrics lines dropped: ${JSON.stringify(full.metrics_file)}`);
      // A raw client still gets its hello_ack at once (the reported hang: accepted TCP, no ack).
      const ws = await openSocket(cleanup, daemon);
      assert.equal((await sendHello(ws)).ok, true);
      ws.close(1000);
      // And `exai-ws status` tells the user why the log stopped growing.
      // The command in this process (test/fixtures/cli-here.ts): what it prints is the point, not its process.
      const status = await cliHere(['status'], daemon.clientEnv);
      assert.equal(status.code, 0, status.stderr);
      assert.match(
        status.stdout,
        /^ {2}log +(not writable, retried every second|writable again): [1-9]\d* lines dropped \(last error ENOSPC at /m,
      );

      rmSync(filler);
      const sizeBefore = statSync(logPath(home)).size;
      // Raw sessions write the lines that show it (a whole client follows below).
      // The line that says so is written with the next batch after the first that fits: wait for it too.
      const resumedLine = () => readJsonLines(logPath(home)).some((l) => l.msg === 'log file writable again; lines were dropped meanwhile');
      await waitFor(
        async () => {
          await rawSession(daemon);
          return statSync(logPath(home)).size > sizeBefore && resumedLine();
        },
        'the log file to grow again after space was freed, saying so',
        20_000,
        RETRY_MS / 4,
      );
      // A line torn by the full disk was cut off: the file is still valid JSONL.
      const lines = readJsonLines(logPath(home));
      const resumed = lines.find((l) => l.msg === 'log file writable again; lines were dropped meanwhile');
      assert.ok(resumed && (resumed.dropped_lines as number) > 0, 'the log says how many lines it lost');
      await useOnce(daemon);
      const after = readJsonLines(logPath(home));
      const at = after.findIndex((l) => l.msg === resumed.msg);
      assert.ok(
        after.slice(at + 1).some((l) => l.msg === 'session opened'),
        'sessions are logged again',
      );
      await waitFor(async () => (await getHealth(daemon)).metrics_file?.failing === false, 'the metrics file to be written again', 10_000);
      assert.doesNotThrow(() => readJsonLines(metricsPath(home)));

      // The final flush at shutdown must neither hang nor throw on a full disk.
      const filler2 = fillDisk(home);
      await useOnce(daemon);
      daemon.proc.kill('SIGTERM');
      assert.equal(await within(daemon.exited, 15_000, 'the daemon to stop on a full disk'), 0);
      assert.equal(existsSync(join(home, 'logs', 'ws_daemon.pid')), false, 'the pid file is removed on a clean stop');
      rmSync(filler2);
    },
  );

  // One daemon for these two, one after the other: its log and metrics files rotate at a few KB
  // (what the first test is about), and the second then breaks its stderr, which nothing in the
  // first reads. The second reads every kept log generation: its lines may straddle a rotation.
  describe('a daemon with small log files', { concurrency: 1 }, () => {
    const maxBytes = 4096;
    let daemon: Promise<DaemonHandle> | undefined;
    const shared = () =>
      (daemon ??= startDaemon(cleanup, {
        env: {
          EXAI_WS_LOG_MAX_BYTES: String(maxBytes),
          EXAI_WS_LOG_FILES: '2',
          EXAI_WS_METRICS_MAX_BYTES: String(maxBytes),
          EXAI_WS_METRICS_FILES: '1',
          EXAI_WS_METRICS_INTERVAL_MS: '100',
        },
      }));

    test('log and metrics files rotate by size and keep only the configured generations', async () => {
      const daemon = await shared();
      // Each session opened and closed logs two lines of about 250 bytes.
      for (let i = 0; i < 80; i++) await rawSession(daemon);
      const health = await waitFor(
        async () => {
          const h = await getHealth(daemon);
          return (h.log?.rotations ?? 0) >= 4 && (h.metrics_file?.rotations ?? 0) >= 2 ? h : null;
        },
        'several rotations of both files',
        20_000,
      );
      assert.equal(health.log?.dropped_lines, 0);
      const logs = join(daemon.home, 'logs');
      for (const [name, kept] of [
        ['ws_daemon.log', 2],
        ['metrics.jsonl', 1],
      ] as const) {
        const generations = [name, ...Array.from({ length: kept }, (_, i) => `${name}.${i + 1}`)];
        for (const file of generations) {
          assert.ok(existsSync(join(logs, file)), `${file} exists`);
          const size = statSync(join(logs, file)).size;
          assert.ok(size <= maxBytes, `${file} is ${size} bytes, over ${maxBytes}`);
          assert.doesNotThrow(() => readJsonLines(join(logs, file)), `${file} holds whole JSON lines`);
        }
        assert.equal(existsSync(join(logs, `${name}.${kept + 1}`)), false, `no more than ${kept} rotated ${name} files`);
      }
      // The newest lines are in the current file, the older in .1.
      const current = readJsonLines(join(logs, 'ws_daemon.log'));
      const older = readJsonLines(join(logs, 'ws_daemon.log.1'));
      assert.ok(String(older.at(-1)?.time) <= String(current[0]?.time));
    });

    test('a broken stderr (reader gone) does not stop the daemon; its dropped copies are counted', async () => {
      const daemon = await shared();
      daemon.proc.stderr?.destroy();
      // A refused upgrade logs a warning, which is copied to stderr.
      for (let i = 0; i < 5; i++) {
        await assert.rejects(openSocket(cleanup, daemon, { token: 'wrong-token-wrong-token' }), /HTTP 401/);
      }
      await useOnce(daemon);
      const health = await getHealth(daemon);
      assert.ok((health.log?.stderr_dropped_lines ?? 0) >= 5, `stderr copies dropped: ${JSON.stringify(health.log)}`);
      assert.equal(health.log?.dropped_lines, 0, 'the log file still takes every line');
      // Every generation the rotation keeps: this daemon's log files are small (the test before).
      const logs = join(daemon.home, 'logs');
      const refused = ['ws_daemon.log.2', 'ws_daemon.log.1', 'ws_daemon.log']
        .filter((name) => existsSync(join(logs, name)))
        .flatMap((name) => readJsonLines(join(logs, name)))
        .filter((l) => l.msg === 'upgrade refused');
      assert.equal(refused.length, 5);
    });
  });

  test('a log call never throws into its caller, whatever it is given', () => {
    const home = makeHome(cleanup);
    const path = join(home, 'unit.log');
    const { logger, close, stats } = createLogger({ path, maxBytes: 64 * 1024, files: 1 }, 'info', -1);
    const circular: Record<string, unknown> = { name: 'loop' };
    circular.self = circular;
    const hostile = {
      get boom(): string {
        throw new Error('getter exploded');
      },
    };
    // Deep enough that JSON.stringify overflows the stack; pino then falls back to its depth limit.
    let deep: Record<string, unknown> = {};
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    assert.doesNotThrow(() => logger.info(hostile, 'hostile object'));
    assert.doesNotThrow(() => logger.info({ toJSON: () => ({ big: 10n }) }, 'bigint inside toJSON'));
    assert.doesNotThrow(() => logger.info({ circular, deep }, 'shapes'));
    // stderr is a bad descriptor here: warnings lose their copy, not their line.
    assert.doesNotThrow(() => logger.error({ n: 1 }, 'error with no stderr'));
    close();
    const lines = readJsonLines(path);
    assert.ok(lines.some((l) => l.msg === 'hostile object' && typeof l.log_error === 'string'));
    const shapes = lines.find((l) => l.msg === 'shapes');
    assert.ok(shapes && JSON.stringify(shapes.deep).length < 1000, 'a very deep object is cut at the depth limit');
    assert.ok(lines.some((l) => l.msg === 'error with no stderr'));
    assert.ok(stats().unserializable_calls >= 1);
    assert.equal(stats().stderr_dropped_lines, 1);
  });

  test('an unwritable log file drops and counts lines, then resumes by itself', async () => {
    const home = makeHome(cleanup);
    const path = join(home, 'blocked.log');
    // A directory where the file should be: every open fails (EISDIR), as a bad mount or permissions would.
    mkdirSync(path);
    const failures: string[] = [];
    let resumedAfter = -1;
    const file = new LineFile({
      path,
      maxBytes: 1024,
      files: 1,
      onfail: (error) => failures.push(error.code ?? ''),
      onresume: (dropped) => (resumedAfter = dropped),
    });
    cleanup.add(() => file.close());
    for (let i = 0; i < 10; i++) assert.doesNotThrow(() => file.write(JSON.stringify({ i })));
    file.flushSync();
    assert.equal(file.stats().dropped_lines, 10);
    assert.equal(file.stats().failing, true);
    assert.deepEqual(failures, ['EISDIR'], 'the failure is told once, not once per line');
    rmSync(path, { recursive: true });
    await waitFor(
      () => {
        file.write(JSON.stringify({ later: true }));
        file.flushSync();
        return !file.stats().failing;
      },
      'writing to resume',
      RETRY_MS * 5,
      RETRY_MS / 5,
    );
    assert.ok(resumedAfter >= 0);
    assert.deepEqual(readJsonLines(path).at(-1), { later: true });
    assert.ok(file.stats().written_lines >= 1);
  });
});
