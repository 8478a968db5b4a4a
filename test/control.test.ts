/**
 * The control channel (daemon/web/control.ts, commands/control-client.ts): `exai-ws stop`,
 * `restart` and `reload` ask the real daemon over `POST /control/stop` and `/control/reload`
 * rather than signalling it, which is what makes them work on Windows. The daemon's log tells
 * the two apart: a stop asked is logged `stop asked` with who asked and stops with that reason
 * (a SIGTERM stops with reason 'SIGTERM'); a reload asked has reason 'exai-ws reload' (SIGHUP:
 * 'SIGHUP'). The fallback decisions (POSIX signals, a kill outright on Windows, a refused reload
 * there) are unit-tested with an injected platform and recorded process calls.
 */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { daemonSignals } from '../src/commands/daemon.js';
import {
  askReload,
  askedOf,
  fallbackNote,
  reloadFallback,
  stopDaemon,
  stopFallback,
  type AskFn,
  type Asked,
} from '../src/commands/control-client.js';
import { askerOf, UNKNOWN_ASKER } from '../src/daemon/web/control.js';
import { readAddressCard } from '../src/local/files.js';
import { Cleanup, connectShim, getHealth, logPath, readJsonLines, runCli, startDaemon, textOf, waitFor, within } from './helpers.js';
import { cliHere } from './fixtures/cli-here.js';
import { memoryEntry, processGone, startHostingDaemon, waitReady } from './fixtures/hosted-servers.js';
import { coldHome, shimEnv } from './fixtures/autostarted.js';
import { connectWs } from './fixtures/ws-client.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const linuxOnly = process.platform !== 'linux' ? 'reads /proc to tell a process gone' : false;

function pidPath(home: string): string {
  return join(home, 'logs', 'ws_daemon.pid');
}

/** The log lines of daemon `pid` with this message. */
function logged(home: string, pid: number, msg: string): Record<string, unknown>[] {
  return readJsonLines(logPath(home)).filter((l) => l.pid === pid && l.msg === msg);
}

/**
 * The lines of {@link logged} with reason `reason`, once there are at least `atLeast`: a running
 * daemon writes its log lines in the turn after the one that answered (line-file.ts batches them),
 * so a test that read the log at once could miss a line written a moment later.
 */
function loggedWithReason(home: string, pid: number, msg: string, reason: string, atLeast: number): Promise<Record<string, unknown>[]> {
  return waitFor(() => {
    const lines = logged(home, pid, msg).filter((l) => l.reason === reason);
    return lines.length >= atLeast ? lines : null;
  }, `${atLeast} '${msg}' line(s) with reason ${reason}`);
}

