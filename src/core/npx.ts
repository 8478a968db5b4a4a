/**
 * Runs npx-launched hosted servers without npx. `npx -y some-server` keeps an `npm exec` node
 * process (about 40 MB) in front of the real server for the server's whole life; here npx runs
 * once, with the entry's own options, cwd and environment, and is asked what it would run
 * instead of running it: its script shell (`--script-shell`, the shell `npm exec` hands the
 * command to) is a stand-in that prints the file the command resolves to and the PATH npm set
 * up. npx still makes every decision (a bin of the local project, a global install, its cache,
 * an install, which bin of the package), so nothing of npm is reimplemented here. Anything
 * unexpected means "launch as configured": a server that worked before must keep working.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, open, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, extname, isAbsolute, join } from 'node:path';
import type { ChildSpec } from './child-transport.js';

/** How long the one npx run may take; it may have to install the package first. */
export const NPX_RESOLVE_TIMEOUT_MS = 60_000;
/** Output of the npx run kept, in bytes (npm's warnings come on stderr, which is ignored). */
const MAX_OUTPUT_BYTES = 64 * 1024;

/** A launch without npx, and the file npx would have run (symlinks followed). */
export interface DirectLaunch extends ChildSpec {
  readonly file: string;
}

/** What npx decided for an entry: how to start its file, and the PATH npm gave it. */
interface Located {
  readonly file: string;
  /** The command and the arguments before the server's own. */
  readonly command: string;
  readonly leadingArgs: readonly string[];
  readonly path: string;
}

const MARK = 'exai-ws-npx';
/**
 * The stand-in script shell. `npm exec` runs it as `<shell> -c '<command>'` with the command's
 * words quoted for sh, so `eval "set -- $2"` splits them exactly as the real shell would, and
 * `command -v` finds the file the real shell would run, on the PATH npm set up.
 */
const REVEAL_SCRIPT = `#!/bin/sh
eval "set -- $2"
printf '\\0${MARK}\\0%s\\0%s\\0' "$(command -v "$1")" "$PATH"
`;

/**
 * Splits an npx entry's arguments into npx's own (its options, then the package or command) and
 * the server's. Undefined for anything not understood (`-c`, any other option,
 * no package): those entries launch as configured.
 */
export function splitNpxArgs(args: readonly string[]): { npxArgs: string[]; serverArgs: string[] } | undefined {
  const npxArgs: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '-y' || arg === '--yes') {
      npxArgs.push('--yes');
    } else if (arg === '--no' || arg === '--no-install') {
      // Passed on: npx then refuses to install, for the one run as for the server.
      npxArgs.push('--no');
    } else if (arg === '-p' || arg === '--package' || arg.startsWith('--package=')) {
      const value = arg.startsWith('--package=') ? arg.slice('--package='.length) : args[++i];
      if (!value) return undefined;
      npxArgs.push(`--package=${value}`);
    } else if (arg.startsWith('-') && arg !== '--') {
      return undefined;
    } else {
      // The first word that is not an option (or the one after `--`) is the package or, with
      // --package, the command; everything after it belongs to the server.
      const at = arg === '--' ? i + 1 : i;
      const first = args[at];
      if (first === undefined) return undefined;
      return { npxArgs: [...npxArgs, '--', first], serverArgs: args.slice(at + 1) };
    }
  }
  return undefined;
}

/**
 * Finds what npx would run for hosted server entries, once per entry for the resolver's life
 * (the daemon's): later starts reuse it. One resolver per core.
 */
export class NpxResolver {
  private readonly found = new Map<string, Promise<Located | undefined>>();
  private readonly timeoutMs: number;

  constructor(timeoutMs = NPX_RESOLVE_TIMEOUT_MS) {
    this.timeoutMs = timeoutMs;
  }

  /**
   * The launch without npx for an entry whose command is `npx`, or undefined: launch it as
   * configured (not npx, options not understood, npx failed or timed out). Never rejects.
   */
  async resolve(spec: ChildSpec): Promise<DirectLaunch | undefined> {
    const split = basename(spec.command) === 'npx' ? splitNpxArgs(spec.args) : undefined;
    if (!split) return undefined;
    const key = keyOf(spec, split.npxArgs);
    let located = this.found.get(key);
    if (!located) {
      located = locate(spec, split.npxArgs, this.timeoutMs).catch(() => undefined);
      this.found.set(key, located);
    }
    const where = await located;
    if (!where) return undefined;
    return {
      command: where.command,
      args: [...where.leadingArgs, ...split.serverArgs],
      env: { ...spec.env, PATH: where.path },
      cwd: spec.cwd,
      file: where.file,
    };
  }

  /**
   * Drops what was found for this entry, so its next start asks npx again. Call it when a start
   * failed: the npx cache may have been cleared, or a failed npx run may succeed now.
   */
  forget(spec: ChildSpec): void {
    const split = splitNpxArgs(spec.args);
    if (split) this.found.delete(keyOf(spec, split.npxArgs));
  }
}

/** Everything that can change npx's answer: npx itself, cwd, environment (npm_config_*), its arguments. */
function keyOf(spec: ChildSpec, npxArgs: readonly string[]): string {
  const env = Object.entries(spec.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([spec.command, spec.cwd ?? null, env, npxArgs]);
}

/** Runs npx with the stand-in shell and reads its answer; undefined when it gave none. */
async function locate(spec: ChildSpec, npxArgs: readonly string[], timeoutMs: number): Promise<Located | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'exai-ws-npx-'));
  try {
    const shell = join(dir, 'reveal.sh');
    await writeFile(shell, REVEAL_SCRIPT, { mode: 0o700 });
    const output = await run(spec, [`--script-shell=${shell}`, ...npxArgs], timeoutMs);
    const parts = output?.split('\0') ?? [];
    const at = parts.indexOf(MARK);
    const file = parts[at + 1];
    const path = parts[at + 2];
    if (at < 0 || !file || !isAbsolute(file) || !path) return undefined;
    const real = await realpath(file);
    return { file: real, ...(await launcherOf(real)), path };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Runs npx; resolves with its stdout when it exits 0, else undefined. Stdin is closed so npx can
 * never wait on a prompt; on timeout its whole process group is killed (an install may be running).
 */
function run(spec: ChildSpec, args: readonly string[], timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn(spec.command, [...args], {
      cwd: spec.cwd,
      env: { ...spec.env },
      stdio: ['ignore', 'pipe', 'ignore'],
      detached: true,
    });
    let output = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      if (output.length < MAX_OUTPUT_BYTES) output += chunk;
    });
    const timer = setTimeout(() => {
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {
        // Already gone.
      }
    }, timeoutMs);
    child.once('error', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve(code === 0 ? output : undefined);
    });
  });
}

/**
 * How npx's shell would start the file: as itself when it is executable with a shebang (the
 * kernel runs its interpreter, `env node` found on npm's PATH as npx would, so a server keeps
 * the Node it had), or under the daemon's own Node when it is bare JavaScript.
 */
async function launcherOf(file: string): Promise<{ command: string; leadingArgs: string[] }> {
  const handle = await open(file, 'r');
  let head: string;
  try {
    const buffer = Buffer.alloc(2);
    const { bytesRead } = await handle.read(buffer, 0, 2, 0);
    head = buffer.subarray(0, bytesRead).toString('latin1');
  } finally {
    await handle.close();
  }
  const bareScript = head !== '#!' && ['.js', '.mjs', '.cjs'].includes(extname(file));
  return bareScript ? { command: process.execPath, leadingArgs: [file] } : { command: file, leadingArgs: [] };
}
