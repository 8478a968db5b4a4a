/**
 * The stdio shim: the command an MCP client launches as its server. It bridges NDJSON on
 * stdio to the daemon over the link (link.ts: connecting, open, reconnecting, closed). No
 * business logic: it frames lines, applies backpressure both ways, keeps what the client sends
 * while the daemon is away (bounded), and lets the conversation (conversation.ts) decide what
 * a lost connection means for each request: one -32000 each, never sent twice.
 *
 * Start-up time matters (budget: 80 ms to the first initialize result): this module loads no
 * logger or schema library, and clients run it bundled with `ws` (see main.ts).
 * Stdout carries only MCP messages; diagnostics go to stderr.
 */
import type { Readable, Writable } from 'node:stream';
import { RpcCode } from '../protocol/codes.js';
import { corkUntilTick } from '../transport/cork.js';
import { resolveHome, type DaemonAddress } from '../local/files.js';
import { discoverDaemon } from '../local/client-settings.js';
import { rpcError } from '../protocol/jsonrpc.js';
import { LineSplitter } from '../transport/ndjson.js';
import { VERSION } from '../protocol/version.js';
import { Conversation, type Note } from './conversation.js';
import { DEFAULT_RECONNECT_MS, Link, type EnsureResult, type LinkState, type SocketFactory } from './link.js';
import { connectWebSocket } from './ws-socket.js';

export { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_RECONNECT_MS } from './link.js';

/** Bytes queued on the socket before the shim stops reading stdin. */
export const SOCKET_HIGH_WATER_BYTES = 4 * 1024 * 1024;
export const SOCKET_LOW_WATER_BYTES = 1024 * 1024;
/** Line limit used until the daemon's hello_ack names its own. */
export const DEFAULT_MAX_LINE_BYTES = 32 * 1024 * 1024;
/**
 * What the client may send while no connection is open (connecting or reconnecting): it waits
 * and goes out once one is. Past either bound a request is answered with -32000 at once.
 */
export const MAX_QUEUED_MESSAGES = 256;
export const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
/**
 * Once the daemon cannot be used, how long the shim keeps reading stdin to answer what the
 * client still sends (its initialize may not have been read yet) before it exits.
 */
export const REFUSED_LINGER_MS = 2_000;

export interface ShimOptions {
  env?: NodeJS.ProcessEnv;
  input?: Readable;
  output?: Writable;
  errors?: Writable;
  /** `--server NAME`: ask the daemon for one hosted server, unprefixed. */
  server?: string | undefined;
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

/** Exit codes: 0 after stdin EOF; 1 when the daemon could not be used or did not come back in time. */
export type ShimExit = 0 | 1;

/** `EXAI_WS_RECONNECT_MS`: a whole number of ms >= 0, else the default (with a line on stderr). */
export function reconnectMsFrom(env: NodeJS.ProcessEnv, say: (line: string) => void): number {
  const raw = env.EXAI_WS_RECONNECT_MS;
  if (raw === undefined || raw.trim() === '') return DEFAULT_RECONNECT_MS;
  const value = Number(raw);
  if (Number.isInteger(value) && value >= 0) return value;
  say(`EXAI_WS_RECONNECT_MS=${raw} is not a whole number of milliseconds; using ${DEFAULT_RECONNECT_MS}`);
  return DEFAULT_RECONNECT_MS;
}

interface Queued {
  line: string;
  note: Note;
  bytes: number;
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

