/**
 * Where a JSON text first breaks, as a person editing the file needs it: line and column, and
 * what is wrong there in words ("a trailing comma"). Node 20's `JSON.parse` gives a character
 * position for some mistakes and none for others (a trailing comma in an array, a stray
 * character: it quotes the text instead), so the text is scanned here, by the JSON grammar
 * (RFC 8259), only once `JSON.parse` has refused it.
 */
import type { LocalErrorCode } from '../local/errors.js';

export interface JsonSyntaxProblem {
  /** Offset of the mistake in the text, in UTF-16 code units. */
  readonly offset: number;
  /** 1-based. */
  readonly line: number;
  /** 1-based, in characters (UTF-16 code units) from the start of the line; a tab counts as one. */
  readonly column: number;
  readonly reason: string;
}

/**
 * Deeper nesting than this is reported rather than scanned: the scan recurses, and no config
 * file a person writes comes near it.
 */
export const MAX_DEPTH = 512;
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const LITERALS = ['true', 'false', 'null'] as const;

class Broken extends Error {
  readonly code = 'EJSON_SYNTAX' satisfies LocalErrorCode;
  constructor(
    readonly offset: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}

/**
 * The first syntax mistake in `text`, or null when it is valid JSON (or, should the scan itself
 * fail, when it cannot say: callers fall back to `JSON.parse`'s own message).
 */
export function findJsonSyntaxError(text: string): JsonSyntaxProblem | null {
  try {
    const end = value(text, skipSpace(text, 0), 0);
    const after = skipSpace(text, end);
    if (after < text.length) throw new Broken(after, `${describe(text, after)} after the end of the JSON value`);
    return null;
  } catch (error) {
    if (error instanceof RangeError) return null; // the stack ran out after all: no answer
    if (!(error instanceof Broken)) throw error;
    return { offset: error.offset, ...lineAndColumn(text, error.offset), reason: error.reason };
  }
}

/** 1-based line and column of an offset; lines end at `\n` (a `\r` before it is part of the line). */
export function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: offset - lineStart + 1 };
}

function skipSpace(text: string, at: number): number {
  let i = at;
  while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  return i;
}

/** What stands at `at`, for a message: the character quoted, or the end of the file. */
function describe(text: string, at: number): string {
  if (at >= text.length) return 'the end of the file';
  const char = text.codePointAt(at) as number;
  if (char === 0xfeff) return 'a byte order mark';
  if (char < 0x20 || char === 0x7f) return `a control character (U+${char.toString(16).toUpperCase().padStart(4, '0')})`;
  return `'${String.fromCodePoint(char)}'`;
}

/** Scans one value starting at `at` (no space before it); returns the offset after it. */
function value(text: string, at: number, depth: number): number {
  if (depth > MAX_DEPTH) throw new Broken(at, `nested more than ${MAX_DEPTH} levels deep`);
  const char = text[at];
  if (char === '{') return object(text, at, depth);
  if (char === '[') return array(text, at, depth);
  if (char === '"') return string(text, at);
  if (char === '-' || (char !== undefined && char >= '0' && char <= '9')) {
    NUMBER.lastIndex = at;
    if (!NUMBER.test(text)) throw new Broken(at, 'a number that is not written as JSON writes numbers');
    return NUMBER.lastIndex;
  }
  for (const literal of LITERALS) {
    if (text.startsWith(literal, at)) return at + literal.length;
  }
  if (char === "'") throw new Broken(at, 'a single quote: JSON strings take double quotes');
  throw new Broken(at, at >= text.length ? 'the file ends where a value was expected' : `${describe(text, at)} where a value was expected`);
}

function object(text: string, open: number, depth: number): number {
  let i = skipSpace(text, open + 1);
  if (text[i] === '}') return i + 1;
  for (;;) {
    if (text[i] !== '"') {
      if (text[i] === "'") throw new Broken(i, 'a single quote: property names take double quotes');
      throw new Broken(
        i,
        i >= text.length
          ? "the file ends inside an object (a '}' is missing)"
          : `${describe(text, i)} where a property name in double quotes was expected`,
      );
    }
    i = skipSpace(text, string(text, i));
    if (text[i] !== ':') throw new Broken(i, `${describe(text, i)} where ':' was expected after the property name`);
    const after = afterMember(text, skipSpace(text, value(text, skipSpace(text, i + 1), depth + 1)), '}', 'an object');
    if ('end' in after) return after.end;
    i = after.next;
  }
}

function array(text: string, open: number, depth: number): number {
  let i = skipSpace(text, open + 1);
  if (text[i] === ']') return i + 1;
  for (;;) {
    const after = afterMember(text, skipSpace(text, value(text, i, depth + 1)), ']', 'an array');
    if ('end' in after) return after.end;
    i = after.next;
  }
}

/**
 * What follows a member of an object or array, at `at` (spaces skipped): `close`, and the
 * container ends (`end`: the offset after it), or a comma and the next member (`next`: where
 * it starts). Anything else is the mistake, a trailing comma included.
 */
function afterMember(text: string, at: number, close: '}' | ']', inside: string): { end: number } | { next: number } {
  if (text[at] === close) return { end: at + 1 };
  if (text[at] !== ',') {
    throw new Broken(
      at,
      at >= text.length
        ? `the file ends inside ${inside} (a '${close}' is missing)`
        : `${describe(text, at)} where ',' or '${close}' was expected`,
    );
  }
  const next = skipSpace(text, at + 1);
  if (text[next] === close) throw new Broken(at, `a trailing comma: JSON allows no comma before '${close}'`);
  return { next };
}

function string(text: string, open: number): number {
  for (let i = open + 1; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 0x22) return i + 1;
    if (code < 0x20)
      throw new Broken(i, `${code === 0x0a ? 'a line break' : describe(text, i)} inside a string (write it as an escape such as \\n)`);
    if (code === 0x5c) {
      const next = text[i + 1];
      if (next === 'u') {
        if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) throw new Broken(i, 'a \\u escape without four hex digits');
        i += 5;
      } else if (next !== undefined && '"\\/bfnrt'.includes(next)) {
        i += 1;
      } else {
        throw new Broken(i, `an escape JSON does not know (\\${next ?? ''}); a backslash itself is written \\\\`);
      }
    }
  }
  throw new Broken(open, "a string that is never closed (a '\"' is missing)");
}
