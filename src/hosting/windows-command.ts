/**
 * How a hosted server's command is started on Windows. Node (since 20.12) refuses to spawn a
 * `.cmd` or `.bat` file without a shell, and libuv's own search tries only `.com` and `.exe`, so
 * an entry such as `npx` or `my-server.cmd` would never start. Here the command is resolved the
 * way cmd.exe would resolve it (PATH and PATHEXT), and a batch file is run as
 * `cmd.exe /d /s /c "<line>"` with every word quoted for cmd.exe. What a client sent (the
 * `${workspaceFolder}` folder) is never handed to cmd.exe when cmd.exe would read any of it as
 * syntax: that start is refused with EUNSAFE instead.
 *
 * Quoting scheme (the one npm's promise-spawn and cross-spawn use for batch files, after
 * "Everyone quotes command line arguments the wrong way", Microsoft's blog, 2011): each word is
 * first quoted for the C runtime's argument parser (in double quotes, backslashes before a quote
 * doubled, `"` as `\"`), so the program a batch file hands `%*` to reads the word back exactly;
 * then each cmd.exe metacharacter `space ! % ^ & ( ) < > | "` gets a caret, twice: once for
 * cmd.exe reading the `/c` line, once more for the batch file's own line that expands `%*` and is
 * read again. No quote is ever left unescaped, so cmd.exe's quote state never switches on and
 * every metacharacter is taken literally; a `%` always has a caret after it before the next `%`,
 * so no `%NAME%` matches a variable. A batch file that reads `%1` gets the word with one level of
 * carets, which cmd.exe removes again when the line using it runs.
 *
 * Every function takes the platform and file lookups as parameters, so all of this is tested on
 * every platform; paths are handled with `path.win32` whatever the platform.
 */
import { statSync } from 'node:fs';
import { win32 } from 'node:path';
import { SpawnError, type ChildSpec } from './child-transport.js';