/** One request to the daemon with a Bearer token (or none), the daemon's own Host unless given. */
function control(
  port: number,
  path: string,
  options: { token?: string; method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: Record<string, unknown> | null }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { host: `127.0.0.1:${port}`, 'content-length': Buffer.byteLength(options.body ?? '') };
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    const req = request(
      { host: '127.0.0.1', port, path, method: options.method ?? 'POST', headers: { ...headers, ...options.headers } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => {
          let body: Record<string, unknown> | null = null;
          try {
            body = JSON.parse(text) as Record<string, unknown>;
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

function writeConfig(home: string, servers: Record<string, unknown>): void {
  writeFileSync(join(home, 'config.json'), JSON.stringify({ mcpServers: servers }, null, 2));
}

// Each test has its own home and daemon on port 0 (nothing shared but this file's cleanup), so they run side
// by side: most of their time is waiting on processes and timers.
describe('the control channel', { concurrency: 3 }, () => {
  test(
    'exai-ws stop asks over the channel: "stop asked" by exai-ws stop, a graceful stop, card removed, hosted server gone',
    { skip: linuxOnly },
    async () => {
      const daemon = await startHostingDaemon(cleanup, (home) => ({ memory: memoryEntry(home, { start: 'eager' }) }));
      const memory = await waitReady(daemon, 'memory');
      // An open window, as a shim holds it: the stop is graceful with a session attached.
      const window = await connectWs(cleanup, daemon);
      assert.match(textOf(await window.client.callTool({ name: 'version', arguments: {} })), /exai-ws/);

      const stop = await runCli(['stop'], daemon.clientEnv);
      assert.equal(stop.code, 0, stop.stderr);
      assert.equal(stop.stdout, `exai-ws: daemon ${daemon.pid} stopped\n`);
      assert.equal(stop.stderr, '', 'asked, not killed: no fallback note');
      assert.equal(await within(daemon.exited, 10_000, 'the daemon to exit'), 0);

      const asked = logged(daemon.home, daemon.pid, 'stop asked');
      assert.equal(asked.length, 1, 'one "stop asked" line');
      assert.equal(asked[0]?.by, 'exai-ws stop');
      assert.equal(asked[0]?.level, 30, 'at info');
      // The graceful shutdown, with who asked as its reason (a SIGTERM's would be 'SIGTERM').
      assert.deepEqual(
        logged(daemon.home, daemon.pid, 'daemon stopping').map((l) => l.reason),
        ['exai-ws stop'],
      );
      assert.equal(logged(daemon.home, daemon.pid, 'daemon stopped').length, 1);
      assert.equal(existsSync(pidPath(daemon.home)), false, 'the address card is removed');
      assert.ok(processGone(memory.pid), `the hosted server (pid ${memory.pid}) is gone with the daemon`);
    },
  );

  test('exai-ws reload asks over the channel: exit 0, the change applied; a broken file is refused (409) and changes nothing', async () => {
    // A list waits for memory however long its start takes on a loaded machine (the list wait is test/silent-server.test.ts's).
    const daemon = await startHostingDaemon(cleanup, (home) => ({ memory: memoryEntry(home) }), { EXAI_WS_LIST_WAIT_MS: '0' });
    // A window as a shim opens it: what a reload changes is the daemon's lists.
    const { client } = await connectWs(cleanup, daemon);
    assert.ok((await client.listTools()).tools.some((t) => t.name === 'memory__read_graph'));

    writeConfig(daemon.home, {
      memory: memoryEntry(daemon.home),
      notes: memoryEntry(daemon.home, { env: { MEMORY_FILE_PATH: join(daemon.home, 'n.jsonl') } }),
    });
    // The command in this process (test/fixtures/cli-here.ts); the failed reload below is the real CLI's.
    const reload = await cliHere(['reload'], daemon.clientEnv);
    assert.equal(reload.code, 0, reload.stderr);
    // The file watcher may have applied the edit first: then the asked reload finds it in force.
    assert.match(
      reload.stdout,
      /^exai-ws: config reloaded: (added notes; removed -; restarted -; unchanged memory|added -; removed -; restarted -; unchanged memory, notes)\n$/,
    );
    const asked = await loggedWithReason(daemon.home, daemon.pid, 'config reloaded', 'exai-ws reload', 1);
    assert.equal(asked.length, 1, 'the reload ran with reason "exai-ws reload" (a SIGHUP would say SIGHUP)');
    assert.equal(logged(daemon.home, daemon.pid, 'config reloaded').filter((l) => l.reason === 'SIGHUP').length, 0, 'no SIGHUP');
    assert.deepEqual(
      ((await getHealth(daemon)).servers ?? []).map((s) => s.name),
      ['memory', 'notes'],
    );
    await waitFor(
      async () => (await client.listTools()).tools.some((t) => t.name === 'notes__read_graph'),
      'the added server in the window',
    );

    // A broken edit: 409 with the reason; the CLI says so and exits 1; the servers stay.
    writeFileSync(join(daemon.home, 'config.json'), '{ "mcpServers": { oops');
    const direct = await control(daemon.port, '/control/reload', { token: daemon.token });
    assert.equal(direct.status, 409);
    assert.match(String(direct.body?.error), /not valid JSON/);
    const failed = await runCli(['reload'], daemon.clientEnv);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /^exai-ws: reload failed, the running servers stay as they are: .*not valid JSON/);
    const refused = await loggedWithReason(
      daemon.home,
      daemon.pid,
      'config reload failed; the running servers stay as they are',
      'exai-ws reload',
      2,
    );
    assert.equal(refused.length, 2, 'the request and the CLI, both over the channel');
    const graph = await client.callTool({ name: 'notes__read_graph', arguments: {} });
    assert.notEqual(graph.isError, true, JSON.stringify(graph));

    // Fixed: 200 with the report.
    writeConfig(daemon.home, { memory: memoryEntry(daemon.home) });
    const fixed = await control(daemon.port, '/control/reload', { token: daemon.token });
    assert.equal(fixed.status, 200);
    assert.deepEqual(Object.keys(fixed.body ?? {}).sort(), ['added', 'removed', 'restarted', 'unchanged']);
    assert.equal(daemon.proc.exitCode, null, 'the same daemon throughout');
  });

  test('the channel takes only its token: a wrong token is 401 and the daemon runs on; wrong method, Host or Origin are refused', async () => {
    const daemon = await startDaemon(cleanup);
    for (const path of ['/control/stop', '/control/reload']) {
      const wrong = await control(daemon.port, path, { token: 'not-the-token-of-this-daemon-0123', body: '{"by":"exai-ws stop"}' });
      assert.equal(wrong.status, 401, path);
      assert.equal(wrong.body?.error, 'unauthorized');
      assert.equal((await control(daemon.port, path)).status, 401, `${path} without a token`);
      assert.equal((await control(daemon.port, path, { token: daemon.token, method: 'GET' })).status, 405, `GET ${path}`);
      assert.equal(
        (await control(daemon.port, path, { token: daemon.token, headers: { host: `evil.example:${daemon.port}` } })).status,
        403,
      );
      assert.equal((await control(daemon.port, path, { token: daemon.token, headers: { origin: 'https://evil.example' } })).status, 403);
    }
    assert.equal((await control(daemon.port, '/control/frob', { token: daemon.token })).status, 404, 'anything else: as before');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(daemon.proc.exitCode, null, 'still running');
    assert.equal((await getHealth(daemon)).status, 'ok');
    assert.equal(logged(daemon.home, daemon.pid, 'stop asked').length, 0);

    // The right token: 202 with the pid, then the graceful stop; a name that is not one is 'a client'.
    const ok = await control(daemon.port, '/control/stop', { token: daemon.token, body: JSON.stringify({ by: 'x'.repeat(200) }) });
    assert.equal(ok.status, 202);
    assert.deepEqual(ok.body, { ok: true, pid: daemon.pid });
    assert.equal(await within(daemon.exited, 10_000, 'the daemon to exit'), 0);
    assert.deepEqual(
      logged(daemon.home, daemon.pid, 'stop asked').map((l) => l.by),
      [UNKNOWN_ASKER],
    );
    assert.equal(existsSync(pidPath(daemon.home)), false);
  });

  test(
    'exai-ws stop with a token the daemon does not prove: on POSIX it falls back to SIGTERM (nothing asked)',
    { skip: process.platform === 'win32' },
    async () => {
      const daemon = await startDaemon(cleanup);
      // The command in this process (test/fixtures/cli-here.ts): the real CLI's stop is the test above.
      const stop = await cliHere(['stop'], { ...daemon.clientEnv, EXAI_WS_TOKEN: 'a-token-this-daemon-never-issued' });
      assert.equal(stop.code, 0, stop.stderr);
      assert.equal(stop.stdout, `exai-ws: daemon ${daemon.pid} stopped\n`);
      assert.equal(await within(daemon.exited, 10_000, 'the daemon to exit'), 0);
      assert.equal(logged(daemon.home, daemon.pid, 'stop asked').length, 0);
      assert.deepEqual(
        logged(daemon.home, daemon.pid, 'daemon stopping').map((l) => l.reason),
        ['SIGTERM'],
      );
    },
  );

  test('Ctrl+C (SIGINT) stops the foreground daemon gracefully: drained, card removed, exit 0', async () => {
    const daemon = await startDaemon(cleanup, { plain: true });
    daemon.proc.kill('SIGINT');
    assert.equal(await within(daemon.exited, 10_000, 'the daemon to exit'), 0);
    assert.deepEqual(
      logged(daemon.home, daemon.pid, 'daemon stopping').map((l) => l.reason),
      ['SIGINT'],
    );
    assert.equal(logged(daemon.home, daemon.pid, 'daemon stopped').length, 1);
    assert.equal(existsSync(pidPath(daemon.home)), false);
  });

  test(
    'exai-ws restart with a window open: the old daemon is asked (by exai-ws restart), the window goes on with the new one',
    { skip: linuxOnly },
    async () => {
      const home = coldHome(cleanup);
      const env = shimEnv(home);
      const old = await startDaemon(cleanup, { home });
      const window = await connectShim(cleanup, old);
      assert.match(textOf(await window.client.callTool({ name: 'version', arguments: {} })), /exai-ws/);

      const restart = await runCli(['restart'], env, 60_000);
      assert.equal(restart.code, 0, restart.stderr);
      assert.equal(restart.stderr, '', 'asked, not killed');
      assert.equal(await within(old.exited, 10_000, 'the old daemon exit'), 0, 'the old daemon stopped gracefully');
      const card = readAddressCard(pidPath(home));
      assert.ok(card && card.pid !== old.pid, 'a new daemon holds the card');
      assert.match(restart.stdout, new RegExp(`daemon restarted: pid ${old.pid} -> ${card.pid} on ws://`));
      assert.deepEqual(
        logged(home, old.pid, 'stop asked').map((l) => l.by),
        ['exai-ws restart'],
      );
      assert.deepEqual(
        logged(home, old.pid, 'daemon stopping').map((l) => l.reason),
        ['exai-ws restart'],
      );
      // The same client object carries on against the new daemon.
      const version = await window.client.callTool({ name: 'version', arguments: {} }, undefined, { timeout: 30_000 });
      assert.match(textOf(version), /exai-ws/);
      await waitFor(
        async () => (await getHealth({ port: card.port, token: old.token })).sessions.attached === 1,
        'the window attached to the new daemon',
      );
    },
  );

  // ---- units: the decisions, with an injected platform and recorded calls ---------------------

  /** A recorded stop: what was asked, what was killed, which card was removed. */
  function recorder(answer: Asked) {
    const calls: string[] = [];
    let alive = true;
    const ask: AskFn = (_target, action, body) => {
      calls.push(`ask ${action} ${JSON.stringify(body)}`);
      if (answer.ok && answer.status === 202) alive = false;
      return Promise.resolve(answer);
    };
    return {
      calls,
      options: {
        ask,
        kill: (pid: number, signal: NodeJS.Signals) => {
          calls.push(`kill ${pid} ${signal}`);
          alive = false;
        },
        alive: () => alive,
        removeCard: (path: string, pid: number) => calls.push(`remove ${path} ${pid}`),
        timeoutMs: 1_000,
      },
    };
  }

  const TARGET = { pid: 4242, target: { host: '127.0.0.1', port: 1, token: 't' }, pidPath: '/h/logs/ws_daemon.pid' };
  const OLDER: Asked = { ok: false, why: 'it is older than this exai-ws and has no control channel' };

  test('stop: asked (202) means no signal and no kill, on every platform', async () => {
    for (const platform of ['linux', 'darwin', 'win32'] as const) {
      const r = recorder({ ok: true, status: 202, body: { ok: true, pid: 4242 } });
      const outcome = await stopDaemon(TARGET, { by: 'exai-ws stop', platform, ...r.options });
      assert.deepEqual(outcome, { stopped: true, how: 'asked' });
      assert.deepEqual(r.calls, ['ask stop {"by":"exai-ws stop"}'], platform);
      assert.equal(fallbackNote(outcome, 4242), '');
    }
  });

  test('stop: a daemon that cannot be asked gets SIGTERM on POSIX, a kill outright on Windows (card removed, said so)', async () => {
    for (const platform of ['linux', 'darwin'] as const) {
      const r = recorder(OLDER);
      const outcome = await stopDaemon(TARGET, { by: 'exai-ws restart', platform, ...r.options });
      assert.deepEqual(r.calls, ['ask stop {"by":"exai-ws restart"}', 'kill 4242 SIGTERM'], platform);
      assert.equal(outcome.how, 'signal');
      assert.equal(fallbackNote(outcome, 4242), '', 'a signal is the same graceful stop: nothing to say');
    }
    const r = recorder(OLDER);
    const outcome = await stopDaemon(TARGET, { by: 'exai-ws stop', platform: 'win32', ...r.options });
    assert.deepEqual(r.calls, ['ask stop {"by":"exai-ws stop"}', 'kill 4242 SIGTERM', 'remove /h/logs/ws_daemon.pid 4242']);
    assert.deepEqual(outcome, { stopped: true, how: 'killed', why: OLDER.why });
    assert.match(
      fallbackNote(outcome, 4242),
      /^exai-ws: daemon 4242 killed outright: it could not be asked \(it is older than this exai-ws/,
    );

    // Not asked at all when there is nothing to prove with; an answer other than 202 is no stop.
    const unasked = recorder(OLDER);
    const why = 'no token file';
    const silent = await stopDaemon({ ...TARGET, target: null, why }, { by: 'exai-ws stop', platform: 'win32', ...unasked.options });
    assert.deepEqual(unasked.calls, ['kill 4242 SIGTERM', 'remove /h/logs/ws_daemon.pid 4242']);
    assert.equal(silent.why, why);
    const starting = recorder({ ok: true, status: 503, body: { error: 'the daemon is starting: ask again once it runs' } });
    const late = await stopDaemon(TARGET, { by: 'exai-ws stop', platform: 'linux', ...starting.options });
    assert.equal(late.how, 'signal');
    assert.match(late.why ?? '', /HTTP 503: the daemon is starting/);
  });

  test('reload: the report, the refusal, or the fallback (SIGHUP on POSIX, a clear refusal on Windows, never kill ENOSYS)', async () => {
    const ask =
      (answer: Asked): AskFn =>
      () =>
        Promise.resolve(answer);
    const report = { added: ['a'], removed: [], restarted: [], unchanged: ['b'] };
    assert.deepEqual(await askReload(TARGET.target, ask({ ok: true, status: 200, body: report })), { kind: 'reloaded', report });
    assert.deepEqual(await askReload(TARGET.target, ask({ ok: true, status: 409, body: { error: 'not valid JSON' } })), {
      kind: 'failed',
      error: 'not valid JSON',
    });
    assert.deepEqual(await askReload(TARGET.target, ask(OLDER)), { kind: 'not_asked', why: OLDER.why });
    assert.deepEqual(reloadFallback(4242, 'x', 'linux'), { kind: 'signal', signal: 'SIGHUP' });
    assert.deepEqual(reloadFallback(4242, 'x', 'darwin'), { kind: 'signal', signal: 'SIGHUP' });
    const win = reloadFallback(4242, OLDER.why, 'win32');
    assert.equal(win.kind, 'refuse');
    assert.match(
      win.kind === 'refuse' ? win.message : '',
      /^the daemon \(pid 4242\) cannot be asked to reload \(it is older .*\), and Windows has no signal/,
    );
    assert.deepEqual(stopFallback('win32'), { kind: 'kill' });
    assert.deepEqual(stopFallback('linux'), { kind: 'signal', signal: 'SIGTERM' });
  });

  test('a proven reply as the CLI reads it: 404 and every proof failure mean "could not be asked"', () => {
    assert.deepEqual(askedOf({ ok: true, status: 202, body: null }), { ok: true, status: 202, body: null });
    assert.equal(askedOf({ ok: true, status: 404, body: null }).ok, false);
    for (const failure of ['no_token', 'unproven', 'refused', 'unreachable'] as const) {
      const asked = askedOf({ ok: false, failure, detail: 'd' });
      assert.equal(asked.ok, false, failure);
    }
  });

  test('the foreground daemon: Ctrl+C stops everywhere; on Windows Ctrl+Break and a closed console stop, and nothing reloads by signal', () => {
    assert.deepEqual(daemonSignals('linux'), { stop: ['SIGINT', 'SIGTERM'], reload: ['SIGHUP'] });
    assert.deepEqual(daemonSignals('darwin'), { stop: ['SIGINT', 'SIGTERM'], reload: ['SIGHUP'] });
    assert.deepEqual(daemonSignals('win32'), { stop: ['SIGINT', 'SIGTERM', 'SIGBREAK', 'SIGHUP'], reload: [] });
  });

  test('who asked for a stop: a short printable name, else "a client"', () => {
    assert.equal(askerOf('{"by":"exai-ws stop"}'), 'exai-ws stop');
    assert.equal(askerOf('{"by":"exai-ws restart"}'), 'exai-ws restart');
    for (const body of [null, '', 'not json', '{}', '{"by":3}', '{"by":""}', `{"by":"${'x'.repeat(65)}"}`, '{"by":"a\\nb"}', 'null']) {
      assert.equal(askerOf(body), UNKNOWN_ASKER, String(body));
    }
  });
});
