/**
 * The OAuth vault on disk (hosting/oauth/vault.ts), in `<home>/oauth/`: the user's secrets, so
 * the directory is the user's alone (0700, and on Windows an access list of the user only,
 * local/acl.ts) and each file 0600, written whole (a reader or a crash never sees half of one).
 *
 * - `client-<hash>.json`: a registration, `{"issuer", "redirect_uri", "client"}`, the hash of
 *   issuer and redirect URI (a changed daemon port is another redirect URI: it registers again);
 * - `server-<hash>.json`: one resource's `{"resource", "tokens", "discovery"}`, the hash of the
 *   resource (the server's URL); the tokens carry the issuer that gave them.
 *
 * Read once per key, then kept in memory. A file that cannot be read or parsed is nothing
 * kept (logged once, never its content); a write that fails (a full disk) is logged once and
 * the value stays in memory: the login works until the daemon stops. Nothing here throws.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { OAuthDiscoveryState, StoredOAuthClientInformation } from '@modelcontextprotocol/client';
import { isObject } from '../../protocol/jsonrpc.js';
import { replaceWhole } from '../../local/whole-file.js';
import { makePrivateDir } from '../../local/acl.js';
import type { Logger } from './logger.js';
import { clientKey, type KeptTokens, type OAuthVault } from '../../hosting/oauth/vault.js';

type Warn = (message: string, details: Record<string, unknown>) => void;

/**
 * The daemon's vault in `dir`, made the user's alone now (on Windows an access list set with
 * icacls, in the background: the first login comes long after), and the SDK's own warnings
 * (it `console.warn`s while logging in, quoting an authorization server's raw answer) routed
 * to the log as one short line without that answer.
 */
export function openVault(dir: string, logger: Pick<Logger, 'warn'>): FileOAuthVault {
  makePrivateDir(dir).then(
    (warning) => warning && logger.warn({ dir }, warning),
    (error: unknown) =>
      logger.warn({ dir, err: (error as NodeJS.ErrnoException).code ?? String(error) }, 'the OAuth logins folder could not be made'),
  );
  console.warn = (...args: unknown[]) => logger.warn({ source: 'sdk' }, sdkWarning(args));
  return new FileOAuthVault(dir, (message, details) => logger.warn(details, message));
}

/** An SDK warning's first sentence, without what it quotes (a cause, a raw body). */
export function sdkWarning(args: readonly unknown[]): string {
  const text = args.map((a) => (a instanceof Error ? a.message : String(a))).join(' ');
  const cut = text.search(/ Cause:|raw body|[{"]/i);
  return (cut >= 0 ? text.slice(0, cut) : text)
    .replace(/[^\x20-\x7e]/g, '?')
    .slice(0, 200)
    .trim();
}

/** Largest vault file read (a token set or a discovery document is a few kilobytes). */
const MAX_FILE_BYTES = 1024 * 1024;

interface ServerFile {
  resource: string;
  tokens?: KeptTokens;
  discovery?: OAuthDiscoveryState;
}

interface ClientFile {
  issuer: string;
  redirect_uri: string;
  client: StoredOAuthClientInformation;
}

const digest = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 32);

export class FileOAuthVault implements OAuthVault {
  private readonly servers = new Map<string, ServerFile>();
  private readonly clients = new Map<string, StoredOAuthClientInformation | null>();
  private failing = false;
  private madeDir = false;

  /** Nothing is read here; `dir` is made at the first write if it is not there (openVault makes it the user's at start). */
  constructor(
    private readonly dir: string,
    private readonly warn: Warn,
  ) {}

  client(issuer: string, redirectUri: string): StoredOAuthClientInformation | undefined {
    const key = clientKey(issuer, redirectUri);
    let client = this.clients.get(key);
    if (client === undefined) {
      const file = this.read(`client-${digest(key)}.json`) as Partial<ClientFile> | undefined;
      client = file?.issuer === issuer && file.redirect_uri === redirectUri && isObject(file.client) ? file.client : null;
      this.clients.set(key, client);
    }
    return client ?? undefined;
  }

  saveClient(issuer: string, redirectUri: string, client: StoredOAuthClientInformation | undefined): void {
    const key = clientKey(issuer, redirectUri);
    this.clients.set(key, client ?? null);
    const name = `client-${digest(key)}.json`;
    if (client === undefined) this.remove(name);
    else this.write(name, { issuer, redirect_uri: redirectUri, client } satisfies ClientFile);
  }

  tokens(resource: string): KeptTokens | undefined {
    return this.server(resource).tokens;
  }

  saveTokens(resource: string, tokens: KeptTokens | undefined): void {
    this.update(resource, (file) => setField(file, 'tokens', tokens));
  }

  discovery(resource: string): OAuthDiscoveryState | undefined {
    return this.server(resource).discovery;
  }

  saveDiscovery(resource: string, state: OAuthDiscoveryState | undefined): void {
    this.update(resource, (file) => setField(file, 'discovery', state));
  }

  private server(resource: string): ServerFile {
    let file = this.servers.get(resource);
    if (file === undefined) {
      const read = this.read(`server-${digest(resource)}.json`) as Partial<ServerFile> | undefined;
      file = { resource };
      if (read?.resource === resource) {
        if (isObject(read.tokens) && typeof read.tokens.access_token === 'string') file.tokens = read.tokens;
        if (isObject(read.discovery)) file.discovery = read.discovery;
      }
      this.servers.set(resource, file);
    }
    return file;
  }

  private update(resource: string, change: (file: ServerFile) => void): void {
    const file = this.server(resource);
    change(file);
    const name = `server-${digest(resource)}.json`;
    if (file.tokens === undefined && file.discovery === undefined) this.remove(name);
    else this.write(name, file);
  }

  private read(name: string): unknown {
    let text: string;
    try {
      text = readFileSync(join(this.dir, name), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.warnOnce('oauth file could not be read', name, error);
      return undefined;
    }
    try {
      if (text.length <= MAX_FILE_BYTES) return JSON.parse(text) as unknown;
    } catch {
      // JSON.parse's message quotes the text: a secret must not reach the log through it.
    }
    this.warnOnce('oauth file is not what this daemon writes: taken as nothing kept', name, new Error('not JSON, or too large'));
    return undefined;
  }

  private write(name: string, value: unknown): void {
    try {
      if (!this.madeDir) mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      this.madeDir = true;
      replaceWhole(join(this.dir, name), `${JSON.stringify(value)}\n`, 0o600);
      this.failing = false;
    } catch (error) {
      this.warnOnce('oauth file could not be written: the login is kept in memory only', name, error);
    }
  }

  private remove(name: string): void {
    try {
      rmSync(join(this.dir, name), { force: true });
    } catch (error) {
      this.warnOnce('oauth file could not be removed', name, error);
    }
  }

  /** One line per run of failures (a full disk would otherwise write one per refresh); never a file's content. */
  private warnOnce(message: string, file: string, error: unknown): void {
    if (this.failing) return;
    this.failing = true;
    this.warn(message, { file, error: (error as NodeJS.ErrnoException).code ?? (error as Error).message });
  }
}

function setField<K extends 'tokens' | 'discovery'>(file: ServerFile, key: K, value: ServerFile[K] | undefined): void {
  if (value === undefined) delete file[key];
  else file[key] = value;
}
