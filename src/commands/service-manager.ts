/**
 * The service manager side of `exai-ws service` (service.ts): where each platform's service
 * file goes and which manager commands load and unload it (systemd, launchd, Task Scheduler),
 * and running those commands one line each, saying what is left when the manager cannot be used.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { userPrincipal, type CommandRunner } from '../local/acl.js';
import { settingsPath } from '../local/config-path.js';
import {
  LAUNCHD_LABEL,
  SYSTEMD_UNIT,
  launchdPlist,
  parsePlistProgramArguments,
  parseUnitExecStart,
  serviceSpec,
  shellLine,
  systemdUnit,
} from './service-files.js';
import { TASK_FILE_NAME, TASK_NAME, decodeTaskFile, parseTaskCommand, taskXml, windowsArg } from './windows-task.js';

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
export interface Platform {
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

export function platformOf(io: ServiceIo): Platform | string {
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
export function readServiceFile(platform: Platform): string {
  const bytes = readFileSync(platform.file);
  return platform.kind === 'schtasks' ? decodeTaskFile(bytes) : bytes.toString('utf8');
}

/**
 * Whether a failed step is what the caller wanted anyway: booting out a launchd job, or ending
 * a task, that is not loaded or not running; deleting a task that is not registered.
 */
export function nothingToUndo(step: readonly string[], result: ManagerResult): boolean {
  if (step[0] === 'launchctl') return step[1] === 'bootout';
  if (step[0] !== 'schtasks' || result.error) return false;
  if (step[1] === '/End') return true;
  return step[1] === '/Delete' && /cannot find|does not exist|not exist/i.test(result.stderr + result.stdout);
}

/**
 * How a run of steps ended: all done (or left to the user, without a manager); one failed; or
 * the manager could not be reached at all, when the caller said that is no failure for it.
 */
export type StepsOutcome = 'done' | 'failed' | 'unreachable';

/**
 * Runs the steps in order, one line each, and stops at the first that fails. Without a manager,
 * or when the manager cannot be reached, it prints the steps left for the user to run, unless
 * `unreachableIsFine`: then it says the step was not run and returns `unreachable`.
 */
export function runSteps(
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
export function unreachable(result: ManagerResult): boolean {
  if (result.error?.code === 'ENOENT') return true;
  return /failed to connect to bus|no medium found|not been booted with systemd|could not find domain|operation not permitted while system is booted|task scheduler service is not available/i.test(
    result.stderr,
  );
}

export function firstLine(text: string): string {
  return text.trim().split('\n')[0]?.trim() ?? '';
}