/** The extensions cmd.exe tries when the environment has no PATHEXT (Windows' own default, minus the script hosts). */
export const DEFAULT_PATHEXT = '.COM;.EXE;.BAT;.CMD';
/** Characters cmd.exe reads as syntax (or that end its line): a client value with one is never passed to it. */
export const CMD_SPECIAL = ['%', '!', '^', '&', '|', '<', '>', '(', ')', '"', '\r', '\n'] as const;
/** Characters given a caret for cmd.exe, in a word already quoted for the C runtime. */
const CARET_ESCAPED = /[ !%^&()<>|"]/g;

export interface WindowsLaunchOptions {
  /** Default `process.platform`; off win32 a spec is launched as it is. */
  platform?: NodeJS.Platform;
  /** Whether a file (not a folder) is there; default a stat of the real file system. */
  isFile?: (path: string) => boolean;
  /** The folder a relative command path is relative to when the spec has no cwd; default `process.cwd()`. */
  cwd?: string;
}

/** A value of a Windows environment, whose names are case-insensitive; the first non-empty match. */
export function envValue(env: Readonly<Record<string, string | undefined>>, name: string): string | undefined {
  const wanted = name.toUpperCase();
  for (const [key, value] of Object.entries(env)) if (key.toUpperCase() === wanted && value) return value;
  return undefined;
}

/**
 * The environment with `name` set to `value`. On win32 every other spelling of the name is
 * dropped (`Path` and `PATH` both in one block would leave which one wins to the order of the block).
 */
export function withEnvValue(
  env: Readonly<Record<string, string>>,
  name: string,
  value: string,
  platform: NodeJS.Platform = process.platform,
): Record<string, string> {
  if (platform !== 'win32') return { ...env, [name]: value };
  const wanted = name.toUpperCase();
  return { ...Object.fromEntries(Object.entries(env).filter(([key]) => key.toUpperCase() !== wanted)), [name]: value };
}

/**
 * `over` on top of `base`. On win32 a name in `over` replaces the same name in `base` in any
 * spelling (the user's `Path` replaces the default `PATH`), so the block has one of each.
 */
export function mergeEnv(
  base: Readonly<Record<string, string>>,
  over: Readonly<Record<string, string>>,
  platform: NodeJS.Platform = process.platform,
): Record<string, string> {
  if (platform !== 'win32') return { ...base, ...over };
  const replaced = new Set(Object.keys(over).map((key) => key.toUpperCase()));
  return { ...Object.fromEntries(Object.entries(base).filter(([key]) => !replaced.has(key.toUpperCase()))), ...over };
}

/** True for a file on disk (a stat of the real file system). */
export function fileExists(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isFile() ?? false;
}

/**
 * The file cmd.exe would run for `command`, or undefined when there is none. A command with a
 * folder in it is taken as a path (relative to `cwd`); a bare name is looked for in each folder
 * of PATH in order, never in the working directory (which may be a client's folder). In each
 * place the name itself is tried first when it has an extension, then the name with each PATHEXT
 * extension, as cmd.exe does.
 */
export function resolveCommand(
  command: string,
  env: Readonly<Record<string, string | undefined>>,
  options: { cwd?: string | undefined; isFile?: (path: string) => boolean } = {},
): string | undefined {
  const isFile = options.isFile ?? fileExists;
  const extensions = (envValue(env, 'PATHEXT') ?? DEFAULT_PATHEXT)
    .split(';')
    .map((ext) => ext.trim())
    .filter((ext) => ext.startsWith('.'));
  const candidates = (base: string) => [...(win32.extname(base) ? [base] : []), ...extensions.map((ext) => base + ext)];
  if (/[\\/]/.test(command) || win32.isAbsolute(command)) {
    const base = win32.resolve(options.cwd ?? process.cwd(), command);
    return candidates(base).find(isFile);
  }
  for (const entry of (envValue(env, 'PATH') ?? '').split(';')) {
    const folder = entry.trim().replace(/^"(.*)"$/, '$1');
    if (!folder || !win32.isAbsolute(folder)) continue;
    const found = candidates(win32.join(folder, command)).find(isFile);
    if (found) return found;
  }
  return undefined;
}

/** True for a file Windows runs through cmd.exe. */
export function isBatchFile(file: string): boolean {
  return /\.(cmd|bat)$/i.test(file);
}

/** A word quoted for the C runtime's argument parser (what node.exe, python.exe... read their argv with). */
export function quoteForRuntime(word: string): string {
  let quoted = '"';
  let backslashes = 0;
  for (const char of word) {
    if (char === '\\') {
      backslashes++;
      continue;
    }
    // Backslashes are literal except before a quote: there each stands for half of a pair.
    quoted += '\\'.repeat(char === '"' ? backslashes * 2 + 1 : backslashes) + char;
    backslashes = 0;
  }
  return `${quoted}${'\\'.repeat(backslashes * 2)}"`;
}

/** A word for the line of `cmd.exe /c` that runs a batch file (see the scheme in the header). */
export function quoteForBatch(word: string): string {
  return quoteForRuntime(word).replace(CARET_ESCAPED, '^$&').replace(CARET_ESCAPED, '^$&');
}

/**
 * The line `cmd.exe /d /s /c` runs: the batch file's path in plain quotes (a path cannot hold a
 * quote, and inside quotes cmd.exe takes `& ( )` and spaces literally), then the quoted words.
 */
export function batchLine(file: string, args: readonly string[]): string {
  return [`"${file}"`, ...args.map(quoteForBatch)].join(' ');
}

/**
 * How to start `spec` on this platform. Off win32, and on win32 for anything but a batch file,
 * the spec itself. A `.cmd` or `.bat` (as cmd.exe resolves the command) runs through cmd.exe
 * (ComSpec) with `verbatim` arguments. Throws a {@link SpawnError} EUNSAFE, and starts nothing,
 * when a value the client sent (`spec.clientValues`) holds a character cmd.exe would read as
 * syntax and is in an argument or an environment value (a batch file's `%NAME%` is read again as
 * commands), or when an argument holds a line break (cmd.exe ends its line there).
 */
export function planWindowsLaunch(spec: ChildSpec, options: WindowsLaunchOptions = {}): ChildSpec {
  if ((options.platform ?? process.platform) !== 'win32') return spec;
  const file = resolveCommand(spec.command, spec.env, { cwd: spec.cwd ?? options.cwd, isFile: options.isFile });
  if (file === undefined || !isBatchFile(file)) return spec;
  refuseUnsafe(spec, file);
  const comspec = envValue(spec.env, 'ComSpec') ?? systemCmd(spec.env);
  return { ...spec, command: comspec, args: ['/d', '/s', '/c', `"${batchLine(file, spec.args)}"`], verbatim: true };
}

/** cmd.exe where Windows keeps it, for an environment without ComSpec (the SDK's default environment has none). */
function systemCmd(env: Readonly<Record<string, string>>): string {
  const root = envValue(env, 'SystemRoot');
  return root ? win32.join(root, 'System32', 'cmd.exe') : 'cmd.exe';
}

/** Throws EUNSAFE for what cannot go through cmd.exe as it is (see planWindowsLaunch). */
function refuseUnsafe(spec: ChildSpec, file: string): void {
  const words = [...spec.args, ...Object.values(spec.env)];
  for (const value of spec.clientValues ?? []) {
    const special = CMD_SPECIAL.find((char) => value.includes(char));
    if (value === '' || special === undefined || !words.some((word) => word.includes(value))) continue;
    throw new SpawnError(
      'EUNSAFE',
      `the value ${JSON.stringify(value)} from the client has ${JSON.stringify(special)}, which cmd.exe would expand; ` +
        'start the server without a .cmd/.bat (e.g. run its script with node) or use a folder without it',
    );
  }
  if (file.includes('%')) {
    throw new SpawnError('EUNSAFE', `the path ${file} has "%", which cmd.exe would expand; move the file or run what it runs directly`);
  }
  const broken = spec.args.find((arg) => /[\r\n\0]/.test(arg));
  if (broken !== undefined) {
    throw new SpawnError(
      'EUNSAFE',
      `the argument ${JSON.stringify(broken)} has a line break, which cmd.exe cannot pass to ${win32.basename(file)}`,
    );
  }
}

/** What an npm cmd-shim (`node_modules\.bin\<bin>.cmd`) runs. */
export interface CmdShim {
  /** The interpreter from the target's shebang (`node`), or undefined: the target is run itself. */
  readonly program: string | undefined;
  /** The shebang's arguments after the interpreter (`#!/usr/bin/env node --no-warnings`). */
  readonly programArgs: readonly string[];
  /** The file, relative to the shim's folder (`..\pkg\dist\index.js`). */
  readonly target: string;
}

/**
 * Reads a cmd-shim as npm writes it (cmd-shim 2 to 8): its last command is
 * `"%_prog%" <args> "%dp0%\<target>" %*` with `_prog` set to `%dp0%\<prog>.exe` or `<prog>`, or
 * for a target without a shebang `"%dp0%\<target>" %*`; older shims say `%~dp0` where newer say
 * `%dp0%`. Undefined for anything else (a batch file that is not a shim, a shim that sets
 * variables): such a file is run through cmd.exe as it is.
 */
export function parseCmdShim(text: string): CmdShim | undefined {
  const lines = text.split(/\r?\n/).map((line) => line.trim());
  // Variables from `#!/usr/bin/env -S NAME=value node` become SET lines the stand-in would miss.
  if (lines.some((line) => /^@?SET\s+(?!"?(_prog|dp0|PATHEXT)=)/i.test(line))) return undefined;
  const DP0 = String.raw`%(?:~dp0|dp0%)\\?`;
  const last = new RegExp(String.raw`(?:"(%_prog%|[^"]*)"|(\S+))\s*(.*?)\s*"${DP0}([^"]+)"\s+%\*\s*\)?$`);
  for (const line of [...lines].reverse()) {
    const match = last.exec(line.replace(/^.*?&\s*(?="%_prog%")/, ''));
    if (!match) {
      const bare = new RegExp(String.raw`^@?"${DP0}([^"]+)"\s+%\*$`).exec(line);
      if (bare?.[1]) return { program: undefined, programArgs: [], target: bare[1] };
      continue;
    }
    const [, quoted, plain, between, target] = match;
    if (!target) continue;
    let program = quoted ?? plain ?? '';
    if (program === '%_prog%') program = progOf(lines) ?? '';
    program = program.replace(new RegExp(`^${DP0}`), '').replace(/\.exe$/i, '');
    if (!/^[\w.-]+$/.test(program)) return undefined;
    return { program, programArgs: between ? between.split(/\s+/) : [], target };
  }
  return undefined;
}

/** The program a newer shim sets `_prog` to when it finds no copy beside itself (the `ELSE` branch). */
function progOf(lines: readonly string[]): string | undefined {
  const values = lines.map((line) => /^SET\s+"_prog=([^"]+)"$/i.exec(line)?.[1]).filter((v): v is string => v !== undefined);
  return values.at(-1);
}
