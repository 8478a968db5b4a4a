/**
 * The npm package as a user gets it: `npm pack` of a clean, unbuilt copy of the repository
 * (its prepack builds what it ships), installed with `npm install -g` into a temporary prefix,
 * then run from that prefix's bin: `--version`, `daemon` (one process: the bin's pid), `shim`
 * under the official SDK client, `status`. And `node cli.js daemon` as one process: the pid
 * started is the daemon, with whatever Node options it was started with.
 */
import { processAlive } from '../src/local/pidfile.js';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { DAEMON_NODE_OPTIONS } from '../src/local/daemon-launch.js';
import { readAddressCard, type AddressCard } from '../src/local/files.js';
import { CLI, Cleanup, ROOT, baseEnv, getHealth, makeHome, spawnChild, textOf, waitFor, within, type Child } from './helpers.js';

const run = promisify(execFile);
const cleanup = new Cleanup();
after(() => cleanup.run());

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
/** npm, and the registry when the local cache lacks a package, can be slow: bounded, not tight. */
const NPM_TIMEOUT_MS = 240_000;

/** The repository's files as a fresh clone has them (tracked, plus new files not ignored). */
function sourceFiles(): string[] | null {
  try {
    const out = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' });
    return out.split('\0').filter((f) => f.length > 0 && existsSync(join(ROOT, f)));
  } catch {
    return null;
  }
}

async function npm(args: string[], cwd: string, timeoutMs = NPM_TIMEOUT_MS): Promise<string> {
  const env = { ...baseEnv(), npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };
  try {
    return (await run('npm', args, { cwd, env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 })).stdout;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`npm ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}`);
  }
}

function pidOf(home: string): AddressCard | null {
  const card = readAddressCard(join(home, 'logs', 'ws_daemon.pid'));
  return card && card.port > 0 ? card : null;
}

function commandLine(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split(/[\0 ]/)
      .filter((a) => a.length > 0);
  } catch {
    return [];
  }
}

/** Kills the daemon named by a home's address card at cleanup, should a test leave it running. */
function killDaemonAtCleanup(home: string): void {
  cleanup.add(() => {
    const card = readAddressCard(join(home, 'logs', 'ws_daemon.pid'));
    if (card && processAlive(card.pid)) process.kill(card.pid, 'SIGKILL');
  });
}

const linuxOnly = process.platform === 'linux' ? {} : { skip: 'reads /proc' };

test(
  '`node cli.js daemon` is the daemon: the pid started, with the Node options it was given; SIGINT ends it cleanly',
  linuxOnly,
  async () => {
    const cases: [string, string[], Record<string, string>, boolean][] = [
      ["Node's defaults (a bare `exai-ws daemon`)", [CLI, 'daemon'], {}, false],
      ['options on the command line (auto-start, restart, the service, npm run daemon)', [...DAEMON_NODE_OPTIONS, CLI, 'daemon'], {}, true],
      ['NODE_OPTIONS', [CLI, 'daemon'], { NODE_OPTIONS: DAEMON_NODE_OPTIONS.join(' ') }, false],
    ];
    for (const [what, args, extra, onCommandLine] of cases) {
      const home = makeHome(cleanup);
      killDaemonAtCleanup(home);
      const daemon: Child = spawnChild(cleanup, process.execPath, args, {
        env: { ...baseEnv(), EXAI_WS_HOME: home, EXAI_WS_PORT: '0', EXAI_WS_CONFIG: join(home, 'config.json'), ...extra },
      });
      const card = await waitFor(() => pidOf(home), `the address card (${what})`, 20_000);
      assert.equal(card.pid, daemon.proc.pid, what);
      for (const option of DAEMON_NODE_OPTIONS)
        assert.equal(commandLine(card.pid).includes(option), onCommandLine, `${what}: ${commandLine(card.pid).join(' ')}`);
      await waitFor(() => daemon.stderr().includes(`daemon listening on ws://127.0.0.1:${card.port} and`), `the listening line (${what})`);
      const token = readFileSync(join(home, 'token'), 'utf8').trim();
      assert.equal((await getHealth({ port: card.port, token })).pid, card.pid);
      // As Ctrl-C in a terminal: the daemon itself gets it, once.
      daemon.proc.kill('SIGINT');
      assert.equal(await within(daemon.exited, 20_000, 'the daemon to exit'), 0, daemon.stderr());
      assert.equal(existsSync(join(home, 'logs', 'ws_daemon.pid')), false, 'a clean shutdown removed the address card');
    }

    // A refusal (an invalid limit) is the command's own exit code and stderr.
    const refused = spawnChild(cleanup, process.execPath, [CLI, 'daemon'], {
      env: { ...baseEnv(), EXAI_WS_HOME: makeHome(cleanup), EXAI_WS_PORT: '0', EXAI_WS_BACKPRESSURE: 'lots' },
    });
    assert.equal(await within(refused.exited, 20_000, 'the refusal'), 2, refused.stderr());
    assert.match(refused.stderr(), /EXAI_WS_BACKPRESSURE/);
  },
);

