/**
 * Windows process trees, on every platform: a fake kernel32 records the Job Object calls and a
 * fake taskkill runner the commands, so what the daemon asks Windows for, in which order, and
 * what it falls back to when a call fails are checked here; what Windows then does with a job
 * was checked by hand under Wine (see the report of issue 22). And koffi is never loaded off
 * Windows.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { ChildTransport } from '../src/hosting/child-transport.js';
import { killOnCloseLimits, loadKernel32, type Handle, type Kernel32 } from '../src/hosting/job-object.js';
import { ProcessGroup } from '../src/hosting/process-group.js';
import { Watchdog } from '../src/hosting/watchdog.js';
import { JobTree, TaskkillTree, WindowsTrees, type TaskkillRunner, type TreeSystem } from '../src/hosting/windows-tree.js';

const PID = 4242;
const FAST = { pollMs: 5, waitMs: 200 };

/**
 * kernel32 as a job sees it: a job holds `members` processes (the server and its child) until
 * TerminateJobObject, after which they vanish over `drainQueries` queries. `fail` names the
 * calls that fail, with the GetLastError() they leave.
 */
class FakeKernel32 implements Kernel32 {
  readonly calls: string[] = [];
  readonly open = new Set<Handle>();
  fail: Partial<Record<string, number>> = {};
  members = 2;
  drainQueries = 2;
  /** Whether the server process has exited (a failed assignment asks). */
  exited = false;
  private next = 100n;
  private error = 0;
  private terminated = false;

  private result(call: string, ok: boolean): boolean {
    this.error = ok ? 0 : (this.fail[call] ?? 0);
    return ok;
  }
  private handle(): Handle {
    const handle = this.next++;
    this.open.add(handle);
    return handle;
  }
  createJobObject(): Handle {
    const ok = this.fail.CreateJobObjectW === undefined;
    const job = ok ? this.handle() : 0n;
    this.calls.push(`CreateJobObjectW -> ${job}`);
    this.result('CreateJobObjectW', ok);
    return job;
  }
  setKillOnClose(job: Handle): boolean {
    this.calls.push(`SetInformationJobObject ${job} KILL_ON_JOB_CLOSE`);
    return this.result('SetInformationJobObject', this.fail.SetInformationJobObject === undefined);
  }
  openProcess(pid: number): Handle {
    const ok = this.fail.OpenProcess === undefined;
    const process = ok ? this.handle() : 0n;
    this.calls.push(`OpenProcess ${pid} -> ${process}`);
    this.result('OpenProcess', ok);
    return process;
  }
  assignProcessToJobObject(job: Handle, process: Handle): boolean {
    this.calls.push(`AssignProcessToJobObject ${job} ${process}`);
    return this.result('AssignProcessToJobObject', this.fail.AssignProcessToJobObject === undefined);
  }
  terminateJobObject(job: Handle, exitCode: number): boolean {
    this.calls.push(`TerminateJobObject ${job} ${exitCode}`);
    const ok = this.fail.TerminateJobObject === undefined;
    if (ok) this.terminated = true;
    return this.result('TerminateJobObject', ok);
  }
  activeProcesses(job: Handle): number | null {
    this.calls.push(`QueryInformationJobObject ${job}`);
    if (this.terminated && this.drainQueries-- <= 0) this.members = 0;
    return this.members;
  }
  hasExited(process: Handle): boolean {
    this.calls.push(`WaitForSingleObject ${process} 0`);
    return this.exited;
  }
  closeHandle(handle: Handle): boolean {
    this.calls.push(`CloseHandle ${handle}`);
    assert.ok(this.open.delete(handle), `handle ${handle} closed once, and only if it was opened`);
    return true;
  }
  lastError(): number {
    return this.error;
  }
  /** The calls other than the probes, which depend on timing. */
  get steps(): string[] {
    return this.calls.filter((call) => !call.startsWith('QueryInformationJobObject'));
  }
}

