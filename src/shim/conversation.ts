/**
 * What the shim remembers of its client's MCP conversation, so that a lost connection costs the
 * client as little as possible (DESIGN.md, "When the daemon goes away"):
 *
 * - which requests are unanswered, so each gets exactly one answer even when the daemon never
 *   sends one (-32000), and none is ever sent twice (a tool call may have had side effects);
 * - what the client set up in its session (its initialize, `notifications/initialized`, the
 *   logging level, resource subscriptions), so a new session can be made to look the same;
 * - which server-to-client requests belong to which session, so an answer meant for a session
 *   that is gone is not handed to the new one;
 * - a 2026-07-28 client's open `subscriptions/listen` requests (its listen streams): a drop does
 *   not end them. The same session resumed still holds them; a new session has no initialize to
 *   replay (the modern wire has none) and gets each of them again, under the same id, so the
 *   client's streams go on: the new session acknowledges each one again
 *   (`notifications/subscriptions/acknowledged`, tagged with its id) before its notifications.
 *
 * Pure bookkeeping: no I/O, no timers (its pending table has no deadlines: a request waits for
 * its answer as long as the daemon holds it). The shim (shim.ts) asks it what to do with each
 * message, given the message's head (scan.ts) and its text; the text is parsed only for the few
 * messages whose parameters matter here (initialize, logging/setLevel, subscriptions,
 * cancellations, an error answering a replay).
 */
import { RpcCode } from '../protocol/codes.js';
import { idKey, isObject, isRequestId, rpcError, type RequestId, type RpcFailure } from '../protocol/jsonrpc.js';
import { PendingRequests } from '../protocol/pending.js';
import type { Head } from './scan.js';

/** The -32000 message for a request that was on a connection that dropped. */
export const LOST_MESSAGE = 'the connection to the exai-ws daemon was lost; the request may or may not have run';
/** Ids of the requests the shim itself sends to rebuild a session; answers to them are swallowed. */
export const REPLAY_ID_PREFIX = 'exai-ws-shim-replay-';

type Json = Record<string, unknown>;

/** What the shim needs to know about one client message, read once (the line itself goes out as written). */
export type Note =
  | { kind: 'request'; key: string; id: RequestId }
  | { kind: 'response'; key: string }
  | { kind: 'notification'; method: string }
  | { kind: 'other' };

/** What a successful answer to a request changes in the session. */
type Effect =
  | { kind: 'initialize'; params: unknown }
  | { kind: 'level'; level: unknown }
  | { kind: 'subscribe'; uri: string }
  | { kind: 'unsubscribe'; uri: string };

interface Pending {
  key: string;
  id: RequestId;
  /** True once the request went out on a connection; false while it waits in the shim. */
  sent: boolean;
  effect: Effect | undefined;
  /** A `subscriptions/listen` request's text, sent again as it was to a new session. */
  listen: string | undefined;
}

const LISTEN = 'subscriptions/listen';

/** Methods whose parameters the conversation reads: only their text is parsed. */
const READS_PARAMS: ReadonlySet<string> = new Set([
  'initialize',
  'logging/setLevel',
  'resources/subscribe',
  'resources/unsubscribe',
  'notifications/cancelled',
]);

function paramsOf(text: string): unknown {
  return (JSON.parse(text) as Record<string, unknown>).params;
}

export class Conversation {
  private readonly pending = new PendingRequests<string, Pending>();
  /** Requests answered with -32000 when their connection dropped: a late answer is dropped. */
  private readonly orphans = new Map<string, RequestId>();
  /** Requests the shim sent to rebuild a session, by id key, with their method. */
  private readonly replays = new Map<string, string>();
  /** Requests from the daemon the client has not answered, by the session (epoch) that sent them. */
  private readonly serverRequests = new Map<string, number>();
  private epoch = 0;
  private nextReplayId = 1;
  /** The client's initialize params, once its initialize succeeded. */
  private initializeParams: unknown = undefined;
  private initializedSent = false;
  private level: unknown = undefined;
  private readonly subscriptions = new Set<string>();