  return new Promise<ShimExit>((resolve) => {
    const conversation = new Conversation();
    conversation.onReplayError = (method, error) => say(`the new session refused the replayed ${method}: ${JSON.stringify(error)}`);
    const queue: Queued[] = [];
    let queuedBytes = 0;
    /** Sent right after the first hello, before its ack: not in flight until the ack says ok. */
    let inTransit: Queued[] = [];
    let finished = false;
    let inputPaused = false;
    let outputPaused = false;
    let stdinEnded = false;
    /** Set once the daemon cannot be used: every request read from then on is answered with it. */
    let refusedWith: string | undefined;

    const writeOut = (text: string) => {
      corkUntilTick(output);
      if (!output.write(`${text}\n`) && !outputPaused) {
        // The client reads slowly: stop reading the socket until stdout drains.
        outputPaused = true;
        link.pause();
        output.once('drain', () => {
          outputPaused = false;
          link.resume();
        });
      }
    };
    const writeAll = (messages: readonly object[]) => {
      for (const message of messages) writeOut(JSON.stringify(message));
    };

    const finish = (code: ShimExit) => {
      if (finished) return;
      finished = true;
      input.pause();
      input.removeAllListeners('data');
      // Resolve once stdout has taken everything written so far.
      output.write('', () => resolve(code));
    };

    /**
     * The daemon cannot be used: answers what the client already sent and, for a short while,
     * what it still sends, with `why` (its initialize may still be in the pipe), then exits 1.
     */
    const refuse = (why: string) => {
      if (finished || refusedWith !== undefined) return;
      refusedWith = why;
      say(why);
      queue.length = 0;
      queuedBytes = 0;
      inTransit = [];
      writeAll(conversation.failAll(why));
      if (stdinEnded) {
        finish(1);
        return;
      }
      const timer = setTimeout(() => finish(1), REFUSED_LINGER_MS);
      timer.unref?.();
    };

    const resumeInputIfDrained = () => {
      if (inputPaused && link.bufferedAmount < SOCKET_LOW_WATER_BYTES) {
        inputPaused = false;
        input.resume();
      }
    };

    const send = (line: string, note: Note) => {
      if (link.state === 'connecting') inTransit.push({ line, note, bytes: 0 });
      else if (!conversation.sending(note)) return;
      link.send(line, resumeInputIfDrained);
      if (!inputPaused && link.bufferedAmount > SOCKET_HIGH_WATER_BYTES) {
        inputPaused = true;
        input.pause();
      }
    };

    /** Sends what waited, in order, once a connection is open (or the first hello is out). */
    const flush = () => {
      while (queue.length > 0 && link.canSend) {
        const next = queue.shift() as Queued;
        queuedBytes -= next.bytes;
        send(next.line, next.note);
      }
    };

    const enqueue = (line: string, note: Note) => {
      const bytes = Buffer.byteLength(line);
      // One message larger than the byte bound still waits when it is alone.
      if (queue.length >= MAX_QUEUED_MESSAGES || (queue.length > 0 && queuedBytes + bytes > MAX_QUEUED_BYTES)) {
        const why =
          `the exai-ws daemon is not connected and ${queue.length} messages already wait to be sent ` +
          `(limit ${MAX_QUEUED_MESSAGES} messages, ${MAX_QUEUED_BYTES} bytes); try again once it is back`;
        const answer = conversation.refuse(note, why);
        if (answer) writeAll([answer]);
        return;
      }
      queue.push({ line, note, bytes });
      queuedBytes += bytes;
    };

    const link: Link = new Link({
      connect: options.connect ?? connectWebSocket,
      discover: options.discover ?? (() => discoverDaemon(env)),
      hello: { client: { name: 'exai-ws-shim', version: VERSION }, cwd: process.cwd(), server: options.server || undefined },
      pid: options.pid ?? process.pid,
      ensure: options.ensure,
      reconnectMs: reconnectMsFrom(env, say),
      connectTimeoutMs: options.connectTimeoutMs,
      noTokenHint: `no token file at ${resolveHome(env).token} (the daemon writes it when it starts)`,
      random: options.random ?? Math.random,
      handlers: {
        writable: () => flush(),
        retracted: () => {
          // Never run (see LinkHandlers.retracted): they wait for the next attempt, first in line.
          for (const item of inTransit) item.bytes = Buffer.byteLength(item.line);
          queue.unshift(...inTransit);
          queuedBytes += inTransit.reduce((sum, item) => sum + item.bytes, 0);
          inTransit = [];
        },
        opened: (ack, { resumed, reconnected }) => {
          splitter.maxLineBytes = ack.limits.max_bytes;
          // What went out right after the first hello is in flight now.
          for (const item of inTransit) conversation.sending(item.note);
          inTransit = [];
          if (reconnected && resumed) {
            const cancels = conversation.resumed();
            for (const message of cancels) link.send(JSON.stringify(message));
            say(`reconnected: session ${ack.session_id} resumed`);
          } else if (reconnected) {
            // A new session: make it look like the old one before anything the client queued.
            const { toDaemon, toClient } = conversation.renewed();
            for (const message of toDaemon) link.send(JSON.stringify(message));
            writeAll(toClient);
            say(`reconnected: new session ${ack.session_id} (the client's setup was replayed)`);
          }
          flush();
          if (stdinEnded) link.close();
          else resumeInputIfDrained();
        },
        frame: (text) => {
          let message: unknown;
          try {
            message = JSON.parse(text);
          } catch {
            return; // never pass a non-JSON frame to the client
          }
          if (!conversation.delivered(message)) return;
          writeOut(text.includes('\n') ? JSON.stringify(message) : text);
        },
        dropped: () => writeAll(conversation.lost()),
        closed: (outcome) => {
          if (outcome.kind === 'ended') finish(0);
          else refuse(outcome.why);
        },
        note: say,
        transition: options.onTransition,
      },
    });

    const splitter = new LineSplitter(DEFAULT_MAX_LINE_BYTES, {
      onLine: (line) => forward(line),
      onOversize: (bytes) =>
        writeOut(
          JSON.stringify(
            rpcError(null, RpcCode.INVALID_REQUEST, `message of ${bytes}+ bytes exceeds the ${splitter.maxLineBytes}-byte limit`),
          ),
        ),
    });

    const forward = (line: string) => {
      let message: unknown;
      try {
        message = JSON.parse(line);
      } catch {
        writeOut(JSON.stringify(rpcError(null, RpcCode.PARSE_ERROR, 'Parse error: not valid JSON')));
        return;
      }
      const note = conversation.read(message);
      if (refusedWith !== undefined) {
        writeAll(conversation.failAll(refusedWith));
        return;
      }
      if (link.canSend && queue.length === 0) send(line, note);
      else enqueue(line, note);
    };

    input.on('data', (chunk: Buffer) => splitter.push(chunk));
    input.once('end', () => {
      splitter.end();
      stdinEnded = true;
      if (refusedWith !== undefined) {
        finish(1);
        return;
      }
      // At a cold start the lines already read still go out first (see `opened`).
      if (link.state === 'connecting' && (queue.length > 0 || inTransit.length > 0)) return;
      // What waited for a reconnect will never go out: each request still gets its one answer.
      const why = 'the client closed its input before the exai-ws daemon was reachable again';
      writeAll(queue.splice(0).flatMap((queued) => conversation.refuse(queued.note, why) ?? []));
      queuedBytes = 0;
      link.close();
    });
    input.on('error', () => {
      link.close();
      finish(0);
    });
    output.on('error', () => {
      // stdout is gone: nobody can read replies any more.
      link.close();
      finish(0);
    });
    link.start();
  });
}
