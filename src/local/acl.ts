/**
 * Secrets on Windows: the folders that hold the token and `daemon.env` are limited to the user
 * with `icacls`, and checked at the daemon's start. Windows ignores the 0600/0700 modes the
 * POSIX code sets, so a folder made under a shared place (a custom EXAI_WS_HOME such as
 * `C:\exai`) would inherit "Users: read" and let every account read the token.
 *
 * Nothing here is ever fatal: an icacls that is missing, fails, times out or prints no access
 * list (Wine's dummy icacls) becomes a warning line, and the daemon starts as it would have.
 * Off win32 every function is a no-op (the modes do the work there). `icacls` is run through an
 * injected runner so tests record the commands and feed real-looking outputs on any platform.
 */
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';

/** What running one command gave; `error` is set when it could not run at all (or timed out). */
export interface CommandResult {
  status: number | null;
  stdout: string;
  stderr: string;
  error?: NodeJS.ErrnoException;
}

/** Runs one command without a shell and without a console window. */
export type CommandRunner = (command: string, args: readonly string[]) => Promise<CommandResult>;

/** icacls answers in milliseconds; a hung one (a network share) must not hold anything up. */
export const ICACLS_TIMEOUT_MS = 10_000;

export const runCommand: CommandRunner = (command, args) =>
  new Promise((resolve) => {
    execFile(
      command,
      [...args],
      { encoding: 'utf8', timeout: ICACLS_TIMEOUT_MS, windowsHide: true, maxBuffer: 1024 * 1024 },
      (error, stdout, stderr) => {
        const err = error as (NodeJS.ErrnoException & { code?: unknown }) | null;
        // execFile's error for a non-zero exit has a numeric code: that is a status, not a failure to run.
        const status = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
        resolve({ status, stdout: String(stdout ?? ''), stderr: String(stderr ?? ''), ...(status === null && err ? { error: err } : {}) });
      },
    );
  });

export interface AclOptions {
  platform?: NodeJS.Platform;
  env?: NodeJS.ProcessEnv;
  runner?: CommandRunner;
}

/**
 * The user as icacls names them: `DOMAIN\user` from USERDOMAIN and USERNAME (the computer's
 * name for a local account), `user` alone without a domain; null when USERNAME is not set.
 */
export function userPrincipal(env: NodeJS.ProcessEnv): string | null {
  const user = env.USERNAME;
  if (!user) return null;
  return env.USERDOMAIN ? `${env.USERDOMAIN}\\${user}` : user;
}

/**
 * The icacls arguments that leave `dir` to the user alone: `/inheritance:r` drops what the
 * parent lent it (Users, Authenticated Users, ...), `/grant:r` replaces the user's entries with
 * full control inherited by every file and folder inside (`(OI)(CI)`), so the token and
 * `daemon.env` written later get the same single entry. icacls changes the folder with
 * SetNamedSecurityInfo, which propagates the inherited entries to the files already there.
 * Explicit entries for others are not touched here: {@link fixCommands} removes those it finds.
 */
export function restrictArgs(dir: string, principal: string): string[] {
  return [dir, '/inheritance:r', '/grant:r', `${principal}:(OI)(CI)F`];
}

/**
 * Limits `dir` to the user (see {@link restrictArgs}). Resolves to null when done or off
 * win32, else to a warning line naming the folder and the command that failed. Never throws.
 */
export async function restrictToUser(dir: string, options: AclOptions = {}): Promise<string | null> {
  const { platform = process.platform, env = process.env, runner = runCommand } = options;
  if (platform !== 'win32') return null;
  const principal = userPrincipal(env);
  if (principal === null) return `could not limit ${dir} to you: USERNAME is not set, so icacls cannot name you`;
  const args = restrictArgs(dir, principal);
  const why = await failure(runner, args);
  return why === null ? null : `could not limit ${dir} to you (${why}); run: ${icaclsLine(args)}`;
}

/**
 * `mkdir -p dir` with mode 0700 (what POSIX needs); on win32 a folder this call made is then
 * limited to the user ({@link restrictToUser}) before anything secret is written into it. A
 * folder that was there already is left as the user set it (the daemon's check warns about it).
 * Resolves to a warning line or null; throws mkdir's error.
 */
export async function makePrivateDir(dir: string, options: AclOptions = {}): Promise<string | null> {
  const made = mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (made === undefined) return null;
  return restrictToUser(dir, options);
}

/** One entry of an icacls listing: who, and its flags and rights as printed (`(I)(OI)(CI)(F)` → I, OI, CI, F). */
export interface AclEntry {
  principal: string;
  parts: string[];
}

/** Flags about inheritance, not rights. */
const INHERITANCE_FLAGS = new Set(['I', 'OI', 'CI', 'IO', 'NP']);

