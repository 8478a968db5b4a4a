/**
 * A daemon of their own for every user, with zero configuration (issue 20): when the port a
 * daemon would listen on is held by someone else, it takes a port of its own and keeps it.
 * Unit tests of the port choice (own-port.ts), then two homes on one machine, neither setting a
 * port, whose default port (moved with EXAI_WS_TEST_DEFAULT_PORT, so that no test binds 8765)
 * the first one's daemon holds: real auto-starting shims under the SDK client, the real CLI.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { runClientSetupCommand } from '../src/commands/client-setup.js';
import { fetchFullHealth } from '../src/local/health-client.js';
import { OWN_PORT_MIN, OWN_PORT_SPAN, OWN_PORT_TRIES, bindFirst, ownPort, portCandidates } from '../src/daemon/files/own-port.js';
import { readAddressCard, readTokenFile } from '../src/local/files.js';
import { coldHome, healthOf, shimEnv } from './fixtures/autostarted.js';
import {
  Cleanup,
  baseEnv,
  closedPort,
  connectShim,
  getHealth,
  logPath,
  makeHome,
  readJsonLines,
  runCli,
  startDaemon,
  textOf,
  waitFor,
  type ShimClient,
} from './helpers.js';
import type { HealthReport } from '../src/local/health.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

// ---- the port choice ---------------------------------------------------------------------
// Each test has its own daemon, home and processes: they run side by side.
describe('own port', { concurrency: true }, () => {
  test('a port of the home own: stable for a user and home, in 20000-31999, different for other homes and users', () => {
    const home = '/home/ada/.local/state/exai-ws';
    const port = ownPort(1000, home, 0);
    assert.equal(ownPort(1000, home, 0), port, 'the same port at every start');
    const ports = new Set<number>();
    for (let i = 0; i < 200; i++) {
      for (const uid of [1000, 1001]) {
        const p = ownPort(uid, `/home/user${i}/.local/state/exai-ws`, 0);
        assert.ok(
          p >= OWN_PORT_MIN && p < OWN_PORT_MIN + OWN_PORT_SPAN && p < 32768,
          `${p} is above the well-known and below the ephemeral ports`,
        );
        ports.add(p);
      }
    }
    assert.ok(ports.size > 370, `400 homes spread over many ports (${ports.size})`);
    assert.notEqual(ownPort(1001, home, 0), port, 'another user, another port');
    assert.notEqual(ownPort(1000, home, 1), port, 'the next attempt, another port');
  });

  test('the ports tried: a shell EXAI_WS_PORT alone; else the configured one, the remembered one, the derived ones, then any', () => {
    const base = { uid: 1000, home: '/h' };
    const derived = Array.from({ length: OWN_PORT_TRIES }, (_, i) => ownPort(1000, '/h', i));
    assert.deepEqual(
      portCandidates({ ...base, port: 9000, source: 'env', statePort: 23456 }),
      [9000],
      'by hand in a shell: that port or a refusal',
    );
    assert.deepEqual(portCandidates({ ...base, port: 0, source: 'file' }), [0]);
    assert.deepEqual(portCandidates({ ...base, port: 8765, source: 'default' }), [8765, ...derived, 0]);
    assert.deepEqual(portCandidates({ ...base, port: 23456, source: 'state', statePort: 23456 }), [23456, ...derived, 0]);
    assert.deepEqual(
      portCandidates({ ...base, port: 9000, source: 'file', statePort: derived[0] }),
      [9000, ...derived, 0],
      'the remembered port (one of its own) right after the settings file one, never twice',
    );
    assert.deepEqual(portCandidates({ ...base, port: 9000, source: 'file', statePort: 23456 }), [9000, 23456, ...derived, 0]);
  });

  function errno(code: string): NodeJS.ErrnoException {
    return Object.assign(new Error(`listen ${code}`), { code, syscall: 'listen' });
  }

  /** A listen that fails with the given code for the given ports, and binds any other (0 as 40000). */
  function fakeListen(failing: Record<number, string>): { listen: (port: number) => Promise<number>; tried: number[] } {
    const tried: number[] = [];
    return {
      tried,
      listen: (port) => {
        tried.push(port);
        const code = failing[port];
        return code ? Promise.reject(errno(code)) : Promise.resolve(port === 0 ? 40000 : port);
      },
    };
  }

  test('binding: held ports are passed over in order, and named; other errors and the last candidate fail the start', async () => {
    const all = fakeListen({});
    assert.deepEqual(await bindFirst([8765, 21000, 0], all.listen), { port: 8765, held: [] });
    assert.deepEqual(all.tried, [8765], 'a free configured port: nothing else is tried');

    const held = fakeListen({ 8765: 'EADDRINUSE', 21000: 'EADDRINUSE', 22000: 'EACCES' });
    assert.deepEqual(await bindFirst([8765, 21000, 22000, 23000, 0], held.listen), { port: 23000, held: [8765, 21000, 22000] });

    const everything = fakeListen({ 8765: 'EADDRINUSE', 21000: 'EADDRINUSE' });
    assert.deepEqual(await bindFirst([8765, 21000, 0], everything.listen), { port: 40000, held: [8765, 21000] });

    await assert.rejects(
      bindFirst([8765], fakeListen({ 8765: 'EADDRINUSE' }).listen),
      /EADDRINUSE/,
      'a single candidate (EXAI_WS_PORT by hand) is a refusal',
    );
    await assert.rejects(
      bindFirst([80, 21000, 0], fakeListen({ 80: 'EACCES' }).listen),
      /EACCES/,
      'the configured port not allowed: an error, not a move',
    );
    await assert.rejects(bindFirst([8765, 21000, 0], fakeListen({ 8765: 'EADDRNOTAVAIL' }).listen), /EADDRNOTAVAIL/);
  });

  // ---- two homes on one machine --------------------------------------------------------------

  /** A loopback port nobody listens on now: the test's default port. */
  async function freePort(): Promise<number> {
    return closedPort();
  }

  /**
   * The environment of an auto-starting shim on `home` whose user set no port anywhere: the
   * settings file holds the idle exit only, and the default port is moved to `defaultPort`.
   */
  function noPortEnv(home: string, defaultPort: number): Record<string, string> {
    const env = shimEnv(home, { EXAI_WS_TEST_DEFAULT_PORT: String(defaultPort) });
    writeFileSync(env.EXAI_WS_SETTINGS as string, 'EXAI_WS_IDLE_EXIT_MS=120000\n', { mode: 0o600 });
    return env;
  }

  function state(home: string): { port?: number; url_port?: number } {
    return JSON.parse(readFileSync(join(home, 'state.json'), 'utf8')) as { port?: number; url_port?: number };
  }

  function cardOf(home: string): { pid: number; port: number } {
    const card = readAddressCard(join(home, 'logs', 'ws_daemon.pid'));
    assert.ok(card && card.port > 0, `an address card with a port in ${home}`);
    return card;
  }

  async function versionPid(window: ShimClient): Promise<number> {
    const result = await window.client.callTool({ name: 'version', arguments: {} });
    return (JSON.parse(textOf(result)) as { pid: number }).pid;
  }

  function clients(health: HealthReport): string[] {
    return (health.sessions.list ?? []).map((s) => s.client);
  }

  /** The port of the VS Code URL entry `exai-ws config vscode` prints for `env`. */
  async function printedPort(env: Record<string, string>): Promise<{ port: number; stdout: string }> {
    // The command's own function in this process, as the CLI would run it with `env` (no process
    // of about 0.35 s of CPU each: the CLI itself is test/client-setup.test.ts's).
    const out = { code: 0, stdout: '', stderr: '' };
    out.code = await runClientSetupCommand(['vscode'], {
      env: { ...baseEnv(), ...env },
      stdout: { write: (text: string) => (out.stdout += text) },
      stderr: { write: (text: string) => (out.stderr += text) },
    });
    assert.equal(out.code, 0, out.stderr);
    const url = /"url": "http:\/\/127\.0\.0\.1:(\d+)\/mcp"/.exec(out.stdout);
    assert.ok(url, out.stdout);
    return { port: Number(url[1]), stdout: out.stdout };
  }

  test('two homes, no port set anywhere, the default held by the first one: each gets a daemon of its own, and keeps its port', async () => {
    const defaultPort = await freePort();
    const homeA = coldHome(cleanup);
    const homeB = coldHome(cleanup);
    const envA = noPortEnv(homeA, defaultPort);
    const envB = noPortEnv(homeB, defaultPort);

    // The first user's window starts a daemon on the default port, and it is remembered.
    const windowA = await connectShim(cleanup, { clientEnv: envA }, { name: 'window-of-A' });
    assert.equal(cardOf(homeA).port, defaultPort, 'the first daemon listens on the default port');
    assert.equal(state(homeA).port, defaultPort, 'state.json keeps the port the daemon listened on');

    // The second user prints a URL entry before their daemon ever ran: it names the default port,
    // which the first user's daemon holds.
    const before = await printedPort(envB);
    assert.equal(before.port, defaultPort);
    assert.match(before.stdout, new RegExp(`port ${defaultPort}: the default \\(no daemon runs now`));
    assert.equal(state(homeB).url_port, defaultPort, 'config remembers the port its URL entry names');

    // The second user's window finds the first user's daemon on the default port, is refused
    // there, and starts a daemon of its own on another port.
    const windowB = await connectShim(cleanup, { clientEnv: envB }, { name: 'window-of-B' });
    const cardB = cardOf(homeB);
    assert.notEqual(cardB.port, defaultPort, 'the second daemon listens on a port of its own');
    assert.equal(state(homeB).port, cardB.port, 'and keeps it in state.json');
    const moved = readJsonLines(logPath(homeB)).filter((line) => String(line.msg).includes('held by another program'));
    assert.equal(moved.length, 1, 'the log says why once');
    assert.equal(moved[0]?.msg, `port ${defaultPort} is held by another program; this daemon listens on ${cardB.port}, kept in state.json`);

    // Both keep working, each on its own daemon.
    assert.equal(await versionPid(windowA), cardOf(homeA).pid);
    assert.equal(await versionPid(windowB), cardB.pid);
    assert.notEqual(cardOf(homeA).pid, cardB.pid);

    // Neither sees the other's sessions; neither token opens the other's full report.
    const healthA = await healthOf(homeA);
    const healthB = await healthOf(homeB);
    assert.deepEqual(clients(healthA), ['window-of-A']);
    assert.deepEqual(clients(healthB), ['window-of-B']);
    const tokenA = readTokenFile(join(homeA, 'token'));
    const tokenB = readTokenFile(join(homeB, 'token'));
    assert.ok(tokenA && tokenB && tokenA !== tokenB, 'two tokens');
    assert.equal(await fetchFullHealth('127.0.0.1', defaultPort, 5_000, tokenB), null, "B's token opens nothing of A's daemon");
    assert.equal(await fetchFullHealth('127.0.0.1', cardB.port, 5_000, tokenA), null, "A's token opens nothing of B's daemon");

    // The entry B printed names the port A's daemon holds: B's daemon says so, once, until printed again.
    const warning = (healthB.warnings ?? []).filter((w) => w.includes('URL entries'));
    assert.equal(warning.length, 1, JSON.stringify(healthB.warnings));
    assert.match(
      warning[0] as string,
      new RegExp(`port ${defaultPort}, which another program holds now: this daemon listens on ${cardB.port}`),
    );
    assert.match(warning[0] as string, /exai-ws config CLIENT/);
    assert.deepEqual(
      (healthA.warnings ?? []).filter((w) => w.includes('URL entries')),
      [],
      'A printed nothing: no warning',
    );

    // `exai-ws config vscode` of each names its own daemon's port.
    const [printedA, printedB] = await Promise.all([printedPort(envA), printedPort(envB)]);
    assert.equal(printedA.port, defaultPort);
    assert.equal(printedB.port, cardB.port);
    assert.match(printedB.stdout, new RegExp(`port ${cardB.port}: the running daemon's \\(pid ${cardB.pid}`));
    assert.equal(state(homeB).url_port, cardB.port);

    // The second daemon restarts on the same port, and the printed entries now match it: no warning.
    const restart = await runCli(['restart'], envB);
    assert.equal(restart.code, 0, restart.stderr);
    const restarted = await waitFor(() => {
      const card = readAddressCard(join(homeB, 'logs', 'ws_daemon.pid'));
      return card && card.port > 0 && card.pid !== cardB.pid ? card : null;
    }, 'the restarted daemon of B');
    assert.equal(restarted.port, cardB.port, 'the same port after a restart');
    const afterRestart = await healthOf(homeB);
    assert.deepEqual(
      (afterRestart.warnings ?? []).filter((w) => w.includes('URL entries')),
      [],
      JSON.stringify(afterRestart.warnings),
    );
    // The open window follows its daemon to the new process; A's goes on as it was.
    assert.equal(
      await waitFor(async () => versionPid(windowB).catch(() => null), 'B window on the restarted daemon', 15_000, 200),
      restarted.pid,
    );
    assert.equal(await versionPid(windowA), cardOf(homeA).pid);
    assert.equal((await printedPort(envB)).port, cardB.port);
  });

  test('by hand with no port set, the default held by any program: a port of its own; a state.json that cannot be written is a warning, not a failed start', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    cleanup.add(() => new Promise((resolve) => blocker.close(resolve)));
    const held = (blocker.address() as AddressInfo).port;
    const home = makeHome(cleanup);
    mkdirSync(join(home, 'state.json'));
    // No EXAI_WS_PORT in the daemon's shell (the helper's 0 unset): the moved default applies.
    const daemon = await startDaemon(cleanup, { home, env: { EXAI_WS_PORT: '', EXAI_WS_TEST_DEFAULT_PORT: String(held) } });
    assert.notEqual(daemon.port, held);
    const health = await getHealth(daemon);
    assert.equal(health.status, 'ok');
    const warnings = (health.warnings ?? []).filter((w) => w.includes('cannot keep'));
    assert.equal(warnings.length, 1, JSON.stringify(health.warnings));
    assert.match(warnings[0] as string, new RegExp(`cannot keep this daemon's port ${daemon.port} in .*state\\.json`));
  });
});
