/**
 * The package's commands as one process each, and the repository as a clone has it: `node
 * cli.js daemon` is the daemon (the pid started, with whatever Node options it was started
 * with); the README names only files inside the repository; npm pack's tarball is ignored by
 * git. The package itself, packed from a clean copy and installed with `npm install -g`, is
 * test/long/package.test.ts (`npm run test:package`).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { DAEMON_NODE_OPTIONS } from '../src/local/daemon-launch.js';
import { CLI, Cleanup, ROOT, baseEnv, getHealth, makeHome, spawnChild, waitFor, within, type Child } from './helpers.js';
import { VERSION, killDaemonAtCleanup, pidOf, sourceFiles } from './fixtures/package.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

function commandLine(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split(/[\0 ]/)
      .filter((a) => a.length > 0);
  } catch {
    return [];
  }
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
      killDaemonAtCleanup(cleanup, home);
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
