/**
 * The hosted servers' config file: the `mcpServers` format users already have (Claude Desktop,
 * Cursor), plus `scope`, `start`, `prefix` and a few timings. Each entry is validated on its own: a bad entry
 * is reported (name, key, reason) and skipped, the others run. A file that cannot be read or is
 * not JSON at all is used not at all; its error names the line and column of the mistake.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { z } from 'zod';
import { findJsonSyntaxError } from './json-syntax.js';
import type { UpstreamScope, ConfigProblem } from '../local/health.js';
import type { LocalErrorCode } from '../local/errors.js';
import { LEGACY_VERSION, MODERN_VERSION, PROTOCOL_SETTINGS, type ProtocolSetting } from './modern.js';
import { BUILTIN_SERVER_NAME, parseProfiles, type ProfileSpec } from './profile-config.js';
import { defaultToolCaps, parseToolCaps, type ToolCapRule } from './tool-caps-config.js';

/** Between a server's prefix and an item's own name in merged lists (`memory__read_graph`); so never in a server's name. */
export const PREFIX_SEPARATOR = '__';

interface BaseSpec {
  readonly name: string;
  readonly scope: UpstreamScope;
  readonly start: 'lazy' | 'eager';
  /** False: tools and prompts keep their own names (a clash with another server's is reported). */
  readonly prefix: boolean;
  /** Stop after this long with no session using it and nothing in flight; 0 = never. */
  readonly idleTimeoutMs: number;
  /**
   * Deadline for its start to answer `initialize` (`init_timeout_ms`); undefined: the daemon's
   * (`EXAI_WS_INIT_TIMEOUT_MS`), which can change without the entry changing.
   */
  readonly initTimeoutMs: number | undefined;
  /**
   * The server's own names of tools that ask the client back (sampling, elicitation, roots),
   * declared up front (`asks_client`); `*` is every tool. Calls to them from different
   * sessions run one session at a time, so the daemon always knows whom a request is for.
   */
  readonly asksClient: readonly string[];
  /**
   * The era the server is spoken to in (`protocol`): `2025-11-25` (the initialize handshake;
   * the default of stdio servers), `2026-07-28` (server/discover and per-request `_meta` only),
   * or `auto` (probe with server/discover, fall back to initialize; the default of url servers).
   */
  readonly protocol: ProtocolSetting;
  /**
   * Globs on the server's own tool and prompt names (`include_tools`, `exclude_tools`,
   * `include_prompts`, `exclude_prompts`): a name is listed and callable when `include` is
   * absent or one of it matches, and none of `exclude` does. Unset when the entry has none.
   */
  readonly filters?: NameFilters;
}

/** An entry's name filters (see BaseSpec.filters); each list absent when the entry does not give it. */
export interface NameFilters {
  readonly includeTools?: readonly string[];
  readonly excludeTools?: readonly string[];
  readonly includePrompts?: readonly string[];
  readonly excludePrompts?: readonly string[];
}

/** Most globs in one `include_*` or `exclude_*` list, and the longest glob. */
export const MAX_FILTER_GLOBS = 256;
export const MAX_FILTER_GLOB_CHARS = 256;

export interface StdioSpec extends BaseSpec {
  readonly kind: 'stdio';
  readonly command: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string | undefined;
}

export interface HttpSpec extends BaseSpec {
  readonly kind: 'http';
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  /** How the daemon logs in when the server asks for OAuth (an entry without `oauth` still logs in, registering itself). */
  readonly oauth?: OAuthEntry;
}

/** A `url` entry's `oauth` object: a pre-registered client, and/or the scopes to ask for. */
export interface OAuthEntry {
  /** A client registered with the authorization server beforehand (used before any other way). */
  readonly clientId?: string;
  readonly clientSecret?: string;
  /** Scopes asked for when the server's challenge names none (space-separated). */
  readonly scopes?: string;
  /** The https URL of this client's Client ID Metadata Document, used where the server supports them. */
  readonly clientMetadataUrl?: string;
}

export type UpstreamSpec = StdioSpec | HttpSpec;

