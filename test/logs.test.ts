/**
 * `exai-ws logs`: the log of a real daemon filtered by session and level, followed with `-f`
 * until Ctrl-C; the last lines read from the end (a file too big to load still answers) and
 * from the rotated generations; a missing log file named on stderr.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runLogsCommand } from '../src/commands/logs.js';
import { LogFollower } from '../src/commands/log-reader.js';
import {
  CLI,
  Cleanup,
  baseEnv,
  getHealth,
  logPath,
  makeHome,
  openSocket,
  readJsonLines,
  spawnChild,
  startDaemon,
  textOf,
  waitFor,
  within,
  type DaemonHandle,
  runCli,
} from './helpers.js';
import { connectWs } from './fixtures/ws-client.js';
import { cliHere, collected } from './fixtures/cli-here.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

function nonEmpty(text: string): string[] {
  return text.split('\n').filter((l) => l.length > 0);
}

function jsonLines(text: string): Record<string, unknown>[] {
  return nonEmpty(text).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The id of the open session whose MCP client has this name. */
async function sessionOf(daemon: DaemonHandle, client: string): Promise<string> {
  return waitFor(async () => (await getHealth(daemon)).sessions.list?.find((s) => s.client === client)?.id, `a session of ${client}`);
}

/** Calls runLogsCommand in-process with its own stdout; no colour. */
async function logsOf(
  home: string,
  options: Parameters<typeof runLogsCommand>[0],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = collected();
  const stderr = collected();
  const code = await runLogsCommand(options, { env: { EXAI_WS_HOME: home }, stdout: stdout.stream, stderr: stderr.stream });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}