/**
 * Parses `icacls <path>` output into entries. The first line starts with the path, the next ones
 * are indented to the same column; each ends with `principal:(flags)(rights)`. The closing
 * "Successfully processed ..." line (localized) and blank lines have no `:(` and are skipped.
 * A principal may hold spaces (`NT AUTHORITY\Authenticated Users`); a path never holds `:(`.
 */
export function parseIcacls(output: string, path: string): AclEntry[] {
  const lines = output.replace(/\0/g, '').split(/\r?\n/);
  const entries: AclEntry[] = [];
  // Where the principals start: the indent of the continuation lines, else just past the path.
  const indent = lines
    .slice(1)
    .find((l) => /^\s+\S.*:\(/.test(l))
    ?.search(/\S/);
  for (const raw of lines) {
    const at = raw.indexOf(':(');
    if (at < 0) continue;
    let head = raw.slice(0, at);
    const isFirst = entries.length === 0 && !/^\s/.test(raw);
    if (isFirst) {
      if (head.toLowerCase().startsWith(`${path.toLowerCase()} `)) head = head.slice(path.length + 1);
      else if (indent !== undefined && indent > 0) head = head.slice(indent);
      else head = head.slice(head.lastIndexOf(' ') + 1);
    }
    const principal = head.trim();
    const parts = [...raw.slice(at + 1).matchAll(/\(([^)]*)\)/g)].map((m) => m[1] as string);
    if (principal.length > 0 && parts.length > 0) entries.push({ principal, parts });
  }
  return entries;
}

/** What an entry grants, without its inheritance flags; empty for a DENY entry (it takes, not gives). */
function rightsOf(entry: AclEntry): string[] {
  if (entry.parts.includes('DENY')) return [];
  return entry.parts.filter((p) => !INHERITANCE_FLAGS.has(p));
}

/**
 * Principals that may keep access without a warning. SYSTEM is the OS itself, and
 * Administrators can take any file whatever its ACL (take ownership, backup privilege): denying
 * them protects nothing, and Windows puts both on every profile folder. CREATOR OWNER and OWNER
 * RIGHTS stand for the owner, who is the user. icacls prints names in the system's language, so
 * the table holds the English names, their SIDs (printed when a name cannot be resolved) and the
 * German, French, Spanish, Italian, Portuguese and Dutch names; it is matched after
 * {@link asciiOnly}, so a letter outside ASCII is a `.` here.
 */
const TOLERATED = [
  /^(?:NT AUTHORITY|NT-AUTORIT.T|AUTORIT. NT|ENTIDAD NT|AUTORIT. NT|AUTORIDADE NT|NT AUTORITEIT)\\(?:SYSTEM|SYST.ME|SISTEMA|SYSTEEM)$/i,
  /^(?:BUILTIN|VORDEFINIERT|INTEGRADO|NATIVO|PREDEFINITO|INGEBOUWD)\\(?:Administrators|Administratoren|Administrateurs|Administradores|Administratori|Beheerders)$/i,
  /^(?:CREATOR OWNER|ERSTELLER-BESITZER|CR.ATEUR PROPRI.TAIRE|CREADOR PROPIETARIO|CREATORE PROPRIETARIO|PROPRIET.RIO CRIADOR|MAKER EIGENAAR)$/i,
  /^(?:OWNER RIGHTS|BESITZERRECHTE|DROITS DE PROPRI.TAIRE|DERECHOS DE PROPIETARIO)$/i,
  /^\*?S-1-(?:5-18|5-32-544|3-0|3-4)$/i,
];

/**
 * A name with every letter outside printable ASCII made `?`: icacls writes through the OEM code
 * page when its output is a pipe, so such a letter comes back as another byte or U+FFFD.
 */
function asciiOnly(name: string): string {
  return name.replace(/[^\x20-\x7e]/g, '?');
}

/**
 * Whether icacls' name for a principal is the user (`name`, as {@link userPrincipal} gives it).
 * Case does not matter; a letter outside ASCII on either side matches any one letter (see
 * {@link asciiOnly}); when either side has no domain, the user names alone are compared.
 */
export function isUser(name: string, principal: string): boolean {
  const userPart = (s: string) => s.slice(s.lastIndexOf('\\') + 1);
  const both = name.includes('\\') && principal.includes('\\');
  const x = [...asciiOnly(both ? name : userPart(name)).toLowerCase()];
  const y = [...asciiOnly(both ? principal : userPart(principal)).toLowerCase()];
  return x.length === y.length && x.every((ch, i) => ch === y[i] || ch === '?' || y[i] === '?');
}

