/**
 * Tool search (a profile with `"search": true`): the window lists two tools instead of its
 * profile's hundreds, `search_tools` (the best matching tools of the profile, with their input
 * schemas) and `call_tool` (a call of one of them). A `call_tool` is the direct call it names,
 * routed as the router routes any call, so progress, cancellation, the server's questions to this
 * window and errors are those of the direct call; a window may also call a found tool by name.
 */
import { RpcCode } from '../../protocol/codes.js';
import { isObject, rpcError, type RpcRequest, type RpcResponse } from '../../protocol/jsonrpc.js';
import type { ListOutcome } from '../../mux/catalog.js';
import { ToolSearch } from '../../mux/tool-search.js';

export const SEARCH_TOOLS = 'search_tools';
export const CALL_TOOL = 'call_tool';

/** At most this many tools per search; the default is DEFAULT_LIMIT. */
const MAX_LIMIT = 20;
const DEFAULT_LIMIT = 5;
/** A query longer than this is cut: it is words to look for, not a document. */
const MAX_QUERY_CHARS = 1_000;

/** What a search-mode window lists: two short tools, a few hundred bytes. */
export const SEARCH_MODE_TOOLS: readonly Record<string, unknown>[] = Object.freeze([
  {
    name: SEARCH_TOOLS,
    description:
      'Find tools for a task. Describe what you want to do in a few words; returns the best matching tools with their input schemas. Then run one with call_tool.',
    inputSchema: {
      type: 'object',
      properties: {
        query: { type: 'string', description: 'What you want to do, in plain words' },
        limit: { type: 'integer', minimum: 1, maximum: MAX_LIMIT, description: `How many tools (default ${DEFAULT_LIMIT})` },
      },
      required: ['query'],
    },
    annotations: { readOnlyHint: true },
  },
  {
    name: CALL_TOOL,
    description: 'Run a tool found with search_tools: its name, and its arguments as its input schema says.',
    inputSchema: {
      type: 'object',
      properties: { name: { type: 'string', description: 'The tool name search_tools gave' }, arguments: { type: 'object' } },
      required: ['name'],
    },
  },
]);

/** What a search-mode request becomes: an answer here, or the call to route. */
export type SearchStep = { answer: RpcResponse } | { route: RpcRequest };

/** The profile's tools (as its window would list them without search) and their servers. */
export type ToolsOfProfile = () => Promise<ListOutcome>;

/** The index of each merged list, built once per list (a new list is a new array). */
const INDEXES = new WeakMap<object, Promise<ToolSearch>>();

/**
 * One request of a search-mode window: `tools/list`, `search_tools` and `call_tool` are taken
 * here; undefined for anything else (routed as it is).
 */
export async function searchStep(request: RpcRequest, tools: ToolsOfProfile): Promise<SearchStep | undefined> {
  const { id, method } = request;
  if (method === 'tools/list') return { answer: { jsonrpc: '2.0', id, result: { tools: SEARCH_MODE_TOOLS } } };
  if (method !== 'tools/call') return undefined;
  const params = request.params ?? {};
  const args = isObject(params.arguments) ? params.arguments : {};
  if (params.name === CALL_TOOL) {
    const name = args.name;
    if (typeof name !== 'string' || name.length === 0)
      return { answer: toolError(id, 'call_tool needs "name": a tool name from search_tools') };
    if (args.arguments !== undefined && !isObject(args.arguments)) {
      return { answer: toolError(id, 'call_tool: "arguments" must be an object of the tool\'s arguments') };
    }
    const inner: Record<string, unknown> = { ...params, name };
    if (args.arguments === undefined) delete inner.arguments;
    else inner.arguments = args.arguments;
    return { route: { ...request, params: inner } };
  }
  if (params.name !== SEARCH_TOOLS) return undefined;
  const query = args.query;
  if (typeof query !== 'string') return { answer: toolError(id, 'search_tools needs "query": what you want to do, in words') };
  const limit = args.limit === undefined ? DEFAULT_LIMIT : args.limit;
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    return { answer: toolError(id, `search_tools: "limit" must be an integer from 1 to ${MAX_LIMIT}`) };
  }
  const listed = await tools();
  if ('error' in listed) return { answer: rpcError(id, listed.error.code, listed.error.message, listed.error.data) };
  let index = INDEXES.get(listed.items);
  if (index === undefined) {
    const serverOf = listed.index;
    const entries = listed.items.map((tool) => ({ tool, server: serverOf?.get(String(tool.name))?.server.name ?? '' }));
    INDEXES.set(listed.items, (index = ToolSearch.build(entries)));
  }
  let ranker: ToolSearch;
  try {
    ranker = await index;
  } catch (error) {
    INDEXES.delete(listed.items);
    return { answer: rpcError(id, RpcCode.INTERNAL_ERROR, `tool search failed: ${(error as Error).message}`) };
  }
  const found = ranker.search(query.slice(0, MAX_QUERY_CHARS), limit).map((tool) => ({
    name: tool.name,
    ...(tool.title === undefined ? {} : { title: tool.title }),
    ...(tool.description === undefined ? {} : { description: tool.description }),
    inputSchema: tool.inputSchema,
  }));
  const text = found.length === 0 ? `No tool matches "${query.slice(0, 200)}". Try other words.` : JSON.stringify({ tools: found });
  return { answer: { jsonrpc: '2.0', id, result: { content: [{ type: 'text', text }], structuredContent: { tools: found } } } };
}

/** A tool's own error (the model reads it and tries again), not a protocol error. */
function toolError(id: RpcRequest['id'], message: string): RpcResponse {
  return { jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: message }], isError: true } };
}
