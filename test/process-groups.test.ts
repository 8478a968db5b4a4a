/**
 * Whole process groups: whenever a hosted server stops, for whatever reason, every process it
 * started goes with it (SIGTERM, then SIGKILL), not only the server itself. Each test reads the
 * server's process group from /proc, every member of it, not just the pids the server knows.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { CLI, Cleanup, ROOT, baseEnv, serially, textOf, waitFor, type DaemonHandle } from './helpers.js';
import { connectWs } from './fixtures/ws-client.js';
import { processGone, startHostingDaemon, waitReady, type ServerEntry } from './fixtures/hosted-servers.js';
import { ProcessGroup } from '../src/hosting/process-group.js';
import type { Watchdog } from '../src/hosting/watchdog.js';

const cleanup = new Cleanup();
after(() => cleanup.run());
const run = promisify(execFile);

const GRANDCHILD = join(ROOT, 'dist', 'test', 'fixtures', 'hosted-grandchild.js');
/** Time for SIGTERM, the grace, SIGKILL and the watchdog, with room for a loaded machine. */
const GONE_MS = 15_000;

interface Pids {
  pid: number;
  grandchild: number;
  holder: number | null;
}

/**
 * The fixture server's entry. `holdPipes: false` leaves out the grandchild that holds the
 * server's stdout: without it the pipes close when the server exits, the case where only the
 * group, not the pipes, can tell that processes are left.
 */
function entry(options: { holdPipes?: boolean; stubborn?: boolean } = {}, extra: ServerEntry = {}): ServerEntry {
  const env: Record<string, string> = {};
  if (options.holdPipes === false) env.HOLD_PIPES = '0';
  if (options.stubborn) env.STUBBORN = '1';
  const extraEnv = (extra.env ?? {}) as Record<string, string>;
  return { command: process.execPath, args: [GRANDCHILD], ...extra, env: { ...env, ...extraEnv } };
}

/** Live (not zombie) members of a process group, from /proc/<pid>/stat field 5. */
function groupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    const [state, , pgrp] = text.slice(text.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') members.push(Number(name));
  }
  return members;
}

