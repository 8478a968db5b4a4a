/**
 * SSE polling (MCP 2025-11-25, SEP-1699), as the official SDK's server gives it: a session that
 * negotiated that revision or later gets every request's POST as an SSE stream from the start,
 * opened with a priming event (an id, empty data) that carries `retry`, so the client holds a
 * `Last-Event-ID` before anything else and can fetch the request's messages again whatever
 * happens to the connection. With a poll time set, a POST whose response has not gone out after
 * it has its connection closed (the stream goes on): the client waits `retry` and resumes with
 * GET and `Last-Event-ID`.
 *
 * Older sessions get no priming event: clients before 2025-11-25 may not take an event with
 * empty data, which is why the SDK and the spec tie priming to that version.
 */
import type { ServerResponse } from 'node:http';

/** The first protocol revision with priming events and SSE polling (SEP-1699). */
export const POLLING_PROTOCOL_VERSION = '2025-11-25';

/** How a 2025-11-25 session's POST streams are primed and polled. */
export interface SsePolling {
  /** The `retry` of each priming event: how long a client waits before it reconnects, in ms. */
  retryMs: number;
  /**
   * A connection of a POST stream whose response has not gone out after this long is closed
   * (the stream is not: the client resumes it), in ms; 0 = never.
   */
  pollMs: number;
}

/** A priming event: an id the client can resume after, empty data, and `retry`. */
export function primingEvent(streamId: number, seq: number, retryMs: number): string {
  return `id: ${streamId}-${seq}\nretry: ${retryMs}\ndata: \n\n`;
}

/**
 * With a poll time set, ends a POST's own connection `res` once it has been open that long, if
 * `release()` says the stream still waits for its end (and lets go of `res`): the stream stays,
 * kept events and all, for the client's GET with `Last-Event-ID`. The daemon cannot know when
 * the server behind it would close its own stream (a stdio server has none), so the time is the
 * daemon's. Only the POST's connection: the GET that resumes the stream keeps it to its end, as
 * the SDK's server does, so a request costs one reconnection at most, and a client that resumes
 * once (the conformance suite's does) gets its response.
 */
export function endAfterPoll(res: ServerResponse, pollMs: number, release: () => boolean): void {
  if (pollMs <= 0) return;
  const timer = setTimeout(() => {
    if (res.writableEnded || !release()) return;
    // The spec asks for a `retry` before such a close: the priming event on this connection
    // carried it.
    res.end();
  }, pollMs);
  timer.unref();
  res.once('close', () => clearTimeout(timer));
}
