/**
 * The shim for 2026-07-28 clients when the daemon restarts under it (issue 24): there is no
 * initialize to replay; the client's listen streams go on (the shim opens them again in the new
 * session, which acknowledges them again, and a list change later reaches the client tagged with
 * its listen id); a call in flight is answered -32000 once, as for any client; and a retry carrying a
 * requestState of the earlier daemon is refused (-32602, saying so), after which the call made
 * again works. Raw lines through a real shim process, real daemons on one home.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  Cleanup,
  spawnShim,
  startDaemon,
  waitFor,
  within,
  readUntilResponse,
  type DaemonHandle,
  type Message,
  type RawShim,
} from './helpers.js';
import { everythingEntry, startHostingDaemon, type ServerEntry } from './fixtures/hosted-servers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const MODERN = '2026-07-28';
const SUBSCRIPTION_ID = 'io.modelcontextprotocol/subscriptionId';
/** The shim reconnects at a tenth of its backoff (EXAI_WS_TIMER_SCALE): these tests hold what a reconnect brings, not when. */
const FAST_SHIM = { EXAI_WS_TIMER_SCALE: '0.1' };
const SAMPLING_TOOL = 'everything__trigger-sampling-request';

/** A modern request's line: `_meta` names the revision and what the client can do. */
function request(id: string | number, method: string, params: Record<string, unknown> = {}, capabilities = {}): string {
  const meta = { 'io.modelcontextprotocol/protocolVersion': MODERN, 'io.modelcontextprotocol/clientCapabilities': capabilities };
  return JSON.stringify({ jsonrpc: '2.0', id, method, params: { ...params, _meta: meta } });
}

function writeConfig(home: string, servers: Record<string, ServerEntry>): void {
  writeFileSync(join(home, 'config.json'), JSON.stringify({ mcpServers: servers }, null, 2));
}

/** Everything the shim writes, kept until it exits, so a test can wait for a line it may already have read past. */
function collect(shim: RawShim): Message[] {
  const seen: Message[] = [];
  let exited = false;
  void shim.exited.then(() => (exited = true));
  void (async () => {
    while (!exited) {
      try {
        seen.push(JSON.parse(await shim.nextLine(200)) as Message);
      } catch {
        // No line within 200 ms: look again, unless the shim is gone.
      }
    }
  })();
  return seen;
}

const tagOf = (m: Message) => (m.params?._meta as Record<string, unknown> | undefined)?.[SUBSCRIPTION_ID];
const acks = (seen: Message[], id: string) =>
  seen.filter((m) => m.method === 'notifications/subscriptions/acknowledged' && tagOf(m) === id).length;

