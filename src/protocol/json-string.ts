/**
 * One JSON string (RFC 8259) checked where it stands in a text, without building it: the one
 * string reader of the two scanners that read messages without parsing them, the daemon's
 * (relay.ts) and the shim's (shim/scan.ts).
 */

/** What the last string read held; each scanner keeps one and passes it to every call. */
export interface StringScan {
  /** The string held a backslash escape: it must be decoded before it is compared. */
  escaped: boolean;
}

/**
 * The index after the string whose opening quote is at `i`, or -1 when it is not a JSON string
 * (an escape JSON does not have, a raw control character, or the end of the text before the
 * closing quote). Sets `scan.escaped`.
 */
export function skipJsonString(text: string, i: number, scan: StringScan): number {
  scan.escaped = false;
  for (i++; ; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) return i + 1;
    if (c === 0x5c) {
      scan.escaped = true;
      const e = text.charCodeAt(++i);
      if (e === 0x75 /* u */) {
        if (
          !isHex(text.charCodeAt(i + 1)) ||
          !isHex(text.charCodeAt(i + 2)) ||
          !isHex(text.charCodeAt(i + 3)) ||
          !isHex(text.charCodeAt(i + 4))
        )
          return -1;
        i += 4;
      } else if (!(e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74)) {
        return -1;
      }
    } else if (!(c >= 0x20)) {
      return -1; // a control character, or the end of the text (NaN)
    }
  }
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
}