  /** Told of a replayed request the daemon answered with an error (for stderr). */
  onReplayError: ((method: string, error: unknown) => void) | undefined;

  /**
   * Records a message read from the client, before it is sent or queued; says what it is.
   * `head` is what scan.ts read of `text`, which must be valid JSON.
   */
  read(head: Head, text: string): Note {
    if (!head.object) return { kind: 'other' };
    const { id, method } = head;
    if (method !== undefined) {
      const params = READS_PARAMS.has(method) ? paramsOf(text) : undefined;
      if (id !== undefined) {
        const key = idKey(id);
        // The client reused the id of a request it was told was lost: answers for it are its own again.
        this.orphans.delete(key);
        const effect = effectOf(method, params);
        const listen = method === LISTEN ? text : undefined;
        const entry = this.pending.get(key);
        // A reused id of a request still unanswered replaces it in place (the client's own mix-up).
        if (entry) {
          entry.id = id;
          entry.sent = false;
          entry.effect = effect;
          entry.listen = listen;
        } else this.pending.add(key, { key, id, sent: false, effect, listen });
        return { kind: 'request', key, id };
      }
      if (method === 'notifications/cancelled' && isObject(params) && isRequestId(params.requestId)) {
        // A cancelled request gets no answer (MCP): nothing is owed to the client any more.
        this.pending.settle(idKey(params.requestId));
      }
      return { kind: 'notification', method };
    }
    if (id !== undefined) return { kind: 'response', key: idKey(id) };
    return { kind: 'other' };
  }

  /** A message is about to go out on an open connection; false when it must be dropped instead. */
  sending(note: Note): boolean {
    switch (note.kind) {
      case 'request': {
        const entry = this.pending.get(note.key);
        if (entry) entry.sent = true;
        return true;
      }
      case 'response': {
        const epoch = this.serverRequests.get(note.key);
        if (epoch === undefined) return true;
        this.serverRequests.delete(note.key);
        // An answer to a request of a session that is gone: the new session never asked it.
        return epoch === this.epoch;
      }
      case 'notification':
        if (note.method === 'notifications/initialized') this.initializedSent = true;
        return true;
      case 'other':
        return true;
    }
  }

  /** A message from the daemon (`head` read of its valid JSON `text`); true when the client should get it. */
  delivered(head: Head, text: string): boolean {
    if (!head.object) return true;
    const { id } = head;
    if (head.hasMethod) {
      if (id !== undefined) this.serverRequests.set(idKey(id), this.epoch);
      return true;
    }
    if (id === undefined) return true;
    const key = idKey(id);
    const replayed = this.replays.get(key);
    if (replayed !== undefined) {
      this.replays.delete(key);
      if (head.hasError) this.onReplayError?.(replayed, (JSON.parse(text) as Record<string, unknown>).error);
      return false;
    }
    if (this.orphans.delete(key)) return false;
    const entry = this.pending.settle(key);
    if (!entry) return true;
    if (head.hasResult && entry.effect) this.apply(entry.effect);
    return true;
  }

  /**
   * The connection dropped: every request sent on it is answered now, once, with -32000, and
   * remembered so that a late answer (after a resume) is dropped. Requests still waiting in the
   * shim stay pending: they go out once a connection is open again. So do listen streams: they
   * run on in a resumed session, and a new one gets them again ({@link relistened}).
   */
  lost(): RpcFailure[] {
    const replies: RpcFailure[] = [];
    for (const entry of [...this.pending.values()]) {
      if (!entry.sent || entry.listen !== undefined) continue;
      this.pending.settle(entry.key);
      this.orphans.set(entry.key, entry.id);
      replies.push(rpcError(entry.id, RpcCode.CONNECTION_CLOSED, LOST_MESSAGE));
    }
    // A replayed request lost on the way is simply not answered; nothing waits for it.
    this.replays.clear();
    return replies;
  }

