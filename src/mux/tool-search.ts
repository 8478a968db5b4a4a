/**
 * Tool search for the "search" profile (issue 25): ranks the tools of every server against what
 * a person or a model types, so that a window shown only `search_tools` and `call_tool` can find
 * the tool it needs. MiniSearch does the ranking (BM25+, prefix and fuzzy matching); this file
 * only decides what is indexed (the tool's name, its description, its server's name, its
 * parameters' names and, weighted low, their descriptions) and how words are made comparable:
 *
 * - words: names split at `__`, `_`, `-`, `.`, camelCase and digits, so `list_directory_with_sizes`
 *   and `entityNames` read as words; everything lowercased;
 * - a few common words dropped (articles, pronouns), which carry no meaning in a query;
 * - stems (`stemmer`, Porter), so `files` meets `file` and `listing` meets `list`;
 * - a small list of words that mean the same (folder and directory), each group one more term
 *   (below), and a few shell commands read as words (`ls` as list).
 *
 * A tools list comes from servers we do not control: nothing here may throw on what one lists.
 * Items without a string name are skipped, and what is indexed per tool is clipped.
 */
import MiniSearch from 'minisearch';
import { stemmer } from 'stemmer';

/** A tool as listed (its `name` is the exposed name, prefix included) and the server it is from. */
export interface Searchable {
  tool: Record<string, unknown>;
  server: string;
}

/** At most this much of a description is indexed: a hostile server's megabyte is not read. */
export const MAX_INDEXED_DESCRIPTION_CHARS = 2_000;
/** At most this much of a name, a server name or a parameter name is indexed. */
export const MAX_INDEXED_NAME_CHARS = 200;
/** At most this many parameter names per tool are indexed. */
export const MAX_INDEXED_PARAMETERS = 64;
/** At most this much of a query is read, and this many of its words searched. */
export const MAX_QUERY_CHARS = 1_000;
export const MAX_QUERY_WORDS = 16;
/** Words of a query matched by prefix and with typos; the rest only as they are. */
const LOOSE_WORDS = 8;

/** Relative weight of a match in each field: a word of the tool's name says most. */
const BOOST = { name: 3, server: 3, params: 1.5, description: 1, paramDescriptions: 0.3 } as const;

/** Words that say nothing about which tool is meant. Kept short: BM25 already discounts common words. */
const STOP_WORDS = new Set([
  ...'a an the of to in on at by for with from and or is are be it its this that these those'.split(' '),
  ...'me my i you your some any then do does what how which up'.split(' '),
]);

/**
 * Words that mean the same. General words only, never a tool's name. Each group is one more term,
 * `~` and its first word (a `~` never comes out of {@link words}), indexed beside the stem of every
 * word of the group and searched beside the stem of every query word of the group: `folder` finds
 * `directory` through `~folder`. One term per group, not one per synonym, so a tool that has
 * several words of a large group (get, read, view) does not outrank the tool named by the word
 * typed. A word may be in more than one group.
 */
const SYNONYM_GROUPS: readonly string[] = [
  'folder directory dir',
  'remove delete forget erase',
  'find search look locate',
  'create add make new',
  'show get read view open display look fetch retrieve',
  'write save store',
  'size big large',
  'sum add plus total',
  'remember memory memorize recall',
  'picture image photo',
  'several multiple many',
  'compress zip gzip archive',
  'link relation relationship connection',
  'wait delay sleep pause',
];

/** Shell commands a developer types for what they do, read as those words (in queries only). */
const ALIASES: ReadonlyMap<string, readonly string[]> = new Map([
  ['ls', ['list']],
  ['cat', ['read']],
  ['mkdir', ['create', 'directory']],
  ['mv', ['move']],
  ['rm', ['delete']],
  ['grep', ['search']],
]);

/** The group terms of each stem (built once: the groups are stemmed as words are). */
const GROUPS_OF: ReadonlyMap<string, readonly string[]> = (() => {
  const map = new Map<string, string[]>();
  for (const group of SYNONYM_GROUPS) {
    const members = group.split(' ');
    const term = `~${members[0] ?? ''}`;
    for (const stem of members.map((word) => stemmer(word))) map.set(stem, [...(map.get(stem) ?? []), term]);
  }
  return map;
})();

/** Splits text into words: at anything not a letter or digit, at camelCase humps and at digits. */
export function words(text: string): string[] {
  return text
    .replace(/(\p{Ll})(\p{Lu})/gu, '$1 $2')
    .replace(/(\p{Lu})(\p{Lu}\p{Ll})/gu, '$1 $2')
    .split(/[^\p{L}\p{N}]+|(?<=\p{L})(?=\p{N})|(?<=\p{N})(?=\p{L})/u)
    .filter((word) => word.length > 0);
}

/** A word's terms: its stem and the terms of its synonym groups; null for a word that says nothing. */
function terms(word: string): string[] | null {
  const lower = word.toLowerCase();
  if (STOP_WORDS.has(lower)) return null;
  const stem = stemmer(lower);
  return [stem, ...(GROUPS_OF.get(stem) ?? [])];
}

/** A query word's terms: a shell command's words stand in for it. */
function queryTerms(word: string): string[] | null {
  const alias = ALIASES.get(word.toLowerCase());
  return alias === undefined ? terms(word) : alias.flatMap((each) => terms(each) ?? []);
}

