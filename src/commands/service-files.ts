/**
 * The files `exai-ws service install` writes: a systemd user unit (Linux) and a launchd agent
 * (macOS), made from one {@link ServiceSpec}, and the command line read back out of either for
 * `exai-ws service status`. Pure text in, text out: tests check both formats on any platform.
 */
import { resolve } from 'node:path';
import { DAEMON_NODE_OPTIONS, daemonEntryPath } from '../local/daemon-launch.js';
import { configPath, settingsPath } from '../local/config-path.js';
import { resolveHome } from '../local/files.js';
import { isSettingName } from '../local/settings.js';

/** The systemd unit's name (`~/.config/systemd/user/exai-ws.service`). */
export const SYSTEMD_UNIT = 'exai-ws.service';
/** The launchd job's label, also its file name (`~/Library/LaunchAgents/local.exai-ws.daemon.plist`). */
export const LAUNCHD_LABEL = 'local.exai-ws.daemon';
/**
 * How long the service manager waits before starting the daemon again after it failed. Long
 * enough that a daemon refused by the pid lock (another one runs) costs a Node start every 10 s,
 * not a busy loop, and below systemd's default start limit (5 starts in 10 s), so it keeps
 * trying until the other daemon has gone and then takes over.
 */
export const RESTART_DELAY_S = 10;
/**
 * Exit codes that retrying cannot fix (see exit-codes.ts): an invalid configuration (2) and an
 * unusable home (73). The service stays down with its error in the journal.
 */
export const NO_RESTART_EXIT_CODES: readonly number[] = [2, 73];

/** What the service runs: one program with its arguments and environment. */
export interface ServiceSpec {
  /** Absolute path of the Node binary. */
  program: string;
  /** Node options, the CLI's absolute path and `daemon`. */
  args: string[];
  /** Variables the daemon gets on top of what the service manager gives every service, in order. */
  env: [string, string][];
  /** The daemon's home (`EXAI_WS_HOME`); the launchd agent's output goes to its `logs/service.log`. */
  home: string;
}

/**
 * Variables of the installing shell that the service passes on as they are: how the daemon
 * reaches the network (proxies, extra CA certificates), never how it behaves. Its settings and
 * keys are the user's settings file (daemon.env), which the daemon reads itself.
 */
const PASSED = /^(?:https?_proxy|no_proxy|all_proxy|HTTPS?_PROXY|NO_PROXY|ALL_PROXY|NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR)$/;

/**
 * The settings variables set in the installing shell that differ from the settings file: the
 * service does not carry them (the daemon takes its settings from the file), so `install` names
 * them with the command that keeps each.
 */
export function settingsLeftOut(env: NodeJS.ProcessEnv, fileValues: Readonly<Record<string, string>>): string[] {
  return Object.keys(env)
    .filter((name) => isSettingName(name) && env[name] && env[name] !== fileValues[name])
    .sort();
}

/**
 * The service for this installation: this Node binary with the daemon's Node options and this
 * CLI. `EXAI_WS_HOME`, `EXAI_WS_CONFIG` and `EXAI_WS_SETTINGS` are always written, resolved to
 * absolute paths, so the service serves the same home, servers and settings as this shell
 * whatever environment the service manager gives it; `PATH` too, so hosted servers started with
 * `npx` or `uvx` are found as they are from a terminal, and the proxy and CA variables.
 */
export function serviceSpec(env: NodeJS.ProcessEnv): ServiceSpec {
  const home = resolve(resolveHome(env).home);
  const vars: [string, string][] = [
    ['EXAI_WS_HOME', home],
    ['EXAI_WS_CONFIG', configPath(env)],
    ['EXAI_WS_SETTINGS', settingsPath(env)],
  ];
  for (const name of Object.keys(env).sort()) {
    const value = env[name];
    if (value !== undefined && value !== '' && PASSED.test(name)) vars.push([name, value]);
  }
  if (env.PATH) vars.push(['PATH', env.PATH]);
  return { program: process.execPath, args: [...DAEMON_NODE_OPTIONS, daemonEntryPath(), 'daemon'], env: vars, home };
}

function assertOneLine(value: string, what: string): void {
  if (/[\n\r\0]/.test(value))
    throw new TypeError(`${what} contains a line break or NUL, which a service file cannot hold: ${JSON.stringify(value)}`);
}

/**
 * One word of a systemd command line or `Environment=` assignment, double-quoted: backslash and
 * quote escaped, `%` doubled (specifiers), and in `ExecStart=` `$` doubled (variable expansion).
 */
function systemdQuote(value: string, dollar: boolean): string {
  let out = value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/%/g, '%%');
  if (dollar) out = out.replace(/\$/g, '$$$$');
  return `"${out}"`;
}

