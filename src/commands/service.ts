/**
 * `exai-ws service install|uninstall|status`: a per-user service that runs the daemon from the
 * user's login, for clients that connect by URL and cannot start a daemon themselves. A systemd
 * user unit on Linux, a launchd agent on macOS (files: service-files.ts), a per-user Task
 * Scheduler task on Windows (windows-task.ts), registered with `schtasks` and no administrator.
 *
 * Every step is one line on stdout. When the service manager cannot be used (no `systemctl`, no
 * systemd user session, `EXAI_WS_SERVICE_MANAGER=none`) the file is still written and the lines
 * say which commands to run. Exit codes: 0 done; 1 a step failed, or `status` found no service;
 * 2 bad usage.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { cardIsLive } from '../local/pidfile.js';
import { makePrivateDir, userPrincipal, type CommandRunner } from '../local/acl.js';
import { replaceWhole } from '../local/whole-file.js';
import { legacyServiceEnvPath, settingsPath } from '../local/config-path.js';
import { readSettings } from '../local/settings.js';
import { moveServiceEnv } from './settings.js';
import { discoverDaemon, readAddressCard, resolveHome } from '../local/files.js';
import { fallbackNote, stopDaemon } from './control-client.js';
import { parseCommand } from '../local/args.js';
import { ExitCode } from './exit-codes.js';
import { SERVICE_SPEC } from '../local/specs.js';
import {
  LAUNCHD_LABEL,
  SYSTEMD_UNIT,
  launchdPlist,
  parsePlistProgramArguments,
  parseUnitExecStart,
  settingsLeftOut,
  serviceSpec,
  shellLine,
  systemdUnit,
} from './service-files.js';
import { TASK_FILE_NAME, TASK_NAME, decodeTaskFile, encodeTaskFile, parseTaskCommand, taskXml, windowsArg } from './windows-task.js';

const USAGE = SERVICE_SPEC.usage;

/** What running a service manager command gave. `error` is set when it could not run at all. */
export interface ManagerResult {
  status: number | null;
  stdout: string;
  stderr: string;
  error?: NodeJS.ErrnoException;
}

/** Runs one service manager command (`systemctl ...`, `launchctl ...`). */
export type ManagerRunner = (command: string, args: readonly string[]) => ManagerResult;

/** How long one service manager command may take. */
const MANAGER_TIMEOUT_MS = 15_000;
/** After starting the service, how long `install` waits for its daemon to answer. */
const ANSWER_WAIT_MS = 5_000;

export const runManager: ManagerRunner = (command, args) => {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: MANAGER_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] });
  return {
    status: r.status,
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
    ...(r.error ? { error: r.error } : {}),
  };
};

export interface ServiceIo {
  stdout: { write(text: string): unknown };
  /** Usage errors. */
  stderr: { write(text: string): unknown };
  env: NodeJS.ProcessEnv;
  platform: NodeJS.Platform;
  /** The user's home directory (`~`). */
  userHome: string;
  /** The user id launchd's `gui/<uid>` domain names. */
  uid: number;
  /**
   * Runs the service manager; null skips it (what `EXAI_WS_SERVICE_MANAGER=none` does): the
   * file is written or removed and the commands to run are printed instead.
   */
  manager: ManagerRunner | null;
  /** Waits for a daemon to answer after the service started; false skips the wait (tests). */
  waitForDaemon: boolean;
  /** Runs icacls when `install` makes the settings folder on Windows (acl.ts); the real one by default. */
  aclRunner?: CommandRunner;
  /**
   * Asks this home's running daemon to stop gracefully (the control channel) and resolves to a
   * line saying what happened, or null when none runs. On Windows `schtasks /End` would end
   * the task's daemon outright (no drain, its card left behind): `uninstall` asks first.
   */
  askStop?: (by: string) => Promise<string | null>;
}

/** Where each platform's service file goes, and the commands that load and unload it. */
interface Platform {
  kind: 'systemd' | 'launchd' | 'schtasks';
  file: string;
  text: string;
  /** The command line the service runs, read back out of a file's text; null when it has none. */
  parse: (text: string) => string[] | null;
  /** A command line for messages, quoted for this platform's shell. */
  line: (words: readonly string[]) => string;
  /** The manager's own name for the service, for messages. */
  name: string;
  /** The steps of `install` after the file is written (`changed`: the file's text is new). */
  install(changed: boolean): string[][];
  /** The steps of `uninstall` before the file is removed. */
  stop: string[][];
  /** The steps of `uninstall` after the file is removed. */
  forget: string[][];
  /** What enabling the service made besides the file (systemd's `WantedBy` link), removed by `uninstall` when the manager cannot be asked. */
  enablement: string[];
  /** Where to look when the daemon does not answer. */
  logHint: string;
}