// Each test has its own daemon, home and processes: they run side by side.
describe('logs', { concurrency: 4 }, () => {
  test('logs --session shows only that session; --level warn only warnings and worse; a real daemon and real sessions', async () => {
    const daemon = await startDaemon(cleanup);
    // Direct WebSocket windows: what is tested is the log and the `logs` command, not the shim.
    const mine = await connectWs(cleanup, daemon, { name: 'logs-mine' });
    await connectWs(cleanup, daemon, { name: 'logs-other' });
    assert.equal(textOf(await mine.client.callTool({ name: 'echo', arguments: { text: 'hi' } })), 'hi');
    const id = await sessionOf(daemon, 'logs-mine');
    const other = await sessionOf(daemon, 'logs-other');
    // A warning: a WebSocket with a wrong token is refused and logged.
    await assert.rejects(openSocket(cleanup, daemon, { token: 'not-the-token-0123456789' }), /HTTP 401/);
    // Waits on the file itself (a CLI process per look would cost more than the look); the
    // `logs --level warn` run below still shows the line through the command.
    await waitFor(() => readJsonLines(logPath(daemon.home)).some((l) => l.msg === 'upgrade refused'), 'the refused upgrade in the log');

    // The command's filters run here (test/fixtures/cli-here.ts); the readable lines below and the
    // missing log file are shown by the real CLI, as a user runs it.
    const json = await cliHere(['logs', '--session', id, '--json', '--lines', '0'], daemon.clientEnv);
    assert.equal(json.code, 0, json.stderr);
    const lines = jsonLines(json.stdout);
    assert.ok(lines.length >= 2, json.stdout);
    for (const line of lines) assert.equal(line.session_id, id, JSON.stringify(line));
    assert.ok(
      lines.some((l) => l.msg === 'session initialized' && l.mcp_client === 'logs-mine'),
      `the session's initialize is there: ${json.stdout}`,
    );

    // Readable lines, and the id as `status` shows it (its first 8 characters) is enough.
    const pretty = await runCli(['logs', '--session', id.slice(0, 8)], daemon.clientEnv);
    assert.equal(pretty.code, 0, pretty.stderr);
    const shown = nonEmpty(pretty.stdout);
    assert.ok(shown.length >= 2, pretty.stdout);
    for (const line of shown) {
      assert.match(line, /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] (INFO|DEBUG|WARN|ERROR): /, line);
      assert.ok(line.includes(id), `each line is the session's: ${line}`);
      assert.ok(!line.includes(other), `no line of the other session: ${line}`);
    }
    assert.equal(pretty.stdout.includes('\u001b'), false, 'no colour into a pipe');
    assert.ok(shown.some((l) => l.includes('session initialized')));

    const warn = await cliHere(['logs', '--level', 'warn', '--json', '-n', '0'], daemon.clientEnv);
    assert.equal(warn.code, 0, warn.stderr);
    const warnings = jsonLines(warn.stdout);
    assert.ok(
      warnings.some((l) => l.msg === 'upgrade refused'),
      warn.stdout,
    );
    for (const line of warnings) assert.ok(typeof line.level === 'number' && line.level >= 40, JSON.stringify(line));
    const all = jsonLines((await cliHere(['logs', '--json', '-n', '0'], daemon.clientEnv)).stdout);
    assert.ok(
      all.some((l) => l.level === 30),
      'there are info lines that --level warn left out',
    );
    const prettyWarn = await cliHere(['logs', '--level', 'WARN'], daemon.clientEnv);
    assert.match(prettyWarn.stdout, /WARN: upgrade refused/);
    assert.doesNotMatch(prettyWarn.stdout, /INFO:/);

    const bad = await cliHere(['logs', '--level', 'loud'], daemon.clientEnv);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown level 'loud'/);
  });

  test('logs -f prints a line written after it started, then Ctrl-C ends it with 0', async () => {
    const daemon = await startDaemon(cleanup);
    const follow = spawnChild(cleanup, process.execPath, [CLI, 'logs', '-f', '-n', '5'], { env: { ...baseEnv(), ...daemon.clientEnv } });
    let out = '';
    follow.proc.stdout?.on('data', (c: Buffer) => (out += c.toString()));
    await waitFor(() => out.includes('daemon started'), 'the last lines before following');
    assert.equal(out.includes('follow-probe'), false);
    await connectWs(cleanup, daemon, { name: 'follow-probe' });
    await waitFor(() => /session initialized.*"mcp_client":"follow-probe"/.test(out), 'the new session in the followed log', 10_000);
    follow.proc.kill('SIGINT');
    assert.equal(await within(follow.exited, 10_000, 'logs -f to end on SIGINT'), 0, follow.stderr());
  });

  test('logs with no log file names the path on stderr and exits 1', async () => {
    const home = makeHome(cleanup);
    const result = await runCli(['logs'], { EXAI_WS_HOME: home });
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr, `exai-ws logs: no log file at ${join(home, 'logs', 'ws_daemon.log')}\n`);
    const follow = await runCli(['logs', '-f'], { EXAI_WS_HOME: home });
    assert.equal(follow.code, 1);
  });

  /** A home whose log holds `count` numbered lines spread over `generations` rotated files and the current one. */
  function rotatedHome(count: number, generations: number): { home: string; log: string; lines: string[] } {
    const home = makeHome(cleanup);
    mkdirSync(join(home, 'logs'));
    const log = join(home, 'logs', 'ws_daemon.log');
    // Long lines with multi-byte characters, so 64 KB reads end inside lines and inside characters.
    const lines = Array.from({ length: count }, (_, i) =>
      JSON.stringify({ level: i % 7 === 0 ? 40 : 30, time: 1_700_000_000_000 + i, n: i, msg: `line ${i} ${'é✓'.repeat(i % 300)}` }),
    );
    const per = Math.ceil(count / (generations + 1));
    for (let g = generations; g >= 0; g--) {
      const start = (generations - g) * per;
      const part = lines.slice(start, start + per);
      writeFileSync(g === 0 ? log : `${log}.${g}`, part.map((l) => `${l}\n`).join(''));
    }
    return { home, log, lines };
  }

  test('--lines N: the last N, read backward across chunk and file boundaries; --lines 0: every generation, oldest first', async () => {
    const { home, lines } = rotatedHome(3000, 3);
    for (const n of [1, 50, 751, 1500, 2999, 5000]) {
      const result = await logsOf(home, { follow: false, lines: n, json: true });
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(nonEmpty(result.stdout), lines.slice(-n), `--lines ${n}`);
    }
    const every = await logsOf(home, { follow: false, lines: 0, json: true });
    assert.deepEqual(nonEmpty(every.stdout), lines);
    const defaults = await logsOf(home, { follow: false, json: true });
    assert.deepEqual(nonEmpty(defaults.stdout), lines.slice(-50), 'the last 50 by default');
    // The last N matching lines, however far back they are.
    const warnings = lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 40);
    const warn = await logsOf(home, { follow: false, lines: 300, level: 'warn', json: true });
    assert.deepEqual(nonEmpty(warn.stdout), warnings.slice(-300));
  });

  test('--lines 50 of a log too big to load answers from its end', async () => {
    const home = makeHome(cleanup);
    mkdirSync(join(home, 'logs'));
    const log = join(home, 'logs', 'ws_daemon.log');
    // 3 GiB (sparse, so it costs no disk): more than a Buffer or string can hold, so reading the
    // whole file would throw; 100 real lines at its end.
    writeFileSync(log, '');
    truncateSync(log, 3 * 1024 ** 3);
    appendFileSync(log, '\n');
    const lines = Array.from({ length: 100 }, (_, i) => JSON.stringify({ level: 30, time: i, msg: `tail ${i}` }));
    appendFileSync(log, lines.map((l) => `${l}\n`).join(''));
    const result = await logsOf(home, { follow: false, lines: 50, json: true });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(nonEmpty(result.stdout), lines.slice(-50));
  });

  test('lines that are not JSON (a crash stack) are printed as they are, minus terminal escapes; --json leaves them out', async () => {
    const home = makeHome(cleanup);
    mkdirSync(join(home, 'logs'));
    writeFileSync(
      join(home, 'logs', 'ws_daemon.log'),
      [
        JSON.stringify({ level: 30, time: '2026-11-30T12:00:00.000Z', pid: 1, session_id: 'abc', msg: 'hello \u001b[2Jthere' }),
        'Error: fixture crash',
        '    at Immediate.<anonymous> (file:///x.js:1:1)',
        JSON.stringify({
          level: 50,
          time: '2026-11-30T12:00:01.000Z',
          pid: 1,
          err: { type: 'Error', message: 'boom', stack: 'Error: boom\n    at y' },
          msg: 'failed',
        }),
        '',
      ].join('\n'),
    );
    const pretty = await logsOf(home, { follow: false });
    const text = pretty.stdout;
    assert.match(text, /\] INFO: hello \?\[2Jthere \{"session_id":"abc"\}\n/);
    assert.equal(text.includes('\u001b'), false);
    assert.match(text, /^Error: fixture crash\n {4}at Immediate\.<anonymous> \(file:\/\/\/x\.js:1:1\)$/m);
    assert.match(text, /\] ERROR: failed\n[\s\S]*Error: boom/);
    assert.doesNotMatch(text, /"pid"/);
    // A crash stack has no level: it stays under a level filter, but belongs to no session.
    assert.match((await logsOf(home, { follow: false, level: 'error' })).stdout, /^Error: fixture crash$/m);
    assert.doesNotMatch((await logsOf(home, { follow: false, session: 'abc' })).stdout, /fixture crash/);
    const json = await logsOf(home, { follow: false, json: true });
    assert.equal(nonEmpty(json.stdout).length, 2);
    for (const line of nonEmpty(json.stdout)) JSON.parse(line);
  });

  test('the follower reads across rotation and truncation, each line once, in order', async () => {
    const home = makeHome(cleanup);
    mkdirSync(join(home, 'logs'));
    const log = join(home, 'logs', 'ws_daemon.log');
    writeFileSync(log, 'old 1\nold 2\n');
    const seen: string[] = [];
    const follower = new LogFollower({ path: log, fromByte: Buffer.byteLength('old 1\nold 2\n'), online: (l) => seen.push(l), pollMs: 20 });
    cleanup.add(() => follower.close());
    follower.start();
    appendFileSync(log, 'new 1\nnew ');
    await waitFor(() => seen.includes('new 1'), 'an appended line');
    appendFileSync(log, '2\n');
    await waitFor(() => seen.includes('new 2'), 'a line finished by a later write');
    // Rotation as LineFile does it: the last lines go to the old file, which is renamed; a new one starts.
    appendFileSync(log, 'before rotation\n');
    renameSync(log, `${log}.1`);
    writeFileSync(log, 'after rotation 1\n');
    appendFileSync(log, 'after rotation 2\n');
    await waitFor(() => seen.includes('after rotation 2'), 'lines of the new file');
    // A log kept with no generations is truncated in place.
    truncateSync(log, 0);
    await new Promise((r) => setTimeout(r, 100));
    appendFileSync(log, 'after truncation\n');
    await waitFor(() => seen.includes('after truncation'), 'a line after truncation');
    follower.close();
    assert.deepEqual(seen, ['new 1', 'new 2', 'before rotation', 'after rotation 1', 'after rotation 2', 'after truncation']);
  });
});
