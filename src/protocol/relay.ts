/**
 * Reads a server's success response without building it: the daemon relays a call's result to
 * its client as text, with the client's id spliced in, instead of JSON.parse of the server's
 * line and JSON.stringify of the client's response (D1 of the hot-path report). Built for the
 * daemon's server links. Strings are read by json-string.ts, as in the shim's scanner (shim/scan.ts).
 *
 * {@link scanSuccess} accepts only the plain case and says "don't know" (undefined) for anything
 * else, which the caller then reads with JSON.parse as before, so every error, stray and odd
 * message keeps its one full-parse path. Accepted: one JSON object holding exactly the members
 * `jsonrpc` ("2.0"), `id` (a string without escapes, or a safe integer) and `result` (an
 * object), each once, with keys written without escapes, and nothing after it. The whole text is
 * checked against the JSON grammar (RFC 8259) on the way, so an accepted text is one JSON.parse
 * accepts, and the relayed result parses to what JSON.parse + JSON.stringify would have sent:
 *
 * - duplicate keys inside the result stay in the text; JSON.parse at the client keeps the last,
 *   as the daemon's own parse did (duplicate top-level keys are refused: routing must see what
 *   JSON.parse sees);
 * - whitespace and escapes stay as the server wrote them (equal JSON, not equal bytes); a CR or
 *   LF outside strings is refused, so the relayed text is one line;
 * - numbers that JSON.stringify would not write back as the client reads them are refused: an
 *   exponent (1e400 is Infinity, sent as null), over {@link MAX_NUMBER_CHARS} characters, or a
 *   negative zero (sent as 0);
 * - nesting deeper than {@link MAX_RELAY_DEPTH} is refused: JSON.stringify of a deep enough
 *   value throws, which the full path turns into its -32603.
 */
import type { RequestId } from './jsonrpc.js';
import { skipJsonString, type StringScan } from './json-string.js';

/**
 * A call's result kept as the server's text (see {@link scanSuccess}): it passes for a parsed
 * `{ result }` answer (the object is parsed once, when something reads it), and the daemon's
 * session sends {@link RelayedResponse.text} without parsing it at all.
 */
export class RelayedResult {
  private parsed: Record<string, unknown> | undefined;
  /** `text`: the result object's JSON text, as the server wrote it. */
  constructor(readonly text: string) {}

  get result(): Record<string, unknown> {
    return (this.parsed ??= JSON.parse(this.text) as Record<string, unknown>);
  }

  toJSON(): { result: Record<string, unknown> } {
    return { result: this.result };
  }
}

/** A success response to a client whose result is a {@link RelayedResult}: its wire text is spliced, never serialised. */
export class RelayedResponse {
  readonly jsonrpc = '2.0' as const;
  constructor(
    readonly id: RequestId,
    /** The result as the server wrote it (another response may carry it on, its parse with it). */
    readonly relayed: RelayedResult,
  ) {}

  get result(): Record<string, unknown> {
    return this.relayed.result;
  }

  /** The response as JSON.stringify would write it, give or take the server's whitespace and escapes. */
  get text(): string {
    const id = typeof this.id === 'number' ? String(this.id) : JSON.stringify(this.id);
    return `{"jsonrpc":"2.0","id":${id},"result":${this.relayed.text}}`;
  }

  toJSON(): { jsonrpc: '2.0'; id: RequestId; result: Record<string, unknown> } {
    return { jsonrpc: '2.0', id: this.id, result: this.result };
  }
}

/** Deeper nesting than this is left to the full parse (the scanner recurses per level). */
export const MAX_RELAY_DEPTH = 256;
/** A longer number is left to the full parse (it could round to Infinity or to zero). */
export const MAX_NUMBER_CHARS = 300;

/** A success response the daemon may relay as text. */
export interface SuccessHead {
  /** The response's id (the link-local id the daemon gave the call). */
  readonly id: RequestId;
  /** Where the result object's text starts and ends (`text.slice(start, end)`). */
  readonly start: number;
  readonly end: number;
  /**
   * The result has a top-level `task` member (or a key with escapes, which might spell it): a
   * result that creates a task is read in full, for the link to remember whose task it is.
   */
  readonly task: boolean;
}

/** Returned by the skip functions for text they do not accept (invalid, or left to JSON.parse). */
const NO = -1;

/** What the last string skipped held (module state: one scan at a time). */
const scan: StringScan = { escaped: false };
/** Whether the last object skipped with `watchTask` had a `task` key (or an escaped key). */
let sawTask = false;

/**
 * The head of `text` when it is a plain success response (see the header), else undefined:
 * the caller reads it with JSON.parse. Never throws.
 */
export function scanSuccess(text: string): SuccessHead | undefined {
  let i = skipSpace(text, 0);
  if (text.charCodeAt(i) !== 0x7b) return undefined;
  i = skipSpace(text, i + 1);
  let id: RequestId | undefined;
  let start = NO;
  let end = NO;
  let task = false;
  let version = false;
  for (;;) {
    if (text.charCodeAt(i) !== 0x22) return undefined;
    const keyEnd = skipJsonString(text, i, scan);
    if (keyEnd === NO || scan.escaped) return undefined;
    const key = keyOf(text, i + 1, keyEnd - 1);
    i = skipSpace(text, keyEnd);
    if (text.charCodeAt(i) !== 0x3a) return undefined;
    const at = skipSpace(text, i + 1);
    if (key === 'result' && start === NO) {
      if (text.charCodeAt(at) !== 0x7b) return undefined;
      sawTask = false;
      i = skipObject(text, at, 1, true);
      if (i === NO) return undefined;
      start = at;
      end = i;
      task = sawTask;
    } else if (key === 'id' && id === undefined) {
      i = skipValue(text, at, 1);
      if (i === NO) return undefined;
      id = idOf(text, at, i);
      if (id === undefined) return undefined;
    } else if (key === 'jsonrpc' && !version) {
      if (!text.startsWith('"2.0"', at)) return undefined;
      version = true;
      i = at + 5;
    } else {
      return undefined; // another member, or a key twice: JSON.parse decides
    }
    i = skipSpace(text, i);
    const c = text.charCodeAt(i);
    if (c === 0x7d) break;
    if (c !== 0x2c) return undefined;
    i = skipSpace(text, i + 1);
  }
  if (skipSpace(text, i + 1) !== text.length || !version || id === undefined || start === NO) return undefined;
  return { id, start, end, task };
}

