/**
 * The close contract of every transport (src/transport/transport.ts, and the SDK-style
 * ChildTransport of hosted servers): `onclose` fires exactly once, whether the owner calls
 * close() (once or again), the peer hangs up, or the connection fails; and no message is
 * delivered after it. Each transport runs over its real medium: WebSocket over a real `ws`
 * server on 127.0.0.1 port 0, stdio over PassThrough streams, Streamable HTTP over the real
 * endpoint on port 0, a hosted server over a real child process.
 */
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { PassThrough } from 'node:stream';
import { after, describe, test } from 'node:test';
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises';
import { WebSocket, WebSocketServer } from 'ws';
import { CloseCode } from '../src/protocol/codes.js';
import { ChildTransport, SpawnError } from '../src/hosting/child-transport.js';
import { InMemoryTransport } from '../src/transport/in-memory.js';
import { StdioTransport } from '../src/transport/stdio.js';
import type { Transport } from '../src/transport/transport.js';
import { WsTransport } from '../src/transport/ws.js';
import { closeHarnesses, harness } from './fixtures/endpoint-harness.js';
import { waitFor } from './helpers.js';

/** Counts a transport's onclose calls and keeps their codes; counts messages after the close. */
function watch(transport: Pick<Transport, 'onclose' | 'onmessage'>): { codes: number[]; late: string[]; messages: string[] } {
  const seen = { codes: [] as number[], late: [] as string[], messages: [] as string[] };
  transport.onclose = (code) => seen.codes.push(code);
  transport.onmessage = (text) => (seen.codes.length > 0 ? seen.late : seen.messages).push(text);
  return seen;
}

describe('WsTransport over a real ws server', () => {
  const servers: WebSocketServer[] = [];
  after(() => {
    for (const server of servers) {
      for (const client of server.clients) client.terminate();
      server.close();
    }
  });

  /** A connected pair: the daemon's end wrapped in a WsTransport, and the client's raw socket. */
  async function connected(): Promise<{ transport: WsTransport; client: WebSocket; errors: Error[] }> {
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    servers.push(server);
    await new Promise<void>((resolve) => server.once('listening', resolve));
    const { port } = server.address() as { port: number };
    const errors: Error[] = [];
    const accepted = new Promise<WsTransport>((resolve) =>
      server.once('connection', (ws) => {
        // The daemon's server hears 'error' (it logs it); so does this one.
        ws.on('error', (error) => errors.push(error));
        resolve(new WsTransport(ws));
      }),
    );
    const client = new WebSocket(`ws://127.0.0.1:${port}`);
    client.on('error', () => undefined);
    await new Promise<void>((resolve) => client.once('open', () => resolve()));
    return { transport: await accepted, client, errors };
  }

  test('close() then close() again: onclose once, with the first code', async () => {
    const { transport, client } = await connected();
    const seen = watch(transport);
    transport.close(CloseCode.SESSION_CLOSED, 'bye');
    assert.equal(transport.open, false, 'not open once closing');
    transport.close(CloseCode.NORMAL, 'again');
    await waitFor(() => seen.codes.length > 0, 'onclose');
    transport.close(CloseCode.NORMAL, 'after the end');
    client.send('too late');
    await sleep(50);
    assert.deepEqual(seen.codes, [CloseCode.SESSION_CLOSED]);
    assert.deepEqual(seen.late, []);
  });

  test('the peer hangs up (a close frame, then a cut socket): onclose once each', async () => {
    const polite = await connected();
    const seenPolite = watch(polite.transport);
    polite.client.send('hello');
    polite.client.close(4321, 'client leaves');
    await waitFor(() => seenPolite.codes.length > 0, 'onclose after a close frame');
    polite.transport.close(CloseCode.NORMAL, 'late');
    await sleep(30);
    assert.deepEqual(seenPolite.messages, ['hello']);
    assert.deepEqual(seenPolite.codes, [4321]);

    const rude = await connected();
    const seenRude = watch(rude.transport);
    rude.client.terminate();
    await waitFor(() => seenRude.codes.length > 0, 'onclose after a cut socket');
    rude.transport.close(CloseCode.NORMAL, 'late');
    await sleep(30);
    assert.deepEqual(seenRude.codes, [1006], 'no close frame: 1006');
  });

  test('a protocol error on the connection: onclose once', async () => {
    const { transport, client, errors } = await connected();
    const seen = watch(transport);
    // An unmasked frame from a client is a protocol error for the server.
    const socket = (client as unknown as { _socket: { write(data: Buffer): void } })._socket;
    socket.write(Buffer.from([0x81, 0x01, 0x61]));
    await waitFor(() => seen.codes.length > 0, 'onclose after a protocol error');
    transport.close(CloseCode.NORMAL, 'late');
    await sleep(30);
    assert.equal(errors.length, 1, 'the error went to the socket error listener');
    assert.equal(seen.codes.length, 1);
    assert.deepEqual(seen.messages, [], 'the bad frame was not delivered');
  });

  test('a binary frame: the transport closes with 1003, onclose once', async () => {
    const { transport, client } = await connected();
    const seen = watch(transport);
    let binary = 0;
    transport.onbinary = () => binary++;
    client.send(Buffer.from([1, 2, 3]), { binary: true });
    await waitFor(() => seen.codes.length > 0, 'onclose after a binary frame');
    await sleep(30);
    assert.equal(binary, 1);
    assert.deepEqual(seen.codes, [CloseCode.UNSUPPORTED_DATA]);
  });
});

