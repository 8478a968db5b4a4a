/**
 * Reads what the shim must know of a message (its top-level `id`, `method`, and whether it has
 * a `result` or an `error`) without building it: the relay forwards the text as it came, so
 * building objects for every message (JSON.parse) would cost its CPU budget for nothing.
 *
 * The scanner checks the whole text against the JSON grammar (RFC 8259) as it goes, so a text
 * it accepts is exactly one JSON.parse accepts: a malformed line is still told apart and
 * answered alone. Values are skipped, never built; only an `id` or `method` string with escapes
 * is decoded (by JSON.parse of that one string). Nesting deeper than {@link MAX_SCAN_DEPTH}
 * falls back to JSON.parse, so the scanner's own recursion stays shallow.
 */
import type { RequestId } from '../protocol/jsonrpc.js';
import { skipJsonString, type StringScan } from '../protocol/json-string.js';

/** What the top level of one valid JSON text holds, as far as the shim routes on it. */
export interface Head {
  /** The text is a JSON object; every other field is false or undefined otherwise. */
  object: boolean;
  /** `id` when it is a string or a finite number (a request or a response), else undefined. */
  id: RequestId | undefined;
  /** The object has a `method` member, of any type. */
  hasMethod: boolean;
  /** `method` when it is a string. */
  method: string | undefined;
  hasResult: boolean;
  hasError: boolean;
  /** The text holds a line break (JSON whitespace): it cannot go out as one NDJSON line as it is. */
  multiline: boolean;
}

/** Deeper nesting than this is read by JSON.parse instead (the scanner recurses per level). */
export const MAX_SCAN_DEPTH = 128;

const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const NEWLINE = 0x0a;
/** Returned by the skip functions for text that is not JSON. */
const BAD = -1;
/** Returned when nesting passed {@link MAX_SCAN_DEPTH}: the caller falls back to JSON.parse. */
const DEEP = -2;

/** The scanner's position state; one per call of {@link readHead}, never shared across calls. */
class Scanner implements StringScan {
  multiline = false;
  /** Whether the last string skipped held an escape (then it must be decoded to be compared). */
  escaped = false;
  constructor(readonly text: string) {}