function platformOf(io: ServiceIo): Platform | string {
  const spec = serviceSpec(io.env);
  if (io.platform === 'linux') {
    const configHome = io.env.XDG_CONFIG_HOME && io.env.XDG_CONFIG_HOME.length > 0 ? io.env.XDG_CONFIG_HOME : join(io.userHome, '.config');
    const systemctl = (...args: string[]) => ['systemctl', '--user', ...args];
    return {
      kind: 'systemd',
      file: join(configHome, 'systemd', 'user', SYSTEMD_UNIT),
      text: systemdUnit(spec),
      parse: parseUnitExecStart,
      line: shellLine,
      name: SYSTEMD_UNIT,
      // A running service keeps the command line it started with: a new file needs a restart.
      install: (changed) =>
        changed
          ? [systemctl('daemon-reload'), systemctl('enable', SYSTEMD_UNIT), systemctl('restart', SYSTEMD_UNIT)]
          : [systemctl('daemon-reload'), systemctl('enable', '--now', SYSTEMD_UNIT)],
      stop: [systemctl('disable', '--now', SYSTEMD_UNIT)],
      forget: [systemctl('daemon-reload')],
      enablement: [join(configHome, 'systemd', 'user', 'default.target.wants', SYSTEMD_UNIT)],
      logHint: `systemctl --user status ${SYSTEMD_UNIT}; journalctl --user -u ${SYSTEMD_UNIT}`,
    };
  }
  if (io.platform === 'darwin') {
    const file = join(io.userHome, 'Library', 'LaunchAgents', `${LAUNCHD_LABEL}.plist`);
    const domain = `gui/${io.uid}`;
    const bootout = ['launchctl', 'bootout', `${domain}/${LAUNCHD_LABEL}`];
    return {
      kind: 'launchd',
      file,
      text: launchdPlist(spec, LAUNCHD_LABEL, io.userHome),
      parse: parsePlistProgramArguments,
      line: shellLine,
      name: `${domain}/${LAUNCHD_LABEL}`,
      // bootout first: launchd keeps the job it loaded, so a changed file is only read by a new bootstrap.
      install: () => [bootout, ['launchctl', 'enable', `${domain}/${LAUNCHD_LABEL}`], ['launchctl', 'bootstrap', domain, file]],
      stop: [bootout],
      forget: [],
      enablement: [],
      logHint: `launchctl print ${domain}/${LAUNCHD_LABEL}; ${join(spec.home, 'logs', 'service.log')}`,
    };
  }
  if (io.platform === 'win32') {
    const user = userPrincipal(io.env);
    if (user === null) return 'cannot tell who you are: USERNAME is not set, and the task must name its user (DOMAIN\\user)';
    const file = join(dirname(settingsPath(io.env, io.platform)), TASK_FILE_NAME);
    const end = ['schtasks', '/End', '/TN', TASK_NAME];
    const create = ['schtasks', '/Create', '/TN', TASK_NAME, '/XML', file, '/F'];
    const run = ['schtasks', '/Run', '/TN', TASK_NAME];
    return {
      kind: 'schtasks',
      file,
      text: taskXml(spec, user, io.userHome),
      parse: parseTaskCommand,
      line: windowsLine,
      name: `task ${TASK_NAME}`,
      // A running task keeps the command it started with: a new definition needs it ended first.
      install: (changed) => (changed ? [end, create, run] : [create, run]),
      stop: [end, ['schtasks', '/Delete', '/TN', TASK_NAME, '/F']],
      forget: [],
      enablement: [],
      logHint: `schtasks /Query /TN ${TASK_NAME} /V /FO LIST; ${join(spec.home, 'logs', 'ws_daemon.log')}`,
    };
  }
  return `no per-user service manager is supported on ${io.platform} (systemd on Linux, launchd on macOS, Task Scheduler on Windows); run \`exai-ws daemon\` from your login scripts instead`;
}

/** A command line for cmd.exe and PowerShell: words quoted as Windows programs split them. */
function windowsLine(words: readonly string[]): string {
  return words.map(windowsArg).join(' ');
}

