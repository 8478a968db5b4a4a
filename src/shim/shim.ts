/**
 * The stdio shim: the command an MCP client launches as its server. It bridges NDJSON on
 * stdio to one WebSocket to the daemon, after the hello. No business logic: it only frames,
 * tracks which requests are unanswered (so a lost daemon still answers each one exactly once
 * with -32000), and applies backpressure both ways.
 *
 * Start-up time matters (budget: 80 ms to the first initialize result): this module loads no
 * logger or schema library, and clients run it bundled with `ws` (see main.ts).
 * Stdout carries only MCP messages; diagnostics go to stderr.
 */
import type { Readable, Writable } from 'node:stream';
import WebSocket from 'ws';
import { CloseCode, RpcCode } from '../protocol/codes.js';
import { discoverDaemon, resolveHome } from '../protocol/files.js';
import { PROTOCOL_VERSION, type Hello, type HelloAck } from '../protocol/hello.js';
import { idKey, rpcError, type RequestId } from '../protocol/jsonrpc.js';
import { corkUntilTick, rawSocketOf } from '../protocol/cork.js';
import { LineSplitter } from '../protocol/ndjson.js';
import { VERSION } from '../version.js';

/** Bytes queued on the socket before the shim stops reading stdin. */
export const SOCKET_HIGH_WATER_BYTES = 4 * 1024 * 1024;
export const SOCKET_LOW_WATER_BYTES = 1024 * 1024;
/** Line limit used until the daemon's hello_ack names its own. */
export const DEFAULT_MAX_LINE_BYTES = 32 * 1024 * 1024;
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
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
}

/** Exit codes: 0 after stdin EOF; 1 when the daemon could not be used or went away. */
export type ShimExit = 0 | 1;

/**
 * Runs the shim until stdin ends or the daemon goes away; resolves with the exit code once
 * everything owed to stdout has been written.
 */
