/**
 * The `client_tool_caps` of the config file: how many tools a client takes, by globs on its
 * `clientInfo.name` (case-insensitive). A window whose tools list is longer than its client's cap
 * is warned about (in the log and by `exai-ws status`): past it the client leaves tools out or
 * refuses the server. The user's entries come first (in file order) and the known caps
 * ({@link DEFAULT_TOOL_CAPS}) after them; the first glob that matches decides. A cap of `0` or
 * `null` means no cap for the clients it matches: on a default's own glob it removes that default.
 */
import type { ConfigProblem } from '../local/health.js';
import { globTest, type NameTest } from '../local/name-globs.js';

/** The config key. */
export const TOOL_CAPS_KEY = 'client_tool_caps';

/**
 * The caps of clients known to have one: Cursor (its clientInfo name is `cursor-vscode`) takes
 * 40 tools, VS Code 128.
 */
export const DEFAULT_TOOL_CAPS: Readonly<Record<string, number>> = Object.freeze({
  'cursor*': 40,
  'Visual Studio Code*': 128,
});

/** The most entries the key may have: it is a list of clients, not of tools. */
const MAX_ENTRIES = 256;
const MAX_GLOB_CHARS = 256;

/** One cap: the clients its glob matches take at most `max` tools; null: no cap for them. */
export interface ToolCapRule {
  readonly glob: string;
  readonly max: number | null;
}

/** The cap of a client by its name; null: no known cap (or no name). */
export type ToolCapLookup = (client: string | undefined) => number | null;

/**
 * Parses the config's `client_tool_caps` (absent: the defaults alone) into rules in the order they
 * apply: the user's, then each default whose glob the user did not give. A bad entry is reported
 * and left out (the others, and the defaults, apply).
 */
export function parseToolCaps(raw: unknown): { toolCaps: ToolCapRule[]; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const user: ToolCapRule[] = [];
  if (raw !== undefined && (raw === null || typeof raw !== 'object' || Array.isArray(raw))) {
    problems.push({ server: '*', key: TOOL_CAPS_KEY, reason: 'must be an object of client name globs to the most tools each takes' });
  } else if (raw !== undefined) {
    const entries = Object.entries(raw as Record<string, unknown>);
    if (entries.length > MAX_ENTRIES) {
      problems.push({ server: TOOL_CAPS_KEY, key: '', reason: `at most ${MAX_ENTRIES} entries (the ones after are left out)` });
    }
    for (const [glob, value] of entries.slice(0, MAX_ENTRIES)) {
      const problem = (reason: string) => problems.push({ server: TOOL_CAPS_KEY, key: glob, reason });
      if (glob.length === 0 || glob.length > MAX_GLOB_CHARS) problem(`a client name glob is 1-${MAX_GLOB_CHARS} characters`);
      else if (value === null || value === 0) user.push(Object.freeze({ glob, max: null }));
      else if (typeof value === 'number' && Number.isInteger(value) && value >= 1) user.push(Object.freeze({ glob, max: value }));
      else problem('must be the most tools the client takes (an integer of at least 1), or 0 or null for no cap');
    }
  }
  const given = new Set(user.map((rule) => rule.glob.toLowerCase()));
  const defaults = Object.entries(DEFAULT_TOOL_CAPS)
    .filter(([glob]) => !given.has(glob.toLowerCase()))
    .map(([glob, max]) => Object.freeze({ glob, max }));
  return { toolCaps: [...user, ...defaults], problems };
}

/** The rules that apply when the file says nothing of caps (no file, or one that cannot be used). */
export function defaultToolCaps(): ToolCapRule[] {
  return parseToolCaps(undefined).toolCaps;
}

/** Compiles the rules once: the lookup runs each time a window is sent its tools list. */
export function toolCapLookup(rules: readonly ToolCapRule[]): ToolCapLookup {
  const tests: [NameTest, number | null][] = rules.map((rule) => [globTest(rule.glob, { nocase: true }), rule.max]);
  return (client) => {
    if (client === undefined) return null;
    for (const [test, max] of tests) if (test(client)) return max;
    return null;
  };
}