/** A taskkill that records its arguments and answers `status`; the leader lives until `killed` says. */
function fakeSystem(status: number, output = ''): { system: Partial<TreeSystem>; runs: string[][]; kills: number[]; gone: Set<number> } {
  const runs: string[][] = [];
  const kills: number[] = [];
  const gone = new Set<number>();
  const runner: TaskkillRunner = (args) => {
    runs.push([...args]);
    if (status === 0) gone.add(Number(args[1]));
    return Promise.resolve({ status, output });
  };
  const system: Partial<TreeSystem> = {
    ...FAST,
    runner,
    isAlive: (pid) => !gone.has(pid),
    killProcess: (pid) => {
      kills.push(pid);
      gone.add(pid);
    },
  };
  return { system, runs, kills, gone };
}

type LogLine = [string, Record<string, unknown>, string | undefined];

function recordLog(): { lines: LogLine[]; log: (event: string, details: Record<string, unknown>, level?: string) => void } {
  const lines: LogLine[] = [];
  return { lines, log: (event, details, level) => lines.push([event, details, level]) };
}

test('a server is put in a job of its own with KILL_ON_JOB_CLOSE right away; the mechanism is logged once', () => {
  const api = new FakeKernel32();
  const { lines, log } = recordLog();
  const trees = new WindowsTrees({ load: () => api, log, ...fakeSystem(0).system });
  const tree = trees.adopt(PID);
  assert.ok(tree instanceof JobTree);
  assert.deepEqual(api.steps, [
    'CreateJobObjectW -> 100',
    'SetInformationJobObject 100 KILL_ON_JOB_CLOSE',
    `OpenProcess ${PID} -> 101`,
    'AssignProcessToJobObject 100 101',
  ]);
  assert.ok(tree.alive, 'alive while the job has members');
  trees.adopt(PID + 1);
  assert.deepEqual(lines, [
    ['process trees', { mechanism: 'job object' }, undefined],
    ['process trees', { mechanism: 'job object' }, 'debug'],
  ]);
});

test('ending a job terminates every member at once, waits for them to vanish, then closes both handles', async () => {
  const api = new FakeKernel32();
  const { system, runs } = fakeSystem(0);
  const tree = new WindowsTrees({ load: () => api, ...system }).adopt(PID);
  const ending = tree.end();
  assert.equal(tree.end(), ending, 'ending twice is the same ending');
  await ending;
  assert.deepEqual(api.steps.slice(4), ['TerminateJobObject 100 1', 'CloseHandle 101', 'CloseHandle 100']);
  const probes = api.calls.filter((call) => call.startsWith('QueryInformationJobObject')).length;
  assert.ok(probes >= 3, `probed until the job was empty (${probes} probes)`);
  assert.equal(api.open.size, 0, 'no handle left open');
  assert.equal(tree.alive, false);
  await tree.end();
  assert.equal(api.steps.length, 7, 'nothing more once ended: the handles are gone');
  assert.deepEqual(runs, [], 'no taskkill');
});

test('members that outlive TerminateJobObject are given up after the wait, and the job closed (kill-on-close)', async () => {
  const api = new FakeKernel32();
  api.drainQueries = Number.POSITIVE_INFINITY;
  const tree = new WindowsTrees({ load: () => api, ...fakeSystem(0).system }).adopt(PID);
  const started = Date.now();
  await tree.end();
  assert.ok(Date.now() - started >= FAST.waitMs - 20, 'waited for them');
  assert.deepEqual(api.steps.slice(-2), ['CloseHandle 101', 'CloseHandle 100']);
  assert.equal(api.open.size, 0);
});