export interface UpstreamConfig {
  /** The file read, or null when there was none. */
  readonly path: string | null;
  readonly servers: readonly UpstreamSpec[];
  /** The `profiles`: what windows that pick one (or whose client matches one) see. */
  readonly profiles: readonly ProfileSpec[];
  /** The `client_tool_caps` with the defaults under them, in the order they apply (see tool-caps-config.ts). */
  readonly toolCaps: readonly ToolCapRule[];
  readonly problems: readonly ConfigProblem[];
  /**
   * Set when the file is there but cannot be used at all (unreadable, not valid JSON: the
   * message names line and column): nothing in it applies, `servers` is empty.
   */
  readonly error?: string;
}

export class UpstreamConfigError extends Error {
  override name = 'UpstreamConfigError';
  readonly code = 'EUPSTREAM_CONFIG' satisfies LocalErrorCode;
}

export const DEFAULT_UPSTREAM_IDLE_MS = 10 * 60_000;
/**
 * How long a start may take to answer `initialize` before it is given up on (and retried). Two
 * minutes: it only decides when a server is called failed (lists and other servers never wait
 * for it), while a server run through `npx` or `uvx` may download itself and its dependencies
 * before it answers (npx's own resolve step, before the deadline starts, is bounded apart).
 */
export const DEFAULT_INIT_TIMEOUT_MS = 120_000;
/**
 * In a `workspace`-scoped stdio server's args, env values and cwd: the folder of the window
 * the instance serves (core.ts fills it in per instance), as in VS Code's own config.
 */
export const WORKSPACE_FOLDER = '${workspaceFolder}';
const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

const Globs = z.array(z.string().min(1, 'must not be empty').max(MAX_FILTER_GLOB_CHARS)).max(MAX_FILTER_GLOBS).optional();

const Common = {
  scope: z.enum(['shared', 'workspace', 'session']).default('shared'),
  start: z.enum(['lazy', 'eager']).default('lazy'),
  prefix: z.boolean().default(true),
  idle_timeout_ms: z.number().int().min(0).optional(),
  init_timeout_ms: z.number().int().min(1).optional(),
  // The same in camelCase, as other clients spell their keys.
  initTimeoutMs: z.number().int().min(1).optional(),
  asks_client: z.array(z.string().min(1).max(256)).max(1024).default([]),
  include_tools: Globs,
  exclude_tools: Globs,
  include_prompts: Globs,
  exclude_prompts: Globs,
  protocol: z
    .enum(PROTOCOL_SETTINGS, {
      message: `must be "${LEGACY_VERSION}" (the initialize handshake), "${MODERN_VERSION}" (server/discover only) or "auto" (probe, then fall back)`,
    })
    .optional(),
  // Keys other clients write that mean nothing here, accepted so their files import as they are.
  type: z.enum(['stdio', 'http', 'streamable-http', 'streamableHttp']).optional(),
  disabled: z.boolean().optional(),
};

const StdioEntry = z
  .object({
    ...Common,
    command: z.string().min(1, 'must not be empty'),
    args: z.array(z.string()).default([]),
    env: z.record(z.string(), z.string()).default({}),
    cwd: z
      .string()
      .refine((p) => isAbsolute(p) || p.startsWith(WORKSPACE_FOLDER), `must be an absolute path (or start with ${WORKSPACE_FOLDER})`)
      .optional(),
  })
  .loose();

const HttpEntry = z
  .object({
    ...Common,
    url: z.url({ protocol: /^https?$/, message: 'must be an http(s) URL' }),
    headers: z.record(z.string(), z.string()).default({}),
    oauth: z
      .object({
        client_id: z.string().min(1, 'must not be empty').max(4096).optional(),
        client_secret: z.string().min(1, 'must not be empty').max(4096).optional(),
        scopes: z.union([z.string().max(4096), z.array(z.string().min(1).max(256)).max(256)]).optional(),
        client_metadata_url: z
          .url({ protocol: /^https$/, message: 'must be an https URL (the document a loopback daemon cannot host)' })
          .refine((u) => new URL(u).pathname !== '/', 'must have a path (a Client ID Metadata Document URL is not a bare origin)')
          .optional(),
      })
      .strict()
      .refine((o) => o.client_secret === undefined || o.client_id !== undefined, 'client_secret needs client_id')
      .optional(),
  })
  .loose();

