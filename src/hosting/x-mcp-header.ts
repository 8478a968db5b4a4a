/**
 * Tool parameters mirrored into HTTP headers (2026-07-28 Streamable HTTP, "Custom Headers from
 * Tool Parameters"): a property of a tool's `inputSchema` annotated `"x-mcp-header": "Name"` is
 * sent, on each `tools/call` POST, as the header `Mcp-Param-Name` too.
 *
 * - {@link headerParamsOf} reads a tool's annotations, or says why they are invalid (the tool
 *   must then be left out of `tools/list`): each must be a non-empty RFC 9110 token, unique
 *   whatever its case, on a `string`, `integer` or `boolean` property reached from the root
 *   through `properties` alone (never under `items`, `oneOf`, `$defs`, ...).
 * - {@link paramHeaders} gives the headers of one call's arguments: the value at each annotated
 *   path, as text (integers in decimal, booleans `true`/`false`), in the Base64 sentinel when it
 *   is not plain visible ASCII; none when the value is absent or null.
 *
 * No I/O: the link (modern-http.ts) keeps what a server's `tools/list` said and uses these.
 */
import { isObject } from '../protocol/jsonrpc.js';
import { headerValue } from './modern.js';
import { decodeHeaderValue } from '../transport/http-modern.js';

export const X_MCP_HEADER = 'x-mcp-header';
export const PARAM_HEADER_PREFIX = 'Mcp-Param-';

/** One annotated parameter: the header's name part and the chain of `properties` keys to it. */
export interface HeaderParam {
  readonly name: string;
  readonly path: readonly string[];
}

export type HeaderParamsVerdict =
  { readonly ok: true; readonly params: readonly HeaderParam[] } | { readonly ok: false; readonly why: string };

/** RFC 9110 `token`: one or more `tchar`. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** The property types an annotation may be on. */
const PRIMITIVE_TYPES: ReadonlySet<string> = new Set(['string', 'integer', 'boolean']);
/** Keywords whose values are instances, not schemas: an `x-mcp-header` key inside is data. */
const DATA_KEYWORDS: ReadonlySet<string> = new Set(['const', 'default', 'enum', 'examples']);
/** How deep the walk goes into a schema; deeper is refused as invalid (a schema is not that deep). */
const MAX_DEPTH = 64;

/** The header parameters of a tool's `inputSchema`, or why its annotations make the tool invalid. */
export function headerParamsOf(inputSchema: unknown): HeaderParamsVerdict {
  const params: HeaderParam[] = [];
  const seen = new Map<string, string>();
  const why = walk(inputSchema, [], true, 0, (param, schema) => {
    const problem = annotationProblem(param, schema, seen);
    if (problem === undefined) params.push(param);
    return problem;
  });
  return why === undefined ? { ok: true, params } : { ok: false, why };
}

type Found = (param: HeaderParam, schema: Record<string, unknown>) => string | undefined;

/**
 * Visits every schema in `node` (a schema), `reachable` when the chain from the root was made of
 * `properties` keys only, and hands each annotation met to `found`; the first problem stops it.
 */
