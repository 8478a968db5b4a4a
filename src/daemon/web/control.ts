/**
 * The daemon's control channel: `POST /control/stop` and `POST /control/reload`, what
 * `exai-ws stop`, `restart` and `reload` ask first. Signals do not exist on Windows (a "signal"
 * there is TerminateProcess: no drain, the address card left behind, no SIGHUP at all), so the
 * daemon takes these requests over its own authenticated connection on every platform; signals
 * stay as the CLI's fallback on POSIX (an older daemon, no token to prove with).
 *
 * server.ts routes here only after the checks every token route gets (Host, Origin, the token
 * or a proof of it, as for `POST /auth/rotate`). This file decides what each request does:
 *
 * - stop: `202 {"ok":true,"pid":N}`, and once that answer is flushed, the graceful shutdown a
 *   SIGTERM starts (the daemon's `stop` hook). Logged at info as `stop asked` with `by`, the
 *   JSON body's `{"by": "exai-ws stop"}` (a short printable name; anything else is 'a client').
 * - reload: the same `reload(reason)` SIGHUP runs, reason 'exai-ws reload'; `200` with the
 *   ReloadReport, or `409 {"error": message}` when the config could not be applied (the running
 *   servers stay).
 *
 * Both answer `503` while the daemon is not running yet (its start finishes first; a stop is
 * still taken while it is closing, which it already does).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

import { writeJson } from '../../transport/http-wire.js';
import type { Logger } from '../files/logger.js';
import { readSmallBody } from './small-body.js';
import type { ReloadReport } from '../../local/health.js';

export type ControlAction = 'stop' | 'reload';

/** The routes, by path. */
export const CONTROL_PATHS: ReadonlyMap<string, ControlAction> = new Map([
  ['/control/stop', 'stop'],
  ['/control/reload', 'reload'],
]);

/** The reason the daemon's reload is given (logged with 'config reloaded'). */
export const CONTROL_RELOAD_REASON = 'exai-ws reload';
/** Who asked for a stop when the body does not say (or says something that is not a short name). */
export const UNKNOWN_ASKER = 'a client';
/** Largest body read: `{"by":"exai-ws restart"}` is 24 bytes. */
const MAX_CONTROL_BODY_BYTES = 1024;
/** A name fit for one log field: printable ASCII, short. */
const ASKER = /^[\x20-\x7e]{1,64}$/;

export interface ControlDeps {
  logger: Pick<Logger, 'info' | 'warn'>;
  /** 'running' takes both requests; 'closing' takes a stop (it is under way); anything else: 503. */
  state(): string;
  /**
   * Starts the graceful shutdown a SIGTERM starts and returns at once; called after the answer
   * has been flushed. Called again for a second stop: it must be idempotent.
   */
  stop(by: string): void;
  /** The daemon's reload: the report, or the Error that kept the config from being applied. */
  reload(reason: string): Promise<ReloadReport | Error>;
}

/** Who asked, from the body of `POST /control/stop`; {@link UNKNOWN_ASKER} when it does not say. */
export function askerOf(body: string | null): string {
  if (body === null || body === '') return UNKNOWN_ASKER;
  let by: unknown;
  try {
    by = (JSON.parse(body) as { by?: unknown } | null)?.by;
  } catch {
    return UNKNOWN_ASKER;
  }
  return typeof by === 'string' && ASKER.test(by) ? by : UNKNOWN_ASKER;
}

export class ControlChannel {
  constructor(private readonly deps: ControlDeps) {}

  /** Answers an authenticated request for `action` (server.ts checked method and credential). */
  handle(action: ControlAction, req: IncomingMessage, res: ServerResponse): void {
    if (action === 'stop') return this.onStop(req, res);
    req.resume();
    void this.onReload(res);
  }

  private onStop(req: IncomingMessage, res: ServerResponse): void {
    const state = this.deps.state();
    if (state !== 'running' && state !== 'closing') {
      req.resume();
      return writeJson(res, 503, { error: `the daemon is ${state}: ask again once it runs` });
    }
    readSmallBody(req, MAX_CONTROL_BODY_BYTES, (body) => {
      const by = askerOf(body);
      // Too large: the rest of the body is not read, so the connection ends with the answer.
      if (body === null) res.setHeader('connection', 'close');
      this.deps.logger.info({ by }, 'stop asked');
      // After the answer is on its way: the shutdown stops accepting and closes connections,
      // and the asker must learn that the stop was taken, not see its connection dropped.
      let started = false;
      const start = () => {
        if (started) return;
        started = true;
        setImmediate(() => this.deps.stop(by));
      };
      res.once('finish', start);
      res.once('close', start);
      writeJson(res, 202, { ok: true, pid: process.pid });
    });
  }

  private async onReload(res: ServerResponse): Promise<void> {
    const state = this.deps.state();
    if (state !== 'running') return writeJson(res, 503, { error: `the daemon is ${state}: it reloads only while it runs` });
    let outcome: ReloadReport | Error;
    try {
      outcome = await this.deps.reload(CONTROL_RELOAD_REASON);
    } catch (error) {
      // A bug in applying the config, not a config the user must fix: said as such.
      this.deps.logger.warn({ err: (error as Error).message }, 'reload asked over the control channel failed');
      return writeJson(res, 500, { error: (error as Error).message });
    }
    if (outcome instanceof Error) return writeJson(res, 409, { error: outcome.message });
    const { added, removed, restarted, unchanged } = outcome;
    writeJson(res, 200, { added, removed, restarted, unchanged });
  }
}