  /** The same session resumed: the daemon may still run the lost requests; cancel them there. */
  resumed(): Json[] {
    return [...this.orphans.values()].map((requestId) => ({
      jsonrpc: '2.0',
      method: 'notifications/cancelled',
      params: { requestId, reason: 'connection lost' },
    }));
  }

  /**
   * A new session (a new daemon, or the old session was gone): what to send the daemon first so
   * the session looks like the one the client set up, and what to tell the client so it lists
   * again. Nothing when the client never completed an initialize.
   */
  renewed(): { toDaemon: Json[]; toClient: Json[] } {
    this.epoch++;
    // The old session is gone with every answer it still owed: none can arrive now.
    this.orphans.clear();
    this.replays.clear();
    if (this.initializeParams === undefined) return { toDaemon: [], toClient: [] };
    const toDaemon: Json[] = [this.replay('initialize', this.initializeParams)];
    if (this.initializedSent) toDaemon.push({ jsonrpc: '2.0', method: 'notifications/initialized' });
    if (this.level !== undefined) toDaemon.push(this.replay('logging/setLevel', { level: this.level }));
    for (const uri of this.subscriptions) toDaemon.push(this.replay('resources/subscribe', { uri }));
    const toClient = ['tools', 'prompts', 'resources'].map((what) => ({
      jsonrpc: '2.0',
      method: `notifications/${what}/list_changed`,
    }));
    return { toDaemon, toClient };
  }

  /**
   * A new session (after {@link renewed}): the listen requests the old session held, as the
   * client wrote them, to send again under the same ids so the client's streams go on. Listen
   * requests still waiting in the shim are not among them: they go out with the rest.
   */
  relistened(): string[] {
    return [...this.pending.values()].flatMap((entry) => (entry.sent && entry.listen !== undefined ? [entry.listen] : []));
  }

  /** A request that cannot wait any longer is answered with `why`; undefined for other messages. */
  refuse(note: Note, why: string): RpcFailure | undefined {
    if (note.kind !== 'request' || this.pending.settle(note.key) === undefined) return undefined;
    return rpcError(note.id, RpcCode.CONNECTION_CLOSED, why);
  }

  /** The daemon cannot be used any more: every unanswered request is answered with `why`, once. */
  failAll(why: string): RpcFailure[] {
    const replies: RpcFailure[] = [];
    this.pending.failAll((entry) => replies.push(rpcError(entry.id, RpcCode.CONNECTION_CLOSED, why)));
    return replies;
  }

  /** Unanswered requests, sent or waiting. */
  get pendingCount(): number {
    return this.pending.size;
  }

  private replay(method: string, params: unknown): Json {
    const id = `${REPLAY_ID_PREFIX}${this.nextReplayId++}`;
    this.replays.set(idKey(id), method);
    return { jsonrpc: '2.0', id, method, params };
  }

  private apply(effect: Effect): void {
    switch (effect.kind) {
      case 'initialize':
        this.initializeParams = effect.params;
        return;
      case 'level':
        this.level = effect.level;
        return;
      case 'subscribe':
        this.subscriptions.add(effect.uri);
        return;
      case 'unsubscribe':
        this.subscriptions.delete(effect.uri);
        return;
    }
  }
}

/** What a request will change once it succeeds; only the few requests a new session must repeat. */
function effectOf(method: string, params: unknown): Effect | undefined {
  switch (method) {
    case 'initialize':
      return { kind: 'initialize', params };
    case 'logging/setLevel':
      return isObject(params) && params.level !== undefined ? { kind: 'level', level: params.level } : undefined;
    case 'resources/subscribe':
    case 'resources/unsubscribe':
      return isObject(params) && typeof params.uri === 'string'
        ? { kind: method === 'resources/subscribe' ? 'subscribe' : 'unsubscribe', uri: params.uri }
        : undefined;
    default:
      return undefined;
  }
}
