/**
 * `exai-ws clients [--json]` and `exai-ws clients revoke NAME`: the MCP clients that hold tokens
 * the daemon's own authorization server issued (daemon/authz/: a client that speaks MCP
 * authorization logs in to `/mcp` through the daemon's consent page). These commands only ask
 * the daemon, over proven requests (health-client.ts), as `exai-ws login` does:
 *
 * - list: `POST /control/clients` gives `{"clients": [...]}`: a table on stdout (name, client
 *   id, approvals, first approved, last used), or a line saying none holds a token; `--json`
 *   prints the daemon's JSON as it is.
 * - revoke: `POST /control/clients-revoke {name}` revokes every token of the clients of that
 *   name (or id): `revoked NAME (client id ID)` per client on stdout, exit 0; none of that name:
 *   exit 1, naming the clients that do hold tokens.
 *
 * No token of any kind is printed: the daemon's answers carry none.
 */
import { provenRequest, type ProvenReply, type ProvenTarget } from '../local/health-client.js';
import { urlHost } from '../local/files.js';
import { ExitCode } from './exit-codes.js';
import { daemonTarget, failureText } from './daemon-ask.js';
import { formatDuration, table, type Cell, type Column } from './status-layout.js';
import { colorWanted, columnsOf, painter, printable, type CommandIo } from './terminal.js';

const CLIENTS_TIMEOUT_MS = 10_000;

export type ClientsPath = '/control/clients' | '/control/clients-revoke';

/** Sends one proven POST to the daemon; never rejects (provenRequest's contract). */
export type ClientsAskFn = (target: ProvenTarget, path: ClientsPath, body: unknown, timeoutMs: number) => Promise<ProvenReply>;

export const askClients: ClientsAskFn = (target, path, body, timeoutMs) => provenRequest(target, { method: 'POST', path, body, timeoutMs });

/** What the command needs from outside, injectable so that tests decide every answer. */
export interface ClientsDeps {
  ask?: ClientsAskFn;
  /** The time "ago" is counted from. */
  nowMs?: number;
}

/** One client that holds tokens, as the daemon lists it (authorization-server.ts `holders()`). */
export interface TokenHolderJson {
  client_id: string;
  client_name: string;
  kind?: string;
  grants: number;
  first_approved_at: string;
  last_used_at: string;
}

export interface ClientsOptions {
  /** `list`, or `revoke` with the client's name. */
  action: 'list' | 'revoke';
  name?: string;
  json: boolean;
}

/** The positionals as a command: none (list) or `revoke NAME`; a string for a usage error. */
export function clientsAction(positionals: readonly string[]): Pick<ClientsOptions, 'action' | 'name'> | string {
  const [verb, name, ...extra] = positionals;
  if (verb === undefined) return { action: 'list' };
  if (verb !== 'revoke') return `unknown action '${verb}' (list with no argument, or revoke NAME)`;
  if (name === undefined || name.trim() === '') return 'revoke takes the name (or client id) of a client: exai-ws clients revoke NAME';
  if (extra.length > 0) return `unexpected argument '${extra[0]}'`;
  return { action: 'revoke', name };
}