describe('StdioTransport over PassThrough streams', () => {
  function stdio(): { transport: StdioTransport; input: PassThrough; output: PassThrough; oversize: number[] } {
    const input = new PassThrough();
    const output = new PassThrough();
    const oversize: number[] = [];
    const transport = new StdioTransport({ input, output, maxLineBytes: 64, onoversize: (bytes) => oversize.push(bytes) });
    return { transport, input, output, oversize };
  }

  test('close() then close() again: onclose once, at once, with the first code; nothing read after', async () => {
    const { transport, input } = stdio();
    const seen = watch(transport);
    input.write('{"a":1}\n');
    await tick();
    transport.close(CloseCode.GOING_AWAY, 'bye');
    assert.deepEqual(seen.codes, [CloseCode.GOING_AWAY], 'fired before close() returned');
    assert.equal(transport.open, false);
    transport.close(CloseCode.NORMAL, 'again');
    input.write('{"b":2}\n');
    input.end();
    await tick();
    assert.deepEqual(seen.codes, [CloseCode.GOING_AWAY]);
    assert.deepEqual(seen.messages, ['{"a":1}']);
    assert.deepEqual(seen.late, []);
  });

  test("the output stays usable after close(): the streams are the process's", async () => {
    const { transport, output } = stdio();
    watch(transport);
    transport.close(CloseCode.NORMAL, 'done');
    const written = new Promise<Error | null | undefined>((resolve) => transport.send('{"last":true}', undefined, resolve));
    assert.equal((await written) ?? null, null, 'written, without an error');
    assert.equal(String(output.read()), '{"last":true}\n');
  });

  test('the peer hangs up (input ends, the last line without a newline is read): onclose once with 1000', async () => {
    const { transport, input } = stdio();
    const seen = watch(transport);
    input.end('{"tail":1}');
    await waitFor(() => seen.codes.length > 0, 'onclose at end of input');
    transport.close(CloseCode.GOING_AWAY, 'late');
    await tick();
    assert.deepEqual(seen.messages, ['{"tail":1}']);
    assert.deepEqual(seen.codes, [CloseCode.NORMAL], "'end' and 'close' both came: one onclose");
  });

  test('an input error, or an output error (the client is gone): onclose once', async () => {
    const a = stdio();
    const seenA = watch(a.transport);
    a.input.destroy(new Error('read failed'));
    await waitFor(() => seenA.codes.length > 0, 'onclose after an input error');
    await tick();
    assert.deepEqual(seenA.codes, [CloseCode.NORMAL]);

    const b = stdio();
    const seenB = watch(b.transport);
    b.output.destroy(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    await waitFor(() => seenB.codes.length > 0, 'onclose after an output error');
    b.transport.close(CloseCode.NORMAL, 'late');
    await tick();
    assert.deepEqual(seenB.codes, [CloseCode.NORMAL]);
  });

  test('an oversize line is reported and skipped; the transport stays open', async () => {
    const { transport, input, oversize } = stdio();
    const seen = watch(transport);
    input.write(`${'x'.repeat(100)}\n{"ok":1}\n`);
    await tick();
    assert.equal(oversize.length, 1);
    assert.deepEqual(seen.messages, ['{"ok":1}']);
    assert.deepEqual(seen.codes, []);
  });
});

describe('HttpTransport behind the real /mcp endpoint', () => {
  after(closeHarnesses);

  const JSON_AND_SSE = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

  async function opened(): Promise<{ url: string; sessionId: string; transport: Transport; h: Awaited<ReturnType<typeof harness>> }> {
    const h = await harness();
    const res = await fetch(h.url, {
      method: 'POST',
      headers: JSON_AND_SSE,
      body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { clientInfo: { name: 't', version: '1' } } }),
    });
    await res.json();
    const sessionId = res.headers.get('mcp-session-id');
    assert.ok(sessionId);
    const transport = h.session().transport;
    assert.ok(transport);
    return { url: h.url, sessionId, transport, h };
  }

  test('close() then close() again: onclose once, at once, with the first code', async () => {
    const { transport } = await opened();
    const seen = watch(transport);
    transport.close(CloseCode.GOING_AWAY, 'bye');
    assert.deepEqual(seen.codes, [CloseCode.GOING_AWAY]);
    assert.equal(transport.open, false);
    transport.close(CloseCode.NORMAL, 'again');
    assert.deepEqual(seen.codes, [CloseCode.GOING_AWAY]);
  });

  test('the client ends the session (DELETE): onclose once; a later close() adds nothing', async () => {
    const { url, sessionId, transport, h } = await opened();
    const seen = watch(transport);
    const res = await fetch(url, { method: 'DELETE', headers: { 'mcp-session-id': sessionId } });
    assert.equal(res.status, 200);
    assert.deepEqual(seen.codes, [CloseCode.NORMAL]);
    transport.close(CloseCode.NORMAL, 'late');
    h.endpoint.close();
    assert.deepEqual(seen.codes, [CloseCode.NORMAL]);
  });

  test('a connection cut mid-request is not the end of the session; shutdown then closes it once', async () => {
    const { url, sessionId, transport, h } = await opened();
    const seen = watch(transport);
    const { port } = new URL(url);
    // A POST whose connection dies before its response: HTTP sessions outlive their connections.
    const socket = netConnect(Number(port), '127.0.0.1');
    const body = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'hold' });
    socket.write(
      `POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n` +
        `mcp-session-id: ${sessionId}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    await h.session().received(7);
    socket.destroy();
    await sleep(50);
    assert.deepEqual(seen.codes, [], 'the session goes on');
    h.endpoint.close();
    h.endpoint.close();
    transport.close(CloseCode.NORMAL, 'late');
    assert.deepEqual(seen.codes, [CloseCode.GOING_AWAY]);
  });
});

describe('InMemoryTransport', () => {
  test('close() on both ends, twice: each end fires onclose once, with the first code', async () => {
    const [a, b] = InMemoryTransport.pair();
    const seenA = watch(a);
    const seenB = watch(b);
    a.close(CloseCode.SUPERSEDED, 'one');
    b.close(CloseCode.NORMAL, 'two');
    a.close(CloseCode.NORMAL, 'three');
    await tick();
    assert.deepEqual(seenA.codes, [CloseCode.SUPERSEDED]);
    assert.deepEqual(seenB.codes, [CloseCode.SUPERSEDED]);
  });
});

describe('ChildTransport (a hosted server process)', () => {
  const node = process.execPath;
  /** A child that reads stdin and exits when it ends: an ordinary stdio server. */
  const patient = { command: node, args: ['-e', "process.stdin.resume(); process.stdin.on('end', () => process.exit(0))"], env: {} };

  function counting(transport: ChildTransport): { closes: number } {
    const seen = { closes: 0 };
    transport.onclose = () => seen.closes++;
    transport.onerror = () => undefined;
    return seen;
  }

  test('close() then close() again (and both at once): onclose once', async () => {
    const transport = new ChildTransport(patient);
    const seen = counting(transport);
    await transport.start();
    assert.ok(transport.pid);
    await Promise.all([transport.close(), transport.close()]);
    await transport.close();
    assert.equal(seen.closes, 1);
    await assert.rejects(transport.send({ jsonrpc: '2.0', method: 'late' }), /not running/);
  });

  test('the server exits on its own, or is killed: onclose once; a later close() adds nothing', async () => {
    for (const script of ['process.exit(0)', "process.kill(process.pid, 'SIGKILL')"]) {
      const transport = new ChildTransport({ command: node, args: ['-e', script], env: {} });
      const seen = counting(transport);
      await transport.start();
      await waitFor(() => seen.closes > 0, `onclose after ${script}`);
      await transport.close();
      assert.equal(seen.closes, 1, script);
      assert.ok(transport.exitStatus !== undefined);
    }
  });

  test('a server that cannot be started: start() rejects with a SpawnError, onclose once', async () => {
    const transport = new ChildTransport({ command: '/nonexistent/exai-ws-test-server', args: [], env: {} });
    const seen = counting(transport);
    await assert.rejects(transport.start(), (error: unknown) => error instanceof SpawnError && error.systemCode === 'ENOENT');
    await transport.close();
    await transport.close();
    assert.equal(seen.closes, 1);
  });

  test('close() before start(): onclose once', async () => {
    const transport = new ChildTransport(patient);
    const seen = counting(transport);
    await transport.close();
    await transport.close();
    assert.equal(seen.closes, 1);
  });
});
