/**
 * The `profiles` of the config file: named selections of what a window sees. Each profile may
 * name its `servers` (the built-in tools count as one server, `exai-ws`), filter `tools` by globs
 * on the names a window sees (`fs__read_*`, `!*__delete_*`), name the `clients` it is the default
 * for (globs on `clientInfo.name`, first matching profile in file order wins) and turn on tool
 * `search` (the window lists `search_tools` and `call_tool` alone). Each profile is validated on
 * its own, like server entries: a bad one is reported and left out.
 */
import { z } from 'zod';
import type { ConfigProblem } from '../local/health.js';
import { NAME } from '../protocol/version.js';

/** The built-in server's name in a profile's `servers`; no config entry may take it. */
export const BUILTIN_SERVER_NAME = NAME;

export interface ProfileSpec {
  readonly name: string;
  /** The servers the window sees; undefined: all of them. */
  readonly servers: readonly string[] | undefined;
  /** Globs on visible tool names (`!` excludes); empty: every tool of its servers. */
  readonly tools: readonly string[];
  /** Globs on client names this profile is the default for. */
  readonly clients: readonly string[];
  /** The window lists `search_tools` and `call_tool` only. */
  readonly search: boolean;
}

const PROFILE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const globs = z.array(z.string().min(1).max(256)).max(1024);

const ProfileEntry = z
  .object({
    servers: z.array(z.string().min(1).max(64)).max(1024).optional(),
    tools: globs.default([]),
    clients: globs.default([]),
    search: z.boolean().default(false),
    description: z.string().optional(),
  })
  .strict();

/**
 * Parses the config's `profiles` (an object of named profiles; absent: none). `servers` are the
 * names of the config's entries, for a warning about names that are none of them (the profile is
 * kept: the entry may come back).
 */
export function parseProfiles(raw: unknown, servers: readonly string[]): { profiles: ProfileSpec[]; problems: ConfigProblem[] } {
  const profiles: ProfileSpec[] = [];
  const problems: ConfigProblem[] = [];
  if (raw === undefined) return { profiles, problems };
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    return { profiles, problems: [{ server: '*', key: 'profiles', reason: 'must be an object of named profiles' }] };
  }
  const known = new Set([BUILTIN_SERVER_NAME, ...servers]);
  for (const [name, entry] of Object.entries(raw as Record<string, unknown>)) {
    const problem = (key: string, reason: string) => problems.push({ server: `profile ${name}`, key, reason });
    if (!PROFILE_NAME.test(name)) {
      problem('', 'profile names are 1-64 characters of [A-Za-z0-9_.-]');
      continue;
    }
    const parsed = ProfileEntry.safeParse(entry);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) problem(issue.path.join('.'), issue.message);
      continue;
    }
    const p = parsed.data;
    for (const server of p.servers ?? []) {
      if (!known.has(server)) problem('servers', `no server named '${server}' (the profile shows nothing of it until there is one)`);
    }
    profiles.push(
      Object.freeze({
        name,
        servers: p.servers === undefined ? undefined : Object.freeze([...new Set(p.servers)]),
        tools: Object.freeze([...p.tools]),
        clients: Object.freeze([...p.clients]),
        search: p.search,
      }),
    );
  }
  return { profiles, problems };
}