/** Kills the daemon outright (no goodbye to its sessions) and waits until the shim saw it gone. */
async function killUnder(daemon: DaemonHandle, shim: RawShim): Promise<void> {
  daemon.proc.kill('SIGKILL');
  await within(daemon.exited, 10_000, 'the daemon to exit');
  await waitFor(() => /reconnecting \(for up to/.test(shim.stderr()), 'the shim to see the daemon gone', 10_000);
}

describe('the shim for a 2026-07-28 client, across a daemon restart', () => {
  test('its listen stream goes on: acknowledged again by the new daemon, then a list change tagged with its id', async () => {
    const daemon = await startHostingDaemon(cleanup, () => ({}));
    const shim = spawnShim(cleanup, { ...daemon.clientEnv, ...FAST_SHIM });
    const seen = collect(shim);
    shim.send(request('listen-1', 'subscriptions/listen', { notifications: { toolsListChanged: true } }));
    await waitFor(() => acks(seen, 'listen-1') === 1, 'the listen stream acknowledged', 10_000);
    // A slow call, then a list: once the list is answered, the call is surely in flight.
    shim.send(request('slow', 'tools/call', { name: 'sleep', arguments: { ms: 60_000 } }));
    shim.send(request('tools-1', 'tools/list'));
    await waitFor(() => seen.find((m) => m.id === 'tools-1'), 'the first tools/list answered', 10_000);

    await killUnder(daemon, shim);
    const lost = await waitFor(() => seen.find((m) => m.id === 'slow'), 'the call in flight answered', 10_000);
    assert.equal((lost.error as { code?: number } | undefined)?.code, -32000, JSON.stringify(lost));
    const second = await startDaemon(cleanup, { home: daemon.home });
    await waitFor(() => acks(seen, 'listen-1') === 2, 'the listen stream acknowledged again by the new daemon', 20_000);
    assert.match(shim.stderr(), /new session .*nothing to replay; 1 listen stream\(s\) opened again/);
    assert.equal(
      seen.filter((m) => m.id === 'listen-1').length,
      0,
      `the listen request is not answered (no -32000): ${JSON.stringify(seen.filter((m) => m.id === 'listen-1'))}`,
    );
    assert.equal(
      seen.filter((m) => m.method?.endsWith('/list_changed') && tagOf(m) === undefined).length,
      0,
      'no untagged list_changed: a modern client hears changes only on its listen streams',
    );

    // A hosted server added to the new daemon's config: its tools reach the stream, tagged.
    writeConfig(second.home, { everything: everythingEntry() });
    const changed = await waitFor(
      () => seen.find((m) => m.method === 'notifications/tools/list_changed'),
      'a tools list_changed on the listen stream',
      30_000,
    );
    assert.equal(tagOf(changed), 'listen-1');
    const listed = await waitFor(
      async () => {
        const id = `tools-${seen.length}-${Date.now()}`;
        shim.send(request(id, 'tools/list'));
        const { response } = await readAnswer(seen, id);
        const tools = ((response.result as { tools?: { name: string }[] } | undefined)?.tools ?? []).map((t) => t.name);
        return tools.includes('everything__echo') ? tools : null;
      },
      "the added server's tools listed",
      20_000,
      200,
    );
    assert.ok(listed.includes('version'));
    assert.equal(seen.filter((m) => m.id === 'slow').length, 1, 'the lost call was answered once');
    shim.proc.stdin?.end();
    assert.equal(await within(shim.exited, 10_000, 'the shim to exit'), 0);
  });

  test('a daemon stopped gracefully ends the stream itself: its one complete result, not opened again; the client listens anew', async () => {
    const daemon = await startHostingDaemon(cleanup, () => ({}));
    const shim = spawnShim(cleanup, { ...daemon.clientEnv, ...FAST_SHIM });
    const seen = collect(shim);
    shim.send(request('listen-g', 'subscriptions/listen', { notifications: { toolsListChanged: true } }));
    await waitFor(() => acks(seen, 'listen-g') === 1, 'the listen stream acknowledged', 10_000);

    daemon.proc.kill('SIGTERM');
    await within(daemon.exited, 20_000, 'the daemon to stop');
    const ended = await waitFor(() => seen.find((m) => m.id === 'listen-g'), 'the listen request answered', 10_000);
    assert.equal(ended.error, undefined, JSON.stringify(ended));
    assert.equal((ended.result as Record<string, unknown> | undefined)?.resultType, 'complete', JSON.stringify(ended));

    const second = await startDaemon(cleanup, { home: daemon.home });
    await waitFor(() => /reconnected: new session/.test(shim.stderr()), 'the shim to reach the new daemon', 20_000);
    assert.doesNotMatch(shim.stderr(), /listen stream\(s\) opened again/, 'an ended stream is not opened again');
    assert.equal(acks(seen, 'listen-g'), 1);
    // The client opens a stream anew (a new id), and a change reaches it.
    shim.send(request('listen-h', 'subscriptions/listen', { notifications: { toolsListChanged: true } }));
    await waitFor(() => acks(seen, 'listen-h') === 1, 'the new stream acknowledged', 10_000);
    writeConfig(second.home, { everything: everythingEntry() });
    const changed = await waitFor(
      () => seen.find((m) => m.method === 'notifications/tools/list_changed'),
      'a tools list_changed on the new stream',
      30_000,
    );
    assert.equal(tagOf(changed), 'listen-h');
    assert.equal(seen.filter((m) => m.id === 'listen-g').length, 1, 'the ended stream was answered once');
    shim.proc.stdin?.end();
    assert.equal(await within(shim.exited, 10_000, 'the shim to exit'), 0);
  });

  test("a retry with the earlier daemon's requestState is refused (-32602), and the call made again works", async () => {
    const daemon = await startHostingDaemon(cleanup, () => ({
      everything: everythingEntry({ asks_client: ['trigger-sampling-request'] }),
    }));
    const shim = spawnShim(cleanup, { ...daemon.clientEnv, ...FAST_SHIM });
    const sampling = { sampling: {} };
    // The sampling tool is listed once the server runs with a client that can sample.
    await waitFor(
      async () => {
        const id = `list-${Date.now()}`;
        shim.send(request(id, 'tools/list', {}, sampling));
        const { response } = await readUntilResponse(shim, id, 20_000);
        return ((response.result as { tools?: { name: string }[] } | undefined)?.tools ?? []).some((t) => t.name === SAMPLING_TOOL);
      },
      'the sampling tool to be listed',
      30_000,
      200,
    );
    const call = { name: SAMPLING_TOOL, arguments: { prompt: 'across a restart', maxTokens: 10 } };
    shim.send(request('call-1', 'tools/call', call, sampling));
    const first = (await readUntilResponse(shim, 'call-1', 20_000)).response.result as Record<string, unknown>;
    assert.equal(first.resultType, 'input_required', JSON.stringify(first));
    const inputRequests = first.inputRequests as Record<string, { method: string }>;
    const [key, question] = Object.entries(inputRequests)[0] ?? [];
    assert.equal(question?.method, 'sampling/createMessage');
    await killUnder(daemon, shim);
    await startDaemon(cleanup, { home: daemon.home });
    const answers = { [key as string]: { model: 'm', role: 'assistant', content: { type: 'text', text: 'answered after the restart' } } };
    shim.send(request('call-2', 'tools/call', { ...call, inputResponses: answers, requestState: first.requestState }, sampling));
    const { response: retry } = await readUntilResponse(shim, 'call-2', 30_000);
    const error = retry.error as { code: number; message: string } | undefined;
    assert.equal(error?.code, -32602, JSON.stringify(retry));
    assert.match(error?.message ?? '', /issued by an earlier run of the daemon/);
    assert.match(error?.message ?? '', /send the request again without it/);

    // The client starts the call again: a new question, answered, and the tool's result quotes it.
    shim.send(request('call-3', 'tools/call', call, sampling));
    const again = (await readUntilResponse(shim, 'call-3', 30_000)).response.result as Record<string, unknown>;
    assert.equal(again.resultType, 'input_required', JSON.stringify(again));
    const [key3] = Object.keys(again.inputRequests as object);
    const reply = { [key3 as string]: { model: 'm', role: 'assistant', content: { type: 'text', text: 'sampled anew' } } };
    shim.send(request('call-4', 'tools/call', { ...call, inputResponses: reply, requestState: again.requestState }, sampling));
    const done = (await readUntilResponse(shim, 'call-4', 30_000)).response;
    assert.match(JSON.stringify(done.result), /sampled anew/);
    shim.proc.stdin?.end();
    assert.equal(await within(shim.exited, 10_000, 'the shim to exit'), 0);
  });
});

/** Waits in `seen` for the answer to `id`. */
async function readAnswer(seen: Message[], id: string): Promise<{ response: Message }> {
  const response = await waitFor(() => seen.find((m) => m.id === id && m.method === undefined), `the answer to ${id}`, 10_000);
  return { response };
}