/**
 * Reads the config file. A missing file means no hosted servers. Throws
 * {@link UpstreamConfigError} only when the file is unreadable or not valid JSON (the message
 * names the line and column of the first mistake).
 */
export function loadUpstreamConfig(path: string, defaultIdleMs = DEFAULT_UPSTREAM_IDLE_MS): UpstreamConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      return Object.freeze({ path: null, servers: [], profiles: [], toolCaps: defaultToolCaps(), problems: [] });
    throw new UpstreamConfigError(`cannot read the config file ${path}: ${(error as Error).message}`);
  }
  // Editors on Windows may save a byte order mark; it is no part of the JSON.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UpstreamConfigError(`the config file ${path} is not valid JSON: ${jsonMistake(text, error as Error)}`);
  }
  return Object.freeze({ path, ...parseUpstreams(json, defaultIdleMs) });
}

/**
 * The same read for a daemon starting: a file that cannot be used is not thrown but returned as
 * a config with no servers and its `error`, so that the daemon starts with its built-in tools
 * and applies the file once it is fixed.
 */
export function loadUpstreamConfigAtStart(path: string, defaultIdleMs = DEFAULT_UPSTREAM_IDLE_MS): UpstreamConfig {
  try {
    return loadUpstreamConfig(path, defaultIdleMs);
  } catch (error) {
    if (!(error instanceof UpstreamConfigError)) throw error;
    return Object.freeze({ path, servers: [], profiles: [], toolCaps: defaultToolCaps(), problems: [], error: error.message });
  }
}

/** `line 3, column 18: a trailing comma ...`, or Node's own words when the scan finds nothing. */
function jsonMistake(text: string, error: Error): string {
  const problem = findJsonSyntaxError(text);
  return problem ? `line ${problem.line}, column ${problem.column}: ${problem.reason}` : error.message;
}

/** Validates the parsed file, entry by entry. */
export function parseUpstreams(
  json: unknown,
  defaultIdleMs = DEFAULT_UPSTREAM_IDLE_MS,
): Pick<UpstreamConfig, 'servers' | 'profiles' | 'toolCaps' | 'problems'> {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    const problems = [{ server: '*', key: '', reason: 'the config must be a JSON object with "mcpServers"' }];
    return { servers: [], profiles: [], toolCaps: defaultToolCaps(), problems };
  }
  const root = json as Record<string, unknown>;
  const { servers, problems } = parseEntries(root.mcpServers ?? {}, defaultIdleMs);
  const profiles = parseProfiles(
    root.profiles,
    servers.map((s) => s.name),
  );
  const caps = parseToolCaps(root.client_tool_caps);
  return {
    servers,
    profiles: profiles.profiles,
    toolCaps: caps.toolCaps,
    problems: [...problems, ...profiles.problems, ...caps.problems],
  };
}

