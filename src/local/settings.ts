/**
 * The user's daemon settings (DESIGN.md, "Settings"): `daemon.env`, one `NAME=value` per line,
 * the same names as the environment variables. Every way a daemon starts reads it, so the
 * daemon is the user's whoever starts it: a shim's auto-start and `exai-ws restart` drop the
 * caller's own settings variables (see {@link launchEnv}); a daemon started by hand lets its
 * shell's variables win over the file.
 *
 * Node built-ins only and no stdout: the shim bundles this file.
 */
import { readFileSync, statSync } from 'node:fs';

/** Variables that say where things are, not how the daemon behaves: they always pass. */
export const LOCATORS: ReadonlySet<string> = new Set(['EXAI_WS_HOME', 'EXAI_WS_CONFIG', 'EXAI_WS_SETTINGS', 'EXAI_WS_TEST_DEFAULT_PORT']);

/**
 * Variables of a shim's own behaviour (read from its client's environment, never by the
 * daemon), and what a launcher tells the daemon it starts.
 */
const NOT_SETTINGS: ReadonlySet<string> = new Set([
  'EXAI_WS_AUTOSTART',
  'EXAI_WS_AUTOSTART_TIMEOUT_MS',
  'EXAI_WS_RECONNECT_MS',
  'EXAI_WS_SERVICE_MANAGER',
  'EXAI_WS_AUTOSTARTED',
  'EXAI_WS_IGNORED_ENV',
]);

const SETTING_PATTERN =
  /^(?:EXAI_WS_[A-Z0-9_]+|EXAI_OPENAI_[A-Z0-9_]+|KIMI_[A-Z0-9_]+|MOONSHOT_[A-Z0-9_]+|GLM_[A-Z0-9_]+|ZHIPUAI_[A-Z0-9_]+|LOG_LEVEL)$/;

/** True for a name the daemon takes from `daemon.env` (or, by hand, from its shell). */
export function isSettingName(name: string): boolean {
  return SETTING_PATTERN.test(name) && !LOCATORS.has(name) && !NOT_SETTINGS.has(name);
}

/** Set by a launcher (shim, `restart`): the settings variables of the caller that it dropped. */
export const IGNORED_ENV_VAR = 'EXAI_WS_IGNORED_ENV';
/** Set by a launcher: the daemon was started by a shim or `restart`, not by hand. */
export const AUTOSTARTED_VAR = 'EXAI_WS_AUTOSTARTED';

/** True for a name whose value is a secret: shown masked, never logged. */
export function isSecretName(name: string): boolean {
  return /(?:TOKEN|KEY|SECRET|PASSWORD)$/.test(name);
}

/** A value as `settings list` and `status` show it: a secret keeps its last 4 characters at most. */
export function maskValue(name: string, value: string): string {
  if (!isSecretName(name)) return value;
  return value.length >= 16 ? `****${value.slice(-4)}` : '****';
}

/** One line of the file that was not taken, by its 1-based number. */
export interface SettingsProblem {
  line: number;
  message: string;
}

export interface ParsedSettings {
  /** The last value of each name, in file order of first appearance. */
  values: Record<string, string>;
  /** The line each value came from. */
  lines: Record<string, number>;
  problems: SettingsProblem[];
}

/**
 * Parses `daemon.env`: `NAME=value` lines; blank lines and `#` comments are skipped; an
 * `export ` prefix is allowed; a value in double quotes takes `\n`, `\"` and `\\` escapes, one
 * in single quotes is taken as it is, an unquoted one is trimmed and ends at ` #`. A line that
 * is none of these, or names no exai-ws setting, is a problem named by its line; the others
 * apply. Never throws.
 */
