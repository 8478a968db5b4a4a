/**
 * `exai-ws token rotate` (src/commands/token.ts, the daemon's `POST /auth/rotate`), with real
 * processes: two windows open go on working, the old token is refused everywhere the token is
 * taken, the new one works, the token file holds it whole with mode 0600, and the windows come
 * back with it after the daemon restarts. Without a daemon it writes a new file; a token from
 * EXAI_WS_TOKEN is refused and left alone.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import WebSocket from 'ws';
import { fetchFullHealth } from '../src/local/health-client.js';
import { readAddressCard } from '../src/local/files.js';
import { Cleanup, connectShim, makeHome, runCli, spawnDaemon, startDaemon, textOf, waitFor } from './helpers.js';
import { cliHere } from './fixtures/cli-here.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

/** `POST /mcp` initialize with `Authorization: Bearer <token>`; resolves with the HTTP status. */
function mcpStatus(port: number, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'vscode-like', version: '1' } },
    });
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/mcp',
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** The status of a WebSocket upgrade with the bearer token (101: accepted). */
function upgradeStatus(port: number, token: string): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { authorization: `Bearer ${token}` } });
    ws.once('open', () => {
      ws.terminate();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => {
      ws.terminate();
      resolve(res.statusCode ?? 0);
    });
    ws.once('error', () => resolve(0));
  });
}

