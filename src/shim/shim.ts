/**
 * The stdio shim: the command an MCP client launches as its server. It bridges NDJSON on
 * stdio to the daemon over the link (link.ts: connecting, open, reconnecting, closed). No
 * business logic: it frames lines, applies backpressure both ways, keeps what the client sends
 * while the daemon is away (bounded), and lets the conversation (conversation.ts) decide what
 * a lost connection means for each request: one -32000 each, never sent twice.
 *
 * runShim only wires the parts, each its own unit with its own tests:
 * - the link (link.ts): the connection to the daemon, its attempts, proofs, acks and resumes;
 * - the conversation (conversation.ts): what each message means for the session's bookkeeping;
 * - the outbound queue (outbound.ts): what the client sent, on its way (backpressure, waiting,
 *   in transit, retracted, flushed);
 * - the client's stdout (client-output.ts), and the shim's own states (lifecycle.ts: running,
 *   refusing, finished).
 * A relay reads of each message only its top-level keys (scan.ts) and forwards its text as it
 * came: no message is built on the path that only forwards (CPU budget: 8 us per call).
 *
 * Start-up time matters (budget: 80 ms to the first initialize result): this module loads no
 * logger or schema library, and clients run it bundled with `ws` (see main.ts).
 * Stdout carries only MCP messages; diagnostics go to stderr.
 */
import type { Readable, Writable } from 'node:stream';
import { RpcCode } from '../protocol/codes.js';
import { resolveHome, type DaemonAddress } from '../local/files.js';
import { discoverDaemon } from '../local/client-settings.js';
import { rpcError } from '../protocol/jsonrpc.js';
import { LineSplitter } from '../transport/ndjson.js';
import { VERSION } from '../protocol/version.js';
import { ClientOutput } from './client-output.js';
import { Conversation } from './conversation.js';
import { REFUSED_LINGER_MS, ShimLifecycle, type ShimExit } from './lifecycle.js';
import { GLOBAL_TIMERS } from '../protocol/pending.js';
import {
  BACKOFF_CAP_MS,
  DEFAULT_RECONNECT_MS,
  Link,
  type EnsureResult,
  type LinkHandlers,
  type LinkState,
  type OkAck,
  type SocketFactory,
} from './link.js';
import { Outbound } from './outbound.js';
import { readHead } from './scan.js';
import { connectWebSocket } from './ws-socket.js';
import { MIN_TIMER_SCALE, scaledMs } from '../local/timer-scale.js';

export { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_RECONNECT_MS } from './link.js';
export { REFUSED_LINGER_MS, type ShimExit } from './lifecycle.js';
export { MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES, SOCKET_HIGH_WATER_BYTES, SOCKET_LOW_WATER_BYTES } from './outbound.js';

/** Line limit used until the daemon's hello_ack names its own. */
export const DEFAULT_MAX_LINE_BYTES = 32 * 1024 * 1024;
/** What a line that is not JSON gets, with id null (its id cannot be read). */
const PARSE_ERROR_LINE = JSON.stringify(rpcError(null, RpcCode.PARSE_ERROR, 'Parse error: not valid JSON'));

export interface ShimOptions {
  env?: NodeJS.ProcessEnv;
  input?: Readable;
  output?: Writable;
  errors?: Writable;
  /** `--server NAME`: ask the daemon for one hosted server, unprefixed. */
  server?: string | undefined;
  /** `--profile NAME`: ask the daemon for a profile of its config. */
  profile?: string | undefined;
  connectTimeoutMs?: number;
  /**
   * Makes a daemon answer when a connection attempt fails before its hello_ack (auto-start,
   * src/shim/autostart.ts): asked once per spell of failures. Without it a cold start with no
   * daemon fails at once, and a reconnect only retries.
   */
  ensure?: (() => Promise<EnsureResult>) | undefined;
  /** The socket to the daemon (default: a `ws` WebSocket); tests pass an in-memory one. */
  connect?: SocketFactory;
  /** Where the daemon is and the token, read for every attempt (default: the home's card and the user's settings, discoverDaemon). */
  discover?: () => DaemonAddress;
  /** The pid the hello names (default: this process). */
  pid?: number;
  /** For the backoff's jitter; tests pass their own. */
  random?: () => number;
  /** Every transition of the link, for tests. */
  onTransition?: (from: LinkState, to: LinkState) => void;
}