  ws(i: number): number {
    const text = this.text;
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0d) i++;
      else if (c === NEWLINE) {
        this.multiline = true;
        i++;
      } else return i;
    }
  }

  /** `i` is at the opening quote; returns the index after the closing one, or BAD. */
  string(i: number): number {
    return skipJsonString(this.text, i, this);
  }

  number(i: number): number {
    const text = this.text;
    if (text.charCodeAt(i) === MINUS) i++;
    const first = text.charCodeAt(i);
    if (first === ZERO) i++;
    else if (first > ZERO && first <= NINE) i = this.digits(i);
    else return BAD;
    if (text.charCodeAt(i) === DOT) {
      const end = this.digits(i + 1);
      if (end === i + 1) return BAD;
      i = end;
    }
    const e = text.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      i++;
      const sign = text.charCodeAt(i);
      if (sign === PLUS || sign === MINUS) i++;
      const end = this.digits(i);
      if (end === i) return BAD;
      i = end;
    }
    return i;
  }

  digits(i: number): number {
    const text = this.text;
    for (;;) {
      const c = text.charCodeAt(i);
      if (c >= ZERO && c <= NINE) i++;
      else return i;
    }
  }

  /** Skips one value at `i` (no whitespace before it); the index after it, BAD or DEEP. */
  value(i: number, depth: number): number {
    const text = this.text;
    switch (text.charCodeAt(i)) {
      case QUOTE:
        return this.string(i);
      case OPEN_BRACE:
        return depth >= MAX_SCAN_DEPTH ? DEEP : this.members(i, depth + 1, undefined);
      case OPEN_BRACKET:
        return depth >= MAX_SCAN_DEPTH ? DEEP : this.elements(i, depth + 1);
      case 0x74 /* t */:
        return text.startsWith('true', i) ? i + 4 : BAD;
      case 0x66 /* f */:
        return text.startsWith('false', i) ? i + 5 : BAD;
      case 0x6e /* n */:
        return text.startsWith('null', i) ? i + 4 : BAD;
      default:
        return this.number(i);
    }
  }

  elements(i: number, depth: number): number {
    const text = this.text;
    i = this.ws(i + 1);
    if (text.charCodeAt(i) === CLOSE_BRACKET) return i + 1;
    for (;;) {
      i = this.value(i, depth);
      if (i < 0) return i;
      i = this.ws(i);
      const c = text.charCodeAt(i);
      if (c === CLOSE_BRACKET) return i + 1;
      if (c !== COMMA) return BAD;
      i = this.ws(i + 1);
    }
  }

  /** Skips an object at `i`; at the top level (`head` given) notes the members the shim reads. */
  members(i: number, depth: number, head: Head | undefined): number {
    const text = this.text;
    i = this.ws(i + 1);
    if (text.charCodeAt(i) === CLOSE_BRACE) return i + 1;
    for (;;) {
      if (text.charCodeAt(i) !== QUOTE) return BAD;
      const keyStart = i;
      i = this.string(i);
      if (i < 0) return BAD;
      const key = head ? this.key(keyStart, i) : undefined;
      i = this.ws(i);
      if (text.charCodeAt(i) !== COLON) return BAD;
      const valueStart = this.ws(i + 1);
      i = this.value(valueStart, depth);
      if (i < 0) return i;
      if (head && key !== undefined) this.note(head, key, valueStart, i);
      i = this.ws(i);
      const c = text.charCodeAt(i);
      if (c === CLOSE_BRACE) return i + 1;
      if (c !== COMMA) return BAD;
      i = this.ws(i + 1);
    }
  }

  /** Which of the keys the shim reads the string at [start, end) is, if any; no string is built for the others. */
  key(start: number, end: number): 'id' | 'method' | 'result' | 'error' | undefined {
    const text = this.text;
    if (this.escaped) {
      const key = JSON.parse(text.slice(start, end)) as string;
      return key === 'id' || key === 'method' || key === 'result' || key === 'error' ? key : undefined;
    }
    switch (end - start) {
      case 4:
        return text.startsWith('"id"', start) ? 'id' : undefined;
      case 7:
        return text.startsWith('"error"', start) ? 'error' : undefined;
      case 8:
        return text.startsWith('"method"', start) ? 'method' : text.startsWith('"result"', start) ? 'result' : undefined;
      default:
        return undefined;
    }
  }

  /** Records a top-level member; a later duplicate wins, as in JSON.parse. */
  note(head: Head, key: 'id' | 'method' | 'result' | 'error', start: number, end: number): void {
    const text = this.text;
    const c = text.charCodeAt(start);
    switch (key) {
      case 'id':
        head.id =
          c === QUOTE
            ? this.stringAt(start, end)
            : c === MINUS || (c >= ZERO && c <= NINE)
              ? finite(Number(text.slice(start, end)))
              : undefined;
        return;
      case 'method':
        head.hasMethod = true;
        head.method = c === QUOTE ? this.stringAt(start, end) : undefined;
        return;
      case 'result':
        head.hasResult = true;
        return;
      case 'error':
        head.hasError = true;
        return;
    }
  }

  /** The string value at [start, end) (quotes included), decoded only when it has escapes. */
  stringAt(start: number, end: number): string {
    const raw = this.text.slice(start + 1, end - 1);
    return raw.includes('\\') ? (JSON.parse(this.text.slice(start, end)) as string) : raw;
  }
}

function finite(n: number): number | undefined {
  return Number.isFinite(n) ? n : undefined;
}

function emptyHead(object: boolean, multiline: boolean): Head {
  return { object, id: undefined, hasMethod: false, method: undefined, hasResult: false, hasError: false, multiline };
}

/**
 * The head of `text` when it is valid JSON (any value; `object` says whether it is an object),
 * else undefined. Never throws.
 */
export function readHead(text: string): Head | undefined {
  const scanner = new Scanner(text);
  let i = scanner.ws(0);
  let head: Head;
  if (text.charCodeAt(i) === OPEN_BRACE) {
    head = emptyHead(true, false);
    i = scanner.members(i, 1, head);
  } else {
    head = emptyHead(false, false);
    i = scanner.value(i, 0);
  }
  if (i === DEEP) return headOfText(text);
  if (i < 0 || scanner.ws(i) !== text.length) return undefined;
  head.multiline = scanner.multiline;
  return head;
}

/** The same head, from a value already parsed (the deep fallback, and a yardstick for tests). */
export function headOf(value: unknown, multiline: boolean): Head {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return emptyHead(false, multiline);
  const message = value as Record<string, unknown>;
  const head = emptyHead(true, multiline);
  const { id, method } = message;
  head.id = typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id)) ? id : undefined;
  head.hasMethod = 'method' in message;
  head.method = typeof method === 'string' ? method : undefined;
  head.hasResult = 'result' in message;
  head.hasError = 'error' in message;
  return head;
}

function headOfText(text: string): Head | undefined {
  try {
    return headOf(JSON.parse(text), text.includes('\n'));
  } catch {
    return undefined;
  }
}