export function runShim(options: ShimOptions = {}): Promise<ShimExit> {
  const env = options.env ?? process.env;
  const input = options.input ?? process.stdin;
  const output = options.output ?? process.stdout;
  const errors = options.errors ?? process.stderr;
  const say = (line: string) => errors.write(`exai-ws shim: ${line}\n`);

  const address = discoverDaemon(env);
  const url = `ws://${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}/ws`;

  return new Promise<ShimExit>((resolve) => {
    const pending = new Map<string, RequestId>();
    let acked = false;
    let finished = false;
    let inputPaused = false;
    let maxLineBytes = DEFAULT_MAX_LINE_BYTES;
    // stdin is read from the start, while the connection is made: the lines read by then follow
    // the hello at once.
    const early: string[] = [];
    let earlyBytes = 0;
    let stdinEnded = false;
    /** Set once the daemon cannot be used: every request read from then on is answered with it. */
    let refusedWith: string | undefined;

    const ws = new WebSocket(url, {
      // Without a token the hello goes without one: the daemon, if any, answers why it refuses.
      headers: address.token === null ? {} : { authorization: `Bearer ${address.token}` },
      perMessageDeflate: false,
      handshakeTimeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      maxPayload: 0,
    });

    let outputPaused = false;
    const writeOut = (text: string) => {
      corkUntilTick(output);
      if (!output.write(`${text}\n`) && !outputPaused) {
        // The client reads slowly: stop reading the socket until stdout drains.
        outputPaused = true;
        ws.pause();
        output.once('drain', () => {
          outputPaused = false;
          ws.resume();
        });
      }
    };

    /** Answers every request the daemon has not, once, so the client is never left waiting. */
    const failPending = (why: string) => {
      for (const id of pending.values()) writeOut(JSON.stringify(rpcError(id, RpcCode.CONNECTION_CLOSED, why)));
      pending.clear();
    };

    const finish = (code: ShimExit) => {
      if (finished) return;
      finished = true;
      input.pause();
      input.removeAllListeners('data');
      // Resolve once stdout has taken everything written so far.
      output.write('', () => resolve(code));
    };

    const splitter = new LineSplitter(maxLineBytes, {
      onLine: (line) => forward(line),
      onOversize: (bytes) =>
        writeOut(
          JSON.stringify(rpcError(null, RpcCode.INVALID_REQUEST, `message of ${bytes}+ bytes exceeds the ${maxLineBytes}-byte limit`)),
        ),
    });

    /**
     * The daemon cannot be used: answers what the client already sent and, for a short while,
     * what it still sends, with `why` (its initialize may still be in the pipe), then exits 1.
     */
    const refuse = (why: string) => {
      if (finished || refusedWith !== undefined) return;
      refusedWith = why;
      say(why);
      failPending(why);
      if (stdinEnded) {
        finish(1);
        return;
      }
      const timer = setTimeout(() => finish(1), REFUSED_LINGER_MS);
      timer.unref();
    };

    const forward = (line: string) => {
      let message: unknown;
      try {
        message = JSON.parse(line);
      } catch {
        writeOut(JSON.stringify(rpcError(null, RpcCode.PARSE_ERROR, 'Parse error: not valid JSON')));
        return;
      }
      if (message !== null && typeof message === 'object' && !Array.isArray(message)) {
        const m = message as { id?: unknown; method?: unknown };
        if (typeof m.method === 'string' && (typeof m.id === 'string' || typeof m.id === 'number')) pending.set(idKey(m.id), m.id);
      }
      if (refusedWith !== undefined) {
        failPending(refusedWith);
        return;
      }
      if (ws.readyState !== WebSocket.OPEN) {
        // Read while connecting: sent after the hello (bounded, like the socket's own buffer).
        early.push(line);
        earlyBytes += line.length;
        if (!inputPaused && earlyBytes > SOCKET_HIGH_WATER_BYTES) {
          inputPaused = true;
          input.pause();
        }
        return;
      }
      send(line);
    };

    const send = (line: string) => {
      corkUntilTick(rawSocketOf(ws));
      ws.send(line, () => {
        if (inputPaused && ws.bufferedAmount < SOCKET_LOW_WATER_BYTES) {
          inputPaused = false;
          input.resume();
        }
      });
      if (!inputPaused && ws.bufferedAmount > SOCKET_HIGH_WATER_BYTES) {
        inputPaused = true;
        input.pause();
      }
    };

    const closeForEnd = () => {
      ws.close(CloseCode.NORMAL, 'client closed stdin');
      finish(0);
    };
    const startPiping = () => {
      input.on('data', (chunk: Buffer) => splitter.push(chunk));
      input.once('end', () => {
        splitter.end();
        stdinEnded = true;
        if (refusedWith !== undefined) finish(1);
        // Before the socket opens, the lines already read still go out first (see 'open').
        else if (ws.readyState === WebSocket.OPEN) closeForEnd();
      });
      input.on('error', () => {
        ws.close(CloseCode.NORMAL, 'stdin failed');
        finish(0);
      });
      output.on('error', () => {
        // stdout is gone: nobody can read replies any more.
        ws.close(CloseCode.NORMAL, 'stdout closed');
        finish(0);
      });
    };

    ws.on('open', () => {
      const hello: Hello = {
        type: 'hello',
        protocol: PROTOCOL_VERSION,
        client: { name: 'exai-ws-shim', version: VERSION },
        cwd: process.cwd(),
      };
      if (options.server) hello.server = options.server;
      ws.send(JSON.stringify(hello));
      // The daemon reads frames in order, so the client's lines follow the hello without waiting
      // a round trip for the ack; if the hello is refused, they are answered with the reason.
      for (const line of early.splice(0)) send(line);
      earlyBytes = 0;
      if (stdinEnded) closeForEnd();
      else if (inputPaused && ws.bufferedAmount < SOCKET_LOW_WATER_BYTES) {
        inputPaused = false;
        input.resume();
      }
    });
    startPiping();

    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) return;
      const text = data.toString('utf8');
      if (!acked) {
        let ack: HelloAck;
        try {
          ack = JSON.parse(text) as HelloAck;
        } catch {
          say('the daemon answered the hello with something that is not JSON');
          ws.terminate();
          return;
        }
        if (ack.type !== 'hello_ack' || !ack.ok) {
          const why = ack.type === 'hello_ack' && !ack.ok ? `${ack.error.code}: ${ack.error.message}` : 'no hello_ack';
          const hint = address.token === null ? `; no token found: set EXAI_WS_TOKEN or check ${resolveHome(env).token}` : '';
          ws.close();
          refuse(`the exai-ws daemon refused the session (${why})${hint}`);
          return;
        }
        acked = true;
        maxLineBytes = ack.limits.max_bytes;
        splitter.maxLineBytes = maxLineBytes;
        return;
      }
      let line = text;
      try {
        const m = JSON.parse(text) as { id?: unknown; method?: unknown };
        if (m.method === undefined && (typeof m.id === 'string' || typeof m.id === 'number')) pending.delete(idKey(m.id));
        if (text.includes('\n')) line = JSON.stringify(m);
      } catch {
        return; // never pass a non-JSON frame to the client
      }
      writeOut(line);
    });

    ws.on('unexpected-response', (_req, res) => {
      const hint = res.statusCode === 401 ? ' (wrong token: check EXAI_WS_TOKEN or the token file)' : '';
      ws.terminate();
      refuse(`the exai-ws daemon at ${url} refused the connection: HTTP ${res.statusCode}${hint}`);
    });

    ws.on('error', (error: NodeJS.ErrnoException) => {
      if (!acked) refuse(`cannot reach the exai-ws daemon at ${url} (${error.code ?? error.message}); start it with: exai-ws daemon`);
    });

    ws.on('close', (code: number, reason: Buffer) => {
      if (finished) return;
      const detail = `code ${code}${reason.length > 0 ? `: ${reason.toString()}` : ''}`;
      refuse(
        acked
          ? `the connection to the exai-ws daemon closed (${detail}); restart this MCP server in your client once the daemon runs again`
          : `the exai-ws daemon closed the connection before the session started (${detail})`,
      );
    });
  });
}