/** A service file's text: the task file is UTF-16 (see windows-task.ts), the others UTF-8. Throws when it cannot be read. */
function readServiceFile(platform: Platform): string {
  const bytes = readFileSync(platform.file);
  return platform.kind === 'schtasks' ? decodeTaskFile(bytes) : bytes.toString('utf8');
}

/**
 * Whether a failed step is what the caller wanted anyway: booting out a launchd job, or ending
 * a task, that is not loaded or not running; deleting a task that is not registered.
 */
function nothingToUndo(step: readonly string[], result: ManagerResult): boolean {
  if (step[0] === 'launchctl') return step[1] === 'bootout';
  if (step[0] !== 'schtasks' || result.error) return false;
  if (step[1] === '/End') return true;
  return step[1] === '/Delete' && /cannot find|does not exist|not exist/i.test(result.stderr + result.stdout);
}

/** Runs `exai-ws service ...`; resolves to the exit code. Never throws for the user's files. */
export async function runServiceCommand(args: readonly string[], io: Partial<ServiceIo> = {}): Promise<number> {
  const env = io.env ?? process.env;
  const full: ServiceIo = {
    stdout: process.stdout,
    stderr: process.stderr,
    env,
    platform: process.platform,
    userHome: homedir(),
    uid: typeof process.getuid === 'function' ? process.getuid() : 0,
    manager: env.EXAI_WS_SERVICE_MANAGER === 'none' ? null : runManager,
    waitForDaemon: true,
    ...io,
  };
  const say = (line: string) => full.stdout.write(`${line}\n`);
  const parsed = parseCommand(SERVICE_SPEC, args);
  if ('help' in parsed) {
    say(USAGE);
    return ExitCode.OK;
  }
  const action = 'values' in parsed ? parsed.positionals[0] : undefined;
  if ('error' in parsed || action === undefined || !['install', 'uninstall', 'status'].includes(action)) {
    const why = 'error' in parsed ? parsed.error : action === undefined ? 'which action?' : `unknown action '${action}'`;
    full.stderr.write(`exai-ws service: ${why}\n${USAGE}\n`);
    return ExitCode.USAGE;
  }
  let platform: Platform | string;
  try {
    platform = platformOf(full);
  } catch (error) {
    say(`exai-ws service: ${(error as Error).message}`);
    return ExitCode.FAILURE;
  }
  if (typeof platform === 'string') {
    say(`exai-ws service: ${platform}`);
    return ExitCode.FAILURE;
  }
  if (action === 'install') return install(platform, full, say);
  if (action === 'uninstall') return uninstall(platform, full, say);
  const code = status(platform, full, say);
  if (code === ExitCode.OK) {
    const paths = resolveHome(full.env);
    const card = readAddressCard(paths.pid);
    say(
      card && card.port > 0 && (await cardIsLive(card))
        ? `daemon: pid ${card.pid} answers on ${card.host}:${card.port}`
        : `daemon: none runs for ${paths.home}`,
    );
  }
  return code;
}

/**
 * How a run of steps ended: all done (or left to the user, without a manager); one failed; or
 * the manager could not be reached at all, when the caller said that is no failure for it.
 */
type StepsOutcome = 'done' | 'failed' | 'unreachable';

/**
 * Runs the steps in order, one line each, and stops at the first that fails. Without a manager,
 * or when the manager cannot be reached, it prints the steps left for the user to run, unless
 * `unreachableIsFine`: then it says the step was not run and returns `unreachable`.
 */
function runSteps(
  steps: string[][],
  io: ServiceIo,
  say: (line: string) => void,
  tolerate: (step: string[], result: ManagerResult) => boolean = () => false,
  unreachableIsFine = false,
  shellLine: (words: readonly string[]) => string = defaultLine,
): StepsOutcome {
  if (io.manager === null) {
    say('service manager: skipped (EXAI_WS_SERVICE_MANAGER=none); to apply it, run:');
    for (const step of steps) say(`  ${shellLine(step)}`);
    return 'done';
  }
  for (const [i, step] of steps.entries()) {
    let result: ManagerResult;
    try {
      result = io.manager(step[0] as string, step.slice(1));
    } catch (error) {
      result = { status: null, stdout: '', stderr: '', error: error as NodeJS.ErrnoException };
    }
    const line = shellLine(step);
    if (result.status === 0) {
      say(`ran: ${line}`);
      continue;
    }
    const why = result.error
      ? result.error.code === 'ENOENT'
        ? `${step[0]} is not installed`
        : result.error.message
      : firstLine(result.stderr) || firstLine(result.stdout) || `exit code ${result.status}`;
    if (tolerate(step, result)) {
      say(`ran: ${line} (${why}; nothing to undo)`);
      continue;
    }
    if (unreachableIsFine && unreachable(result)) {
      say(`not run: ${line} (the service manager is not available here: ${why})`);
      return 'unreachable';
    }
    say(`failed: ${line}: ${why}`);
    const left = steps.slice(i);
    if (unreachable(result)) say(`the service manager is not available here (${why}); once it is, run:`);
    else say('fix that, then run:');
    for (const s of left) say(`  ${shellLine(s)}`);
    return 'failed';
  }
  return 'done';
}