/**
 * A synonym group's term is matched whole, never by prefix or typo. A word typed matches its stem
 * and its group, a synonym only the group, so the word typed still ranks first.
 */
const isGroupTerm = (term: string): boolean => term.startsWith('~');

/** The indexed fields of one tool. */
interface Doc {
  id: number;
  name: string;
  description: string;
  server: string;
  params: string;
  paramDescriptions: string;
}

function clip(value: unknown, maxChars: number): string {
  return typeof value === 'string' ? value.slice(0, maxChars) : '';
}

/** `inputSchema.properties` when both are plain objects, at most {@link MAX_INDEXED_PARAMETERS} of them. */
function parameters(schema: unknown): [string, unknown][] {
  const properties = isPlainObject(schema) ? schema.properties : undefined;
  const found: [string, unknown][] = [];
  if (!isPlainObject(properties)) return found;
  // Not Object.entries: a list with a million parameters is not copied whole to keep 64.
  for (const key in properties) {
    if (found.length >= MAX_INDEXED_PARAMETERS) break;
    if (Object.hasOwn(properties, key)) found.push([key, properties[key]]);
  }
  return found;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The parameters' names, and their descriptions up to the length of one description. */
function parameterFields(schema: unknown): { params: string; paramDescriptions: string } {
  const params = parameters(schema);
  const described = params.map(([, value]) => (isPlainObject(value) ? clip(value.description, MAX_INDEXED_NAME_CHARS) : ''));
  return {
    params: params.map(([key]) => key.slice(0, MAX_INDEXED_NAME_CHARS)).join(' '),
    paramDescriptions: described.join(' ').slice(0, MAX_INDEXED_DESCRIPTION_CHARS),
  };
}

/** The tool's own name: the exposed name without its `<server>__` prefix (the server is a field of its own). */
function ownName(name: string, server: string): string {
  const prefix = `${server}__`;
  return server !== '' && name.startsWith(prefix) ? name.slice(prefix.length) : name;
}

function docOf(entry: Searchable, id: number): Doc | null {
  const tool: unknown = isPlainObject(entry) ? entry.tool : undefined;
  if (typeof tool !== 'object' || tool === null) return null;
  const { name, description, inputSchema } = tool as Record<string, unknown>;
  if (typeof name !== 'string' || name === '') return null;
  const server = clip(entry.server, MAX_INDEXED_NAME_CHARS);
  return {
    id,
    name: ownName(name.slice(0, MAX_INDEXED_NAME_CHARS), server),
    description: clip(description, MAX_INDEXED_DESCRIPTION_CHARS),
    server,
    ...parameterFields(inputSchema),
  };
}

/** Searches one set of tools; build a new one when the lists change. */
/** Tools indexed per turn of the event loop by {@link ToolSearch.build}. */
const BUILD_CHUNK = 64;

export class ToolSearch {
  readonly #tools: Record<string, unknown>[] = [];
  readonly #index = new MiniSearch<Doc>({
    fields: ['name', 'description', 'server', 'params', 'paramDescriptions'],
    tokenize: words,
    processTerm: terms,
    searchOptions: {
      boost: BOOST,
      combineWith: 'OR',
      processTerm: queryTerms,
      // Prefixes from three letters (`dir` finds `directory`), typos from five (`directroy`).
      // Only the first few words of a query get them: each costs a walk of the whole index.
      prefix: (term, i) => i < LOOSE_WORDS && term.length >= 3 && !isGroupTerm(term),
      fuzzy: (term, i) => (i < LOOSE_WORDS && term.length >= 5 && !isGroupTerm(term) ? 0.2 : false),
    },
  });

  constructor(entries: readonly Searchable[] = []) {
    this.#index.addAll(this.#docs(entries));
  }

  /**
   * The same index, built a chunk of tools at a time with a turn of the event loop between
   * chunks: a list of thousands of tools (about 0.1 ms each) holds up no other window.
   */
  static async build(entries: readonly Searchable[]): Promise<ToolSearch> {
    const search = new ToolSearch();
    await search.#index.addAllAsync(search.#docs(entries), { chunkSize: BUILD_CHUNK });
    return search;
  }

  #docs(entries: readonly Searchable[]): Doc[] {
    const docs: Doc[] = [];
    for (const entry of entries) {
      const doc = docOf(entry, this.#tools.length);
      if (doc === null) continue;
      this.#tools.push(entry.tool); // an object: docOf checked it
      docs.push(doc);
    }
    return docs;
  }

  /** Best matches first, at most `limit`; [] for a query with no usable words. */
  search(query: string, limit: number): Record<string, unknown>[] {
    if (typeof query !== 'string' || !(limit >= 1)) return [];
    const kept = words(query.slice(0, MAX_QUERY_CHARS)).slice(0, MAX_QUERY_WORDS).join(' ');
    if (kept === '') return [];
    const count = Math.min(Math.floor(limit), this.#tools.length);
    const found: Record<string, unknown>[] = [];
    for (const hit of this.#index.search(kept)) {
      const tool = this.#tools[hit.id as number];
      if (tool !== undefined) found.push(tool);
      if (found.length >= count) break;
    }
    return found;
  }
}