function walk(node: unknown, path: string[], reachable: boolean, depth: number, found: Found): string | undefined {
  if (Array.isArray(node)) {
    for (const item of node) {
      const problem = walk(item, path, false, depth + 1, found);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
  if (!isObject(node)) return undefined;
  if (depth > MAX_DEPTH) return `the inputSchema is nested deeper than ${MAX_DEPTH} levels`;
  if (X_MCP_HEADER in node) {
    if (!reachable || path.length === 0)
      return `${where(path)}: ${X_MCP_HEADER} is only allowed on a property reached from the root through properties alone`;
    const problem = found({ name: node[X_MCP_HEADER] as string, path: [...path] }, node);
    if (problem !== undefined) return problem;
  }
  for (const [key, value] of Object.entries(node)) {
    if (key === X_MCP_HEADER || DATA_KEYWORDS.has(key)) continue;
    const problem =
      key === 'properties' && isObject(value)
        ? walkProperties(value, path, reachable, depth, found)
        : walk(value, [...path, `<${key}>`], false, depth + 1, found);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

function walkProperties(
  properties: Record<string, unknown>,
  path: string[],
  reachable: boolean,
  depth: number,
  found: Found,
): string | undefined {
  for (const [name, schema] of Object.entries(properties)) {
    const problem = walk(schema, [...path, name], reachable, depth + 1, found);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

/** Why one annotation (at a reachable property) is invalid, if it is; notes its name as seen. */
function annotationProblem(param: HeaderParam, schema: Record<string, unknown>, seen: Map<string, string>): string | undefined {
  const name: unknown = schema[X_MCP_HEADER];
  const at = where(param.path);
  if (typeof name !== 'string' || name.length === 0) return `${at}: ${X_MCP_HEADER} must be a non-empty string`;
  if (!TOKEN.test(name)) return `${at}: ${X_MCP_HEADER} ${JSON.stringify(name)} is not an HTTP field-name token`;
  const type = schema.type;
  if (typeof type !== 'string' || !PRIMITIVE_TYPES.has(type))
    return `${at}: ${X_MCP_HEADER} is only allowed on a string, integer or boolean property (its type is ${JSON.stringify(type ?? null)})`;
  const lower = name.toLowerCase();
  const earlier = seen.get(lower);
  if (earlier !== undefined)
    return `${at}: ${X_MCP_HEADER} ${JSON.stringify(name)} repeats ${JSON.stringify(earlier)} (names are compared without case)`;
  seen.set(lower, name);
  return undefined;
}

function where(path: readonly string[]): string {
  return path.length === 0 ? 'the inputSchema root' : `property ${path.join('.')}`;
}

/**
 * The `Mcp-Param-*` headers of one call: for each parameter whose value is present (not null) at
 * its path in `args`, the header's name and encoded value. Objects, arrays and numbers that are
 * not safe integers are not mirrored (no valid tool annotates them).
 */
export function paramHeaders(params: readonly HeaderParam[], args: unknown): [string, string][] {
  const headers: [string, string][] = [];
  for (const param of params) {
    const value = encodeParam(valueAt(args, param.path));
    if (value !== undefined) headers.push([`${PARAM_HEADER_PREFIX}${param.name}`, value]);
  }
  return headers;
}

/** A parameter's value as a header value, or undefined when it is not mirrored. */
export function encodeParam(value: unknown): string | undefined {
  if (typeof value === 'string') return headerValue(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  return undefined;
}

function valueAt(args: unknown, path: readonly string[]): unknown {
  let current = args;
  for (const key of path) {
    if (!isObject(current) || !Object.hasOwn(current, key)) return undefined;
    current = current[key];
  }
  return current;
}

/**
 * The server's side, for the daemon's own endpoint (it serves the tools it lists with their
 * annotations): why a request's `Mcp-Param-*` headers disagree with its arguments, if they do.
 * `header` gives a header's raw value by name (without case). A value present (not null) needs
 * its header, and the header, decoded, must equal it (integers compared as numbers); a header
 * with no value in the arguments disagrees too. Malformed Base64 in the sentinel is refused; a
 * value that is not the whole sentinel (no prefix, or no suffix) is taken as it is.
 */
export function paramHeadersMismatch(
  params: readonly HeaderParam[],
  args: unknown,
  header: (name: string) => string | undefined,
): string | undefined {
  for (const param of params) {
    const name = `${PARAM_HEADER_PREFIX}${param.name}`;
    const raw = header(name);
    const value = valueAt(args, param.path);
    const at = `arguments.${param.path.join('.')}`;
    if (value === undefined || value === null) {
      if (raw !== undefined) return `the ${name} header is sent but ${at} is absent`;
      continue;
    }
    if (raw === undefined) return `${at} is given but the ${name} header is absent`;
    const decoded = decodeHeaderValue(raw);
    if (decoded === undefined) return `the ${name} header is not a valid value (bad characters or Base64)`;
    if (!sameValue(decoded, value)) return `the ${name} header does not match ${at}`;
  }
  return undefined;
}

function sameValue(decoded: string, value: unknown): boolean {
  if (typeof value === 'string') return decoded === value;
  if (typeof value === 'boolean') return decoded === String(value);
  if (typeof value === 'number') return /^[+-]?\d+(?:\.\d+)?$/.test(decoded) && Number(decoded) === value;
  return false;
}
