/**
 * What a server link knows of who caused a server-to-client request (sampling, elicitation,
 * roots): the sessions with calls in flight on the link, and the one session the request names
 * for certain, if any: by the progress token of one of its calls, by a task one of its calls
 * created (`io.modelcontextprotocol/related-task`), or by the HTTP response stream of one of its
 * calls that carried the request. Never a guess: ServerRequests decides what to do with this.
 */
import { isObject, type RequestId, type RpcRequest } from '../protocol/jsonrpc.js';

/** What the link knows of who caused a server-to-client request. */
export interface ServerRequestContext {
  /** Sessions with a call sent on this link and not yet answered, most recent first (no repeats). */
  callers: string[];
  /**
   * The session the request names for certain: by the progress token or related task of one
   * of its calls, or by the HTTP response stream of one of its calls that carried it.
   */
  origin: string | undefined;
  /** The origin session's request that caused it, when known (with `origin` only). */
  related?: RequestId | undefined;
}

/** A call in flight on the link, as far as origins go. */
export interface OriginCall {
  readonly origin: string | undefined;
  readonly related: RequestId | undefined;
}

/** The link's calls in flight, by link-local id (oldest first). */
export interface OriginCalls {
  get(id: RequestId): OriginCall | undefined;
  values(): Iterable<OriginCall>;
}

/** Tasks remembered per link with the session that created them (oldest forgotten first). */
const MAX_TASKS = 1_024;
/** Where MCP puts the task a request belongs to. */
const RELATED_TASK_META = 'io.modelcontextprotocol/related-task';

export class RequestOrigins {
  /** Task id -> the session whose call created it (for requests that name their related task). */
  private readonly tasks = new Map<string, string>();

  /**
   * `streamOf`, for HTTP servers: the link-local id of the call whose response stream carried
   * the server request with this id (see http-streams.ts), undefined when it came on none.
   */
  constructor(private readonly streamOf?: (serverRequestId: string | number) => string | number | undefined) {}

  /** Who may have caused `request`, given the link's calls in flight. */
  of(request: RpcRequest, calls: OriginCalls): ServerRequestContext {
    const callers: string[] = [];
    // Newest calls first.
    for (const call of [...calls.values()].reverse()) {
      if (call.origin !== undefined && !callers.includes(call.origin)) callers.push(call.origin);
    }
    return { callers, ...this.certain(request, calls) };
  }

  /** A call's result that created a task (`{ task: { taskId } }`): the task is its session's. */
  remember(result: Record<string, unknown>, origin: string): void {
    const task = isObject(result.task) ? result.task.taskId : undefined;
    if (typeof task !== 'string' || task.length > 256) return;
    this.tasks.delete(task);
    this.tasks.set(task, origin);
    if (this.tasks.size > MAX_TASKS) this.tasks.delete(this.tasks.keys().next().value as string);
  }

  /** The session a request names for certain, if it names one, and its call's request. */
  private certain(request: RpcRequest, calls: OriginCalls): Pick<ServerRequestContext, 'origin' | 'related'> {
    // Asked first, whatever else names the origin: each answer is taken once, so none lingers.
    const call = this.streamOf?.(request.id);
    const meta = request.params?._meta;
    const token = isObject(meta) ? meta.progressToken : undefined;
    const byToken = isRequestId(token) ? calls.get(token) : undefined;
    if (byToken?.origin !== undefined) return { origin: byToken.origin, related: byToken.related };
    const task = isObject(meta) && isObject(meta[RELATED_TASK_META]) ? meta[RELATED_TASK_META].taskId : undefined;
    const byTask = typeof task === 'string' ? this.tasks.get(task) : undefined;
    if (byTask !== undefined) return { origin: byTask };
    const byStream = call !== undefined ? calls.get(call) : undefined;
    return { origin: byStream?.origin, related: byStream?.related };
  }
}

/** A JSON-RPC id as a map key: a string or a number, its type kept. */
export function isRequestId(value: unknown): value is RequestId {
  return typeof value === 'string' || typeof value === 'number';
}
