/**
 * The fetch every login request goes through (discovery, registration, token endpoint): each
 * request has a deadline, and each answer is read into memory only up to a bound. An
 * authorization server that never answers, or answers without end, then fails that server's
 * login with a reason; it never holds the server's calls (they wait on a refresh) forever, nor
 * fills the daemon's memory.
 */
import type { FetchLike } from '@modelcontextprotocol/client';

/** Deadline of one request to an authorization server (or for metadata). */
export const AUTH_REQUEST_TIMEOUT_MS = 30_000;
/** Largest answer read (metadata documents and token answers are a few kilobytes). */
export const AUTH_MAX_ANSWER_BYTES = 1024 * 1024;

export function boundedFetch(inner: FetchLike, timeoutMs = AUTH_REQUEST_TIMEOUT_MS, maxBytes = AUTH_MAX_ANSWER_BYTES): FetchLike {
  return async (input, init) => {
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal = init?.signal ? AbortSignal.any([init.signal, deadline]) : deadline;
    let response: Response;
    try {
      response = await inner(input, { ...init, signal });
    } catch (error) {
      if (deadline.aborted) throw new Error(`${String(input)} did not answer within ${timeoutMs / 1000} s`);
      throw error;
    }
    const body = await readBounded(response, maxBytes, String(input));
    const { status, statusText, headers } = response;
    return new Response(status === 204 || status === 304 ? null : body, { status, statusText, headers });
  };
}

async function readBounded(response: Response, maxBytes: number, url: string): Promise<Uint8Array> {
  if (response.body === null) return new Uint8Array();
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const next = (await reader.read()) as { done: true; value?: undefined } | { done: false; value: Uint8Array };
    if (next.done) break;
    const value = next.value;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw new Error(`${url} answered more than ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  const whole = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    whole.set(chunk, at);
    at += chunk.byteLength;
  }
  return whole;
}