for (const [call, opened] of [
  ['CreateJobObjectW', []],
  ['SetInformationJobObject', ['100']],
  ['OpenProcess', ['100']],
  ['AssignProcessToJobObject', ['101', '100']],
] as const) {
  test(`when ${call} fails, the server's tree is ended by taskkill, and no handle is left open`, async () => {
    const api = new FakeKernel32();
    api.fail = { [call]: 5 };
    const { lines, log } = recordLog();
    const { system, runs, kills } = fakeSystem(0);
    const trees = new WindowsTrees({ load: () => api, log, ...system });
    const tree = trees.adopt(PID);
    assert.ok(tree instanceof TaskkillTree);
    assert.deepEqual(
      api.steps.filter((s) => s.startsWith('CloseHandle')),
      opened.map((h) => `CloseHandle ${h}`),
    );
    assert.equal(api.open.size, 0);
    assert.deepEqual(lines, [['process trees', { mechanism: 'taskkill', reason: `${call} failed with error 5` }, 'warn']]);
    trees.adopt(PID + 1);
    assert.equal(lines[1]?.[2], 'debug', 'said once');
    await tree.end();
    assert.deepEqual(runs, [['/PID', String(PID), '/T', '/F']]);
    assert.deepEqual(kills, []);
  });
}

test('a server that exited before it joined its job (access denied) is no reason to warn: nothing is left to end', async () => {
  const api = new FakeKernel32();
  api.fail = { AssignProcessToJobObject: 5 };
  api.exited = true;
  const { lines, log } = recordLog();
  const { system, runs, kills } = fakeSystem(0);
  const trees = new WindowsTrees({ load: () => api, log, ...system });
  const tree = trees.adopt(PID);
  assert.equal(tree.alive, false);
  await tree.end();
  assert.deepEqual(api.steps.slice(3), [
    'AssignProcessToJobObject 100 101',
    'WaitForSingleObject 101 0',
    'CloseHandle 101',
    'CloseHandle 100',
  ]);
  assert.deepEqual([runs, kills, lines], [[], [], []], 'no taskkill, no kill, no warning');
  api.fail = {};
  assert.ok(trees.adopt(PID + 1) instanceof JobTree);
  assert.deepEqual(lines, [['process trees', { mechanism: 'job object' }, undefined]], 'jobs work: said at info');
});

test('when koffi cannot be loaded, every tree uses taskkill; loading is tried once and the reason logged once', async () => {
  let loads = 0;
  const { lines, log } = recordLog();
  const { system, runs } = fakeSystem(0);
  const trees = new WindowsTrees({
    load: () => {
      loads++;
      throw new Error("Cannot find module '@koromix/koffi-win32-x64'");
    },
    log,
    ...system,
  });
  const first = trees.adopt(PID);
  const second = trees.adopt(PID + 1);
  assert.ok(first instanceof TaskkillTree && second instanceof TaskkillTree);
  assert.equal(loads, 1);
  assert.deepEqual(lines[0], [
    'process trees',
    { mechanism: 'taskkill', reason: "koffi could not be loaded: Cannot find module '@koromix/koffi-win32-x64'" },
    'warn',
  ]);
  assert.ok(
    lines.slice(1).every((line) => line[2] === 'debug'),
    'warned once',
  );
  await Promise.all([first.end(), second.end()]);
  assert.deepEqual(runs, [
    ['/PID', String(PID), '/T', '/F'],
    ['/PID', String(PID + 1), '/T', '/F'],
  ]);
});

test('a kernel32 call that throws makes that tree a taskkill one; adopt never throws', () => {
  const api = new FakeKernel32();
  api.openProcess = () => {
    throw new TypeError('Unexpected BigInt value');
  };
  const { lines, log } = recordLog();
  const tree = new WindowsTrees({ load: () => api, log, ...fakeSystem(0).system }).adopt(PID);
  assert.ok(tree instanceof TaskkillTree);
  assert.match(String(lines[0]?.[1].reason), /a kernel32 call failed with error Unexpected BigInt value/);
  assert.equal(api.open.size, 0, 'the job made before the throw is closed');
});

test('when TerminateJobObject fails, taskkill ends the tree, then the job is closed all the same', async () => {
  const api = new FakeKernel32();
  const { lines, log } = recordLog();
  const { system, runs } = fakeSystem(0);
  const tree = new WindowsTrees({ load: () => api, log, ...system }).adopt(PID);
  api.fail = { TerminateJobObject: 6 };
  api.members = 0; // taskkill ended them
  await tree.end();
  assert.deepEqual(runs, [['/PID', String(PID), '/T', '/F']]);
  assert.deepEqual(api.steps.slice(4), ['TerminateJobObject 100 1', 'CloseHandle 101', 'CloseHandle 100']);
  assert.deepEqual(lines[1], ['job call failed', { pid: PID, call: 'TerminateJobObject', error: 6 }, 'warn']);
});

