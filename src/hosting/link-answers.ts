/**
 * Small pieces of a server link (server-link.ts) that need none of its state: how a server's
 * reply becomes an outcome, what an error says.
 */
import { RpcCode } from '../protocol/codes.js';
import { isObject, type Answer, type RpcErrorObject } from '../protocol/jsonrpc.js';

/**
 * A server's reply as an outcome the router can pass on: MCP results are objects and errors
 * carry a numeric code and a string message; anything else becomes a -32603 naming the server.
 */
export function answerOf(server: string, reply: { result?: unknown; error?: unknown }): Answer {
  if ('error' in reply) {
    const error = reply.error;
    if (isObject(error) && Number.isInteger(error.code) && typeof error.message === 'string')
      return { error: error as unknown as RpcErrorObject };
    return { error: { code: RpcCode.INTERNAL_ERROR, message: `${server} sent a malformed error`, data: { server } } };
  }
  if (isObject(reply.result)) return { result: reply.result };
  return { error: { code: RpcCode.INTERNAL_ERROR, message: `${server} sent a result that is not an object`, data: { server } } };
}

/**
 * An error's message with its cause's: fetch says only `fetch failed`, and the reason a user can
 * act on (`getaddrinfo ENOTFOUND host`, `connect ECONNREFUSED 127.0.0.1:9000`) is its cause.
 */
export function errorText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? error.cause.message : undefined;
  return cause && !error.message.includes(cause) ? `${error.message}: ${cause}` : error.message;
}

/** The answer to a server's question that no client can take: the client lacks the capability. */
export function notSupported(method: string): Answer {
  return { error: { code: RpcCode.METHOD_NOT_FOUND, message: `${method} is not supported by this client` } };
}