/** Which of the three members the key at `text.slice(from, to)` names, without slicing it; undefined for any other. */
function keyOf(text: string, from: number, to: number): 'result' | 'id' | 'jsonrpc' | undefined {
  const length = to - from;
  if (length === 6 && text.startsWith('result', from)) return 'result';
  if (length === 2 && text.startsWith('id', from)) return 'id';
  if (length === 7 && text.startsWith('jsonrpc', from)) return 'jsonrpc';
  return undefined;
}

/** The id whose text is `text.slice(from, to)`: a string without escapes or a safe integer, else undefined. */
function idOf(text: string, from: number, to: number): RequestId | undefined {
  const c = text.charCodeAt(from);
  if (c === 0x22) return scan.escaped ? undefined : text.slice(from + 1, to - 1);
  if (!(c === 0x2d || (c >= 0x30 && c <= 0x39))) return undefined; // true, null, [..], {..}
  const n = Number(text.slice(from, to));
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The first index at or after `i` that is not a space or a tab (CR and LF are refused). */
function skipSpace(text: string, i: number): number {
  let c = text.charCodeAt(i);
  while (c === 0x20 || c === 0x09) c = text.charCodeAt(++i);
  return i;
}

/** The index after the JSON value at `i`, or NO. */
function skipValue(text: string, i: number, depth: number): number {
  const c = text.charCodeAt(i);
  if (c === 0x22) return skipJsonString(text, i, scan);
  if (c === 0x7b) return skipObject(text, i, depth, false);
  if (c === 0x5b) return skipArray(text, i, depth);
  if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return skipNumber(text, i);
  if (c === 0x74) return text.startsWith('true', i) ? i + 4 : NO;
  if (c === 0x66) return text.startsWith('false', i) ? i + 5 : NO;
  if (c === 0x6e) return text.startsWith('null', i) ? i + 4 : NO;
  return NO;
}

/**
 * The index after the object at `i` (its `{`), or NO. `watchTask`: note in `sawTask` whether a
 * key of this object (not of the ones inside it) is `task` or has escapes.
 */
function skipObject(text: string, i: number, depth: number, watchTask: boolean): number {
  if (depth > MAX_RELAY_DEPTH) return NO;
  i = skipSpace(text, i + 1);
  if (text.charCodeAt(i) === 0x7d) return i + 1;
  for (;;) {
    if (text.charCodeAt(i) !== 0x22) return NO;
    const keyEnd = skipJsonString(text, i, scan);
    if (keyEnd === NO) return NO;
    if (watchTask && (scan.escaped || (keyEnd - i === 6 && text.startsWith('task', i + 1)))) sawTask = true;
    i = skipSpace(text, keyEnd);
    if (text.charCodeAt(i) !== 0x3a) return NO;
    i = skipValue(text, skipSpace(text, i + 1), depth + 1);
    if (i === NO) return NO;
    i = skipSpace(text, i);
    const c = text.charCodeAt(i);
    if (c === 0x7d) return i + 1;
    if (c !== 0x2c) return NO;
    i = skipSpace(text, i + 1);
  }
}

/** The index after the array at `i` (its `[`), or NO. */
function skipArray(text: string, i: number, depth: number): number {
  if (depth > MAX_RELAY_DEPTH) return NO;
  i = skipSpace(text, i + 1);
  if (text.charCodeAt(i) === 0x5d) return i + 1;
  for (;;) {
    i = skipValue(text, i, depth + 1);
    if (i === NO) return NO;
    i = skipSpace(text, i);
    const c = text.charCodeAt(i);
    if (c === 0x5d) return i + 1;
    if (c !== 0x2c) return NO;
    i = skipSpace(text, i + 1);
  }
}

/**
 * The index after the number at `i`, or NO: invalid, or one the full path would not send back
 * as the client reads it (an exponent, too long, a negative zero; see the header).
 */
function skipNumber(text: string, i: number): number {
  const from = i;
  let nonZero = false;
  if (text.charCodeAt(i) === 0x2d) i++;
  let c = text.charCodeAt(i);
  if (c === 0x30) {
    c = text.charCodeAt(++i);
  } else if (c >= 0x31 && c <= 0x39) {
    nonZero = true;
    do c = text.charCodeAt(++i);
    while (c >= 0x30 && c <= 0x39);
  } else {
    return NO;
  }
  if (c === 0x2e) {
    c = text.charCodeAt(++i);
    if (!(c >= 0x30 && c <= 0x39)) return NO;
    do {
      if (c !== 0x30) nonZero = true;
      c = text.charCodeAt(++i);
    } while (c >= 0x30 && c <= 0x39);
  }
  if (c === 0x65 || c === 0x45) return NO;
  if (i - from > MAX_NUMBER_CHARS) return NO;
  if (!nonZero && text.charCodeAt(from) === 0x2d) return NO;
  return i;
}
