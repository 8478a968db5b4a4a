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
import { homedir } from 'node:os';
import { existsSync, lstatSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { cardIsLive } from '../local/pidfile.js';
import { makePrivateDir } from '../local/acl.js';
import { replaceWhole } from '../local/whole-file.js';
import { legacyServiceEnvPath, settingsPath } from '../local/config-path.js';
import { readSettings } from '../local/settings.js';
import { moveServiceEnv } from './settings.js';
import { readAddressCard, resolveHome } from '../local/files.js';
import { discoverDaemon } from '../local/client-settings.js';
import { fallbackNote, stopDaemon } from './control-client.js';
import { parseCommand } from '../local/args.js';
import { ExitCode } from './exit-codes.js';
import { SERVICE_SPEC } from '../local/specs.js';
import { settingsLeftOut } from './service-files.js';
import { encodeTaskFile } from './windows-task.js';
import { nothingToUndo, platformOf, readServiceFile, runManager, runSteps, type Platform, type ServiceIo } from './service-manager.js';
import { status } from './service-status.js';

export { runManager, type ManagerResult, type ManagerRunner, type ServiceIo } from './service-manager.js';

const USAGE = SERVICE_SPEC.usage;
/** After starting the service, how long `install` waits for its daemon to answer. */
const ANSWER_WAIT_MS = 5_000;

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
