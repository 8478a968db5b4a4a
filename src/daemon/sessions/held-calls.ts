/**
 * A modern client's calls while a legacy server asks it something (2026-07-28, multi round-trip
 * requests). A legacy server asks in the middle of a call (sampling, elicitation, roots) and
 * waits; a modern client cannot be asked, it can only be answered. So the daemon holds the
 * server's question, answers the client's call with `input_required` (the questions, and a
 * signed `requestState`), and when the client retries the call with its `inputResponses`, hands
 * those to the waiting server and goes on waiting on the same call, round after round, until the
 * server's own result answers the retry.
 *
 * Bounds: a held call waits for its client as long as the question's own deadline; past it the
 * server's questions are declined (-32001) and the state is refused as expired. A session holds
 * at most {@link MAX_HELD_CALLS} calls and a call at most {@link MAX_QUESTIONS_PER_CALL}
 * questions; past them the server's question is declined at once. Closing the session declines
 * everything still held (-32000).
 */
import { randomBytes } from 'node:crypto';
import { RpcCode } from '../../protocol/codes.js';
import { idKey, isObject, rpcError, type Answer, type RequestId, type RpcRequest, type RpcResponse } from '../../protocol/jsonrpc.js';
import { RelayedResponse } from '../../protocol/relay.js';
import type { Cancellation } from '../../hosting/cancellation.js';
import { issueState, verifyState } from './request-state.js';

export const MAX_HELD_CALLS = 32;
export const MAX_QUESTIONS_PER_CALL = 16;

interface Question {
  readonly method: string;
  readonly params: Record<string, unknown> | undefined;
  readonly resolve: (answer: Answer) => void;
}

interface Call {
  /** Its key among the held calls (and in its requestState): made when it is first held. */
  key: string | undefined;
  readonly origin: string;
  readonly method: string;
  readonly name: string;
  readonly cancel: Cancellation;
  outcome: Promise<RpcResponse | null>;
  readonly questions: Map<string, Question>;
  nextQuestion: number;
  /** Wakes whoever waits on the call when a question arrives. */
  wake: (() => void) | undefined;
  expiresMs: number;
  timer: NodeJS.Timeout | undefined;
  /** Capabilities the server asked for and the client had not declared: the call answers -32021. */
  lacking: Set<string> | undefined;
}

/** The tool, prompt or resource a request names (what a state is bound to). */
function nameOf(request: RpcRequest): string {
  const params = request.params ?? {};
  const name = typeof params.name === 'string' ? params.name : params.uri;
  return typeof name === 'string' ? name : '';
}

function declined(code: number, message: string): Answer {
  return { error: { code, message } };
}

/** The call's answer as the answer to request `id` (a retry answers under its own id). */
function answering(response: RpcResponse | null, id: RequestId): RpcResponse | null {
  if (response === null || response.id === id) return response;
  if (response instanceof RelayedResponse) return new RelayedResponse(id, response.relayed);
  return { ...response, id };
}

/** -32021: the call needed client capabilities its request did not declare. */
function missingCapabilities(id: RequestId, lacking: Set<string>): RpcResponse {
  const names = [...lacking].sort();
  const requiredCapabilities = Object.fromEntries(names.map((name) => [name, {}]));
  const message = `Missing required client capability: ${names.join(', ')} (the server asked for it during this request)`;
  return rpcError(id, RpcCode.MISSING_CLIENT_CAPABILITY, message, { requiredCapabilities });
}

export class HeldCalls {
  /** Calls running for this session's modern requests, by the id of the request that began them. */
  private readonly running = new Map<string, Call>();
  /** Calls that answered `input_required` and wait for their retry, by their key. */
  private readonly held = new Map<string, Call>();
  private readonly sessionId: string;

  constructor(sessionId: string) {
    this.sessionId = sessionId;
  }

  /** Calls waiting for their client's retry. */
  get heldCount(): number {
    return this.held.size;
  }

  /** Runs a modern request; a legacy server's questions during it come back as `input_required`. */
  run(request: RpcRequest, cancel: Cancellation, route: () => Promise<RpcResponse | null>): Promise<RpcResponse | null> {
    const call: Call = {
      key: undefined,
      origin: idKey(request.id),
      method: request.method,
      name: nameOf(request),
      cancel,
      outcome: Promise.resolve(null),
      questions: new Map(),
      nextQuestion: 1,
      wake: undefined,
      expiresMs: 0,
      timer: undefined,
      lacking: undefined,
    };
    this.running.set(call.origin, call);
    call.outcome = route();
    // A call whose answer comes while nobody waits on it (held, or given up) is forgotten then,
    // unless it is held: its retry takes the answer.
    void call.outcome.then(() => {
      if (!this.isHeld(call)) this.forget(call);
    });
    return this.next(call, request.id);
  }

