/**
 * Ids for the requests the daemon sends a shared server. Many sessions' calls travel on one
 * link, so an id must say nothing of its neighbours: with sequential ids, a server that answers
 * under the id next to the right one (an off-by-one bug) hands one window another window's
 * answer. A random id matches nothing in flight, with overwhelming probability, so such an
 * answer is dropped instead (see ServerLink). The id keeps the type of the client's own id, as
 * the daemon promises its clients: a server that mishandles one type fails for the daemon as it
 * would for the client itself.
 */
import { randomUUID } from 'node:crypto';
import type { RequestId } from '../protocol/jsonrpc.js';

/**
 * Largest number id sent: some servers keep ids in a signed 32-bit integer. With up to a few
 * thousand calls in flight on a link, a wrong id still finds one of them about once in a million.
 */
export const MAX_NUMBER_ID = 2 ** 31 - 1;

/** A random id of the same type as `like`: a number in 1..MAX_NUMBER_ID, or a string. */
export function randomId(like: RequestId | undefined): RequestId {
  // Math.random, not crypto: the ids guard against a server's wrong id, not against an attacker
  // (a server sees its own ids anyway), and crypto's randomInt cost a call about 0.3 us.
  return typeof like === 'string' ? randomUUID() : 1 + Math.floor(Math.random() * MAX_NUMBER_ID);
}

/**
 * A random id of the same type as `like` for which `taken` is false (ids in flight, or answered
 * late after a cancel). `draw` stands in for the random source in tests.
 */
export function unusedId(
  like: RequestId | undefined,
  taken: (id: RequestId) => boolean,
  draw: (like: RequestId | undefined) => RequestId = randomId,
): RequestId {
  for (;;) {
    const id = draw(like);
    if (!taken(id)) return id;
  }
}
