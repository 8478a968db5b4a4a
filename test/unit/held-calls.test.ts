/**
 * A legacy server's question held for a 2026-07-28 client (HeldCalls) and the requestState the
 * daemon signs for it: what the retry may and may not present, what the server hears when the
 * client never comes back, and the bounds under a flood.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Cancellation } from '../../src/hosting/cancellation.js';
import type { Answer, RpcRequest, RpcResponse } from '../../src/protocol/jsonrpc.js';
import { HeldCalls, MAX_HELD_CALLS, MAX_QUESTIONS_PER_CALL } from '../../src/daemon/sessions/held-calls.js';
import { STATE_PREFIX, issueState, verifyState } from '../../src/daemon/sessions/request-state.js';

const CALL: RpcRequest = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'ask', arguments: {} } };
const SAMPLE = { messages: [{ role: 'user', content: { type: 'text', text: 'hi' } }], maxTokens: 5 };

/** A server call that asks the client one question through `held` and answers with what it got. */
function askingServer(held: HeldCalls, timeoutMs = 10_000): () => Promise<RpcResponse | null> {
  return async () => {
    const answer: Answer = await held.question('sampling/createMessage', SAMPLE, timeoutMs, CALL.id);
    return { jsonrpc: '2.0', id: CALL.id, result: { content: [{ type: 'text', text: JSON.stringify(answer) }] } };
  };
}

function inputRequired(response: RpcResponse | null): { inputRequests: Record<string, { method: string }>; requestState: string } {
  assert.ok(response && 'result' in response, JSON.stringify(response));
  assert.equal(response.result.resultType, 'input_required');
  return response.result as never;
}

function retry(state: string, inputResponses: Record<string, unknown>, id = 2): RpcRequest {
  return { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'ask', arguments: {}, inputResponses, requestState: state } };
}

test('a question becomes input_required; the retry answers the server and gets its result under its own id', async () => {
  const held = new HeldCalls('session-a');
  const first = inputRequired(await held.run(CALL, new Cancellation(), askingServer(held)));
  const [key, request] = Object.entries(first.inputRequests)[0] ?? [];
  assert.equal(request?.method, 'sampling/createMessage');
  assert.ok(first.requestState.startsWith(STATE_PREFIX));
  const final = await held.resume(
    retry(first.requestState, { [key as string]: { role: 'assistant', content: { type: 'text', text: 'yes' } } }),
    new Cancellation(),
    first.requestState,
  );
  assert.ok(final && 'result' in final);
  assert.equal(final.id, 2, 'the retry is answered under its own id');
  assert.match(JSON.stringify(final.result), /yes/, 'the server got the client answer');
  assert.equal(held.heldCount, 0);
});

test('a retry that leaves the question unanswered is asked again', async () => {
  const held = new HeldCalls('session-a');
  const first = inputRequired(await held.run(CALL, new Cancellation(), askingServer(held)));
  const again = inputRequired(await held.resume(retry(first.requestState, { wrong: {} }), new Cancellation(), first.requestState));
  assert.deepEqual(Object.keys(again.inputRequests), Object.keys(first.inputRequests));
  held.close('test over');
});