  /**
   * A server asks this session's client something during the call of request `related`: held
   * until the client's retry answers it (or declined when it never comes). Never rejects.
   */
  question(
    method: string,
    params: Record<string, unknown> | undefined,
    timeoutMs: number,
    related: RequestId | undefined,
  ): Promise<Answer> {
    const call = related === undefined ? undefined : this.running.get(idKey(related));
    if (!call) return Promise.resolve(declined(RpcCode.ORIGIN_UNKNOWN, 'no call of this client is running to ask it through'));
    if (call.questions.size >= MAX_QUESTIONS_PER_CALL) {
      return Promise.resolve(declined(RpcCode.OVER_CAPACITY, `the call already holds ${MAX_QUESTIONS_PER_CALL} questions for its client`));
    }
    if (!this.isHeld(call) && this.held.size >= MAX_HELD_CALLS) {
      return Promise.resolve(declined(RpcCode.OVER_CAPACITY, `the client already has ${MAX_HELD_CALLS} calls waiting for its input`));
    }
    return new Promise((resolve) => {
      call.questions.set(`${method.split('/')[0]}-${call.nextQuestion++}`, { method, params, resolve });
      this.expireIn(call, timeoutMs);
      call.wake?.();
    });
  }

  /** A retry carrying a state this daemon issued: its answers go to the server, and the call goes on. */
  resume(request: RpcRequest, cancel: Cancellation, state: string): Promise<RpcResponse | null> {
    const verified = verifyState(state, { session: this.sessionId, method: request.method, name: nameOf(request) });
    if ('refused' in verified) {
      return Promise.resolve(
        rpcError(request.id, RpcCode.INVALID_PARAMS, `requestState refused: ${verified.refused}; send the request again without it`),
      );
    }
    const call = this.held.get(verified.claims.held);
    if (!call) {
      return Promise.resolve(
        rpcError(
          request.id,
          RpcCode.INVALID_PARAMS,
          'requestState names a call no longer held (answered or given up); send the request again without it',
        ),
      );
    }
    const responses = isObject(request.params?.inputResponses) ? request.params.inputResponses : {};
    for (const [key, question] of call.questions) {
      const response = responses[key];
      if (!isObject(response)) continue;
      call.questions.delete(key);
      question.resolve({ result: response });
    }
    const stop = cancel.onAbort(() => call.cancel.abort(cancel.reason ?? 'the client cancelled the retry'));
    return this.next(call, request.id).finally(stop);
  }

  /** The server asked for a capability the client did not declare, during the call of `related`. */
  lacks(capability: string, related: RequestId | undefined): void {
    const call = related === undefined ? undefined : this.running.get(idKey(related));
    if (call) (call.lacking ??= new Set()).add(capability);
  }

  /** Declines everything still held (the session ends). */
  close(reason: string): void {
    for (const call of [...this.running.values()]) this.decline(call, RpcCode.CONNECTION_CLOSED, `the client session closed: ${reason}`);
    this.running.clear();
  }

  /** Waits for the call's next event: a question for the client, or its own answer. */
  private async next(call: Call, id: RequestId): Promise<RpcResponse | null> {
    if (call.questions.size === 0) {
      const asked = await new Promise<boolean>((resolve) => {
        call.wake = () => resolve(true);
        void call.outcome.then(() => resolve(false));
      });
      call.wake = undefined;
      if (!asked) {
        this.forget(call);
        if (call.lacking !== undefined) return missingCapabilities(id, call.lacking);
        return answering(await call.outcome, id);
      }
    }
    call.key ??= randomBytes(12).toString('base64url');
    this.held.set(call.key, call);
    const inputRequests: Record<string, unknown> = {};
    for (const [key, question] of call.questions) inputRequests[key] = { method: question.method, params: question.params ?? {} };
    const requestState = issueState({
      held: call.key,
      session: this.sessionId,
      method: call.method,
      name: call.name,
      expiresMs: call.expiresMs,
    });
    return { jsonrpc: '2.0', id, result: { resultType: 'input_required', inputRequests, requestState } };
  }

  private isHeld(call: Call): boolean {
    return call.key !== undefined && this.held.has(call.key);
  }

  /** The call's questions wait for the client until `timeoutMs` from now at most. */
  private expireIn(call: Call, timeoutMs: number): void {
    const at = Date.now() + timeoutMs;
    if (call.timer !== undefined && call.expiresMs <= at) return;
    clearTimeout(call.timer);
    call.expiresMs = at;
    call.timer = setTimeout(
      () => this.decline(call, RpcCode.REQUEST_TIMEOUT, `the client did not come back with its input within ${timeoutMs} ms`),
      timeoutMs,
    );
    call.timer.unref();
  }

  /** The client will not answer: the server's questions are declined, the call is no longer held. */
  private decline(call: Call, code: number, message: string): void {
    for (const question of call.questions.values()) question.resolve(declined(code, message));
    call.questions.clear();
    this.forget(call);
  }

  private forget(call: Call): void {
    clearTimeout(call.timer);
    call.timer = undefined;
    this.running.delete(call.origin);
    if (call.key !== undefined) this.held.delete(call.key);
  }
}
