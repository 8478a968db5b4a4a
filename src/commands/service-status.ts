/** `exai-ws service status`: the installed file, and what the service manager says of it. */
import { ExitCode } from './exit-codes.js';
import { SYSTEMD_UNIT } from './service-files.js';
import { TASK_NAME, parseTaskCommand } from './windows-task.js';
import {
  firstLine,
  readServiceFile,
  unreachable,
  type ManagerResult,
  type ManagerRunner,
  type Platform,
  type ServiceIo,
} from './service-manager.js';

export function status(platform: Platform, io: ServiceIo, say: (line: string) => void): number {
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