function tokenFile(home: string): { token: string; mode: number } {
  const path = join(home, 'token');
  return { token: readFileSync(path, 'utf8').trim(), mode: statSync(path).mode & 0o777 };
}
// Each test has its own daemon, home and processes: they run side by side.
describe('token rotation', { concurrency: true }, () => {
  test('token rotate with two windows open: both go on working, the old token is refused, the new one taken', async () => {
    const daemon = await startDaemon(cleanup);
    const old = daemon.token;
    // The windows' reconnect backoff capped at 200 ms, not 2 s (EXAI_WS_TIMER_SCALE): after the
    // restart below they come back as soon as the next daemon answers, not up to 2 s later.
    const window = (name: string) => connectShim(cleanup, daemon, { name, env: { EXAI_WS_TIMER_SCALE: '0.1' } });
    const windows = await Promise.all([window('window-a'), window('window-b')]);
    for (const { client } of windows) assert.match(textOf(await client.callTool({ name: 'version', arguments: {} })), /exai-ws/);

    const rotated = await runCli(['token', 'rotate'], daemon.clientEnv);
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.match(
      rotated.stdout,
      new RegExp(`new token written to .*token \\(mode 0600\\) and taken by the daemon \\(pid ${daemon.pid}\\) at once`),
    );
    assert.match(rotated.stdout, /entries printed by `exai-ws config` .* hold the old token: print them again/);
    assert.ok(!rotated.stdout.includes(old), 'the token is never printed');

    const file = tokenFile(daemon.home);
    assert.notEqual(file.token, old);
    assert.match(file.token, /^[A-Za-z0-9_-]{43}$/, 'the whole new token');
    assert.equal(file.mode, 0o600);
    assert.ok(!rotated.stdout.includes(file.token));

    // Open windows go on.
    for (const { client } of windows) assert.match(textOf(await client.callTool({ name: 'version', arguments: {} })), /exai-ws/);

    // The old token is refused wherever a token is taken; the new one works.
    assert.equal(await mcpStatus(daemon.port, old), 401, '/mcp with the old token');
    assert.equal(await upgradeStatus(daemon.port, old), 401, 'a WebSocket upgrade with the old token');
    assert.equal(await fetchFullHealth('127.0.0.1', daemon.port, 5_000, old), null, 'no proof for the old token');
    assert.equal(await mcpStatus(daemon.port, file.token), 200, '/mcp with the new token');
    assert.equal(await upgradeStatus(daemon.port, file.token), 101);
    const health = await fetchFullHealth('127.0.0.1', daemon.port, 5_000, file.token);
    assert.ok(health, 'the daemon proves the new token');
    const status = await cliHere(['status', '--json'], daemon.clientEnv);
    assert.equal(status.code, 0, status.stderr);

    // A new window connects with the new token; after a daemon restart the open ones come back with it.
    const third = await window('window-c');
    assert.match(textOf(await third.client.callTool({ name: 'version', arguments: {} })), /exai-ws/);
    daemon.proc.kill('SIGTERM');
    await daemon.exited;
    const next = await startDaemon(cleanup, { home: daemon.home });
    assert.equal(next.token, file.token, 'the next daemon takes the new token from the file');
    for (const { client } of windows) {
      const version = await client.callTool({ name: 'version', arguments: {} }, undefined, { timeout: 30_000 });
      assert.match(textOf(version), /exai-ws/);
    }
    await waitFor(
      async () => (await fetchFullHealth('127.0.0.1', next.port, 5_000, file.token))?.sessions.total === 3,
      'three windows back',
    );
  });

  test('token rotate with no daemon writes a new token file (0600); a token from EXAI_WS_TOKEN is refused and left alone', async () => {
    // The file, the daemon and the usage checks share nothing: they run side by side.
    const home = makeHome(cleanup);
    const withFile = async () => {
      // The command in this process (test/fixtures/cli-here.ts): the real CLI rotates beside a
      // daemon above and refuses a bad usage below.
      const fresh = await cliHere(['token', 'rotate'], { EXAI_WS_HOME: home });
      assert.equal(fresh.code, 0, fresh.stderr);
      assert.match(fresh.stdout, /no daemon runs: the next one takes it/);
      const first = tokenFile(home);
      assert.match(first.token, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(first.mode, 0o600);
      const again = await cliHere(['token', 'rotate'], { EXAI_WS_HOME: home });
      assert.equal(again.code, 0, again.stderr);
      assert.notEqual(tokenFile(home).token, first.token);

      const before = tokenFile(home).token;
      const fromEnv = await cliHere(['token', 'rotate'], { EXAI_WS_HOME: home, EXAI_WS_TOKEN: 'a-token-from-the-environment-0123' });
      assert.equal(fromEnv.code, 1);
      assert.match(
        fromEnv.stderr,
        /^exai-ws token rotate: the token in use comes from EXAI_WS_TOKEN, not from the token file: change it where/,
      );
      assert.equal(tokenFile(home).token, before, 'the file is left alone');
    };
    const withDaemon = async () => {
      // The daemon refuses too when its own token comes from its environment.
      // (no token file: startDaemon would read one)
      const spawned = spawnDaemon(cleanup, { env: { EXAI_WS_TOKEN: 'the-daemons-env-token-0123456789' } });
      const envDaemon = await waitFor(
        () => {
          const card = readAddressCard(join(spawned.home, 'logs', 'ws_daemon.pid'));
          return card && card.port > 0 ? card : null;
          // Generous, for a loaded machine (a bound, not a wait), as startDaemon's.
        },
        'the daemon address card',
        30_000,
      );
      const refused = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port: envDaemon.port,
            path: '/auth/rotate',
            method: 'POST',
            headers: { authorization: 'Bearer the-daemons-env-token-0123456789', 'content-length': 0 },
          },
          (res) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += c.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end();
      });
      assert.equal(refused.status, 409);
      assert.match(refused.body, /EXAI_WS_TOKEN/);
      assert.equal(await mcpStatus(envDaemon.port, 'the-daemons-env-token-0123456789'), 200, 'and keeps its token');
    };
    const usageChecks = async () => {
      const usage = await runCli(['token'], { EXAI_WS_HOME: home });
      assert.equal(usage.code, 2);
      assert.match(usage.stderr, /exai-ws token: which action\?\nusage: exai-ws token rotate/);
      assert.equal((await cliHere(['token', 'frob'], { EXAI_WS_HOME: home })).code, 2);
    };
    await Promise.all([withFile(), withDaemon(), usageChecks()]);
  });
});
