/**
 * Runs npx-launched hosted servers without npx. `npx -y some-server` keeps an `npm exec` node
 * process (about 40 MB) in front of the real server for the server's whole life; here npx runs
 * once, with the entry's own options, cwd and environment, and is asked what it would run
 * instead of running it: its script shell (`--script-shell`, the shell `npm exec` hands the
 * command to) is a stand-in that prints the file the command resolves to and the PATH npm set
 * up. npx still makes every decision (a bin of the local project, a global install, its cache,
 * an install, which bin of the package), so nothing of npm is reimplemented here. Anything
 * unexpected means "launch as configured": a server that worked before must keep working.
 *
 * On Windows `npx` is `npx.cmd`, which Node will not start without cmd.exe. There npm's own
 * `npx-cli.js` (beside the npx.cmd found on PATH, as npx.cmd itself runs it) is run with node,
 * and the stand-in shell is node itself: on win32 npm hands a script shell whose name is not
 * cmd or powershell the same `<shell> -c '<command>'` (promise-spawn, without a shell), and
 * neither a `.cmd` (Node refuses it without a shell) nor a `.js` (not a program) can be that
 * shell. `node -c` would only check a file's syntax, but a module preloaded through NODE_OPTIONS
 * runs first: seeing `-c` and npm's `npm_lifecycle_event=npx`, it prints npm's command
 * (`npm_lifecycle_script`), PATH and PATHEXT and exits. The command is resolved here like cmd.exe
 * would (see windows-command.ts); the `.cmd` shim it finds is read for the script it runs, and
 * the server runs as `node <script>`: no cmd.exe, no npm. When any step fails, the entry is
 * launched as configured, which on Windows means through cmd.exe.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, open, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, extname, isAbsolute, join, win32 } from 'node:path';
import type { ChildSpec } from './child-transport.js';
import { envValue, fileExists, parseCmdShim, resolveCommand, withEnvValue } from './windows-command.js';

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
 * The stand-in on Windows, preloaded into every node of the npx run (NODE_OPTIONS) and acting
 * only in the one npm starts as its script shell (`node -c <command>` for the event `npx`).
 */
const REVEAL_PRELOAD = `'use strict';
if (process.execArgv.includes('-c') && process.env.npm_lifecycle_event === 'npx') {
  const env = process.env;
  require('node:fs').writeSync(1, ['', '${MARK}', env.npm_lifecycle_script || '', env.PATH || '', env.PATHEXT || '', ''].join('\\0'));
  process.exit(0);
}
`;

