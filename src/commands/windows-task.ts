/**
 * The Windows side of `exai-ws service`: the Task Scheduler task definition (XML) that runs the
 * daemon at the user's logon, and the command line read back out of it (or out of what
 * `schtasks /Query /XML` prints) for `status`. Pure text in, text out, like service-files.ts:
 * tests check it on any platform.
 *
 * Why these settings: the task is the user's own (LogonTrigger and Principal name the user, so
 * no administrator is needed to register it: only a task for "any user" needs one), runs with
 * the user's interactive token at least privilege, never stops for a time limit or on battery,
 * ignores a second start while one runs (the daemon's pid lock would refuse it anyway), and is
 * restarted when it fails, as the systemd unit is.
 */
import { quoteForRuntime } from '../hosting/windows-command.js';
import type { ServiceSpec } from './service-files.js';

/** The task's name, in the root folder of Task Scheduler (`schtasks /TN exai-ws`). */
export const TASK_NAME = 'exai-ws';
/** The XML file `install` writes beside the settings file and hands to `schtasks /Create /XML`. */
export const TASK_FILE_NAME = 'exai-ws-task.xml';
/**
 * Task Scheduler restarts a failed task at most this often: once a minute is its shortest
 * interval (PT1M), ten times covers a daemon refused while another one still holds the home
 * (the auto-started one exits once idle) without retrying forever a daemon that cannot start.
 */
export const TASK_RESTART_INTERVAL = 'PT1M';
export const TASK_RESTART_COUNT = 10;

const XML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
const xml = (value: string) => value.replace(/[&<>"']/g, (c) => XML_ESCAPES[c] as string);

/**
 * One argument for a Windows program's command line, quoted the way the C runtime and
 * CommandLineToArgvW split it back: left alone when it has no space, tab or quote; else in
 * double quotes, a quote as `\"`, and the backslashes before a quote or the closing quote doubled.
 */
export function windowsArg(word: string): string {
  return word.length > 0 && !/[\s"]/.test(word) ? word : quoteForRuntime(word);
}

/** Splits a command line's arguments as CommandLineToArgvW does (the rules {@link windowsArg} writes for). */
export function parseWindowsArgs(line: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (line[i] === ' ' || line[i] === '\t') i++;
    if (i >= line.length) break;
    let word = '';
    let quoted = false;
    for (; i < line.length; i++) {
      const ch = line[i] as string;
      if (!quoted && (ch === ' ' || ch === '\t')) break;
      if (ch === '\\') {
        let n = 0;
        while (line[i + n] === '\\') n++;
        if (line[i + n] === '"') {
          word += '\\'.repeat(Math.floor(n / 2));
          i += n;
          if (n % 2 === 1) word += '"';
          else quoted = !quoted;
        } else {
          word += '\\'.repeat(n);
          i += n - 1;
        }
        continue;
      }
      if (ch === '"') {
        // `""` inside quotes is a literal quote (the CRT's rule since 2008).
        if (quoted && line[i + 1] === '"') {
          word += '"';
          i++;
        } else quoted = !quoted;
        continue;
      }
      word += ch;
    }
    words.push(word);
  }
  return words;
}

function assertOneLine(value: string, what: string): void {
  if (/[\n\r\0]/.test(value))
    throw new TypeError(`${what} contains a line break or NUL, which a task cannot hold: ${JSON.stringify(value)}`);
}

/**
 * The task definition for `user` (`DOMAIN\user`). The action is the spec's program and
 * arguments; its environment is not written: a task has none of its own, and it runs with the
 * user's logon environment, the same one the shims of the user's editors see. Throws a
 * TypeError for a value with a line break.
 */
export function taskXml(spec: ServiceSpec, user: string, workingDirectory: string): string {
  for (const word of [spec.program, ...spec.args, user, workingDirectory]) assertOneLine(word, 'the task');
  const lines = [
    '<?xml version="1.0" encoding="UTF-16"?>',
    '<!-- Written by `exai-ws service install`; `exai-ws service uninstall` removes it and the task. -->',
    '<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">',
    '  <RegistrationInfo>',
    '    <Description>exai-ws: one MCP daemon shared by every MCP client of this user</Description>',
    `    <URI>\\${TASK_NAME}</URI>`,
    '  </RegistrationInfo>',
    '  <Triggers>',
    '    <LogonTrigger>',
    '      <Enabled>true</Enabled>',
    `      <UserId>${xml(user)}</UserId>`,
    '    </LogonTrigger>',
    '  </Triggers>',
    '  <Principals>',
    '    <Principal id="Author">',
    `      <UserId>${xml(user)}</UserId>`,
    '      <LogonType>InteractiveToken</LogonType>',
    '      <RunLevel>LeastPrivilege</RunLevel>',
    '    </Principal>',
    '  </Principals>',
    '  <Settings>',
    '    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>',
    '    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>',
    '    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>',
    '    <AllowHardTerminate>true</AllowHardTerminate>',
    '    <StartWhenAvailable>false</StartWhenAvailable>',
    '    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>',
    '    <IdleSettings>',
    '      <StopOnIdleEnd>false</StopOnIdleEnd>',
    '      <RestartOnIdle>false</RestartOnIdle>',
    '    </IdleSettings>',
    '    <AllowStartOnDemand>true</AllowStartOnDemand>',
    '    <Enabled>true</Enabled>',
    '    <Hidden>true</Hidden>',
    '    <RunOnlyIfIdle>false</RunOnlyIfIdle>',
    '    <WakeToRun>false</WakeToRun>',
    '    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>',
    '    <Priority>7</Priority>',
    '    <RestartOnFailure>',
    `      <Interval>${TASK_RESTART_INTERVAL}</Interval>`,
    `      <Count>${TASK_RESTART_COUNT}</Count>`,
    '    </RestartOnFailure>',
    '  </Settings>',
    '  <Actions Context="Author">',
    '    <Exec>',
    `      <Command>${xml(spec.program)}</Command>`,
    `      <Arguments>${xml(spec.args.map(windowsArg).join(' '))}</Arguments>`,
    `      <WorkingDirectory>${xml(workingDirectory)}</WorkingDirectory>`,
    '    </Exec>',
    '  </Actions>',
    '</Task>',
    '',
  ];
  // Task Scheduler reads its own files as CRLF text.
  return lines.join('\r\n');
}

/** The file's bytes: UTF-16LE with a byte order mark, which `schtasks /Create /XML` expects for encoding="UTF-16". */
export function encodeTaskFile(text: string): Buffer {
  return Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);
}

/** The text of a task file as {@link encodeTaskFile} wrote it (UTF-8 too, for a file edited by hand). */
export function decodeTaskFile(bytes: Buffer): string {
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return bytes.subarray(2).toString('utf16le');
  return bytes.toString('utf8').replace(/^\uFEFF/, '');
}

/**
 * The action's program and arguments of a task definition (a file or `schtasks /Query /XML`
 * output, whose NULs from a UTF-16 pipe are dropped); null when it has no `<Command>`.
 */
export function parseTaskCommand(text: string): string[] | null {
  const clean = text.replace(/\0/g, '');
  const field = (name: string) => new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(clean)?.[1];
  const command = field('Command');
  if (command === undefined) return null;
  const unescape = (value: string) =>
    value.replace(/&(amp|lt|gt|quot|apos);/g, (_, name: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" })[name] as string);
  return [unescape(command.trim()), ...parseWindowsArgs(unescape(field('Arguments') ?? ''))];
}