const defaultLine = shellLine;

/** No `systemctl`/`launchctl`/`schtasks`, or no user session to talk to (a container, an ssh login without lingering). */
function unreachable(result: ManagerResult): boolean {
  if (result.error?.code === 'ENOENT') return true;
  return /failed to connect to bus|no medium found|not been booted with systemd|could not find domain|operation not permitted while system is booted|task scheduler service is not available/i.test(
    result.stderr,
  );
}

function firstLine(text: string): string {
  return text.trim().split('\n')[0]?.trim() ?? '';
}

async function install(platform: Platform, io: ServiceIo, say: (line: string) => void): Promise<number> {
  const paths = resolveHome(io.env);
  const before = readAddressCard(paths.pid);
  const running = before && (await cardIsLive(before)) ? before : null;
  let previous: string | null = null;
  try {
    previous = readServiceFile(platform);
  } catch {
    // not installed yet
  }
  const changed = previous !== platform.text;
  let aclWarning: string | null = null;
  try {
    if (platform.kind === 'schtasks') {
      // The task file sits in the settings folder, which holds daemon.env's keys: made private.
      aclWarning = await makePrivateDir(dirname(platform.file), { platform: io.platform, env: io.env, runner: io.aclRunner });
      if (changed) writeFileSync(platform.file, encodeTaskFile(platform.text));
    } else {
      mkdirSync(dirname(platform.file), { recursive: true });
      // launchd opens the log before the daemon could make its home.
      if (platform.kind === 'launchd') mkdirSync(paths.logs, { recursive: true });
      if (changed) replaceWhole(platform.file, platform.text, 0o644);
    }
  } catch (error) {
    say(`failed: cannot write ${platform.file}: ${(error as Error).message}`);
    return ExitCode.FAILURE;
  }
  const command = platform.parse(platform.text);
  say(`${changed ? (previous === null ? 'wrote' : 'updated') : 'unchanged'}: ${platform.file}`);
  say(`  runs: ${platform.line(command ?? [])}`);
  say(`  home: ${paths.home}`);
  if (aclWarning !== null) say(`warning: ${aclWarning}`);
  for (const line of moveServiceEnv(legacyServiceEnvPath(io.env, io.platform), settingsPath(io.env, io.platform))) say(line);
  const leftOut = settingsLeftOut(io.env, readSettings(settingsPath(io.env, io.platform)).values);
  if (leftOut.length > 0) {
    say(
      `  not copied: ${leftOut.join(', ')} from this shell: the daemon takes its settings from ${settingsPath(io.env, io.platform)} only; keep them with: ${leftOut.map((name) => `exai-ws settings set ${name}=...`).join('; ')}`,
    );
  }
  if (platform.kind === 'schtasks') {
    const located = ['EXAI_WS_HOME', 'EXAI_WS_CONFIG', 'EXAI_WS_SETTINGS'].filter((name) => io.env[name]);
    if (located.length > 0) {
      say(
        `note: the task runs with your logon environment, as your editors' shims do, not this shell's: ${located.join(', ')} set here reach it only when set for your user (${located.map((name) => `setx ${name} "..."`).join('; ')})`,
      );
    }
  }
  if (command?.some((word) => /[\\/]_npx[\\/]/.test(word))) {
    say("note: this CLI runs from npx's cache, which npm may clean at any time: install exai-ws (npm install -g) and run this again");
  }
  if (running) {
    say(
      `note: a daemon already runs (pid ${running.pid} on port ${running.port}), started outside the service: the service's daemon is refused while it runs and is retried every 10 s; \`exai-ws stop\` hands over now`,
    );
  }
  // A launchd job not loaded yet makes bootout fail: that is the state it is there to reach.
  // Ending a task that is not running (or not registered yet) is not a failure either.
  const ok = runSteps(platform.install(changed), io, say, nothingToUndo, false, platform.line) === 'done';
  if (!ok) return ExitCode.FAILURE;
  if (io.manager === null) return ExitCode.OK;
  say(`enabled: ${platform.name} starts the daemon at login and again when it fails`);
  if (!io.waitForDaemon) return ExitCode.OK;
  const answered = await waitForAnswer(paths.pid, ANSWER_WAIT_MS);
  if (answered) say(`daemon: pid ${answered.pid} answers on ${answered.host}:${answered.port}`);
  else say(`daemon: none answers yet after ${ANSWER_WAIT_MS / 1000} s; see ${platform.logHint}`);
  return ExitCode.OK;
}