/** Runs `exai-ws clients ...`; resolves to the exit code (0, 1 with one line on stderr). */
export async function runClientsCommand(options: ClientsOptions, io: CommandIo, deps: ClientsDeps = {}): Promise<number> {
  const { stdout, stderr, env } = io;
  const fail = (reason: string) => {
    stderr.write(`exai-ws clients: ${printable(reason)}\n`);
    return ExitCode.FAILURE;
  };
  const target = daemonTarget(env);
  if (typeof target === 'string') return fail(target);
  const ask = deps.ask ?? askClients;
  const [path, body] =
    options.action === 'list' ? (['/control/clients', {}] as const) : (['/control/clients-revoke', { name: options.name }] as const);
  const reply = await ask(target, path, body, CLIENTS_TIMEOUT_MS);
  if (!reply.ok) return fail(failureText(reply, target, `the daemon did not answer within ${CLIENTS_TIMEOUT_MS / 1000} s`));
  const answer = reply.body !== null && typeof reply.body === 'object' ? (reply.body as Record<string, unknown>) : {};
  if (options.action === 'revoke' && reply.status === 404 && Array.isArray(answer.clients)) {
    return fail(`no client named ${options.name ?? ''} holds a token; ${holdersLine(holdersOf(answer.clients))}`);
  }
  if (reply.status !== 200) return fail(refusal(reply.status, answer));
  if (options.json) {
    stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
    return ExitCode.OK;
  }
  if (options.action === 'revoke') {
    const revoked = holdersOf(answer.revoked);
    for (const client of revoked) stdout.write(`revoked ${printable(client.client_name)} (client id ${printable(client.client_id)})\n`);
    return ExitCode.OK;
  }
  const clients = holdersOf(answer.clients);
  if (clients.length === 0) {
    stdout.write(
      `no client holds a token; clients that speak MCP authorization log in at http://${urlHost(target.host)}:${target.port}/mcp\n`,
    );
    return ExitCode.OK;
  }
  stdout.write(`${holdersTable(clients, io, deps.nowMs ?? Date.now()).join('\n')}\n`);
  return ExitCode.OK;
}

/** The well-formed entries of a daemon's list (anything else is left out). */
function holdersOf(list: unknown): TokenHolderJson[] {
  if (!Array.isArray(list)) return [];
  return list.filter(
    (item): item is TokenHolderJson =>
      item !== null &&
      typeof item === 'object' &&
      typeof (item as TokenHolderJson).client_id === 'string' &&
      typeof (item as TokenHolderJson).client_name === 'string',
  );
}

function holdersLine(holders: readonly TokenHolderJson[]): string {
  if (holders.length === 0) return 'no client holds one';
  const names = holders.map((h) => (h.client_name === h.client_id ? h.client_id : `${h.client_name} (${h.client_id})`));
  return `the clients that do: ${names.join(', ')}`;
}

/** The table: name, client id, how many approvals hold tokens, when first approved, when last used. */
export function holdersTable(holders: readonly TokenHolderJson[], io: Pick<CommandIo, 'stdout' | 'env'>, nowMs: number): string[] {
  const columns: Column[] = [
    { header: 'NAME', shrink: 'end' },
    // Never cut: it is what `clients revoke` takes when two clients share a name.
    { header: 'CLIENT ID' },
    { header: 'APPROVALS', align: 'right' },
    { header: 'FIRST APPROVED' },
    { header: 'LAST USED' },
  ];
  const ago = (iso: string): string => {
    const ms = Date.parse(iso);
    return Number.isFinite(ms) ? `${formatDuration((nowMs - ms) / 1000)} ago` : '-';
  };
  const rows: Cell[][] = holders.map((h) => [
    { text: h.client_name },
    { text: h.client_id },
    { text: typeof h.grants === 'number' ? String(h.grants) : '-' },
    { text: ago(h.first_approved_at) },
    { text: ago(h.last_used_at) },
  ]);
  // Cut to a terminal's width only: piped, every cell is whole.
  const width = io.stdout.isTTY === true ? columnsOf(io.stdout) : Number.POSITIVE_INFINITY;
  return table(columns, rows, painter(colorWanted(io.stdout, io.env)), width);
}

/** Why a non-200 answer refused, in words. */
function refusal(status: number, body: Record<string, unknown>): string {
  // A daemon older than its authorization server answers its generic 404, with a hint listing its routes.
  if (status === 404 && body.error === 'not found' && typeof body.hint === 'string') {
    return 'the daemon is older than this exai-ws and issues no tokens to clients: run `exai-ws restart`';
  }
  return typeof body.error === 'string' ? `${body.error} (HTTP ${status})` : `the daemon answered HTTP ${status}`;
}
