/**
 * No secret for a stranger, end to end with real processes: a listener on the user's port that
 * is not this home's daemon (an impostor that speaks the protocol, a plain HTTP server), found
 * with no address card (the default port) or through a stale card naming it, and a relay on
 * another port in front of a real daemon (with and without rewriting `Host`). Every byte each
 * receives is recorded (WebSocket frames unmasked): none holds the token, a hello or a client's
 * message, from a shim (auto-start off) or from `exai-ws status` and `open`; the user gets one
 * line naming the port and saying that something else holds it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { WebSocketServer } from 'ws';
import { newNonce } from '../src/local/proof.js';
import { VERSION } from '../src/protocol/version.js';
import {
  Cleanup,
  getHealth,
  makeHome,
  runCli,
  spawnChild,
  spawnShim,
  startDaemon,
  within,
  type DaemonHandle,
  type RawShim,
} from './helpers.js';
import { cliHere } from './fixtures/cli-here.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const TOKEN = 'user-token-0123456789abcdefghijklmnopqrstuvwx';

// ---- recording ------------------------------------------------------------------------------

/** One connection through a {@link Recorder}: what the client sent, what came back. */
interface Recorded {
  fromClient: Buffer[];
  fromServer: Buffer[];
}

/**
 * A TCP listener on 127.0.0.1, port 0, that records every byte a client sends and passes the
 * connection on to `target` (an impostor, or a real daemon: then it is a relay), rewriting
 * `Host` to `rewriteHost` when given. What it records is what the client sent, before any rewrite.
 */
class Recorder {
  readonly connections: Recorded[] = [];
  private server: Server | undefined;
  port = 0;

  constructor(
    private readonly target: number,
    private readonly rewriteHost?: string,
  ) {}

  async start(): Promise<this> {
    this.server = createServer((client) => this.relay(client));
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    cleanup.add(() => new Promise((resolve) => this.server?.close(resolve)));
    return this;
  }