export function parseSettings(text: string): ParsedSettings {
  const values: Record<string, string> = {};
  const lines: Record<string, number> = {};
  const problems: SettingsProblem[] = [];
  const all = text.replace(/^\ufeff/, '').split(/\r?\n/);
  all.forEach((raw, index) => {
    const line = index + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$/.exec(trimmed);
    if (!match) {
      problems.push({ line, message: `not NAME=value: ${clip(trimmed)}` });
      return;
    }
    const name = match[1] as string;
    const value = parseValue((match[2] as string).trim());
    if (value === null) {
      problems.push({ line, message: `${name}: the quoted value is not closed` });
      return;
    }
    if (LOCATORS.has(name)) {
      problems.push({ line, message: `${name} says where the settings are; set it in the environment, not in this file` });
      return;
    }
    if (!isSettingName(name)) {
      problems.push({ line, message: `${name} is not an exai-ws setting (see the README's list)` });
      return;
    }
    values[name] = value;
    lines[name] = line;
  });
  return { values, lines, problems };
}

function parseValue(text: string): string | null {
  if (text.startsWith('"')) {
    const end = closingQuote(text);
    if (end < 0) return null;
    return text.slice(1, end).replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
  }
  if (text.startsWith("'")) {
    const end = text.indexOf("'", 1);
    return end < 0 ? null : text.slice(1, end);
  }
  const comment = text.search(/\s#/);
  return (comment < 0 ? text : text.slice(0, comment)).trim();
}

function closingQuote(text: string): number {
  for (let i = 1; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') return i;
  }
  return -1;
}

function clip(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** `daemon.env` as read from disk. */
export interface SettingsFile extends ParsedSettings {
  path: string;
  exists: boolean;
  /** Why the file could not be read (it exists); null when it could, or is absent. */
  error: string | null;
  /** Group or others may read it (POSIX modes only; false on Windows). */
  readableByOthers: boolean;
}

/** Reads and parses the settings file; a missing file is no settings. Never throws. */
export function readSettings(path: string): SettingsFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    const exists = e.code !== 'ENOENT' && e.code !== 'ENOTDIR';
    return {
      path,
      exists,
      error: exists ? `cannot read ${path}: ${e.code ?? e.message}` : null,
      readableByOthers: false,
      values: {},
      lines: {},
      problems: [],
    };
  }
  let readableByOthers = false;
  try {
    readableByOthers = process.platform !== 'win32' && (statSync(path).mode & 0o044) !== 0;
  } catch {
    // Gone since: it was read, which is what counts.
  }
  return { path, exists: true, error: null, readableByOthers, ...parseSettings(text) };
}

/**
 * The environment for a daemon that a shim or `exai-ws restart` starts: the caller's own,
 * minus its settings variables (the daemon takes those from the settings file only), with the
 * locators and everything else (PATH, proxies, CA settings) as they are. The dropped names whose
 * value differs from the file's are named in {@link IGNORED_ENV_VAR} (names only, never values),
 * so that the daemon can say which a client passed in vain.
 */
export function launchEnv(env: NodeJS.ProcessEnv, settings: Pick<ParsedSettings, 'values'>): { env: NodeJS.ProcessEnv; ignored: string[] } {
  const out: NodeJS.ProcessEnv = {};
  const ignored: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) continue;
    if (isSettingName(name)) {
      if (value !== '' && settings.values[name] !== value) ignored.push(name);
      continue;
    }
    if (NOT_SETTINGS.has(name)) continue;
    out[name] = value;
  }
  out[AUTOSTARTED_VAR] = '1';
  if (ignored.length > 0) out[IGNORED_ENV_VAR] = ignored.sort().join(',');
  return { env: out, ignored };
}

/**
 * The file's text with `name` set to `value` (its first line replaced, later ones removed) or,
 * with `value` undefined, removed. Comments and other lines stay as they are.
 */
export function editSettingsText(text: string, name: string, value: string | undefined): string {
  const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n');
  const out: string[] = [];
  let placed = false;
  for (const line of lines) {
    const match = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=/.exec(line);
    if (match?.[1] !== name) {
      out.push(line);
      continue;
    }
    if (value !== undefined && !placed) out.push(`${name}=${quoteValue(value)}`);
    placed = true;
  }
  if (value !== undefined && !placed) out.push(`${name}=${quoteValue(value)}`);
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}

/** A value as written to the file: plain when that reads back the same, else double-quoted. */
export function quoteValue(value: string): string {
  if (/^[^\s"'#\\]*$/.test(value)) return value;
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`).replace(/\n/g, '\\n')}"`;
}
