/**
 * Problems with the daemon's home (`EXAI_WS_HOME`) that only the user can fix: a path of the
 * wrong type (the token path is a directory, `logs` is a file), no permission, a read-only or
 * full disk. Each becomes a {@link HomeError}: one line that names the path and what to do,
 * printed without a stack; `exai-ws daemon` then exits with `ExitCode.HOME` (73). And on
 * Windows, where file modes protect nothing, the access lists of the folders holding the token
 * and the settings (acl.ts): a home made here is limited to the user, and both are checked.
 */
import { accessSync, constants, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, parse, relative } from 'node:path';
import type { HomePaths } from './files.js';
import { restrictToUser, secretWarnings, type AclOptions, type SecretPlace } from './acl.js';
import type { LocalErrorCode } from './errors.js';

export class HomeError extends Error {
  override name = 'HomeError';
  readonly code = 'EHOME' satisfies LocalErrorCode;
  /** `path` is the file or directory the message names. */
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

const ELSEWHERE = 'or set EXAI_WS_HOME to another directory';

/**
 * Makes the home and its `logs` directory (mode 0700) and checks that the files the daemon
 * writes there are not directories. Returns whether this call made the home folder (for
 * {@link secureHome}). Throws {@link HomeError}; anything else is a bug.
 */
export function prepareHome(paths: HomePaths): { created: boolean } {
  let made: string | undefined;
  try {
    made = mkdirSync(paths.logs, { recursive: true, mode: 0o700 });
  } catch (error) {
    const problem = homeError(error, paths.logs, 'the logs directory');
    if (problem instanceof HomeError && problem.path === paths.home && !isDirectory(paths.home)) {
      throw new HomeError(
        paths.home,
        `${paths.home} is a file, but the home (EXAI_WS_HOME) must be a directory: move it away (${ELSEWHERE})`,
      );
    }
    throw problem;
  }
  const files: [string, string][] = [
    [paths.token, 'the token file'],
    [paths.pid, 'the pid file'],
    [paths.log, 'the log file'],
  ];
  for (const [path, what] of files) {
    // A missing file is made later; an unreadable one is reported when it is used.
    if (isDirectory(path)) throw new HomeError(path, `${path} is a directory, but it must be ${what}: remove it (${ELSEWHERE})`);
  }
  try {
    accessSync(paths.logs, constants.W_OK);
  } catch (error) {
    throw homeError(error, paths.logs, 'the logs directory');
  }
  // mkdir names the first folder it made: the home itself or one above it means the home is new.
  return { created: made !== undefined && !relative(made, paths.home).startsWith('..') };
}

/**
 * Windows only (elsewhere it resolves to no lines at once): limits a home that `prepareHome`
 * just made to the user, then checks who may read the home, the settings folder and the secret
 * files in them (token, settings file). Resolves to the warning lines for the daemon's log,
 * each naming the path and the icacls command that fixes it. Never rejects; the daemon does
 * not wait for it, so a slow or broken icacls (Wine's does nothing) never delays its start.
 */
export async function secureHome(paths: HomePaths, settingsFile: string, created: boolean, options: AclOptions = {}): Promise<string[]> {
  if ((options.platform ?? process.platform) !== 'win32') return [];
  try {
    const lines: string[] = [];
    if (created) {
      const failed = await restrictToUser(paths.home, options);
      if (failed !== null) lines.push(failed);
    }
    const settingsDir = dirname(settingsFile);
    const places: SecretPlace[] = [{ path: paths.home, what: 'the home folder', folder: paths.home }];
    if (existsSync(paths.token)) places.push({ path: paths.token, what: 'the token file', folder: paths.home });
    if (existsSync(paths.oauth)) places.push({ path: paths.oauth, what: 'the OAuth logins folder', folder: paths.oauth });
    if (existsSync(settingsDir)) places.push({ path: settingsDir, what: 'the settings folder', folder: settingsDir });
    if (existsSync(settingsFile)) places.push({ path: settingsFile, what: 'the settings file', folder: settingsDir });
    lines.push(...(await secretWarnings(places, options)));
    return lines;
  } catch (error) {
    return [`could not check who can read ${paths.home}: ${(error as Error).message}`];
  }
}

/**
 * Turns a file-system error met while using `path` (`what` says what it is, e.g. "the token
 * file") into a {@link HomeError} when the user can fix it; returns any other error unchanged,
 * so that a bug still surfaces as one.
 */
export function homeError(error: unknown, path: string, what: string): unknown {
  if (error instanceof HomeError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOTDIR':
    case 'EEXIST': {
      // EEXIST comes from mkdir over a file; ENOTDIR from a file where a directory should be.
      const file = firstNonDirectory(path);
      if (file === null) return error;
      const role = file === path ? what : 'a directory';
      return new HomeError(file, `${file} is a file, but it must be ${role}: move it away (${ELSEWHERE})`);
    }
    case 'EISDIR':
      return new HomeError(path, `${path} is a directory, but it must be ${what}: remove it (${ELSEWHERE})`);
    case 'EACCES':
    case 'EPERM':
      return new HomeError(path, `no permission to write ${path} (${what}): fix its owner or mode (${ELSEWHERE})`);
    case 'EROFS':
      return new HomeError(path, `${path} (${what}) is on a read-only file system: set EXAI_WS_HOME to a writable directory`);
    case 'ENOSPC':
    case 'EDQUOT':
      return new HomeError(path, `no space left to write ${path} (${what}): free some disk space (${ELSEWHERE})`);
    case 'ELOOP':
    case 'ENAMETOOLONG':
      return new HomeError(path, `cannot use ${path} (${what}): ${code} (${ELSEWHERE})`);
    default:
      return error;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The first existing component of `path`, from the root down, that is not a directory. */
function firstNonDirectory(path: string): string | null {
  const chain: string[] = [];
  for (let p = path; ; p = dirname(p)) {
    chain.unshift(p);
    if (p === parse(p).root) break;
  }
  for (const p of chain) {
    try {
      if (!statSync(p).isDirectory()) return p;
    } catch {
      return null; // missing or unreadable: not a wrong type
    }
  }
  return null;
}
