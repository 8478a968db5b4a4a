/**
 * The shared secret: `EXAI_WS_TOKEN` when set, else a random 32-byte token kept in
 * `$EXAI_WS_HOME/token` with mode 0600, made on first start and replaced when the file does
 * not hold a usable token.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, statSync } from 'node:fs';
import { inspectTokenFile } from './files.js';
import { homeError } from './home.js';
import { createWhole, replaceWhole } from './whole-file.js';

/** Why the token file was written: it did not exist, or it held no usable token. */
export type TokenWritten = 'created' | 'replaced_empty' | 'replaced_malformed' | 'replaced_unreadable';

export interface TokenResult {
  token: string;
  /** Set when this call wrote a new token file; null when the token came from the env or the file. */
  written: TokenWritten | null;
}

/**
 * Returns the daemon's token: `fromEnv` when set; else the token file's; else a new random
 * token written to the file. A file that is empty, unreadable or malformed (see
 * `isValidToken`) is replaced: shims treat such a file as "no token", so no client can be
 * using it.
 *
 * The file is written whole to a temp file (0600, fsynced) and renamed into place, so a crash
 * or a full disk never leaves an empty token behind. Call it while holding the pid lock: the
 * lock makes this daemon the only writer, so daemons started at once agree on one token (the
 * losers never get here); a missing file is still created exclusively (link), so even a
 * writer without the lock cannot replace a good token.
 *
 * @throws HomeError when the token path is a directory or the file cannot be written.
 */
export function ensureToken(tokenPath: string, fromEnv: string | undefined): TokenResult {
  if (fromEnv) return { token: fromEnv, written: null };
  const found = inspectTokenFile(tokenPath);
  if (found.state === 'ok') {
    tightenMode(tokenPath);
    return { token: found.token, written: null };
  }
  if (found.state === 'unreadable' && found.error.code === 'EISDIR') throw homeError(found.error, tokenPath, 'the token file');
  const token = newToken();
  if (found.state === 'missing') {
    if (writeTokenFile(tokenPath, token, 'exclusive')) return { token, written: 'created' };
    // Made between our read and our write: use it when it is good.
    const raced = inspectTokenFile(tokenPath);
    if (raced.state === 'ok') return { token: raced.token, written: null };
  }
  writeTokenFile(tokenPath, token, 'replace');
  if (found.state === 'unreadable') return { token, written: 'replaced_unreadable' };
  return { token, written: found.state === 'invalid' && found.reason === 'empty' ? 'replaced_empty' : 'replaced_malformed' };
}

/** A new random token: 32 bytes, base64url. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * `exai-ws token rotate`: replaces the token file with a new random token, written whole
 * (0600, fsynced, renamed into place: a reader sees the old token or the new one, never part
 * of either), and returns it. The caller makes sure no running daemon keeps the old one.
 *
 * @throws HomeError when the file cannot be written.
 */
export function rotateTokenFile(tokenPath: string): string {
  const token = newToken();
  writeTokenFile(tokenPath, token, 'replace');
  return token;
}

/**
 * Writes `token` whole (see whole-file.ts): with `exclusive`, only when nothing is there yet
 * (returns false when something is); else over whatever is.
 */
function writeTokenFile(tokenPath: string, token: string, mode: 'exclusive' | 'replace'): boolean {
  try {
    if (mode === 'exclusive') return createWhole(tokenPath, `${token}\n`, 0o600);
    replaceWhole(tokenPath, `${token}\n`, 0o600);
    return true;
  } catch (error) {
    throw homeError(error, tokenPath, 'the token file');
  }
}

/** A token file others can read is made private again (best effort: it may not be ours). */
function tightenMode(tokenPath: string): void {
  try {
    if ((statSync(tokenPath).mode & 0o077) !== 0) chmodSync(tokenPath, 0o600);
  } catch {
    // Not ours to change; the daemon still works.
  }
}

/** Constant-time token comparison (hashes first so lengths need not match). */
export function tokensEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}
