/**
 * The shared secret: `EXAI_WS_TOKEN` when set, else a random 32-byte token kept in
 * `$EXAI_WS_HOME/token` with mode 0600, made on first start.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { readTokenFile } from '../protocol/files.js';

/** Returns the daemon's token, creating the token file when needed. */
export function ensureToken(tokenPath: string, fromEnv: string | undefined): string {
  if (fromEnv) return fromEnv;
  mkdirSync(dirname(tokenPath), { recursive: true, mode: 0o700 });
  const existing = readTokenFile(tokenPath);
  if (existing) {
    if ((statSync(tokenPath).mode & 0o077) !== 0) chmodSync(tokenPath, 0o600);
    return existing;
  }
  const token = randomBytes(32).toString('base64url');
  try {
    writeFileSync(tokenPath, `${token}\n`, { mode: 0o600, flag: 'wx' });
    return token;
  } catch (error) {
    // Another daemon made it between our read and write: use theirs.
    const raced = readTokenFile(tokenPath);
    if ((error as NodeJS.ErrnoException).code === 'EEXIST' && raced) return raced;
    throw error;
  }
}

/** Constant-time token comparison (hashes first so lengths need not match). */
export function tokensEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}
