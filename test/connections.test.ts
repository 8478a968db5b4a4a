/**
 * Unit tests of the connection guard (connections.ts), without processes or sockets: the
 * unauthenticated bound drops the oldest first, the descriptor reserve drops or refuses, a
 * spell of drops is logged once. And the spawn failure path of ChildTransport: a command that
 * does not exist, arguments too large, and a real EMFILE (a process under a low descriptor
 * limit that used them all) reject start() with a SpawnError naming the code, never a throw.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  ConnectionGuard,
  parseOpenFilesLimit,
  procDescriptors,
  type ConnectionRejectReason,
  type DescriptorProbe,
} from '../src/daemon/web/connections.js';
import { ChildTransport, SpawnError } from '../src/hosting/child-transport.js';
import { ROOT } from './helpers.js';

class FakeSocket extends EventEmitter {
  destroyed = false;
  constructor(readonly name: string) {
    super();
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    queueMicrotask(() => this.emit('close'));
  }
}

function makeGuard(options: { max?: number; reserve?: number; probe?: DescriptorProbe } = {}) {
  const rejects: ConnectionRejectReason[] = [];
  const logs: { level: string; message: string; details: Record<string, unknown> }[] = [];
  const guard = new ConnectionGuard({
    maxUnauthenticated: options.max ?? 3,
    fdReserve: options.reserve ?? 10,
    descriptors: options.probe ?? { limit: () => undefined, inUse: () => undefined },
    reject: (reason) => rejects.push(reason),
    log: (level, details, message) => logs.push({ level, message, details }),
    now: () => 0,
  });
  return { guard, rejects, logs };
}

test('past the unauthenticated bound the oldest unauthenticated connection is dropped, authenticated ones never', () => {
  const { guard, rejects, logs } = makeGuard({ max: 3 });
  const sockets = Array.from({ length: 6 }, (_, i) => new FakeSocket(`s${i}`));
  guard.admit(sockets[0]!);
  guard.authenticate(sockets[0]!); // a window: its hello was accepted
  for (const socket of sockets.slice(1)) guard.admit(socket);
  assert.deepEqual(
    sockets.map((s) => s.destroyed),
    [false, true, true, false, false, false],
    'the two oldest unauthenticated ones went, the authenticated one stayed',
  );
  assert.deepEqual(rejects, ['unauthenticated_limit', 'unauthenticated_limit']);
  assert.deepEqual(guard.counts, { open: 4, unauthenticated: 3 });
  assert.equal(logs.filter((l) => l.level === 'warn').length, 1, 'one warning for the spell, not one per drop');
  guard.close();
});

test('a connection that authenticates or closes leaves room: nothing else is dropped', async () => {
  const { guard, rejects } = makeGuard({ max: 2 });
  const [a, b, c, d] = [new FakeSocket('a'), new FakeSocket('b'), new FakeSocket('c'), new FakeSocket('d')];
  guard.admit(a);
  guard.admit(b);
  guard.authenticate(b);
  guard.admit(c);
  assert.equal(rejects.length, 0);
  a.emit('close'); // the client hung up by itself
  await new Promise((r) => setImmediate(r));
  guard.admit(d);
  assert.deepEqual(rejects, []);
  assert.deepEqual(guard.counts, { open: 3, unauthenticated: 2 });
  guard.close();
});

test('with descriptors short, the oldest unauthenticated connection gives way; with none, the new one is refused', () => {
  let open = 0;
  // 20 descriptors of the daemon's own, plus one per socket: the cap is 100 - 10 = 90, so 70 sockets.
  const probe: DescriptorProbe = { limit: () => 100, inUse: () => 20 + open };
  const { guard, rejects } = makeGuard({ max: 1000, reserve: 10, probe });
  const admit = (name: string) => {
    const socket = new FakeSocket(name);
    open++;
    socket.once('close', () => open--);
    guard.admit(socket);
    return socket;
  };
  const windows = Array.from({ length: 60 }, (_, i) => admit(`w${i}`));
  for (const w of windows) guard.authenticate(w);
  const idle = Array.from({ length: 10 }, (_, i) => admit(`i${i}`));
  assert.deepEqual(rejects, [], '70 sockets fit');
  const next = admit('next');
  assert.deepEqual(rejects, ['fd_reserve_dropped']);
  assert.equal(idle[0]!.destroyed, true, 'the oldest idle one went');
  assert.equal(next.destroyed, false);
  for (const s of [...idle.slice(1), next]) guard.authenticate(s);
  const refused = admit('refused');
  assert.equal(refused.destroyed, true, 'nothing unauthenticated to drop: the new one is refused');
  assert.deepEqual(rejects, ['fd_reserve_dropped', 'fd_reserve_refused']);
  assert.equal(windows.filter((w) => w.destroyed).length, 0, 'no authenticated connection is ever dropped');
  guard.close();
});

test('the descriptors are counted at most every half second near the cap, not per connection', () => {
  let now = 0;
  let counted = 0;
  const probe: DescriptorProbe = {
    limit: () => 1000,
    inUse: () => {
      counted++;
      return 900;
    },
  };
  const guard = new ConnectionGuard({
    maxUnauthenticated: 10_000,
    fdReserve: 64,
    descriptors: probe,
    reject: () => undefined,
    log: () => undefined,
    now: () => now,
  });
  for (let i = 0; i < 200; i++) {
    guard.admit(new FakeSocket(`s${i}`));
    now += 1;
  }
  assert.ok(counted <= 1 + 200 / 500 + 1, `counted ${counted} times for 200 connections in 200 ms`);
  guard.close();
});

test('descriptors opened since a count taken far from the cap (a server started) are counted before a flood reaches the cap', () => {
  let now = 0;
  let own = 100; // the daemon's own descriptors
  const sockets: FakeSocket[] = [];
  const open = () => own + sockets.filter((s) => !s.destroyed).length;
  const guard = new ConnectionGuard({
    maxUnauthenticated: 10_000,
    fdReserve: 0,
    descriptors: { limit: () => 256, inUse: open },
    reject: () => undefined,
    log: () => undefined,
    now: () => now,
  });
  const accept = (name: string) => {
    const socket = new FakeSocket(name);
    sockets.push(socket);
    guard.admit(socket);
  };
  accept('window');
  // A server starts (its pipes), then a flood comes within the same half second.
  now += 100;
  own += 6;
  let most = 0;
  for (let i = 0; i < 200; i++) {
    accept(`f${i}`);
    most = Math.max(most, open());
  }
  assert.ok(most <= 256 - 4, `${most} descriptors open of 256: past the cap (4 kept free) the count should have kept`);
  guard.close();
});

test('the soft descriptor limit is read from /proc/self/limits; unlimited or absent is unknown', () => {
  const limits = [
    'Limit                     Soft Limit           Hard Limit           Units     ',
    'Max cpu time              unlimited            unlimited            seconds   ',
    'Max open files            256                  4096                 files     ',
  ].join('\n');
  assert.equal(parseOpenFilesLimit(limits), 256);
  assert.equal(parseOpenFilesLimit(limits.replace('256   ', 'unlimited')), undefined);
  assert.equal(parseOpenFilesLimit('no such line'), undefined);
  if (process.platform === 'linux') {
    const probe = procDescriptors();
    assert.ok((probe.limit() ?? 0) > 0);
    assert.ok((probe.inUse() ?? 0) >= 3, 'stdio at least');
  }
});

test('a spawn that fails is a SpawnError naming its code: ENOENT, and E2BIG thrown by spawn itself', async () => {
  const missing = new ChildTransport({ command: 'no-such-command-xyz', args: [], env: { PATH: '/usr/bin:/bin' } });
  const enoent = await missing.start().then(
    () => null,
    (error: unknown) => error,
  );
  assert.ok(enoent instanceof SpawnError, String(enoent));
  assert.equal(enoent.systemCode, 'ENOENT');
  await missing.close();

  // One argument past the kernel's 128 KiB per string: execve refuses it, Node throws at once.
  const huge = new ChildTransport({ command: '/bin/sh', args: ['-c', 'x'.repeat(300_000)], env: {} });
  const e2big = await huge.start().then(
    () => null,
    (error: unknown) => error,
  );
  assert.ok(e2big instanceof SpawnError, String(e2big));
  assert.equal(e2big.systemCode, 'E2BIG');
  assert.match(e2big.message, /too large/);
  await huge.close();
});

test(
  'a spawn under EMFILE rejects with EMFILE in a process that has used up its descriptors, which goes on',
  { skip: process.platform !== 'linux' },
  () => {
    const transport = pathToFileURL(join(ROOT, 'dist', 'src', 'hosting', 'child-transport.js')).href;
    const script = `
    import { openSync, closeSync } from 'node:fs';
    const { ChildTransport } = await import(${JSON.stringify(transport)});
    const held = [];
    try { for (;;) held.push(openSync('/dev/null', 'r')); } catch (e) { if (e.code !== 'EMFILE') throw e; }
    // Two free: fewer than the six a child's three pipes need.
    closeSync(held.pop()); closeSync(held.pop());
    const child = new ChildTransport({ command: process.execPath, args: ['-e', ''], env: {} });
    const outcome = await child.start().then(() => 'started', (e) => e.name + ' ' + e.systemCode + ' ' + e.message);
    await child.close();
    for (const fd of held) closeSync(fd);
    await new Promise((r) => setTimeout(r, 50));
    console.log(outcome);
  `;
    const run = spawnSync('prlimit', ['--nofile=64:64', '--', process.execPath, '--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(run.status, 0, `the process survived: ${run.stderr}`);
    assert.match(run.stdout, /^SpawnError EMFILE spawn .* EMFILE \(the daemon has too many files open\)$/m);
    assert.doesNotMatch(run.stdout + run.stderr, /Cannot read properties/);
  },
);

test('a spell of drops is logged twice: a warning at its start, its counts once drops stop for 10 s', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let now = 0;
  const logs: { level: string; details: Record<string, unknown> }[] = [];
  const guard = new ConnectionGuard({
    maxUnauthenticated: 1,
    fdReserve: 0,
    descriptors: { limit: () => undefined, inUse: () => undefined },
    reject: () => undefined,
    log: (level, details) => logs.push({ level, details }),
    now: () => now,
  });
  const step = (ms: number) => {
    now += ms;
    t.mock.timers.tick(ms);
  };
  for (let i = 0; i < 5; i++) {
    guard.admit(new FakeSocket(`s${i}`));
    step(4_000); // drops 4 s apart: one spell
  }
  assert.deepEqual(
    logs.map((l) => l.level),
    ['warn'],
    'one warning, no summary while drops go on',
  );
  step(10_000);
  assert.deepEqual(
    logs.map((l) => l.level),
    ['warn', 'info'],
  );
  assert.equal(logs[1]?.details.unauthenticated_limit, 4);
  guard.admit(new FakeSocket('later'));
  assert.equal(logs.length, 3, 'a new spell warns again');
  guard.close();
});
