/**
 * Where the daemon's own authorization server keeps its clients' registrations and grants
 * between runs (daemon/authz/): `<home>/oauth/issued.json`, in the folder of the OAuth logins
 * (the user's alone, oauth-vault.ts), 0600, written whole like the token file. It holds token
 * hashes only: a reader of the file learns nothing to send.
 *
 * A file that cannot be read or parsed counts as nothing kept (logged once, never its content:
 * clients then log in again); a write that fails (a full disk) is logged once and the grants stay
 * in memory until the daemon stops. Nothing here throws.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { replaceWhole } from '../../local/whole-file.js';
import type { AuthzStore } from '../authz/authorization-server.js';
import type { KnownClient } from '../authz/clients.js';
import type { Grant } from '../authz/grants.js';
import type { Logger } from './logger.js';

/** Largest file read: 256 grants and 256 approved registrations (8 redirect URIs of 1 KiB at most each) are well under this. */
const MAX_FILE_BYTES = 4 * 1024 * 1024;

const Kept = z.object({ hash: z.string(), expires_at_ms: z.number() });
const FileShape = z.object({
  version: z.literal(1),
  clients: z.array(
    z.object({
      client_id: z.string(),
      client_name: z.string(),
      redirect_uris: z.array(z.string()),
      kind: z.enum(['registered', 'metadata_document']),
      created_at_ms: z.number(),
      expires_at_ms: z.number(),
      used_at_ms: z.number().optional(),
    }),
  ),
  grants: z.array(
    z.object({
      id: z.string(),
      client_id: z.string(),
      client_name: z.string(),
      scope: z.string(),
      resource: z.string(),
      created_at_ms: z.number(),
      used_at_ms: z.number(),
      access: z.array(Kept),
      refresh: Kept.nullable(),
      previous: Kept.optional(),
      retired: z.array(z.string()).max(64).optional(),
    }),
  ),
});

export class GrantFileStore implements AuthzStore {
  private failing = false;

  constructor(
    private readonly path: string,
    private readonly logger: Pick<Logger, 'warn' | 'info'>,
  ) {}

  load(): { clients: KnownClient[]; grants: Grant[] } {
    const empty = { clients: [], grants: [] };
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT')
        this.logger.warn({ path: this.path, err: code ?? String(error) }, 'issued OAuth grants could not be read: clients log in again');
      return empty;
    }
    const parsed = text.length > MAX_FILE_BYTES ? null : FileShape.safeParse(safeJson(text));
    if (parsed === null || !parsed.success) {
      this.logger.warn({ path: this.path }, 'issued OAuth grants file is not valid: clients log in again');
      return empty;
    }
    return { clients: parsed.data.clients, grants: parsed.data.grants };
  }

  save(snapshot: { clients: KnownClient[]; grants: Grant[] }): void {
    const text = JSON.stringify({ version: 1, ...snapshot });
    try {
      mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
      replaceWhole(this.path, text, 0o600);
      if (this.failing) this.logger.info({ path: this.path }, 'issued OAuth grants written again');
      this.failing = false;
    } catch (error) {
      if (!this.failing)
        this.logger.warn(
          { path: this.path, err: (error as NodeJS.ErrnoException).code ?? String(error) },
          'issued OAuth grants could not be written: they last until the daemon stops',
        );
      this.failing = true;
    }
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