/** The systemd user unit. Throws a TypeError for a value with a line break. */
export function systemdUnit(spec: ServiceSpec): string {
  const words = [spec.program, ...spec.args];
  for (const word of words) assertOneLine(word, 'the command line');
  for (const [name, value] of spec.env) assertOneLine(value, name);
  const lines = [
    '# Written by `exai-ws service install`; `exai-ws service uninstall` removes it.',
    '[Unit]',
    'Description=exai-ws: one MCP daemon shared by every MCP client of this user',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${words.map((w) => systemdQuote(w, true)).join(' ')}`,
    ...spec.env.map(([name, value]) => `Environment=${systemdQuote(`${name}=${value}`, false)}`),
    '# Settings and provider keys are in EXAI_WS_SETTINGS (exai-ws settings set NAME=value), which the daemon reads.',
    'Restart=on-failure',
    `RestartSec=${RESTART_DELAY_S}`,
    `RestartPreventExitStatus=${NO_RESTART_EXIT_CODES.join(' ')}`,
    '',
    '[Install]',
    'WantedBy=default.target',
    '',
  ];
  return lines.join('\n');
}

/**
 * The command line of a unit's `ExecStart=`, unquoted as systemd reads it; null when there is
 * none. Understands what {@link systemdUnit} writes (and unquoted words).
 */
export function parseUnitExecStart(text: string): string[] | null {
  const line = text.split('\n').find((l) => l.startsWith('ExecStart='));
  if (line === undefined) return null;
  const rest = line.slice('ExecStart='.length);
  const words: string[] = [];
  let i = 0;
  while (i < rest.length) {
    if (rest[i] === ' ') {
      i++;
      continue;
    }
    let word = '';
    if (rest[i] === '"') {
      i++;
      while (i < rest.length && rest[i] !== '"') {
        if (rest[i] === '\\' && i + 1 < rest.length) i++;
        word += rest[i];
        i++;
      }
      i++;
    } else {
      while (i < rest.length && rest[i] !== ' ') word += rest[i++];
    }
    words.push(word.replace(/%%/g, '%').replace(/\$\$/g, '$'));
  }
  return words;
}

const XML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
const xml = (value: string) => value.replace(/[&<>"']/g, (c) => XML_ESCAPES[c] as string);

/**
 * The launchd agent: started at login (`RunAtLoad`), started again when it exits with a failure
 * (`KeepAlive.SuccessfulExit = false`) at most every {@link RESTART_DELAY_S} s, its stdout and
 * stderr appended to `logs/service.log` in the home (the daemon's own log is `ws_daemon.log`).
 */
export function launchdPlist(spec: ServiceSpec, label: string, workingDirectory: string): string {
  const string = (value: string) => `<string>${xml(value)}</string>`;
  const log = resolve(spec.home, 'logs', 'service.log');
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    '<!-- Written by `exai-ws service install`; `exai-ws service uninstall` removes it. -->',
    '<plist version="1.0">',
    '<dict>',
    '  <key>Label</key>',
    `  ${string(label)}`,
    '  <key>ProgramArguments</key>',
    '  <array>',
    ...[spec.program, ...spec.args].map((arg) => `    ${string(arg)}`),
    '  </array>',
    '  <key>EnvironmentVariables</key>',
    '  <dict>',
    ...spec.env.flatMap(([name, value]) => [`    <key>${xml(name)}</key>`, `    ${string(value)}`]),
    '  </dict>',
    '  <key>WorkingDirectory</key>',
    `  ${string(workingDirectory)}`,
    '  <key>RunAtLoad</key>',
    '  <true/>',
    '  <key>KeepAlive</key>',
    '  <dict>',
    '    <key>SuccessfulExit</key>',
    '    <false/>',
    '  </dict>',
    '  <key>ThrottleInterval</key>',
    `  <integer>${RESTART_DELAY_S}</integer>`,
    '  <key>StandardOutPath</key>',
    `  ${string(log)}`,
    '  <key>StandardErrorPath</key>',
    `  ${string(log)}`,
    '</dict>',
    '</plist>',
    '',
  ];
  return lines.join('\n');
}

/** The `ProgramArguments` of a plist, unescaped; null when there are none. */
export function parsePlistProgramArguments(text: string): string[] | null {
  const block = /<key>ProgramArguments<\/key>\s*<array>([\s\S]*?)<\/array>/.exec(text)?.[1];
  if (block === undefined) return null;
  const unescape = (value: string) =>
    value.replace(/&(amp|lt|gt|quot|apos);/g, (_, name: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" })[name] as string);
  return [...block.matchAll(/<string>([\s\S]*?)<\/string>/g)].map((m) => unescape(m[1] as string));
}

/** A command line for people: words quoted for a POSIX shell where they need it. */
export function shellLine(words: readonly string[]): string {
  return words.map(shellQuote).join(' ');
}

/** One word for a POSIX shell: unchanged when safe, else single-quoted. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_/.:=@%+,-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