/** True for an entry run through npx: `npx`, and on Windows also `npx.cmd`, in any case, bare or as a path. */
export function isNpxCommand(command: string, platform: NodeJS.Platform = process.platform): boolean {
  if (platform !== 'win32') return basename(command) === 'npx';
  return ['npx', 'npx.cmd'].includes(win32.basename(command).toLowerCase());
}

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
  private readonly platform: NodeJS.Platform;

  constructor(timeoutMs = NPX_RESOLVE_TIMEOUT_MS, platform: NodeJS.Platform = process.platform) {
    this.timeoutMs = timeoutMs;
    this.platform = platform;
  }

  /**
   * The launch without npx for an entry whose command is `npx`, or undefined: launch it as
   * configured (not npx, options not understood, npx failed or timed out). Never rejects.
   */
  async resolve(spec: ChildSpec): Promise<DirectLaunch | undefined> {
    const split = isNpxCommand(spec.command, this.platform) ? splitNpxArgs(spec.args) : undefined;
    if (!split) return undefined;
    const key = keyOf(spec, split.npxArgs);
    let located = this.found.get(key);
    if (!located) {
      const find = this.platform === 'win32' ? locateOnWindows : locate;
      located = find(spec, split.npxArgs, this.timeoutMs).catch(() => undefined);
      this.found.set(key, located);
    }
    const where = await located;
    if (!where) return undefined;
    return {
      command: where.command,
      args: [...where.leadingArgs, ...split.serverArgs],
      env: withEnvValue(spec.env, 'PATH', where.path, this.platform),
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
 * never wait on a prompt; on timeout its whole process group is killed (an install may be running;
 * on Windows, with no process groups, npm alone).
 */
function run(spec: ChildSpec, args: readonly string[], timeoutMs: number): Promise<string | undefined> {
  const windows = process.platform === 'win32';
  return new Promise((resolve) => {
    const child = spawn(spec.command, [...args], {
      cwd: spec.cwd,
      env: { ...spec.env },
      stdio: ['ignore', 'pipe', 'ignore'],
      detached: !windows,
      windowsHide: true,
    });
    let output = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      if (output.length < MAX_OUTPUT_BYTES) output += chunk;
    });
    const timer = setTimeout(() => {
      try {
        if (windows) child.kill();
        else process.kill(-(child.pid as number), 'SIGKILL');
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

/** How npx.cmd starts npm: `npx-cli.js` beside it, run by the node.exe beside it or else by `execPath`. */
export function windowsNpxRunner(
  command: string,
  env: Readonly<Record<string, string>>,
  options: { cwd?: string | undefined; isFile: (path: string) => boolean; execPath: string },
): { node: string; cli: string } | undefined {
  const npx = resolveCommand(command, env, options);
  if (npx === undefined) return undefined;
  const folder = win32.dirname(npx);
  const cli = win32.join(folder, 'node_modules', 'npm', 'bin', 'npx-cli.js');
  if (!options.isFile(cli)) return undefined;
  const beside = win32.join(folder, 'node.exe');
  return { node: options.isFile(beside) ? beside : options.execPath, cli };
}

/** What the Windows stand-in printed (npm's command line, PATH, PATHEXT), or undefined without it. */
export function readReveal(output: string): { script: string; path: string; pathext: string } | undefined {
  const parts = output.split('\0');
  const at = parts.indexOf(MARK);
  const [script, path, pathext] = parts.slice(at + 1, at + 4);
  if (at < 0 || !script || !path || pathext === undefined) return undefined;
  return { script, path, pathext };
}

/**
 * The words of a command line npm quoted for sh (`'my-bin'`, newer npm; `my-bin`, older):
 * unquoted words split on blanks, '...' taken as is, "..." and bare words with backslash escapes.
 * Undefined for a line that ends inside quotes.
 */
export function shWords(line: string): string[] | undefined {
  const words: string[] = [];
  let word: string | undefined;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < line.length; i++) {
    const char = line[i] as string;
    if (quote === "'") {
      if (char === "'") quote = undefined;
      else word += char;
    } else if (char === '\\' && i + 1 < line.length && (quote === undefined || '"\\$`'.includes(line[i + 1] as string))) {
      word = (word ?? '') + line[++i];
    } else if (quote === '"') {
      if (char === '"') quote = undefined;
      else word += char;
    } else if (char === "'" || char === '"') {
      quote = char;
      word ??= '';
    } else if (/\s/.test(char)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else {
      word = (word ?? '') + char;
    }
  }
  if (quote) return undefined;
  if (word !== undefined) words.push(word);
  return words;
}

/**
 * How a file npx resolved to runs on Windows without cmd.exe: an npm cmd-shim (`text` is its
 * content) as `node <its script>`, with the node.exe beside the shim, else the one on npm's PATH,
 * else `execPath` (as the shim itself would pick); an .exe or .com as itself. Undefined for
 * anything else (a shim for another interpreter, a batch file that is not a shim).
 */
export function windowsLaunchOf(
  file: string,
  text: string | undefined,
  options: { path: string; pathext: string; isFile: (path: string) => boolean; execPath: string },
): { command: string; leadingArgs: string[]; script: string } | undefined {
  if (/\.(exe|com)$/i.test(file)) return { command: file, leadingArgs: [], script: file };
  if (!/\.cmd$/i.test(file) || text === undefined) return undefined;
  const shim = parseCmdShim(text);
  if (!shim) return undefined;
  const folder = win32.dirname(file);
  const script = win32.resolve(folder, shim.target);
  if (shim.program === undefined) return /\.(exe|com)$/i.test(script) ? { command: script, leadingArgs: [], script } : undefined;
  if (shim.program !== 'node') return undefined;
  const beside = win32.join(folder, 'node.exe');
  const onPath = resolveCommand('node', { PATH: options.path, PATHEXT: options.pathext }, { isFile: options.isFile });
  const node = options.isFile(beside) ? beside : onPath && /\.exe$/i.test(onPath) ? onPath : options.execPath;
  return { command: node, leadingArgs: [...shim.programArgs, script], script };
}

/** The Windows way of {@link locate}: npm's npx-cli.js under node, node as the stand-in shell (see the header). */
async function locateOnWindows(spec: ChildSpec, npxArgs: readonly string[], timeoutMs: number): Promise<Located | undefined> {
  const runner = windowsNpxRunner(spec.command, spec.env, { cwd: spec.cwd, isFile: fileExists, execPath: process.execPath });
  if (!runner) return undefined;
  const dir = await mkdtemp(join(tmpdir(), 'exai-ws-npx-'));
  try {
    const preload = join(dir, 'reveal.cjs');
    await writeFile(preload, REVEAL_PRELOAD);
    // NODE_OPTIONS reads a backslash in quotes as an escape: double them.
    const required = `--require "${preload.replace(/[\\"]/g, '\\$&')}"`;
    const options = [envValue(spec.env, 'NODE_OPTIONS'), required].filter(Boolean).join(' ');
    const npm = { ...spec, command: runner.node, env: withEnvValue(spec.env, 'NODE_OPTIONS', options, 'win32') };
    const output = await run(npm, [runner.cli, `--script-shell=${runner.node}`, ...npxArgs], timeoutMs);
    const revealed = output === undefined ? undefined : readReveal(output);
    const name = revealed && shWords(revealed.script)?.[0];
    if (!revealed || !name) return undefined;
    const env = { PATH: revealed.path, PATHEXT: revealed.pathext };
    const file = resolveCommand(name, env, { cwd: spec.cwd, isFile: fileExists });
    if (file === undefined) return undefined;
    const text = /\.cmd$/i.test(file) ? await readFile(file, 'utf8') : undefined;
    const launch = windowsLaunchOf(file, text, { ...revealed, isFile: fileExists, execPath: process.execPath });
    if (!launch) return undefined;
    return { file: await realpath(launch.script), command: launch.command, leadingArgs: launch.leadingArgs, path: revealed.path };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