test('the README points only at files inside the repository, and every one it names is there', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const named = [...readme.matchAll(/`([^`\s]+)`|\]\(([^)\s]+)\)/g)].map((m) => m[1] ?? m[2] ?? '');
  const links = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1] ?? '');
  // A clone has nothing above its own folder: a doc there is one a reader does not have.
  assert.deepEqual(
    named.filter((p) => p.startsWith('../') || p.includes('/../')),
    [],
    'no path leaves the repository',
  );
  for (const link of links.filter((l) => !/^[a-z]+:/.test(l) && !l.startsWith('#'))) {
    assert.ok(existsSync(join(ROOT, link.split('#')[0] ?? '')), `the link ${link} is in the repository`);
  }
  // Docs and sources it names by their path in the repository.
  const inRepo = named.filter((p) => /^(src|test|bench|scripts|\.ci)\//.test(p) || /^[\w.-]+\.md$/.test(p));
  assert.ok(inRepo.length > 5, `the README names files of the repository: ${inRepo.join(', ')}`);
  for (const path of inRepo) assert.ok(existsSync(join(ROOT, path)), `${path}, named in the README, is in the repository`);
});

test("npm pack's tarball in the clone is ignored by git: it never shows as a change nor is committed", (t) => {
  if (sourceFiles() === null) return t.skip('not a git checkout');
  const tarball = `exai-ws-${VERSION}.tgz`;
  // `git check-ignore` exits 0 when the path is ignored, 1 when it is not.
  const ignored = (path: string) => {
    try {
      execFileSync('git', ['check-ignore', '-q', '--no-index', path], { cwd: ROOT, stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  assert.ok(ignored(tarball), `${tarball} is ignored`);
  assert.ok(ignored(join('some', 'folder', tarball)), 'wherever it is packed to');
  assert.ok(!ignored('package.json'), 'the check itself tells ignored from not');
});

test(
  'npm pack of a clean, unbuilt copy installs with npm i -g and runs --version, daemon, shim and status',
  { ...linuxOnly, timeout: 15 * 60_000 },
  async (t) => {
    const files = sourceFiles();
    if (!files) return t.skip('not a git checkout: no list of the files a clone has');
    const started = Date.now();
    const work = makeHome(cleanup);
    const clone = join(work, 'clone');
    for (const file of files) {
      mkdirSync(join(clone, file, '..'), { recursive: true });
      copyFileSync(join(ROOT, file), join(clone, file));
    }
    assert.equal(existsSync(join(clone, 'dist')), false, 'the copy is unbuilt');

    // The lockfile's packages, from the npm cache when it has them; install scripts run.
    await npm(['ci', '--prefer-offline', '--ignore-scripts=false'], clone);
    const packed = JSON.parse(await npm(['pack', '--json', '--pack-destination', work], clone)) as {
      filename: string;
      files: { path: string }[];
    }[];
    const tarball = join(work, packed[0]?.filename ?? '');
    const shipped = (packed[0]?.files ?? []).map((f) => f.path);
    for (const needed of ['dist/src/cli.js', 'dist/shim.cjs', 'dist/src/commands/daemon.js', 'LICENSE', 'README.md', 'package.json']) {
      assert.ok(shipped.includes(needed), `the tarball has ${needed}`);
    }
    assert.deepEqual(
      shipped.filter((f) => /^(dist\/)?(test|bench)\//.test(f)),
      [],
      'no tests or benchmarks in the package',
    );
    assert.match(readFileSync(join(clone, 'LICENSE'), 'utf8'), /MIT License[\s\S]*exai-ws contributors/);

    const prefix = join(work, 'prefix');
    await npm(['install', '-g', '--prefer-offline', '--prefix', prefix, tarball], work);
    const bin = join(prefix, 'bin', 'exai-ws');
    assert.ok(readdirSync(join(prefix, 'bin')).includes('exai-ws-shim'));

    // Run from the prefix, from a directory that is not the repository.
    const home = join(work, 'home');
    mkdirSync(home);
    const env = { ...baseEnv(), EXAI_WS_HOME: home, EXAI_WS_PORT: '0', EXAI_WS_CONFIG: join(home, 'config.json') };
    const version = await run(bin, ['--version'], { cwd: work, env, timeout: 30_000 });
    assert.equal(version.stdout.trim(), VERSION);

    killDaemonAtCleanup(home);
    const launcher = spawnChild(cleanup, bin, ['daemon'], { cwd: work, env });
    const card = await waitFor(() => pidOf(home), 'the installed daemon address card', 30_000);
    assert.equal(card.pid, launcher.proc.pid, 'the bin started is the daemon');

    const transport = new StdioClientTransport({ command: bin, args: ['shim'], cwd: work, env, stderr: 'pipe' });
    const client = new Client({ name: 'package-test', version: '1' });
    cleanup.add(() => client.close());
    await client.connect(transport);
    const answer = JSON.parse(textOf(await client.callTool({ name: 'version', arguments: {} }))) as { version: string; pid: number };
    assert.deepEqual([answer.version, answer.pid], [VERSION, card.pid]);
    await client.close();

    const status = await run(bin, ['status'], { cwd: work, env, timeout: 30_000 });
    assert.match(status.stdout, new RegExp(String(card.pid)));

    await run(bin, ['stop'], { cwd: work, env, timeout: 30_000 });
    assert.equal(await within(launcher.exited, 30_000, 'the installed daemon to stop'), 0, launcher.stderr());
    t.diagnostic(`clean copy, npm ci, pack, install and run: ${Math.round((Date.now() - started) / 1000)} s`);
  },
);