function parseEntries(entries: unknown, defaultIdleMs: number): Pick<UpstreamConfig, 'servers' | 'problems'> {
  const servers: UpstreamSpec[] = [];
  const problems: ConfigProblem[] = [];
  if (entries === null || typeof entries !== 'object' || Array.isArray(entries)) {
    return { servers, problems: [{ server: '*', key: 'mcpServers', reason: 'must be an object of named servers' }] };
  }
  for (const [name, raw] of Object.entries(entries as Record<string, unknown>)) {
    const problem = (key: string, reason: string) => problems.push({ server: name, key, reason });
    if (!NAME_PATTERN.test(name) || name.includes(PREFIX_SEPARATOR)) {
      problem('', `server names are 1-64 characters of [A-Za-z0-9_.-] without "${PREFIX_SEPARATOR}"`);
      continue;
    }
    if (name === BUILTIN_SERVER_NAME) {
      problem('', `"${BUILTIN_SERVER_NAME}" is the built-in server's name (profiles name it so): give this server another`);
      continue;
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      problem('', 'must be an object with "command" or "url"');
      continue;
    }
    const entry = raw as Record<string, unknown>;
    if (entry.disabled === true) continue;
    const hasCommand = 'command' in entry;
    const hasUrl = 'url' in entry;
    if (hasCommand === hasUrl) {
      problem(
        hasCommand ? 'url' : 'command',
        hasCommand ? 'give either "command" or "url", not both' : 'needs "command" (a stdio server) or "url" (an HTTP server)',
      );
      continue;
    }
    const parsed = hasCommand ? StdioEntry.safeParse(entry) : HttpEntry.safeParse(entry);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) problem(issue.path.join('.'), issue.message);
      continue;
    }
    const e = parsed.data;
    if ('command' in e && e.scope !== 'workspace' && typeof e.cwd === 'string' && e.cwd.startsWith(WORKSPACE_FOLDER)) {
      problem('cwd', `${WORKSPACE_FOLDER} has a value only in a server with "scope": "workspace"`);
      continue;
    }
    if (e.scope !== 'shared' && 'url' in e) {
      problem('scope', `scope "${e.scope}" needs a stdio server ("command"): one remote server cannot be split per ${e.scope}`);
      continue;
    }
    if (e.init_timeout_ms !== undefined && e.initTimeoutMs !== undefined && e.init_timeout_ms !== e.initTimeoutMs) {
      problem('init_timeout_ms', 'init_timeout_ms and initTimeoutMs are the same setting: give one');
      continue;
    }
    const base: BaseSpec = {
      name,
      scope: e.scope,
      start: e.start,
      prefix: e.prefix,
      idleTimeoutMs: e.idle_timeout_ms ?? defaultIdleMs,
      initTimeoutMs: e.init_timeout_ms ?? e.initTimeoutMs,
      asksClient: Object.freeze([...new Set(e.asks_client)]),
      protocol: e.protocol ?? ('command' in e ? LEGACY_VERSION : 'auto'),
      ...filtersOf(e),
    };
    if ('command' in e) {
      const s = e as z.infer<typeof StdioEntry>;
      servers.push(
        Object.freeze({
          ...base,
          kind: 'stdio',
          command: s.command,
          args: Object.freeze([...s.args]),
          env: Object.freeze({ ...s.env }),
          cwd: s.cwd,
        }),
      );
    } else {
      servers.push(httpSpecOf(base, e));
    }
  }
  return { servers, problems };
}

/** A `url` entry's spec, frozen. */
function httpSpecOf(base: Omit<HttpSpec, 'kind' | 'url' | 'headers' | 'oauth'>, e: z.infer<typeof HttpEntry>): HttpSpec {
  const oauth = oauthOf(e.oauth);
  return Object.freeze({ ...base, kind: 'http', url: e.url, headers: Object.freeze({ ...e.headers }), ...(oauth ? { oauth } : {}) });
}

/** The entry's `oauth` object as the daemon uses it (scopes joined), frozen; undefined when it gives nothing. */
function oauthOf(o: z.infer<typeof HttpEntry>['oauth']): OAuthEntry | undefined {
  if (o === undefined) return undefined;
  const scopes = Array.isArray(o.scopes) ? o.scopes.join(' ') : o.scopes?.trim();
  const entry: OAuthEntry = {
    ...(o.client_id !== undefined ? { clientId: o.client_id } : {}),
    ...(o.client_secret !== undefined ? { clientSecret: o.client_secret } : {}),
    ...(scopes ? { scopes } : {}),
    ...(o.client_metadata_url !== undefined ? { clientMetadataUrl: o.client_metadata_url } : {}),
  };
  return Object.keys(entry).length > 0 ? Object.freeze(entry) : undefined;
}

/** The entry's name filters, frozen; nothing when it gives none (its spec, and so its key, stays as it was). */
function filtersOf(e: {
  include_tools?: string[] | undefined;
  exclude_tools?: string[] | undefined;
  include_prompts?: string[] | undefined;
  exclude_prompts?: string[] | undefined;
}): { filters?: NameFilters } {
  const given = {
    ...(e.include_tools ? { includeTools: Object.freeze([...e.include_tools]) } : {}),
    ...(e.exclude_tools ? { excludeTools: Object.freeze([...e.exclude_tools]) } : {}),
    ...(e.include_prompts ? { includePrompts: Object.freeze([...e.include_prompts]) } : {}),
    ...(e.exclude_prompts ? { excludePrompts: Object.freeze([...e.exclude_prompts]) } : {}),
  };
  return Object.keys(given).length > 0 ? { filters: Object.freeze(given) } : {};
}