test('taskkill that refuses /T (as Wine’s does) leaves the server to TerminateProcess, and says so', async () => {
  const output = 'Error: Unknown or invalid command line option specified.';
  const { system, runs, kills } = fakeSystem(1, output);
  const failures: Record<string, unknown>[] = [];
  const tree = new TaskkillTree(PID, system, (details) => failures.push(details));
  await tree.end();
  assert.deepEqual(runs, [['/PID', String(PID), '/T', '/F']]);
  assert.deepEqual(kills, [PID], 'the server itself, by its still-held pid');
  assert.deepEqual(failures, [{ pid: PID, status: 1, output }]);
  assert.equal(tree.alive, false);
});

test('a taskkill tree whose server is already gone runs nothing (taskkill could not walk it)', async () => {
  const { system, runs, kills, gone } = fakeSystem(0);
  gone.add(PID);
  await new TaskkillTree(PID, system).end();
  assert.deepEqual(runs, []);
  assert.deepEqual(kills, []);
});

test('the watchdog gives Windows servers a job and spawns nothing; elsewhere a watched process group', () => {
  const api = new FakeKernel32();
  const windows = new WindowsTrees({ load: () => api, ...fakeSystem(0).system });
  const onWindows = new Watchdog({ platform: 'win32', windows });
  assert.ok(onWindows.adopt(PID) instanceof JobTree);
  onWindows.watch(PID); // what a POSIX group would ask: nothing to spawn on Windows
  assert.equal((onWindows as unknown as { proc: unknown }).proc, undefined, 'no watchdog process on Windows');
  onWindows.close();

  const watched: number[] = [];
  const onLinux = new Watchdog({ platform: 'linux' });
  onLinux.watch = (pgid) => void watched.push(pgid);
  const group = onLinux.adopt(PID);
  assert.ok(group instanceof ProcessGroup && group.pgid === PID);
  assert.deepEqual(watched, [PID], 'registered with the watchdog');
});

test('a hosted server on Windows: kernel32 bound before it runs, its job made when it spawns, ended when it exits', async () => {
  const api = new FakeKernel32();
  api.members = 1;
  let pidWhenBound: number | null | undefined = null;
  const windows = new WindowsTrees({
    load: () => {
      pidWhenBound = transport.pid;
      return api;
    },
    ...fakeSystem(0).system,
  });
  const transport: ChildTransport = new ChildTransport(
    { command: process.execPath, args: ['-e', 'process.stdin.resume()'], env: {} },
    new Watchdog({ platform: 'win32', windows }),
  );
  await transport.start();
  assert.equal(pidWhenBound, undefined, 'bound before the server was spawned (koffi takes a moment to load)');
  assert.deepEqual(api.steps.slice(2, 3), [`OpenProcess ${transport.pid} -> 101`]);
  await transport.close(); // stdin EOF: the server exits, and its job is ended
  assert.deepEqual(api.steps.slice(4), ['TerminateJobObject 100 1', 'CloseHandle 101', 'CloseHandle 100']);
});

test('the job limits set only KILL_ON_JOB_CLOSE (0x2000) in LimitFlags, at offset 16 of the 144 bytes', () => {
  const info = killOnCloseLimits();
  assert.equal(info.length, 144);
  assert.equal(info.readUInt32LE(16), 0x2000);
  assert.equal(
    info.reduce((sum, byte) => sum + byte, 0),
    0x20,
    'every other byte zero',
  );
});

test('kernel32 is never bound, nor koffi loaded, off Windows', { skip: process.platform === 'win32' }, () => {
  assert.throws(() => loadKernel32(), /only on Windows/);
  const cache = createRequire(import.meta.url).cache;
  assert.deepEqual(
    Object.keys(cache).filter((path) => /[\\/]koffi[\\/]/.test(path)),
    [],
  );
});
