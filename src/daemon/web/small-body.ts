/**
 * Reading the small JSON bodies the daemon's own routes take (`/auth/challenge`, `/control/*`):
 * a bound on what is read, so a party can never make the daemon buffer more than a few bytes
 * for a route that expects a few dozen.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

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

/**
 * For an answer to a body too large to read: the connection ends once the answer is sent (the
 * rest of the body is never read, so the connection cannot carry another request).
 */
export function endAfterAnswer(req: IncomingMessage, res: ServerResponse): void {
  res.setHeader('connection', 'close');
  res.once('finish', () => req.destroy());
}

/** The string `field` of a small JSON body (1 to `maxChars` characters); undefined otherwise. */
export function jsonField(body: string | null, field: string, maxChars = 1024): string | undefined {
  if (body === null) return undefined;
  try {
    const value = (JSON.parse(body) as Record<string, unknown> | null)?.[field];
    return typeof value === 'string' && value.length > 0 && value.length <= maxChars ? value : undefined;
  } catch {
    return undefined;
  }
}