/** Kills what is left of a group, one pid at a time (a signal to a pgid could reach a reused one). */
function killGroup(pgid: number): void {
  for (const pid of groupMembers(pgid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

/** Kills whatever of the group is left when the tests end. */
function killLeftovers(pgid: number): void {
  cleanup.add(() => killGroup(pgid));
}

async function waitGroupGone(pgid: number, after: string): Promise<void> {
  await waitFor(() => groupMembers(pgid).length === 0, `every process of group ${pgid} gone after ${after}`, GONE_MS).catch(() => {
    const left = groupMembers(pgid).map((pid) => `${pid} (${readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ')})`);
    throw new Error(`group ${pgid} still has ${left.join(', ')} after ${after}`);
  });
}

/** Calls server `name`'s `pids` tool and checks its group holds the server and its grandchildren. */
async function serverPids(client: Client, name = 'kids'): Promise<Pids> {
  const pids = JSON.parse(textOf(await client.callTool({ name: `${name}__pids`, arguments: {} }))) as Pids;
  killLeftovers(pids.pid);
  const members = groupMembers(pids.pid);
  for (const pid of [pids.pid, pids.grandchild, pids.holder ?? pids.pid])
    assert.ok(members.includes(pid), `${pid} runs in group ${pids.pid}`);
  return pids;
}

/**
 * The daemons' fixed waits at a fifth (EXAI_WS_TIMER_SCALE): a group's grace before SIGKILL
 * 400 ms, restarts after 50, 100, 200 ms ... These tests hold that no process is left, whatever
 * the waits; the one about the grace itself keeps the real one.
 */
const FAST = { EXAI_WS_TIMER_SCALE: '0.2' };

/**
 * A daemon of its own hosting `servers` (with `env`, FAST by default), and a window on it. The window is a direct WebSocket
 * client: these tests are about the daemon's servers, not the shim.
 */
async function hosting(
  servers: Record<string, ServerEntry>,
  env: Record<string, string> = FAST,
): Promise<{ daemon: DaemonHandle; client: Client }> {
  const daemon = await startHostingDaemon(cleanup, () => servers, env);
  const { client } = await connectWs(cleanup, daemon);
  return { daemon, client };
}

/**
 * The servers of the shared daemon, as its config file names them now: each test has its own
 * entry (its own server, group and window), and the tests that remove or change an entry change
 * only theirs, through {@link reconfigure}.
 */
const sharedServers: Record<string, ServerEntry> = {
  killed: entry(),
  exits: entry(),
  idle: entry({ holdPipes: false }, { idle_timeout_ms: 300 }),
  removed: entry({ holdPipes: false }),
  stubborn: entry({ holdPipes: false, stubborn: true }),
  changed: entry({ holdPipes: false }),
};

let shared: Promise<DaemonHandle> | undefined;
/**
 * One daemon for the tests in which only their own server stops (killed, its own exit, idle,
 * removed or changed by a reload, crash-looping): each has its own server entry and its own
 * window, never lists tools (which would start the others' lazy servers), and the daemon and the
 * other servers must outlive it anyway (a reload leaves unchanged entries and their processes
 * alone: one daemon, many servers, as in real use).
 */
function sharedDaemon(): Promise<DaemonHandle> {
  shared ??= startHostingDaemon(cleanup, () => ({ ...sharedServers }), FAST);
  return shared;
}

async function reload(daemon: DaemonHandle, servers: Record<string, ServerEntry>): Promise<void> {
  writeFileSync(join(daemon.home, 'config.json'), JSON.stringify({ mcpServers: servers }, null, 2));
  await run(process.execPath, [CLI, 'reload'], { env: { ...baseEnv(), EXAI_WS_HOME: daemon.home }, timeout: 20_000 });
}

const oneReloadAtATime = serially();
/**
 * Changes the shared daemon's config (`change` edits {@link sharedServers}) and reloads it, one
 * reload at a time: each writes the whole file, so two at once could undo each other's change.
 */
function reconfigure(daemon: DaemonHandle, change: (servers: Record<string, ServerEntry>) => void): Promise<void> {
  return oneReloadAtATime(() => {
    change(sharedServers);
    return reload(daemon, sharedServers);
  });
}

// Each test reads its own server's group, on the shared daemon (its own entry and window) or,
// when it stops the daemon, on a daemon of its own, so they all run side by side: most of their
// time is signals, graces and backoffs. The ProcessGroup tests below replace process.kill for a
// moment, and run alone.
describe('whole process groups, end to end', { concurrency: true }, () => {
  test('a server removed from the config takes every process it started with it', async () => {
    const daemon = await sharedDaemon();
    const { client } = await connectWs(cleanup, daemon, { name: 'removed' });
    const pids = await serverPids(client, 'removed');
    await reconfigure(daemon, (servers) => delete servers.removed);
    await waitGroupGone(pids.pid, 'removal from the config');
  });

  test('a server removed from the config whose children ignore SIGTERM still leaves none behind', async () => {
    const daemon = await sharedDaemon();
    const { client } = await connectWs(cleanup, daemon, { name: 'stubborn' });
    const pids = await serverPids(client, 'stubborn');
    await reconfigure(daemon, (servers) => delete servers.stubborn);
    await waitGroupGone(pids.pid, 'removal of a server whose children ignore SIGTERM');
  });

  test('a server whose entry changed is restarted without the old one’s children', async () => {
    const daemon = await sharedDaemon();
    const { client } = await connectWs(cleanup, daemon, { name: 'changed' });
    const old = await serverPids(client, 'changed');
    await reconfigure(daemon, (servers) => (servers.changed = entry({ holdPipes: false }, { env: { CHANGED: '1' } })));
    await waitGroupGone(old.pid, 'a changed entry');
    const renewed = await serverPids(client, 'changed');
    assert.notEqual(renewed.pid, old.pid);
  });

  test('killing a server with kill -9 ends its children; the restarted server works', async () => {
    const daemon = await sharedDaemon();
    const { client } = await connectWs(cleanup, daemon, { name: 'kill-9' });
    const old = await serverPids(client, 'killed');
    process.kill(old.pid, 'SIGKILL');
    await waitGroupGone(old.pid, 'kill -9 of the server');
    assert.ok(processGone(old.grandchild) && processGone(old.holder ?? old.grandchild), 'the old grandchildren are gone');
    const renewed = await waitFor(
      async () => {
        const report = await waitReady(daemon, 'killed');
        return report.pid !== old.pid ? report : null;
      },
      'the server restarted',
      GONE_MS,
    );
    const pids = await serverPids(client, 'killed');
    assert.equal(pids.pid, renewed.pid, 'calls reach the restarted server');
    assert.equal(groupMembers(pids.pid).length, 3, 'the new server runs with its own children');
  });

  test('a server that exits by itself leaves no child behind', async () => {
    const { client } = await connectWs(cleanup, await sharedDaemon(), { name: 'exits' });
    const pids = await serverPids(client, 'exits');
    assert.equal(textOf(await client.callTool({ name: 'exits__exit', arguments: {} })), 'bye');
    await waitGroupGone(pids.pid, 'the server exited with status 0');
  });

  test('a server stopped for idleness leaves no child behind', async () => {
    const window = await connectWs(cleanup, await sharedDaemon(), { name: 'idle' });
    const pids = await serverPids(window.client, 'idle');
    await window.client.close(); // a session that used it keeps it; this was the only one
    await waitGroupGone(pids.pid, 'the idle stop');
  });

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    test(`a daemon stopped with ${signal} leaves no process of a hosted server behind`, async () => {
      const { daemon, client } = await hosting({ kids: entry({ holdPipes: false }) });
      const pids = await serverPids(client);
      daemon.proc.kill(signal);
      await daemon.exited;
      await waitGroupGone(pids.pid, `daemon ${signal}`);
    });
  }

  test('a daemon killed with SIGKILL while a crashed server’s group is still being ended leaves none of it behind', async () => {
    // The real grace (2 s): the children must still be there, in it, when the daemon is killed.
    const { daemon, client } = await hosting({ kids: entry({ holdPipes: false, stubborn: true }) }, {});
    const pids = await serverPids(client);
    process.kill(pids.pid, 'SIGKILL');
    // The grandchildren ignore SIGTERM, so the daemon is now in the grace before SIGKILL.
    await waitFor(() => processGone(pids.pid), 'the server gone', GONE_MS);
    assert.ok(groupMembers(pids.pid).length > 0, 'the children outlive the server for the grace');
    daemon.proc.kill('SIGKILL');
    await daemon.exited;
    await waitGroupGone(pids.pid, 'daemon SIGKILL during the grace');
  });

  test('a crash-looping server leaves no children of its past runs behind', async () => {
    const daemon = await sharedDaemon();
    const pidsFile = join(daemon.home, 'crashing-pids.txt');
    const starts = (): number[] => (existsSync(pidsFile) ? readFileSync(pidsFile, 'utf8').split('\n').filter(Boolean).map(Number) : []);
    cleanup.add(() => {
      for (const pid of starts()) killGroup(pid);
    });
    await reconfigure(
      daemon,
      (servers) => (servers.crashing = entry({}, { start: 'eager', env: { PIDS_FILE: pidsFile, EXIT_AFTER_MS: '100' } })),
    );
    // Backoff 50, 100, 200 ms at this scale: four runs have come and gone within a second or two.
    const seen = await waitFor(() => (starts().length >= 4 ? starts() : null), 'four runs of the crashing server', 30_000);
    for (const pgid of seen.slice(0, 3)) await waitGroupGone(pgid, 'a crash of the server');
    await reconfigure(daemon, (servers) => delete servers.crashing);
    for (const pgid of starts()) await waitGroupGone(pgid, 'removal of the crash-looping server');
  });
});

// ProcessGroup on its own: which signals reach a group, in which order, and when they stop.

/** Replaces process.kill for one test with a fake group; `answer` decides each call's fate. */
async function withFakeKill(
  answer: (signal: string | number) => 'ok' | 'ESRCH',
  body: (calls: (string | number)[]) => Promise<void>,
): Promise<void> {
  const real = process.kill.bind(process);
  const calls: (string | number)[] = [];
  process.kill = (pid: number, signal: string | number = 'SIGTERM') => {
    if (pid !== -424242) return real(pid, signal);
    calls.push(signal);
    if (answer(signal) === 'ok') return true;
    throw Object.assign(new Error('kill ESRCH'), { code: 'ESRCH' });
  };
  try {
    await body(calls);
  } finally {
    process.kill = real;
  }
}

function fakeWatchdog(log: string[]): Watchdog {
  return {
    watch: (pgid: number) => log.push(`watch ${pgid}`),
    unwatch: (pgid: number) => log.push(`unwatch ${pgid}`),
  } as unknown as Watchdog;
}

test('a group that empties after SIGTERM gets no SIGKILL, and no signal at all once seen empty', async () => {
  let probesAfterTerm = 0;
  let termed = false;
  await withFakeKill(
    (signal) => {
      if (signal === 'SIGTERM') termed = true;
      if (signal === 0 && termed) probesAfterTerm++;
      return termed && probesAfterTerm >= 3 ? 'ESRCH' : 'ok';
    },
    async (calls) => {
      const log: string[] = [];
      const group = new ProcessGroup(424242, fakeWatchdog(log), { graceMs: 10_000 });
      const ending = group.end();
      assert.equal(group.end(), ending, 'ending twice is the same ending: no second set of timers');
      await ending;
      assert.deepEqual(calls, [0, 'SIGTERM', 0, 0, 0]);
      assert.deepEqual(log, ['watch 424242', 'unwatch 424242'], 'registered with the watchdog until the group is empty');
      await group.end();
      assert.equal(group.alive, false);
      assert.equal(calls.length, 5, 'an empty group is never probed or signalled again: its id may be reused');
    },
  );
});

test('a group that ignores SIGTERM gets SIGKILL after the grace, and is unregistered only once empty', async () => {
  let killed = false;
  await withFakeKill(
    (signal) => {
      if (signal === 'SIGKILL') killed = true;
      return killed && signal === 0 ? 'ESRCH' : 'ok';
    },
    async (calls) => {
      const log: string[] = [];
      const group = new ProcessGroup(424242, fakeWatchdog(log), { graceMs: 400 });
      const ending = group.end();
      await new Promise((r) => setTimeout(r, 50));
      assert.ok(!calls.includes('SIGKILL'), 'no SIGKILL during the grace');
      assert.deepEqual(log, ['watch 424242']);
      await ending;
      const term = calls.indexOf('SIGTERM');
      const kill = calls.indexOf('SIGKILL');
      assert.ok(term >= 0 && kill > term, `SIGTERM, then SIGKILL: ${JSON.stringify(calls)}`);
      assert.ok(
        calls.slice(term + 1, kill).every((c) => c === 0),
        'only probes between them',
      );
      assert.deepEqual(calls.slice(kill + 1), [0], 'one probe finds it empty; nothing after');
      assert.deepEqual(log, ['watch 424242', 'unwatch 424242']);
    },
  );
});

test('ending a real group that ignores SIGTERM leaves none of its processes', async () => {
  const leader = spawn('/bin/sh', ['-c', "trap '' TERM; sleep 600 & sleep 600 & wait"], { detached: true, stdio: 'ignore' });
  const pgid = leader.pid as number;
  killLeftovers(pgid);
  await waitFor(() => groupMembers(pgid).length === 3, 'the leader and its two children');
  // Short waits either side of SIGKILL; waitGroupGone, not end(), is what says none is left.
  const group = new ProcessGroup(pgid, undefined, { graceMs: 200, killedWaitMs: 200 });
  await group.end();
  await waitGroupGone(pgid, 'ProcessGroup.end()');
});