  private relay(client: Socket): void {
    const recorded: Recorded = { fromClient: [], fromServer: [] };
    this.connections.push(recorded);
    const upstream = createConnection(this.target, '127.0.0.1');
    client.on('data', (chunk: Buffer) => {
      recorded.fromClient.push(chunk);
      const out = this.rewriteHost
        ? Buffer.from(chunk.toString('latin1').replace(/\r\nHost: [^\r\n]*\r\n/gi, `\r\nHost: ${this.rewriteHost}\r\n`), 'latin1')
        : chunk;
      upstream.write(out);
    });
    upstream.on('data', (chunk: Buffer) => {
      recorded.fromServer.push(chunk);
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('error', end);
      socket.on('close', end);
    }
  }

  /** Everything clients sent, readable: HTTP as it is, WebSocket frames unmasked. */
  clientText(): string {
    return this.connections.map((c) => readable(Buffer.concat(c.fromClient))).join('\n');
  }

  /** Everything clients sent, as raw bytes (latin1). */
  clientBytes(): string {
    return this.connections.map((c) => Buffer.concat(c.fromClient).toString('latin1')).join('\n');
  }

  serverText(): string {
    return this.connections.map((c) => Buffer.concat(c.fromServer).toString('utf8')).join('\n');
  }
}

/** A client's byte stream as text: the HTTP head and body, and after an upgrade each frame unmasked. */
function readable(bytes: Buffer): string {
  const headEnd = bytes.indexOf('\r\n\r\n');
  if (headEnd < 0) return bytes.toString('utf8');
  const head = bytes.subarray(0, headEnd + 4).toString('utf8');
  const rest = bytes.subarray(headEnd + 4);
  if (!/^upgrade: websocket/im.test(head)) return head + rest.toString('utf8');
  return [head, ...unmaskFrames(rest)].join('\n');
}

/** The payloads of a client's WebSocket frames (RFC 6455 5.2), unmasked. */
function unmaskFrames(bytes: Buffer): string[] {
  const frames: string[] = [];
  let at = 0;
  while (at + 2 <= bytes.length) {
    const second = bytes[at + 1] as number;
    let length = second & 0x7f;
    let p = at + 2;
    if (length === 126) {
      length = bytes.readUInt16BE(p);
      p += 2;
    } else if (length === 127) {
      length = Number(bytes.readBigUInt64BE(p));
      p += 8;
    }
    const mask = (second & 0x80) !== 0 ? bytes.subarray(p, p + 4) : undefined;
    if (mask) p += 4;
    const payload = Buffer.from(bytes.subarray(p, p + length));
    if (mask) for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ (mask[i % 4] as number);
    frames.push(payload.toString('utf8'));
    at = p + length;
  }
  return frames;
}

// ---- strangers ------------------------------------------------------------------------------

/**
 * An impostor that speaks the protocol: it answers challenges (WebSocket and HTTP) with proofs
 * made up without the token, and `/health` liveness as `pid` (the card's, to look like the
 * daemon, or another).
 */
async function impostor(pid: number): Promise<number> {
  const server: HttpServer = createHttpServer((req, res) => {
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    req.resume();
    if (req.url === '/auth/challenge') return json(200, { nonce: newNonce(), proof: newNonce(), expires_in_s: 30 });
    if (req.url === '/health') return json(200, { status: 'ok', name: 'exai-ws', version: VERSION, pid, host: '127.0.0.1', port: 0 });
    json(404, { error: 'not found' });
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) =>
    ws.on('message', (data: Buffer) => {
      const frame = JSON.parse(data.toString()) as { type?: string };
      if (frame.type === 'challenge') ws.send(JSON.stringify({ type: 'proof', nonce: newNonce(), proof: newNonce() }));
      // A hello would be answered with an ok hello_ack, to collect the client's messages.
      if (frame.type === 'hello') ws.send(JSON.stringify({ type: 'hello_ack', ok: true, session_id: 'stolen', resumed: false }));
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.add(() => {
    for (const ws of wss.clients) ws.terminate();
    return new Promise((resolve) => server.close(resolve));
  });
  return (server.address() as AddressInfo).port;
}

/**
 * A daemon of a version before proofs, as far as a new client can see: `/auth/challenge` is
 * 404, liveness answers as `pid`, and a challenge on the WebSocket is refused as not a hello.
 */
async function olderDaemon(pid: number): Promise<number> {
  const server: HttpServer = createHttpServer((req, res) => {
    req.resume();
    res.writeHead(req.url === '/health' ? 200 : 404, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify(
        req.url === '/health'
          ? { status: 'ok', name: 'exai-ws', version: '0.0.9', pid, host: '127.0.0.1', port: 0 }
          : { error: 'not found' },
      ),
    );
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) =>
    ws.once('message', () => {
      const message = 'the first frame must be {"type":"hello",...}';
      ws.send(JSON.stringify({ type: 'hello_ack', ok: false, error: { code: 'not_hello', message } }));
      ws.close(4001, message);
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.add(() => {
    for (const ws of wss.clients) ws.terminate();
    return new Promise((resolve) => server.close(resolve));
  });
  return (server.address() as AddressInfo).port;
}

/** A plain HTTP server: 200 "hello world" to everything, upgrades included. */
async function plainHttp(): Promise<number> {
  const server = createHttpServer((req, res) => {
    req.resume();
    res.end('hello world\n');
  });
  server.on('upgrade', (_req, socket: Socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello world\n'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.add(() => new Promise((resolve) => server.close(resolve)));
  return (server.address() as AddressInfo).port;
}

/** A home with the user's token and, when `cardPort` is given, an address card naming it, of process `pid`. */
function userHome(token: string, card?: { port: number; pid: number }): string {
  const home = makeHome(cleanup);
  writeFileSync(join(home, 'token'), `${token}\n`, { mode: 0o600 });
  if (card) {
    mkdirSync(join(home, 'logs'), { recursive: true });
    writeFileSync(
      join(home, 'logs', 'ws_daemon.pid'),
      JSON.stringify({ pid: card.pid, host: '127.0.0.1', port: card.port, version: VERSION, started_at: new Date().toISOString() }),
    );
  }
  return home;
}

/** The pid of a process that has exited: a card's process after a crash. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid as number;
}

/** A live process that is no daemon (a card's pid reused by another program). */
function livePid(): number {
  return spawnChild(cleanup, process.execPath, ['-e', 'setTimeout(() => {}, 120000)']).proc.pid as number;
}

const INITIALIZE = {
  jsonrpc: '2.0',
  id: 'init',
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'secret-client', version: '1' } },
};
const CALL = { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'chat', arguments: { prompt: 'my-secret-prompt' } } };

/**
 * Runs a shim (auto-start off) for `env` that sends initialize and a tool call; returns the
 * error its client got and the shim's stderr once it exited.
 */
async function shimAgainst(
  env: Record<string, string>,
): Promise<{ message: string; stderr: string; code: number | string; shim: RawShim }> {
  const shim = spawnShim(cleanup, { ...env, EXAI_WS_AUTOSTART: '0' });
  shim.send(JSON.stringify(INITIALIZE));
  shim.send(JSON.stringify(CALL));
  const reply = JSON.parse(await shim.nextLine(15_000)) as { id?: unknown; error?: { code: number; message: string } };
  assert.equal(reply.id, 'init');
  assert.equal(reply.error?.code, -32000);
  shim.proc.stdin?.end();
  const code = await within(shim.exited, 10_000, 'the shim to exit');
  return { message: reply.error?.message ?? '', stderr: shim.stderr(), code, shim };
}

/** Nothing of value in what the stranger received. */
function assertNothingOfValue(recorder: Recorder, token: string, what: string): void {
  const text = recorder.clientText();
  const raw = recorder.clientBytes();
  for (const secret of [
    token,
    '"hello"',
    'initialize',
    'secret-client',
    'my-secret-prompt',
    'tools/call',
    'auth_proof',
    'Exai-Proof',
    'Bearer',
  ]) {
    assert.ok(!text.includes(secret), `${what}: the stranger received ${secret}:\n${text}`);
    assert.ok(!raw.includes(secret), `${what}: the stranger received ${secret} (raw bytes)`);
  }
  assert.ok(!text.includes(process.cwd()), `${what}: the stranger received the working directory`);
}

/** The one line the user is told: it names the port and says something else holds it. */
function assertStrangerLine(line: string, port: number, what: string): void {
  assert.ok(!line.trim().includes('\n'), `${what}: one line: ${line}`);
  assert.match(
    line,
    new RegExp(`something else holds 127\\.0\\.0\\.1:${port}: it did not prove that it is this home's exai-ws daemon`),
    what,
  );
  assert.match(line, /nothing was sent to it/, what);
}

// ---- the tests ------------------------------------------------------------------------------
// Each test has its own daemon, home and processes: they run side by side.
describe('proof against strangers', { concurrency: true }, () => {
  test('a shim meets an impostor on the user port, with no address card and with a stale card naming it: it sends nothing of value', async () => {
    for (const withCard of [false, true]) {
      const what = withCard ? 'stale card' : 'no card';
      const recorder = await new Recorder(await impostor(4242)).start();
      const home = withCard ? userHome(TOKEN, { port: recorder.port, pid: await deadPid() }) : userHome(TOKEN);
      const env = { EXAI_WS_HOME: home, EXAI_WS_TEST_DEFAULT_PORT: String(recorder.port) };
      const { message, stderr, code } = await shimAgainst(env);
      assert.equal(code, 1, what);
      assertStrangerLine(message, recorder.port, what);
      assert.match(message, /its proof does not match the token/, what);
      assert.match(message, /auto-start is off/, what);
      const lines = stderr.trim().split('\n');
      assert.equal(lines.length, 1, `${what}: one line on stderr: ${stderr}`);
      assertStrangerLine(lines[0] as string, recorder.port, what);
      // The recording is real: the challenge was read from the unmasked frames.
      assert.match(recorder.clientText(), /"type":"challenge","nonce":"[A-Za-z0-9_-]{43}"/, what);
      assertNothingOfValue(recorder, TOKEN, what);
    }
  });

  test('a shim meets a plain HTTP server on the user port: a failed attempt, one line naming the port, nothing sent', async () => {
    const recorder = await new Recorder(await plainHttp()).start();
    const home = userHome(TOKEN, { port: recorder.port, pid: await deadPid() });
    const { message, code } = await shimAgainst({ EXAI_WS_HOME: home });
    assert.equal(code, 1);
    assertStrangerLine(message, recorder.port, 'plain http');
    assert.match(message, /answered the WebSocket upgrade with HTTP 200/);
    assert.match(recorder.clientText(), /^GET \/ws HTTP\/1\.1/m, 'it did try the port');
    assertNothingOfValue(recorder, TOKEN, 'plain http');
  });

  test('exai-ws status and open against an impostor behind a card: nothing of value sent, one line naming the port', async () => {
    // No card: status does not go near the default port at all.
    const idle = await new Recorder(await impostor(4242)).start();
    // What reaches the wire is the command's, run in this process (test/fixtures/cli-here.ts), except
    // for one status as a user runs it (exit 1, one line on stderr) below.
    const noCard = await cliHere(['status'], { EXAI_WS_HOME: userHome(TOKEN), EXAI_WS_TEST_DEFAULT_PORT: String(idle.port) });
    assert.equal(noCard.code, 1);
    assert.match(noCard.stderr, /^exai-ws: no daemon is running \(no address card at .*\)\n$/);
    // A stale card whose process is gone: stale, nothing asked.
    const dead = await cliHere(['status'], {
      EXAI_WS_HOME: userHome(TOKEN, { port: idle.port, pid: await deadPid() }),
      EXAI_WS_TEST_DEFAULT_PORT: String(idle.port),
    });
    assert.equal(dead.code, 1);
    assert.match(dead.stderr, /^exai-ws: not running \(stale pid file .* from pid \d+\)\n$/);
    assert.equal(idle.connections.length, 0, 'status sent nothing to the default port or a dead card');

    // A card whose pid was reused by another program: status asks, and gets no proof.
    const reused = livePid();
    const recorder = await new Recorder(await impostor(1)).start();
    const home = userHome(TOKEN, { port: recorder.port, pid: reused });
    const status = await runCli(['status'], { EXAI_WS_HOME: home });
    assert.equal(status.code, 1);
    const lines = status.stderr.trim().split('\n');
    assert.equal(lines.length, 1, status.stderr);
    assert.match(lines[0] as string, /^exai-ws: not running \(stale pid file .* from pid \d+\); something else holds/);
    assertStrangerLine(lines[0] as string, recorder.port, 'status');
    const json = JSON.parse((await cliHere(['status', '--json'], { EXAI_WS_HOME: home })).stdout) as { status: string; error: string };
    assert.equal(json.status, 'down');
    assertStrangerLine(json.error, recorder.port, 'status --json');
    const open = await cliHere(['open', '--print'], { EXAI_WS_HOME: home });
    assert.equal(open.code, 1);
    assert.equal(open.stdout, '');
    assertStrangerLine(open.stderr.trim(), recorder.port, 'open');
    assert.ok(recorder.connections.length > 0, 'the commands did ask the impostor');
    assertNothingOfValue(recorder, TOKEN, 'status and open');

    // An impostor that even answers liveness as the card's pid: still no token, no full report.
    const mimic = await new Recorder(await impostor(reused)).start();
    const mimicHome = userHome(TOKEN, { port: mimic.port, pid: reused });
    const limited = await cliHere(['status', '--json'], { EXAI_WS_HOME: mimicHome });
    assert.equal(limited.code, 1);
    const view = JSON.parse(limited.stdout) as { limited: string | null };
    assert.match(view.limited ?? '', /did not prove that it holds this home's token, so nothing was sent to it/);
    const reload = await cliHere(['reload'], { EXAI_WS_HOME: mimicHome });
    assert.equal(reload.code, 1);
    assertNothingOfValue(mimic, TOKEN, 'status --json and reload against a mimic');
  });

  test("a relay on another port in front of the real daemon, Host rewritten or not, cannot get a shim's hello", async () => {
    const daemon: DaemonHandle = await startDaemon(cleanup);
    for (const rewrite of [false, true]) {
      const what = rewrite ? 'Host rewritten' : 'Host as sent';
      const relay = await new Recorder(daemon.port, rewrite ? `127.0.0.1:${daemon.port}` : undefined).start();
      // The victim's home holds the same token as the daemon (it is the user's own daemon), but a
      // stale card sends its shim to the relay's port.
      const home = userHome(daemon.token, { port: relay.port, pid: await deadPid() });
      const { message, code } = await shimAgainst({ EXAI_WS_HOME: home });
      assert.equal(code, 1, what);
      assertStrangerLine(message, relay.port, what);
      if (rewrite) {
        // The daemon's genuine proof went through the relay; it was made for the daemon's own address.
        assert.match(relay.serverText(), /"type":"proof"/, `${what}: the real daemon answered the challenge`);
        assert.match(message, /its proof does not match the token/, what);
      } else {
        assert.match(message, /HTTP 403/, `${what}: the daemon refused a Host that is not its own`);
      }
      assertNothingOfValue(relay, daemon.token, what);

      // The CLI through the same relay (a card whose pid was reused, naming the relay): no proof either.
      const cliHome = userHome(daemon.token, { port: relay.port, pid: livePid() });
      const status = await cliHere(['status'], { EXAI_WS_HOME: cliHome });
      assert.equal(status.code, 1, what);
      assertStrangerLine(status.stderr, relay.port, `${what}: status`);
      assertNothingOfValue(relay, daemon.token, `${what}: status`);
    }
    const health = await getHealth(daemon);
    assert.equal(health.sessions.total, 0, 'no session was opened through the relay');
  });

  test('a new shim and status meeting an older daemon (no proofs) say which to update and send it nothing of value', async () => {
    const pid = livePid();
    const recorder = await new Recorder(await olderDaemon(pid)).start();
    const home = userHome(TOKEN, { port: recorder.port, pid });
    const { message, stderr, code } = await shimAgainst({ EXAI_WS_HOME: home });
    assert.equal(code, 1);
    assert.equal(
      message,
      `the exai-ws daemon on 127.0.0.1:${recorder.port} (pid ${pid}, version 0.0.9) is older than this exai-ws (${VERSION}): ` +
        "it cannot prove that it holds this home's token, so nothing was sent to it; run `exai-ws restart` to run the new version",
    );
    assert.equal(stderr.trim().split('\n').length, 1, stderr);
    const status = await cliHere(['status', '--json'], { EXAI_WS_HOME: home });
    assert.equal(status.code, 1);
    const view = JSON.parse(status.stdout) as { limited: string | null; daemon: { pid: number } };
    assert.equal(view.daemon.pid, pid, 'what it tells anyone is shown');
    assert.match(view.limited ?? '', /\(version 0\.0\.9\) is older than this exai-ws .*run `exai-ws restart` to run the new version/);
    assertNothingOfValue(recorder, TOKEN, 'older daemon');
  });
});
