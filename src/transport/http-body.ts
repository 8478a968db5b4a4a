/**
 * The bodies of `/mcp` POSTs, read under two bounds: one body's size (`maxBodyBytes`), and the
 * bytes of every body being received at once (`bodiesMaxBytes`), so that many slow uploads
 * together cannot take the daemon's memory. A body is refused as soon as its declared length or
 * its bytes so far pass either bound; it gives its share back however it ends (read, refused,
 * or its client hung up mid-body).
 */
import type { IncomingMessage } from 'node:http';
import { header } from './http-wire.js';

/** Request bodies being received, all together, in bytes. */
export const DEFAULT_BODIES_MAX_BYTES = 128 * 1024 * 1024;

/** Why a body was not read: larger than one body may be, or no room among the bodies being received. */
export type BodyRefusal = 'too_large' | 'bodies_full';

export interface BodyHandlers {
  /** The whole body, as text. */
  done(body: string): void;
  /** The body is refused (at most once, and then nothing else is called); its rest is not kept. */
  refused(why: BodyRefusal): void;
  /** The request failed while it was read. */
  failed(): void;
}

export class BodyIntake {
  /** Largest request body, in bytes. */
  readonly maxBodyBytes: number;
  /** Bytes of request bodies being received, all together. */
  readonly bodiesMaxBytes: number;
  /** Bytes of request bodies received so far and not yet handled, all POSTs together. */
  private bytes = 0;

  constructor(maxBodyBytes: number, bodiesMaxBytes: number) {
    this.maxBodyBytes = maxBodyBytes;
    this.bodiesMaxBytes = bodiesMaxBytes;
  }

  /** Bytes of request bodies being received now, all together. */
  get receivingBytes(): number {
    return this.bytes;
  }

  /** Reads `req`'s body within the bounds; one of `handlers` tells how it ended. */
  read(req: IncomingMessage, handlers: BodyHandlers): void {
    const max = this.maxBodyBytes;
    const declared = Number(header(req, 'content-length'));
    if (Number.isFinite(declared) && declared > max) return handlers.refused('too_large');
    if (Number.isFinite(declared) && this.bytes + declared > this.bodiesMaxBytes) return handlers.refused('bodies_full');
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    // This body's share of the bodies being received, given back however it ends.
    let held = 0;
    const release = () => {
      this.bytes -= held;
      held = 0;
    };
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > max || this.bytes + chunk.length > this.bodiesMaxBytes) {
        over = true;
        chunks.length = 0;
        release();
        handlers.refused(size > max ? 'too_large' : 'bodies_full');
        return;
      }
      held += chunk.length;
      this.bytes += chunk.length;
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (over) return;
      const body = Buffer.concat(chunks).toString('utf8');
      chunks.length = 0;
      release();
      handlers.done(body);
    });
    // A client that hangs up mid-body gives its share back too.
    req.on('close', release);
    req.on('error', () => handlers.failed());
  }
}
