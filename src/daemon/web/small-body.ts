/**
 * Reading the small JSON bodies the daemon's own routes take (`/auth/challenge`, `/control/*`):
 * a bound on what is read, so a party can never make the daemon buffer more than a few bytes
 * for a route that expects a few dozen.
 */
import type { IncomingMessage } from 'node:http';

/**
 * Reads a request body of at most `maxBytes` as text; `null` when it is larger (the rest is
 * not read: the connection closes after the answer). Calls `done` once.
 */
export function readSmallBody(req: IncomingMessage, maxBytes: number, done: (body: string | null) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const finish = (body: string | null) => {
    if (finished) return;
    finished = true;
    done(body);
  };
  req.on('data', (chunk: Buffer) => {
    if (finished) return;
    size += chunk.length;
    if (size > maxBytes) {
      req.pause();
      finish(null);
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => finish(Buffer.concat(chunks).toString('utf8')));
  req.on('error', () => {
    finished = true;
  });
}
