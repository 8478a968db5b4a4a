/**
 * The floor under the shim's CPU budget (issue 23: <= 8 us per relayed call): what the cheapest
 * relays Node can run cost per call, measured the way bench/shim-cpu.ts measures the shim
 * (16 calls in flight, NDJSON written straight to the relay's stdin, the relay's utime + stime
 * from `/proc/<pid>/stat`):
 * - `raw`: stdin piped into a loopback TCP socket and the socket piped to stdout, no parsing,
 *   no framing, to a peer that answers each request line at once;
 * - `unix`: the same pipe over a Unix domain socket (a named pipe on Windows) instead of TCP;
 * - `ws`: each stdin line sent as one WebSocket message with `ws` (as every client must: masked),
 *   each message written to stdout as a line, no JSON parsing, to a `ws` server that answers
 *   each request message at once.
 * - `hub`: the daemon's side (issue 23: <= 15 us per hosted call): each WebSocket message from
 *   a client (the bench, over `ws`) written as a line to a TCP peer standing for the hosted
 *   server, each line it answers sent back as one message; no parsing, no routing.
 * The real shim does more than `ws` (hello, acks, ids, backpressure) and is compared with
 * `node dist/bench/shim-cpu.js`; the real daemon does more than `hub` (ids, sessions, routing)
 * and is compared with `node dist/bench/cpu-per-call.js`, on the same machine.
 *
 * A benchmark, not a test: it asserts nothing. Usage: `node dist/bench/relay-floor.js
 * [--calls N] [--rounds N]` (defaults 20000, 3). Loopback only; every loop is bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect, type AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WebSocket, WebSocketServer } from 'ws';
import { installCleanup, readCpuMs, track, untrack, waitExit } from './procs.js';
import { median } from './stats.js';

const IN_FLIGHT = 16;
const MODES = ['raw', 'unix', 'ws', 'hub'] as const;
type Mode = (typeof MODES)[number];
const RESULT = JSON.stringify({ content: [{ type: 'text', text: '{"name":"exai-ws","version":"0.1.0","uptime_s":12}' }] });
const answer = (request: string): string | undefined => {
  const id = /"id":(\d+)/.exec(request)?.[1];
  return id === undefined ? undefined : `{"jsonrpc":"2.0","id":${id},"result":${RESULT}}`;
};

/** A TCP peer answering each NDJSON request line; resolves with its port. */
function rawPeer(path?: string): Promise<number | string> {
  const server = createServer((socket) => {
    const answers: string[] = [];
    const onData = lineReader((line) => {
      const reply = answer(line);
      if (reply !== undefined) answers.push(reply);
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      onData(chunk);
      if (answers.length > 0) socket.write(`${answers.splice(0).join('\n')}\n`);
    });
  });
  server.unref();
  if (path !== undefined) return new Promise((resolve) => server.listen(path, () => resolve(path)));
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

/** A WebSocket peer answering each request message with one message; resolves with its port. */
function wsPeer(): Promise<number> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  server.on('connection', (socket) =>
    socket.on('message', (data: Buffer) => {
      const reply = answer(data.toString());
      if (reply !== undefined) socket.send(reply);
    }),
  );
  return new Promise((resolve) => server.on('listening', () => resolve((server.address() as AddressInfo).port)));
}

/** Splits a stream of text into lines, calling `onLine` for each whole one. */
function lineReader(onLine: (line: string) => void): (chunk: string) => void {
  let buffered = '';
  return (chunk) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) onLine(line);
  };
}