/** What {@link checkUserOnly} found. */
export type AclCheck =
  | { state: 'private' }
  /** `others`: principals other than the user (and the tolerated ones) that are granted something. */
  | { state: 'shared'; others: string[] }
  /** icacls could not say (missing, failed, printed nothing): `why` says what happened. */
  | { state: 'unknown'; why: string }
  | { state: 'skipped' };

/** Reads `path`'s access list with `icacls <path>` and says whether anyone but the user is granted anything. */
export async function checkUserOnly(path: string, options: AclOptions = {}): Promise<AclCheck> {
  const { platform = process.platform, env = process.env, runner = runCommand } = options;
  if (platform !== 'win32') return { state: 'skipped' };
  const result = await runner('icacls', [path]);
  const why = describeFailure(result);
  if (why !== null) return { state: 'unknown', why };
  const entries = parseIcacls(result.stdout, path);
  if (entries.length === 0) return { state: 'unknown', why: 'icacls printed no access list' };
  const me = userPrincipal(env);
  const others = new Set<string>();
  for (const entry of entries) {
    if (rightsOf(entry).length === 0 || rightsOf(entry).every((r) => r === 'N')) continue;
    if (me !== null && isUser(me, entry.principal)) continue;
    if (TOLERATED.some((re) => re.test(asciiOnly(entry.principal)))) continue;
    others.add(entry.principal);
  }
  return others.size === 0 ? { state: 'private' } : { state: 'shared', others: [...others] };
}

/**
 * The commands that make `dir` the user's alone: {@link restrictArgs}, then, when `others` hold
 * entries of their own (not inherited), `/remove:g` for them.
 */
export function fixCommands(dir: string, principal: string, others: readonly string[]): string[][] {
  const steps = [restrictArgs(dir, principal)];
  if (others.length > 0) steps.push([dir, '/remove:g', ...others]);
  return steps.map((args) => ['icacls', ...args]);
}

/** A secret folder or file to check, and what it is for the message ("the home folder"). */
export interface SecretPlace {
  path: string;
  what: string;
  /** A folder gets `(OI)(CI)` entries in the fix; a file is fixed through its folder. */
  folder: string;
}

/**
 * Checks each place; resolves to the warning lines (none when all are private or off win32).
 * Never throws, never rejects: the daemon starts whatever icacls does.
 */
export async function secretWarnings(places: readonly SecretPlace[], options: AclOptions = {}): Promise<string[]> {
  const { platform = process.platform, env = process.env } = options;
  if (platform !== 'win32') return [];
  const principal = userPrincipal(env) ?? '%USERDOMAIN%\\%USERNAME%';
  const lines: string[] = [];
  // Places icacls could not answer for, by reason: one line each (Wine's dummy says nothing for all).
  const unknown = new Map<string, SecretPlace[]>();
  for (const place of places) {
    let check: AclCheck;
    try {
      check = await checkUserOnly(place.path, options);
    } catch (error) {
      check = { state: 'unknown', why: (error as Error).message };
    }
    if (check.state === 'shared') {
      const fix = fixCommands(place.folder, principal, check.others).map(icaclsWords).join(' && ');
      lines.push(`${place.what} ${place.path} can be read by ${check.others.join(', ')}, not only by you: fix with: ${fix}`);
    } else if (check.state === 'unknown') {
      unknown.set(check.why, [...(unknown.get(check.why) ?? []), place]);
    }
  }
  for (const [why, left] of unknown) {
    const folders = [...new Set(left.map((p) => p.folder))];
    const fix = folders.map((folder) => icaclsLine(restrictArgs(folder, principal))).join(' && ');
    lines.push(
      `could not check who can read ${left.map((p) => `${p.what} ${p.path}`).join(', ')} (${why}); to limit ${folders.length === 1 ? 'it' : 'them'} to you: ${fix}`,
    );
  }
  return lines;
}

async function failure(runner: CommandRunner, args: readonly string[]): Promise<string | null> {
  try {
    return describeFailure(await runner('icacls', args));
  } catch (error) {
    return (error as Error).message;
  }
}

function describeFailure(result: CommandResult): string | null {
  if (result.error) return result.error.code === 'ENOENT' ? 'icacls is not installed' : `icacls: ${result.error.message}`;
  if (result.status === 0) return null;
  const said = (result.stderr.trim() || result.stdout.trim()).replace(/\0/g, '').split(/\r?\n/)[0];
  return `icacls exited with ${result.status}${said ? `: ${said}` : ''}`;
}

/** A command line for cmd.exe and PowerShell: words with spaces or parentheses in double quotes. */
export function icaclsLine(args: readonly string[]): string {
  return icaclsWords(['icacls', ...args]);
}

function icaclsWords(words: readonly string[]): string {
  return words.map((w) => (/^[^\s"()&|<>^%!;,]+$/.test(w) ? w : `"${w}"`)).join(' ');
}