/** `EXAI_WS_RECONNECT_MS`: a whole number of ms >= 0, else the default (with a line on stderr). */
export function reconnectMsFrom(env: NodeJS.ProcessEnv, say: (line: string) => void): number {
  const raw = env.EXAI_WS_RECONNECT_MS;
  if (raw === undefined || raw.trim() === '') return DEFAULT_RECONNECT_MS;
  const value = Number(raw);
  if (Number.isInteger(value) && value >= 0) return value;
  say(`EXAI_WS_RECONNECT_MS=${raw} is not a whole number of milliseconds; using ${DEFAULT_RECONNECT_MS}`);
  return DEFAULT_RECONNECT_MS;
}

/**
 * `EXAI_WS_TIMER_SCALE` (for tests): a number from 0.01 to 1 that multiplies the reconnect
 * backoff's cap and the refused linger; else 1 (with a line on stderr when it was set).
 */
export function timerScaleFrom(env: NodeJS.ProcessEnv, say: (line: string) => void): number {
  const raw = env.EXAI_WS_TIMER_SCALE;
  if (raw === undefined || raw.trim() === '') return 1;
  const value = Number(raw);
  if (value >= MIN_TIMER_SCALE && value <= 1) return value;
  say(`EXAI_WS_TIMER_SCALE=${raw} is not a number from ${MIN_TIMER_SCALE} to 1; using 1`);
  return 1;
}

/**
 * Runs the shim until stdin ends, or the daemon cannot be used (refused, or not back within
 * `EXAI_WS_RECONNECT_MS` after a drop); resolves with the exit code once everything owed to
 * stdout has been written.
 */
export function runShim(options: ShimOptions = {}): Promise<ShimExit> {
  const env = options.env ?? process.env;
  const input = options.input ?? process.stdin;
  const output = options.output ?? process.stdout;
  const errors = options.errors ?? process.stderr;
  const say = (line: string) => errors.write(`exai-ws shim: ${line}\n`);
  const scale = timerScaleFrom(env, say);

  return new Promise<ShimExit>((resolve) => {
    const conversation = new Conversation();
    conversation.onReplayError = (method, error) => say(`the new session refused the replayed ${method}: ${JSON.stringify(error)}`);
    const link = newLink(options, env, say, scale, {
      writable: () => outbound.flush(),
      retracted: () => outbound.retract(), // never run (see LinkHandlers.retracted): they wait for the next attempt
      opened: (ack, info) => opened(ack, info),
      frame: (text) => deliver(text, conversation, client),
      dropped: () => client.writeAll(conversation.lost()),
      closed: (outcome) => (outcome.kind === 'ended' ? lifecycle.finish(0) : lifecycle.refuse(outcome.why)),
    });
    const client = new ClientOutput(output, link);
    const outbound = new Outbound(link, conversation, input, (answer) => client.writeAll([answer]));
    const lifecycle = new ShimLifecycle(
      {
        refusing: (why) => {
          say(why);
          outbound.clear();
          client.writeAll(conversation.failAll(why));
        },
        finished: (code) => {
          input.pause();
          input.removeAllListeners('data');
          client.settled(() => resolve(code));
        },
      },
      GLOBAL_TIMERS,
      scaledMs(REFUSED_LINGER_MS, scale),
    );
    const opened = (ack: OkAck, info: { resumed: boolean; reconnected: boolean }) => {
      splitter.maxLineBytes = ack.limits.max_bytes;
      outbound.opened();
      if (info.reconnected) reopened(ack, info.resumed, conversation, link, client, say);
      outbound.flush();
      if (lifecycle.stdinEnded) link.close();
      else outbound.resumeInputIfDrained();
    };
    const splitter = new LineSplitter(DEFAULT_MAX_LINE_BYTES, {
      onLine: (line) => {
        const head = readHead(line);
        if (!head) return client.write(PARSE_ERROR_LINE);
        const note = conversation.read(head, line);
        const refused = lifecycle.refusedWith;
        if (refused === undefined) outbound.offer(line, note);
        else client.writeAll(conversation.failAll(refused));
      },
      onOversize: (bytes) =>
        client.writeAll([
          rpcError(null, RpcCode.INVALID_REQUEST, `message of ${bytes}+ bytes exceeds the ${splitter.maxLineBytes}-byte limit`),
        ]),
    });

    input.on('data', (chunk: Buffer) => splitter.push(chunk));
    input.once('end', () => {
      splitter.end();
      if (lifecycle.endInput()) return;
      // At a cold start the lines already read still go out first (see `opened`).
      if (link.state === 'connecting' && outbound.unconfirmed > 0) return;
      // What waited for a reconnect will never go out: each request still gets its one answer.
      client.writeAll(outbound.refuseWaiting('the client closed its input before the exai-ws daemon was reachable again'));
      link.close();
    });
    const gone = () => {
      link.close();
      lifecycle.finish(0);
    };
    input.on('error', gone);
    // stdout is gone: nobody can read replies any more.
    output.on('error', gone);
    link.start();
  });
}

