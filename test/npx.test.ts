/**
 * npx entries run without npx: the resolver asks npx once what it would run (here the locally
 * installed server-memory and typescript, so no network), and the daemon starts that file
 * directly, so no `npm exec` process sits in front of the server. EXAI_WS_NPX_DIRECT=0 keeps npx.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { NpxResolver, splitNpxArgs } from '../src/hosting/npx.js';
import { Cleanup, ROOT, baseEnv, logPath, makeHome, readJsonLines, textOf } from './helpers.js';
import { MEMORY_SCRIPT, cmdline, descendants, startHostingDaemon, waitReady } from './fixtures/hosted-servers.js';
import { connectWs } from './fixtures/ws-client.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const MEMORY = '@modelcontextprotocol/server-memory';
const MEMORY_FILE = realpathSync(MEMORY_SCRIPT);
const TSC_FILE = realpathSync(join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'));
const LOCAL_BIN = join(ROOT, 'node_modules', '.bin');

/** An npx entry run from this project, where npx finds the packages installed locally. */
function npxSpec(args: string[], command = 'npx') {
  return { command, args, env: baseEnv(), cwd: ROOT };
}

/** True for an npm or npx process (npm names itself `npm exec ...`). */
function isNpm(pid: number): boolean {
  return /^(\S*\/)?(npm|npx)(\s|$)/.test(cmdline(pid));
}
// Each test has its own daemon, home and processes: they run side by side.
describe('npx entries', { concurrency: 4 }, () => {
  test('splitNpxArgs: npx options and the package apart from the server arguments; anything else refused', () => {
    assert.deepEqual(splitNpxArgs(['-y', MEMORY, '--port', '1']), { npxArgs: ['--yes', '--', MEMORY], serverArgs: ['--port', '1'] });
    assert.deepEqual(splitNpxArgs(['-p', 'a', '--package=b', '--', 'cmd', '-x']), {
      npxArgs: ['--package=a', '--package=b', '--', 'cmd'],
      serverArgs: ['-x'],
    });
    assert.deepEqual(splitNpxArgs(['--no-install', MEMORY]), { npxArgs: ['--no', '--', MEMORY], serverArgs: [] });
    for (const args of [[], ['-y'], ['--no'], ['-c', 'cmd'], ['--registry=x', MEMORY], ['-p'], ['--']]) {
      assert.equal(splitNpxArgs(args), undefined, JSON.stringify(args));
    }
  });

  test('resolve: npx -y server-memory becomes the package bin itself, with npx PATH', async () => {
    const resolved = await new NpxResolver().resolve(npxSpec(['-y', MEMORY, 'extra']));
    assert.ok(resolved);
    assert.equal(resolved.command, MEMORY_FILE);
    assert.deepEqual(resolved.args, ['extra']);
    assert.equal(resolved.file, MEMORY_FILE);
    assert.equal(resolved.cwd, ROOT);
    assert.equal(resolved.env.PATH?.split(':')[0], LOCAL_BIN);
    assert.ok(resolved.env.PATH?.endsWith(baseEnv().PATH ?? '?'), 'the configured PATH follows what npx prepends');

    const byPackage = await new NpxResolver().resolve(npxSpec(['--package', MEMORY, '--', 'mcp-server-memory']));
    assert.deepEqual([byPackage?.command, byPackage?.args], [MEMORY_FILE, []]);

    // A local bin by name, never installed: --no-install is passed on to the one npx run.
    const byBin = await new NpxResolver().resolve(npxSpec(['--no-install', 'mcp-server-memory']));
    assert.deepEqual([byBin?.command, byBin?.args], [MEMORY_FILE, []]);
  });

  test('resolve: npx decides what a name means (`npx tsc` is the local typescript bin, not the npm package "tsc")', async () => {
    const resolved = await new NpxResolver().resolve(npxSpec(['tsc', '--version']));
    assert.deepEqual([resolved?.command, resolved?.args], [TSC_FILE, ['--version']]);
  });

  test('resolve: a command that is not a Node script runs as itself', async () => {
    const sh = realpathSync(execFileSync('sh', ['-c', 'command -v sh'], { encoding: 'utf8' }).trim());
    const resolved = await new NpxResolver().resolve(npxSpec(['-p', MEMORY, 'sh', '-c', 'exit 0']));
    assert.deepEqual([resolved?.command, resolved?.args], [sh, ['-c', 'exit 0']]);
  });

  test('resolve: undefined (launch as configured) for options it does not understand, a failing npx, or no npx', async () => {
    const resolver = new NpxResolver();
    for (const args of [
      ['--no-install', 'no-such-package-anywhere'],
      ['-c', 'mcp-server-memory'],
      ['--prefer-offline', MEMORY],
      ['-y', './no-such-package-dir'],
    ]) {
      assert.equal(await resolver.resolve(npxSpec(args)), undefined, JSON.stringify(args));
    }
    assert.equal(await resolver.resolve({ command: process.execPath, args: [MEMORY_SCRIPT], env: baseEnv(), cwd: ROOT }), undefined);
    assert.equal(await resolver.resolve(npxSpec(['-y', MEMORY], join(ROOT, 'no-such-dir', 'npx'))), undefined);
  });

  test('resolve: npx runs once per entry, concurrent starts included; forget() makes the next start ask again', async () => {
    const dir = makeHome(cleanup);
    const realNpx = execFileSync('sh', ['-c', 'command -v npx'], { encoding: 'utf8' }).trim();
    const npx = join(dir, 'npx');
    const runs = join(dir, 'runs');
    writeFileSync(runs, '');
    writeFileSync(npx, `#!/bin/sh\necho run >> '${runs}'\nexec '${realNpx}' "$@"\n`);
    chmodSync(npx, 0o755);
    const count = () => readFileSync(runs, 'utf8').split('\n').filter(Boolean).length;

    const resolver = new NpxResolver();
    const spec = npxSpec(['-y', MEMORY], npx);
    const [a, b] = await Promise.all([resolver.resolve(spec), resolver.resolve(spec)]);
    assert.equal(a?.file, MEMORY_FILE);
    assert.equal(b?.file, MEMORY_FILE);
    assert.equal((await resolver.resolve({ ...spec, args: ['-y', MEMORY, 'other-server-args'] }))?.file, MEMORY_FILE);
    assert.equal(count(), 1, 'the server arguments are not part of what npx is asked');

    resolver.forget(spec);
    assert.equal((await resolver.resolve(spec))?.file, MEMORY_FILE);
    assert.equal(count(), 2);
  });

  /** A daemon hosting server-memory as users configure it: through npx. */
  async function hostThroughNpx(env: Record<string, string>) {
    const daemon = await startHostingDaemon(
      cleanup,
      (home) => ({ memory: { command: 'npx', args: ['-y', MEMORY], cwd: ROOT, env: { MEMORY_FILE_PATH: join(home, 'memory.jsonl') } } }),
      env,
    );
    // A window as a shim opens it: the property is how the daemon launches the server.
    const { client } = await connectWs(cleanup, daemon);
    const created = await client.callTool({
      name: 'memory__create_entities',
      arguments: { entities: [{ name: 'npx-direct', entityType: 'test', observations: ['stored'] }] },
    });
    assert.notEqual(created.isError, true, textOf(created));
    const graph = JSON.parse(textOf(await client.callTool({ name: 'memory__read_graph', arguments: {} }))) as {
      entities: { name: string }[];
    };
    assert.deepEqual(
      graph.entities.map((e) => e.name),
      ['npx-direct'],
    );
    const { pid } = await waitReady(daemon, 'memory');
    return { daemon, pid, tree: [pid, ...descendants(pid)] };
  }

  test('daemon: an npx entry serves calls from a process tree with no npm or npx in it', async () => {
    const { daemon, pid, tree } = await hostThroughNpx({});
    // Its shebang (`env node`) ran node on npx's PATH, in the same process: no npm, no shell.
    assert.equal(cmdline(pid), `node ${MEMORY_FILE}`);
    assert.deepEqual(tree.filter(isNpm).map(cmdline), []);
    const resolvedLine = readJsonLines(logPath(daemon.home)).find((l) => l.msg === 'server runs without npx');
    assert.deepEqual([resolvedLine?.server, resolvedLine?.file], ['memory', MEMORY_FILE]);
  });

  test('daemon: EXAI_WS_NPX_DIRECT=0 launches the entry as configured, npm exec in front', async () => {
    const { daemon, pid, tree } = await hostThroughNpx({ EXAI_WS_NPX_DIRECT: '0' });
    assert.ok(isNpm(pid), `the server process is npm: ${cmdline(pid)}`);
    assert.ok(
      tree.some((p) => cmdline(p).includes(MEMORY_FILE) || cmdline(p).endsWith('mcp-server-memory')),
      tree.map(cmdline).join('\n'),
    );
    assert.equal(
      readJsonLines(logPath(daemon.home)).some((l) => l.msg === 'server runs without npx'),
      false,
    );
  });
});
