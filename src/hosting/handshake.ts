/**
 * How a server link learns which era its server speaks, and opens it: the 2025 `initialize`
 * handshake, or a 2026-07-28 `server/discover` (modern.ts), chosen by the entry's `protocol`:
 *
 * - `2025-11-25`: initialize only (stdio servers, unless their entry says otherwise).
 * - `2026-07-28`: discover only; a server that is not modern fails to start, saying so.
 * - `auto` (HTTP servers, unless their entry says otherwise): discover first; a recognized
 *   modern answer keeps the link modern, anything else (an HTTP 4xx without a modern error, a
 *   JSON-RPC error that is not a modern one, no answer within the probe's deadline) falls back
 *   to initialize. A server known to be legacy from its last start is sent initialize at once,
 *   and probed again only when that fails.
 */
import { RpcCode } from '../protocol/codes.js';
import { isObject, type Answer } from '../protocol/jsonrpc.js';
import { VERSION, NAME } from '../protocol/version.js';
import type { CallOptions, CallOutcome } from './call.js';
import {
  LEGACY_VERSION,
  MODERN_VERSION,
  judgeProbe,
  supportedNote,
  supportedVersions,
  withModernMeta,
  type Era,
  type ModernDefaults,
  type ProbeVerdict,
  type ProtocolSetting,
} from './modern.js';

/** What a handshake needs of its link. */
export interface HandshakePort {
  readonly name: string;
  send(method: string, params: Record<string, unknown> | undefined, options: CallOptions): Promise<CallOutcome>;
  sendNotification(method: string, params?: Record<string, unknown>): void;
  /** False once the link closed. */
  readonly open: boolean;
}

export type Opened =
  { readonly era: 'legacy'; readonly initializeResult: Record<string, unknown> } | Extract<ProbeVerdict, { era: 'modern' }>;

export interface HandshakeOptions {
  readonly setting: ProtocolSetting;
  /** The era the server spoke at its last start, if known. */
  readonly hint: Era | undefined;
  readonly capabilities: Record<string, unknown>;
  /** How long an `auto` probe waits for an answer before the server is taken for a legacy one. */
  readonly probeTimeoutMs: number;
}

/** The daemon's name and version, as it introduces itself to servers. */
export const CLIENT_INFO: Readonly<Record<string, unknown>> = Object.freeze({ name: NAME, version: VERSION });

/** Opens the server in its era; rejects with the reason a user can read when it cannot. */
export async function openEra(port: HandshakePort, options: HandshakeOptions): Promise<Opened> {
  const defaults: ModernDefaults = { capabilities: options.capabilities, clientInfo: CLIENT_INFO };
  if (options.setting === LEGACY_VERSION) return initialize(port, options.capabilities);
  if (options.setting === 'auto' && options.hint === 'legacy') {
    try {
      return await initialize(port, options.capabilities);
    } catch (error) {
      if (!port.open) throw error;
      // It spoke 2025 last time and refuses it now: it may have moved to the modern era.
      const verdict = await probe(port, defaults, options.probeTimeoutMs);
      if (verdict.era === 'modern') return verdict;
      throw error;
    }
  }
  const verdict = await probe(port, defaults, options.setting === 'auto' ? options.probeTimeoutMs : Infinity);
  if (verdict.era === 'modern') return verdict;
  if (verdict.era === 'none') throw new Error(`server ${port.name} cannot be spoken to: ${verdict.why}`);
  // The connection itself is gone (refused, reset): no handshake can follow.
  if (!port.open) throw new Error(`server ${port.name} failed to initialize: ${verdict.why}`);
  if (options.setting === MODERN_VERSION)
    throw new Error(`server ${port.name} does not speak ${MODERN_VERSION} (its "protocol" setting): ${verdict.why}`);
  return initialize(port, options.capabilities);
}

async function probe(port: HandshakePort, defaults: ModernDefaults, timeoutMs: number): Promise<ProbeVerdict> {
  const first = await port.send('server/discover', withModernMeta(undefined, defaults), { timeoutMs });
  // Refused as an unsupported version while naming ours among those it supports: ask once more.
  const outcome = refusedButOffersModern(first)
    ? await port.send('server/discover', withModernMeta(undefined, defaults), { timeoutMs })
    : first;
  // A login is needed: initialize would be refused the same way, and say less.
  if (outcome !== null && 'error' in outcome && isObject(outcome.error.data) && outcome.error.data.cause === 'ELOGIN_NEEDED') {
    throw new Error(outcome.error.message);
  }
  return judgeProbe(noAnswer(outcome) ? undefined : (outcome as Answer));
}

function refusedButOffersModern(outcome: CallOutcome): boolean {
  if (outcome === null || !('error' in outcome) || outcome.error.code !== RpcCode.UNSUPPORTED_PROTOCOL_VERSION) return false;
  return supportedVersions(outcome.error.data).includes(MODERN_VERSION);
}

/** Codes of a handshake that failed on the link rather than by the server's answer. */
const LINK_FAILURES: ReadonlySet<number> = new Set([RpcCode.UPSTREAM_UNAVAILABLE, RpcCode.CONNECTION_CLOSED, RpcCode.INTERNAL_ERROR]);

/** No answer from the server itself: cancelled, or past the probe's deadline. */
function noAnswer(outcome: CallOutcome): boolean {
  return outcome === null || ('error' in outcome && outcome.error.code === RpcCode.REQUEST_TIMEOUT);
}

async function initialize(port: HandshakePort, capabilities: Record<string, unknown>): Promise<Opened> {
  const outcome = await port.send(
    'initialize',
    { protocolVersion: LEGACY_VERSION, capabilities, clientInfo: CLIENT_INFO },
    { timeoutMs: Infinity },
  );
  if (outcome === null || 'error' in outcome) {
    const why = outcome === null ? 'cancelled' : outcome.error.message + supportedNote(outcome.error.data);
    // The server answered with its refusal, or the link went (the process exiting, say).
    const answered = outcome !== null && !LINK_FAILURES.has(outcome.error.code);
    throw Object.assign(new Error(`server ${port.name} failed to initialize: ${why}`), { answered });
  }
  port.sendNotification('notifications/initialized');
  return { era: 'legacy', initializeResult: outcome.result };
}
