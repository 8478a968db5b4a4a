/**
 * The npm package as a user gets it: `npm pack` of a clean, unbuilt copy of the repository
 * (its prepack builds what it ships), installed with `npm install -g` into a temporary prefix,
 * then run from that prefix's bin: `--version`, `daemon` (one process: the bin's pid), `shim`
 * under the official SDK client, `status`. `npm run test:package` (npm ci, pack and install:
 * a minute or more); `.ci/run` runs it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { Cleanup, ROOT, baseEnv, makeHome, spawnChild, textOf, waitFor, within } from '../helpers.js';
import { VERSION, killDaemonAtCleanup, pidOf, sourceFiles } from '../fixtures/package.js';

const run = promisify(execFile);
const cleanup = new Cleanup();
after(() => cleanup.run());

/** npm, and the registry when the local cache lacks a package, can be slow: bounded, not tight. */
const NPM_TIMEOUT_MS = 240_000;

async function npm(args: string[], cwd: string, timeoutMs = NPM_TIMEOUT_MS): Promise<string> {
  const env = { ...baseEnv(), npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };
  try {
    return (await run('npm', args, { cwd, env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 })).stdout;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`npm ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}`);
  }
}

const linuxOnly = process.platform === 'linux' ? {} : { skip: 'reads /proc' };

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

    killDaemonAtCleanup(cleanup, home);
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