/** `hub` mode: a WebSocket server (its port the first line on stdout) relaying to the TCP peer on `port`. */
function runHub(port: number): void {
  const upstream = connect(port, '127.0.0.1');
  upstream.setNoDelay(true);
  upstream.setEncoding('utf8');
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  server.on('listening', () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
  server.on('connection', (client) => {
    client.on('message', (data: Buffer) => upstream.write(`${data.toString()}\n`));
    upstream.on(
      'data',
      lineReader((line) => client.send(line)),
    );
  });
}

/** This file as a relay process in `mode`, to the peer on `port`. */
function runRelay(mode: string, port: string): void {
  if (mode === 'hub') return runHub(Number(port));
  if (mode === 'raw' || mode === 'unix') {
    const socket = mode === 'unix' ? connect(port) : connect(Number(port), '127.0.0.1');
    socket.setNoDelay(true);
    process.stdin.pipe(socket);
    socket.pipe(process.stdout);
    return;
  }
  const socket = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
  socket.on('open', () => {
    process.stdin.setEncoding('utf8');
    process.stdin.on(
      'data',
      lineReader((line) => socket.send(line)),
    );
  });
  socket.on('message', (data: Buffer) => process.stdout.write(`${data.toString()}\n`));
}

/** A way to send request lines to a relay and to hear its answer lines. */
interface Channel {
  send(line: string): void;
  listen(onLine: (line: string) => void): () => void;
}

/** Runs `calls` calls through `channel`, IN_FLIGHT at a time; resolves when all are answered. */
function drive(channel: Channel, calls: number, next: { id: number }): Promise<void> {
  return new Promise((resolve) => {
    let sent = 0;
    let answered = 0;
    const send = (): void => {
      sent++;
      channel.send(`{"jsonrpc":"2.0","id":${next.id++},"method":"tools/call","params":{"name":"version","arguments":{}}}`);
    };
    const stop = channel.listen((line) => {
      JSON.parse(line);
      answered++;
      if (sent < calls) send();
      if (answered >= calls) {
        stop();
        resolve();
      }
    });
    for (let i = 0; i < Math.min(IN_FLIGHT, calls); i++) send();
  });
}

/** The relay's stdin and stdout as a channel (raw, unix, ws). */
function stdioChannel(relay: ChildProcess): Channel {
  return {
    send: (line) => relay.stdin?.write(`${line}\n`),
    listen: (onLine) => {
      const onData = lineReader(onLine);
      relay.stdout?.on('data', onData);
      return () => relay.stdout?.off('data', onData);
    },
  };
}

/** A WebSocket client of the relay's server, whose port is the relay's first line (hub). */
async function hubChannel(relay: ChildProcess): Promise<Channel> {
  const port = await new Promise<string>((resolve) => relay.stdout?.once('data', (chunk: string) => resolve(chunk.trim())));
  const socket = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
  await new Promise((resolve) => socket.once('open', resolve));
  return {
    send: (line) => socket.send(line),
    listen: (onLine) => {
      const onMessage = (data: Buffer): void => onLine(data.toString());
      socket.on('message', onMessage);
      return () => socket.off('message', onMessage);
    },
  };
}

async function measure(mode: Mode, calls: number, rounds: number): Promise<number[]> {
  const port =
    mode === 'ws' ? await wsPeer() : await rawPeer(mode === 'unix' ? join(mkdtempSync(join(tmpdir(), 'floor-')), 'sock') : undefined);
  const relay = spawn(process.execPath, [fileURLToPath(import.meta.url), '--relay', mode, String(port)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  track(relay.pid);
  relay.stdout?.setEncoding('utf8');
  const channel = mode === 'hub' ? await hubChannel(relay) : stdioChannel(relay);
  const next = { id: 1 };
  await drive(channel, 3_000, next); // warm-up
  const perCall: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const before = readCpuMs(relay.pid ?? 0);
    await drive(channel, calls, next);
    perCall.push(((readCpuMs(relay.pid ?? 0) - before) * 1000) / calls);
  }
  relay.kill();
  await waitExit(relay, 5_000);
  untrack(relay.pid);
  return perCall;
}

if (process.argv[2] === '--relay') {
  runRelay(process.argv[3] ?? 'raw', process.argv[4] ?? '');
} else {
  const { values } = parseArgs({ options: { calls: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '3' } } });
  installCleanup(120_000);
  for (const mode of MODES) {
    const perCall = await measure(mode, Number(values.calls), Number(values.rounds));
    process.stdout.write(
      `${mode}: ${perCall.map((us) => us.toFixed(1)).join(', ')} us per call; median ${median(perCall).toFixed(1)} us\n`,
    );
  }
  process.exit(0);
}
