/**
 * `exai-ws settings list | set NAME=value ... | unset NAME ...`: shows and edits the daemon's
 * settings file (`daemon.env`, see local/settings.ts). The file may hold provider keys: it is
 * written whole with mode 0600 (and made 0600 when it was not; on Windows its folder is limited
 * to the user when made, see local/acl.ts), and `list` masks every key.
 * A change applies when the daemon next starts; each write says so and offers `exai-ws restart`.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import { makePrivateDir } from '../local/acl.js';
import { checkSetting } from '../daemon/files/config.js';
import { cardIsLive } from '../local/pidfile.js';
import { replaceWhole } from '../local/whole-file.js';
import { settingsPath } from '../local/config-path.js';
import { readAddressCard, resolveHome } from '../local/files.js';
import { editSettingsText, isSettingName, maskValue, readSettings, LOCATORS } from '../local/settings.js';
import { ExitCode } from './exit-codes.js';
import { SETTINGS_SPEC } from '../local/specs.js';

interface Io {
  env: NodeJS.ProcessEnv;
  out: (text: string) => void;
  err: (text: string) => void;
}

const defaultIo = (): Io => ({
  env: process.env,
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
});

/** Runs `settings ACTION ARGS...`; resolves to the exit code (2 for a usage error, 1 when the file cannot be written). */
export async function runSettingsCommand(positionals: readonly string[], io: Io = defaultIo()): Promise<number> {
  const [action, ...args] = positionals;
  const usage = (message: string) => {
    io.err(`exai-ws settings: ${message}\n${SETTINGS_SPEC.usage}\n`);
    return ExitCode.USAGE;
  };
  const path = settingsPath(io.env);
  switch (action) {
    case 'list':
      if (args.length > 0) return usage(`list takes no arguments (got '${args[0]}')`);
      return list(path, io);
    case 'set': {
      if (args.length === 0) return usage('set needs NAME=value');
      const edits: [string, string][] = [];
      for (const arg of args) {
        const at = arg.indexOf('=');
        if (at <= 0) return usage(`'${arg}' is not NAME=value`);
        const name = arg.slice(0, at);
        const value = arg.slice(at + 1);
        const refused = refuseName(name) ?? checkSetting(name, value);
        if (refused !== null) return usage(refused.replace(/; (?:the default|127\.0\.0\.1) applies$/, ''));
        edits.push([name, value]);
      }
      return write(path, edits, io);
    }
    case 'unset': {
      if (args.length === 0) return usage('unset needs a NAME');
      for (const name of args) {
        const refused = refuseName(name);
        if (refused !== null) return usage(refused);
      }
      return write(
        path,
        args.map((name) => [name, undefined]),
        io,
      );
    }
    default:
      return usage(action === undefined ? 'missing action: list, set or unset' : `unknown action '${action}': list, set or unset`);
  }
}

function refuseName(name: string): string | null {
  if (LOCATORS.has(name)) return `${name} says where the settings are: set it in the environment, not in ${'daemon.env'}`;
  if (!isSettingName(name)) return `${name} is not an exai-ws setting (see the README's list)`;
  return null;
}

function list(path: string, io: Io): number {
  const file = readSettings(path);
  if (file.error) {
    io.err(`exai-ws settings: ${file.error}\n`);
    return ExitCode.FAILURE;
  }
  if (!file.exists) {
    io.out(`${path}: no settings file yet (every setting has its default); add one with: exai-ws settings set NAME=value\n`);
    return ExitCode.OK;
  }
  const names = Object.keys(file.values);
  io.out(`${path}${names.length === 0 ? ': no settings' : ''}\n`);
  for (const name of names) io.out(`  ${name}=${maskValue(name, file.values[name] ?? '')}  (line ${file.lines[name]})\n`);
  for (const problem of file.problems) io.out(`  line ${problem.line} not taken: ${problem.message}\n`);
  for (const name of names) {
    const problem = checkSetting(name, file.values[name] ?? '');
    if (problem !== null && file.values[name] !== '') io.out(`  line ${file.lines[name]} not taken: ${problem}\n`);
  }
  if (file.readableByOthers) io.out(`  others can read this file, which may hold keys: chmod 600 ${path}\n`);
  return ExitCode.OK;
}

async function write(path: string, edits: readonly [string, string | undefined][], io: Io): Promise<number> {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      io.err(`exai-ws settings: cannot read ${path}: ${(error as Error).message}\n`);
      return ExitCode.FAILURE;
    }
  }
  let next = text;
  for (const [name, value] of edits) next = editSettingsText(next, name, value);
  try {
    // On Windows a settings folder made here is limited to the user (modes do nothing there).
    const aclWarning = await makePrivateDir(dirname(path), { env: io.env });
    if (aclWarning !== null) io.err(`exai-ws settings: warning: ${aclWarning}\n`);
    replaceWhole(path, next, 0o600);
    // The rename keeps the new file's mode; an old one others could read is private now.
    chmodSync(path, 0o600);
  } catch (error) {
    io.err(`exai-ws settings: cannot write ${path}: ${(error as Error).message}\n`);
    return ExitCode.FAILURE;
  }
  for (const [name, value] of edits) {
    io.out(
      value === undefined ? `exai-ws: ${name} removed from ${path}\n` : `exai-ws: ${name}=${maskValue(name, value)} written to ${path}\n`,
    );
  }
  const card = readAddressCard(resolveHome(io.env).pid);
  const running = card !== null && card.port > 0 && (await cardIsLive(card));
  io.out(
    running
      ? `The running daemon (pid ${card.pid}) keeps its settings until it starts again: run exai-ws restart to apply ${edits.length === 1 ? 'this change' : 'these changes'} now.\n`
      : `The daemon takes ${edits.length === 1 ? 'it' : 'them'} when it next starts (a window's shim starts it, or: exai-ws restart).\n`,
  );
  return ExitCode.OK;
}

/** The suffix a moved `service.env` gets: kept for the user to check, read by nothing. */
export const MOVED_SUFFIX = '.moved';

/**
 * Moves the settings of an earlier version's `service.env` (`legacy`) into the settings file
 * (`target`): each name the settings file does not set yet is added, the others keep the
 * settings file's value; the old file is renamed with {@link MOVED_SUFFIX}. Returns what it did,
 * a line each (none when there is no old file). Throws when a file cannot be written.
 */
export function moveServiceEnv(legacy: string, target: string): string[] {
  if (!existsSync(legacy)) return [];
  const old = readSettings(legacy);
  const current = readSettings(target);
  let text = '';
  try {
    text = readFileSync(target, 'utf8');
  } catch {
    // No settings file yet: it is made here.
  }
  const moved: string[] = [];
  const kept: string[] = [];
  for (const [name, value] of Object.entries(old.values)) {
    if (name in current.values) {
      if (current.values[name] !== value) kept.push(name);
      continue;
    }
    text = editSettingsText(text, name, value);
    moved.push(name);
  }
  if (moved.length > 0) {
    mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
    replaceWhole(target, text, 0o600);
  }
  renameSync(legacy, `${legacy}${MOVED_SUFFIX}`);
  const lines = [
    `moved: ${legacy} -> ${target}: ${moved.length > 0 ? moved.join(', ') : 'nothing new'} (the old file is now ${legacy}${MOVED_SUFFIX}; nothing reads it)`,
  ];
  if (kept.length > 0) lines.push(`  kept ${target}'s own ${kept.join(', ')} (service.env had other values)`);
  for (const problem of old.problems) lines.push(`  ${legacy} line ${problem.line} not moved: ${problem.message}`);
  return lines;
}
