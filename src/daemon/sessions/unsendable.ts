/**
 * What becomes of a message that cannot be serialised (nested too deep, a BigInt, a cycle): it
 * costs only itself. A response is replaced by a -32603 error for the same id; anything else is
 * dropped. Either way it is counted (`unserializable`) and logged at warn, in one place for the
 * session and the fan-out so both read alike in the log.
 */
import { RpcCode } from '../../protocol/codes.js';
import { clip, rpcError, trySerialize, type RequestId } from '../../protocol/jsonrpc.js';
import type { Logger } from '../files/logger.js';
import type { Metrics } from '../files/metrics.js';

export interface UnsendableDeps {
  logger: Logger;
  metrics: Metrics;
}

/** Counts and logs at warn a message that could not be serialised (see the header). */
export function reportUnserializable(
  deps: UnsendableDeps,
  details: { session_id?: string; kind: string; method: string | undefined; reason: string },
  replaced = false,
): void {
  deps.metrics.reject('unserializable');
  deps.logger.warn(
    details,
    replaced ? 'response replaced by an error: it cannot be serialised' : 'message dropped: it cannot be serialised',
  );
}

/**
 * The wire text of a message a session sends, or of the error that replaces an unserialisable
 * response (`replaced`); undefined when the message is dropped.
 */
export function serializeFor(deps: UnsendableDeps, sessionId: string, message: object): { text: string; replaced: boolean } | undefined {
  const out = trySerialize(message);
  if (out.ok) return { text: out.text, replaced: false };
  const m = message as { id?: unknown; method?: unknown };
  const method = typeof m.method === 'string' ? clip(m.method, 100) : undefined;
  const isResponse = method === undefined && (typeof m.id === 'string' || typeof m.id === 'number');
  const kind = isResponse ? 'response' : 'id' in m ? 'request' : 'notification';
  reportUnserializable(deps, { session_id: sessionId, kind, method, reason: out.reason }, isResponse);
  if (!isResponse) return undefined;
  const what = 'error' in m ? 'error' : 'result';
  const reply = rpcError(m.id as RequestId, RpcCode.INTERNAL_ERROR, `Internal error: the ${what} cannot be sent: ${out.reason}`);
  return { text: JSON.stringify(reply), replaced: true };
}
