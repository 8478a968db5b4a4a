/**
 * A 2026-07-28 server's `input_required` answer to a legacy window's call. The legacy window
 * cannot retry a call with inputs (it never heard of them); it can be asked. So the daemon asks
 * it each of the server's input requests, as requests of that window's own call (certain by
 * construction: the answer came to this call), and retries the call at the same server with the
 * window's answers and the server's `requestState`, round after round, until the server answers
 * for good.
 */
import { RpcCode } from '../../protocol/codes.js';
import { isObject, type Answer, type RequestId } from '../../protocol/jsonrpc.js';
import { MetaKey } from '../../protocol/eras.js';
import type { CallOutcome } from '../../hosting/server-link.js';
import { REQUEST_CAPABILITY } from '../../mux/server-requests.js';
import type { SessionContext } from '../../mux/session-context.js';

/** Rounds of input one call may take before the daemon gives up on it. */
export const MAX_INPUT_ROUNDS = 16;
/** Input requests one round may carry. */
const MAX_INPUTS_PER_ROUND = 16;

/** True when a call's outcome is a modern server's request for input. */
export function needsInput(outcome: CallOutcome): boolean {
  if (outcome === null || 'error' in outcome) return false;
  const text = (outcome as { text?: unknown }).text;
  // A result relayed as text is read only when it may be one (the word is in it).
  if (typeof text === 'string' && !text.includes('input_required')) return false;
  return outcome.result.resultType === 'input_required';
}

export interface InputRound {
  context: SessionContext;
  /** The window's request the call serves: the questions go with it. */
  related: RequestId;
  timeoutMs: number;
  /** Calls the server again with these params (the original ones plus the round's inputs). */
  recall(params: Record<string, unknown>): Promise<CallOutcome>;
}

/** Runs the rounds: the window answers each input request, the server is called again with them. */
export async function fulfilInputs(first: CallOutcome, params: Record<string, unknown>, round: InputRound): Promise<CallOutcome> {
  let outcome = first;
  for (let n = 0; n < MAX_INPUT_ROUNDS && outcome !== null && needsInput(outcome); n++) {
    const result = (outcome as { result: Record<string, unknown> }).result;
    const requests = Object.entries(isObject(result.inputRequests) ? result.inputRequests : {}).slice(0, MAX_INPUTS_PER_ROUND);
    const answers = await Promise.all(requests.map(([, request]) => ask(round, request)));
    const failed = answers.find((a): a is { error: { code: number; message: string } } => 'error' in a);
    if (failed) return failed;
    const inputResponses = Object.fromEntries(requests.map(([key], i) => [key, (answers[i] as { result: unknown }).result]));
    const state = typeof result.requestState === 'string' ? { requestState: result.requestState } : {};
    outcome = await round.recall({ ...params, inputResponses, ...state });
  }
  if (outcome !== null && needsInput(outcome)) {
    return { error: { code: RpcCode.INTERNAL_ERROR, message: `the server still asked for input after ${MAX_INPUT_ROUNDS} rounds` } };
  }
  return outcome;
}

/** Asks the window one of the server's input requests, if it declared what that needs. */
function ask(round: InputRound, request: unknown): Promise<Answer> {
  const method = isObject(request) && typeof request.method === 'string' ? request.method : undefined;
  const capability = method === undefined ? undefined : REQUEST_CAPABILITY.get(method);
  if (method === undefined || capability === undefined) {
    return Promise.resolve({ error: { code: RpcCode.INTERNAL_ERROR, message: 'the server asked for an input of an unknown kind' } });
  }
  if (!round.context.declares(capability)) {
    return Promise.resolve({
      error: {
        code: RpcCode.MISSING_CLIENT_CAPABILITY,
        message: `the server needs ${method}, and this client did not declare ${capability}`,
      },
    });
  }
  const params = isObject((request as Record<string, unknown>).params)
    ? ((request as Record<string, unknown>).params as Record<string, unknown>)
    : undefined;
  return round.context.ask(method, params, round.timeoutMs, round.related);
}

/** Params with the calling window's own capabilities and identity in `_meta`, for a modern server. */
export function withCallerMeta(params: Record<string, unknown>, context: SessionContext): Record<string, unknown> {
  const meta = isObject(params._meta) ? params._meta : {};
  const info = context.clientInfo;
  return {
    ...params,
    _meta: {
      ...meta,
      [MetaKey.CLIENT_CAPABILITIES]: context.capabilities ?? {},
      ...(info?.name !== undefined ? { [MetaKey.CLIENT_INFO]: { name: info.name, version: info.version ?? 'unknown' } } : {}),
    },
  };
}