test('a tampered, foreign, mismatched or expired requestState is refused with the reason', async () => {
  const state = issueState({ held: 'h1', session: 'session-a', method: 'tools/call', name: 'ask', expiresMs: Date.now() + 60_000 });
  const expected = { session: 'session-a', method: 'tools/call', name: 'ask' };
  assert.ok('claims' in verifyState(state, expected));
  const body = state.slice(STATE_PREFIX.length, state.lastIndexOf('.'));
  const forged = Buffer.from(JSON.stringify(['h2', 'session-a', 'tools/call', 'ask', Date.now() + 60_000])).toString('base64url');
  const refusal = (s: string, e = expected) => {
    const v = verifyState(s, e);
    return 'refused' in v ? v.refused : 'accepted';
  };
  assert.match(refusal(state.replace(body, forged)), /signature/);
  assert.match(refusal(`${state.slice(0, -2)}xx`), /signature/);
  assert.match(refusal(state, { ...expected, session: 'session-b' }), /another connection/);
  assert.match(refusal(state, { ...expected, name: 'other' }), /another request/);
  assert.match(refusal(state, { ...expected, method: 'prompts/get' }), /another request/);
  const old = issueState({ held: 'h1', session: 'session-a', method: 'tools/call', name: 'ask', expiresMs: Date.now() - 1 });
  assert.match(refusal(old), /expired/);
  assert.match(refusal('exai-ws.1.garbage'), /malformed/);

  // Through HeldCalls: refused as -32602, and the held call is untouched.
  const held = new HeldCalls('session-a');
  const first = inputRequired(await held.run(CALL, new Cancellation(), askingServer(held)));
  const other = new HeldCalls('session-b');
  const foreign = await other.resume(retry(first.requestState, {}), new Cancellation(), first.requestState);
  assert.ok(foreign && 'error' in foreign);
  assert.equal(foreign.error.code, -32602);
  assert.match(foreign.error.message, /another connection/);
  assert.equal(held.heldCount, 1);
  held.close('test over');
});

test('a client that never comes back: the server hears a decline at the deadline, and the state is refused after', async () => {
  const held = new HeldCalls('session-a');
  let heard: Answer | undefined;
  const route = async (): Promise<RpcResponse | null> => {
    heard = await held.question('sampling/createMessage', SAMPLE, 50, CALL.id);
    return { jsonrpc: '2.0', id: CALL.id, result: { content: [] } };
  };
  const first = inputRequired(await held.run(CALL, new Cancellation(), route));
  await new Promise((resolve) => setTimeout(resolve, 120));
  assert.ok(heard && 'error' in heard, 'the server was answered');
  assert.equal(heard.error.code, -32001);
  assert.equal(held.heldCount, 0, 'nothing is held after the deadline');
  const late = await held.resume(retry(first.requestState, {}), new Cancellation(), first.requestState);
  assert.ok(late && 'error' in late);
  assert.match(late.error.message, /expired|no longer held/);
});

test('a closing session declines what it holds', async () => {
  const held = new HeldCalls('session-a');
  let heard: Answer | undefined;
  const route = async (): Promise<RpcResponse | null> => {
    heard = await held.question('elicitation/create', { message: 'name?' }, 10_000, CALL.id);
    return null;
  };
  inputRequired(await held.run(CALL, new Cancellation(), route));
  held.close('client went away');
  await new Promise((resolve) => setImmediate(resolve));
  assert.ok(heard && 'error' in heard);
  assert.equal(heard.error.code, -32000);
});

test('held calls and questions stay bounded under a flood', async () => {
  const held = new HeldCalls('session-a');
  const declined: Answer[] = [];
  const calls = Array.from({ length: MAX_HELD_CALLS + 8 }, (_, i) => {
    const request: RpcRequest = { ...CALL, id: `flood-${i}` };
    return held.run(request, new Cancellation(), async () => {
      const answer = await held.question('sampling/createMessage', SAMPLE, 10_000, request.id);
      if ('error' in answer) declined.push(answer);
      return { jsonrpc: '2.0', id: request.id, result: { content: [] } };
    });
  });
  await Promise.all(calls);
  assert.equal(held.heldCount, MAX_HELD_CALLS, 'no more calls held than the bound');
  assert.equal(declined.length, 8, 'the questions past the bound were declined at once');
  assert.ok(declined.every((a) => 'error' in a && a.error.code === -32010));

  // One call asking more questions than a call may hold.
  const many = new HeldCalls('session-b');
  const answers: Answer[] = [];
  await many.run(CALL, new Cancellation(), async () => {
    const asked = Array.from({ length: MAX_QUESTIONS_PER_CALL + 2 }, () => many.question('roots/list', undefined, 10_000, CALL.id));
    answers.push(...(await Promise.all(asked.slice(MAX_QUESTIONS_PER_CALL))));
    return null;
  });
  held.close('test over');
  many.close('test over');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(answers.length, 2);
  assert.ok(answers.every((a) => 'error' in a && a.error.code === -32010));
});