async function waitForAnswer(pidPath: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const card = readAddressCard(pidPath);
    if (card && card.port > 0 && (await cardIsLive(card))) return card;
    if (Date.now() > deadline) return null;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Stops and disables the service and removes its file. Without a user service manager to ask
 * (no user bus: a container, an ssh login; no systemctl) the file and its enable link are
 * removed all the same, as `disable` would, and it says what it did and what is left.
 */
async function uninstall(platform: Platform, io: ServiceIo, say: (line: string) => void): Promise<number> {
  if (!existsSync(platform.file)) {
    say(`not installed: ${platform.file} does not exist`);
    return ExitCode.OK;
  }
  // systemd and launchd stop a daemon with SIGTERM, which drains it; Windows has no such signal.
  if (platform.kind === 'schtasks' && io.manager !== null) {
    const line = await (io.askStop ?? ((by: string) => askStopDaemon(by, io.env)))('exai-ws service uninstall');
    if (line !== null) say(line);
  }
  // Stopping what is not loaded any more is what uninstall wants: not a failure.
  const stopped = runSteps(
    platform.stop,
    io,
    say,
    (step, result) => platform.kind === 'launchd' || nothingToUndo(step, result),
    true,
    platform.line,
  );
  if (stopped === 'failed') return ExitCode.FAILURE;
  const removed = stopped === 'unreachable' ? [...platform.enablement.filter(isLink), platform.file] : [platform.file];
  for (const path of removed) {
    try {
      rmSync(path, { force: true });
    } catch (error) {
      say(`failed: cannot remove ${path}: ${(error as Error).message}`);
      return ExitCode.FAILURE;
    }
    say(`removed: ${path}${path === platform.file ? '' : ' (what disable would remove)'}`);
  }
  if (stopped === 'unreachable') {
    // Usually no user manager runs at all; one may in another login of this user (lingering).
    say(
      'done: the service does not start again; should a daemon still run from it (a service manager of another login), `exai-ws stop` ends it',
    );
    return ExitCode.OK;
  }
  if (platform.forget.length > 0 && runSteps(platform.forget, io, say, undefined, false, platform.line) !== 'done') return ExitCode.FAILURE;
  if (io.manager !== null) say('stopped: the service daemon; windows with a shim start a daemon of their own when they need one');
  return ExitCode.OK;
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

function status(platform: Platform, io: ServiceIo, say: (line: string) => void): number {
  let text: string;
  try {
    text = readServiceFile(platform);
  } catch {
    say(`not installed: ${platform.file} does not exist (exai-ws service install)`);
    return ExitCode.FAILURE;
  }
  const command = platform.parse(text);
  say(`installed: ${platform.file}`);
  say(`  runs: ${command ? platform.line(command) : '(no command line found in the file)'}`);
  if (text !== platform.text)
    say('  differs from what `exai-ws service install` would write now (another Node, CLI or environment); run it again to update');
  if (io.manager === null) {
    say('service manager: not asked (EXAI_WS_SERVICE_MANAGER=none)');
    return ExitCode.OK;
  }
  if (platform.kind === 'systemd') {
    const ask = (...args: string[]) => io.manager?.('systemctl', ['--user', ...args]);
    // is-active needs the user manager; is-enabled would answer from the files alone.
    const active = ask('is-active', SYSTEMD_UNIT);
    if (active?.error || (active && unreachable(active))) {
      say(`service manager: not available (${active.error?.code === 'ENOENT' ? 'systemctl is not installed' : firstLine(active.stderr)})`);
      return ExitCode.OK;
    }
    const enabled = ask('is-enabled', SYSTEMD_UNIT);
    const pid = ask('show', '--property=MainPID', '--value', SYSTEMD_UNIT);
    const mainPid = Number(firstLine(pid?.stdout ?? ''));
    say(
      `service manager: ${firstLine(enabled?.stdout ?? '') || 'unknown'}, ${firstLine(active?.stdout ?? '') || 'unknown'}${mainPid > 0 ? ` (pid ${mainPid})` : ''}`,
    );
    return ExitCode.OK;
  }
  if (platform.kind === 'schtasks') return taskStatus(command, io.manager, platform.line, say);
  const printed = io.manager('launchctl', ['print', platform.name]);
  if (printed.status !== 0) {
    say(`service manager: not loaded (${firstLine(printed.stderr) || firstLine(printed.stdout) || `exit code ${printed.status}`})`);
    return ExitCode.OK;
  }
  const field = (name: string) => new RegExp(`^\\s*${name} = (.+)$`, 'm').exec(printed.stdout)?.[1]?.trim();
  const parts = [`state ${field('state') ?? 'unknown'}`];
  if (field('pid')) parts.push(`pid ${field('pid')}`);
  if (field('last exit code')) parts.push(`last exit code ${field('last exit code')}`);
  say(`service manager: loaded, ${parts.join(', ')}`);
  return ExitCode.OK;
}

/**
 * What Task Scheduler holds: the registered definition (`/Query /XML`, whose command is compared
 * with the file's) and the task's state (`/Query /FO CSV /NH`: name, next run, status; the
 * status word is in the system's language). Never fails `status`: the file is installed.
 */
function taskStatus(
  fileCommand: string[] | null,
  manager: ManagerRunner,
  line: (words: readonly string[]) => string,
  say: (line: string) => void,
): number {
  const ask = (args: string[]): ManagerResult => {
    try {
      return manager('schtasks', args);
    } catch (error) {
      return { status: null, stdout: '', stderr: '', error: error as NodeJS.ErrnoException };
    }
  };
  const queried = ask(['/Query', '/TN', TASK_NAME, '/XML']);
  if (queried.error) {
    say(`service manager: not available (${queried.error.code === 'ENOENT' ? 'schtasks is not installed' : queried.error.message})`);
    return ExitCode.OK;
  }
  if (queried.status !== 0) {
    const why = firstLine(queried.stderr) || firstLine(queried.stdout) || `exit code ${queried.status}`;
    say(`service manager: task ${TASK_NAME} is not registered (${why}); exai-ws service install registers it`);
    return ExitCode.OK;
  }
  const registered = parseTaskCommand(queried.stdout);
  if (registered === null) {
    say(`service manager: unknown (schtasks /Query printed no task definition for ${TASK_NAME})`);
    return ExitCode.OK;
  }
  if (fileCommand !== null && line(registered) !== line(fileCommand)) {
    say(`  the registered task runs something else: ${line(registered)}; exai-ws service install registers the file again`);
  }
  const listed = ask(['/Query', '/TN', TASK_NAME, '/FO', 'CSV', '/NH']);
  const fields = [...(firstLine(listed.stdout.replace(/\0/g, '')).matchAll(/"([^"]*)"/g) ?? [])].map((m) => m[1] as string);
  const state = listed.status === 0 && fields.length >= 3 ? fields[fields.length - 1] : undefined;
  say(`service manager: registered, ${state || 'state unknown'}`);
  return ExitCode.OK;
}

/** {@link ServiceIo.askStop}: the running daemon of the home `env` names, asked over its control channel. */
export async function askStopDaemon(by: string, env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  const paths = resolveHome(env);
  const card = readAddressCard(paths.pid);
  if (!card || !(await cardIsLive(card))) return null;
  const { token } = discoverDaemon(env);
  const target = card.port > 0 ? { host: card.host, port: card.port, token } : null;
  const outcome = await stopDaemon({ pid: card.pid, target, why: 'it is still starting', pidPath: paths.pid }, { by });
  if (!outcome.stopped) return `failed: daemon ${card.pid} did not stop; the task is ended anyway`;
  // Killed outright (it could not be asked): the line the CLI prints for that, without its prefix.
  return outcome.how === 'killed'
    ? `stopped: ${fallbackNote(outcome, card.pid)
        .trim()
        .replace(/^exai-ws: /, '')}`
    : `stopped: daemon ${card.pid}, gracefully`;
}