/** The link, with the shim's hello and the home's address, for these options and handlers. */
function newLink(options: ShimOptions, env: NodeJS.ProcessEnv, say: (line: string) => void, scale: number, handlers: LinkHandlers): Link {
  return new Link({
    connect: options.connect ?? connectWebSocket,
    discover: options.discover ?? (() => discoverDaemon(env)),
    hello: {
      client: { name: 'exai-ws-shim', version: VERSION },
      cwd: process.cwd(),
      server: options.server || undefined,
      profile: options.profile || undefined,
    },
    pid: options.pid ?? process.pid,
    ensure: options.ensure,
    reconnectMs: reconnectMsFrom(env, say),
    connectTimeoutMs: options.connectTimeoutMs,
    noTokenHint: `no token file at ${resolveHome(env).token} (the daemon writes it when it starts)`,
    random: options.random ?? Math.random,
    backoffCapMs: scaledMs(BACKOFF_CAP_MS, scale),
    handlers: { ...handlers, note: say, transition: options.onTransition },
  });
}

/**
 * One frame of the session from the daemon: to the client unless the conversation drops it
 * (an answer already given). Never a non-JSON frame; one with line breaks goes out as one line.
 */
function deliver(text: string, conversation: Conversation, client: ClientOutput): void {
  const head = readHead(text);
  if (head && conversation.delivered(head, text)) client.write(head.multiline ? JSON.stringify(JSON.parse(text)) : text);
}

/**
 * A connection opened again. The same session resumed: the daemon may still run the requests
 * lost with the old connection, so they are cancelled there, and listen streams run on. A new
 * session: made to look like the old one before anything the client queued: a legacy client's
 * setup replayed (and the client told to list again); a 2026-07-28 client's open listen requests
 * sent again under their ids (nothing else: it has no initialize), which the new session
 * acknowledges again.
 */
function reopened(
  ack: OkAck,
  resumed: boolean,
  conversation: Conversation,
  link: Link,
  client: ClientOutput,
  say: (line: string) => void,
): void {
  if (resumed) {
    for (const message of conversation.resumed()) link.send(JSON.stringify(message));
    say(`reconnected: session ${ack.session_id} resumed`);
    return;
  }
  const { toDaemon, toClient } = conversation.renewed();
  for (const message of toDaemon) link.send(JSON.stringify(message));
  const listens = conversation.relistened();
  for (const text of listens) link.send(text);
  client.writeAll(toClient);
  const done = [toDaemon.length > 0 ? "the client's setup was replayed" : 'nothing to replay'];
  if (listens.length > 0) done.push(`${listens.length} listen stream(s) opened again`);
  say(`reconnected: new session ${ack.session_id} (${done.join('; ')})`);
}
