/**
 * `listmodels` and `chat` through the real daemon, against a local fake OpenAI-compatible server
 * (the real Kimi / GLM endpoints are never reached in tests). The windows are SDK clients (or raw
 * sessions) over their own WebSocket, as a shim opens them: what is tested is the daemon's tools.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Cleanup, getHealth, metricsPath, readJsonLines, startDaemon, textOf, waitFor, type DaemonHandle } from './helpers.js';
import { connectWs, type WsWindow } from './fixtures/ws-client.js';
import { openRawWindow, readUntilReply } from './fixtures/raw-window.js';
import { FakeOpenAI } from './fixtures/fake-openai.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

async function fake(): Promise<FakeOpenAI> {
  const server = await new FakeOpenAI().start();
  cleanup.add(() => server.close());
  return server;
}

interface ToolResult {
  isError?: boolean;
  content: { type: string; text?: string }[];
  structuredContent?: Record<string, unknown>;
}

async function call(shim: WsWindow, name: string, args: Record<string, unknown> = {}): Promise<ToolResult> {
  return (await shim.client.callTool({ name, arguments: args })) as ToolResult;
}

const openaiEnv = (server: FakeOpenAI, extra: Record<string, string> = {}) => ({
  EXAI_OPENAI_BASE_URL: server.url,
  EXAI_OPENAI_API_KEY: 'test-key',
  ...extra,
});
/**
 * One fake provider and one daemon on it (the provider settings are read at start), made when the
 * first test of its group asks: the tests of a group run one after another and each sees the
 * fake's counters as the tests before left them (they count from there).
 */
function sharedRig(
  configure: (server: FakeOpenAI) => void,
  env: Record<string, string>,
): () => Promise<{ server: FakeOpenAI; daemon: DaemonHandle }> {
  let rig: Promise<{ server: FakeOpenAI; daemon: DaemonHandle }> | undefined;
  return () =>
    (rig ??= (async () => {
      const server = await fake();
      configure(server);
      return { server, daemon: await startDaemon(cleanup, { env: openaiEnv(server, env) }) };
    })());
}

/** A provider limit of 3, a key the fake checks: the two-windows, progress and limit tests. */
const limitOf3 = sharedRig((server) => (server.apiKey = 'test-key'), { EXAI_WS_OPENAI_MAX_INFLIGHT: '3' });
/** A provider limit of 1, two attempts a call, metrics every 200 ms: the 429 and the cancel tests. */
const limitOf1 = sharedRig(() => undefined, {
  EXAI_WS_OPENAI_MAX_INFLIGHT: '1',
  EXAI_WS_PROVIDER_MAX_ATTEMPTS: '2',
  EXAI_WS_METRICS_INTERVAL_MS: '200',
});

// The groups (and the failure test, with daemons of its own) run side by side.
describe('chat', { concurrency: 3 }, () => {
  describe('on one daemon with a provider limit of 3, one test after another', { concurrency: 1 }, () => {
    test('two windows at once: listmodels, version and chat "ping" (the MVP plan, step 4)', async () => {
      const { server, daemon } = await limitOf3();
      const windows = await Promise.all([connectWs(cleanup, daemon, { name: 'one' }), connectWs(cleanup, daemon, { name: 'two' })]);
      await Promise.all(
        windows.map(async (w) => {
          const listed = await call(w, 'listmodels');
          assert.ok(!listed.isError, textOf(listed));
          const providers = listed.structuredContent?.providers as {
            id: string;
            configured: boolean;
            models_source: string;
            models: { id: string; default: boolean }[];
          }[];
          const openai = providers.find((p) => p.id === 'openai');
          assert.equal(openai?.configured, true);
          assert.equal(openai?.models_source, 'live', 'models come from the provider /models');
          assert.deepEqual(
            openai?.models.map((m) => m.id),
            ['fake-small', 'fake-large'],
          );
          assert.equal(openai?.models.find((m) => m.default)?.id, 'fake-small');
          const kimi = providers.find((p) => p.id === 'kimi');
          assert.equal(kimi?.configured, false);
          assert.ok(kimi?.models.some((m) => m.id.startsWith('kimi-k2')) && kimi.models.some((m) => m.id.startsWith('moonshot-v1')));
          assert.ok(providers.find((p) => p.id === 'glm')?.models.some((m) => m.id === 'glm-4.5'));
          assert.match(textOf(listed), /OpenAI-compatible \[openai\]: configured/);

          const version = JSON.parse(textOf(await call(w, 'version'))) as { pid: number };
          assert.equal(version.pid, daemon.pid);

          const chat = await call(w, 'chat', { prompt: 'ping' });
          assert.ok(!chat.isError, textOf(chat));
          assert.equal(textOf(chat), 'pong');
        }),
      );
      assert.equal(server.requests.length, 2);
      assert.equal(server.modelListCalls, 1, 'the model list is cached and shared by both windows');
    });

    test('progress notifications stream the answer in order, all of it before the result', async () => {
      const { server, daemon } = await limitOf3();
      const answer = 'The quick brown fox jumps over the lazy dog, again and again.';
      const chunks = answer.match(/.{1,4}/gs) ?? [];
      server.script.push({ chunks, chunkDelayMs: 40 }, { chunks, chunkDelayMs: 40 });

      // What the daemon sends, frame by frame: every piece, in order, then the result.
      const raw = await openRawWindow(cleanup, daemon);
      raw.send({
        jsonrpc: '2.0',
        id: 7,
        method: 'tools/call',
        params: { name: 'chat', arguments: { prompt: 'tell me' }, _meta: { progressToken: 'p1' } },
      });
      const { response, before } = await readUntilReply(raw, 7, 15_000);
      assert.equal(textOf(response.result), answer);
      const progress = before
        .filter((m) => m.method === 'notifications/progress')
        .map((m) => m.params as { progressToken: unknown; progress: number; message?: string });
      assert.ok(progress.length >= 3, `expected several progress notifications, got ${progress.length}`);
      assert.ok(
        progress.every((p) => p.progressToken === 'p1'),
        'the client token comes back as it was sent',
      );
      assert.equal(progress.map((p) => p.message ?? '').join(''), answer, 'the messages are the whole answer, in order, before the result');
      for (let i = 1; i < progress.length; i++) assert.ok(progress[i]!.progress > progress[i - 1]!.progress, 'progress only grows');
      assert.equal(progress.at(-1)?.progress, answer.length);

      // Through the SDK client. SDK 1.x may drop a notification that arrives in one read with the
      // result (typescript-sdk#2580), so what it shows is an in-order prefix of the answer.
      const shim = await connectWs(cleanup, daemon);
      const seen: { progress: number; message?: string }[] = [];
      const result = (await shim.client.callTool({ name: 'chat', arguments: { prompt: 'tell me' } }, undefined, {
        onprogress: (p) => seen.push({ progress: p.progress, message: p.message }),
      })) as ToolResult;
      assert.equal(textOf(result), answer);
      assert.ok(seen.length >= 2, `expected several progress notifications, got ${seen.length}`);
      const shown = seen.map((p) => p.message ?? '').join('');
      assert.ok(answer.startsWith(shown), `the messages continue the answer in order: ${JSON.stringify(shown)}`);
      assert.equal(seen.at(-1)?.progress, shown.length);
    });

    test('three sessions firing ten chats each never exceed the shared provider limit, and all complete', async () => {
      const { server, daemon } = await limitOf3();
      // The last of its group: what it sets on the fake is seen by no other test.
      server.respond = (body) => ({ text: `re: ${body.messages.at(-1)?.content}`, delayMs: 60 });
      const completedBefore = server.completed;
      const sessions = await Promise.all([0, 1, 2].map(() => connectWs(cleanup, daemon)));
      const results = await Promise.all(
        sessions.flatMap((s, si) =>
          Array.from({ length: 10 }, async (_, i) => {
            const r = await call(s, 'chat', { prompt: `s${si}-${i}` });
            assert.ok(!r.isError, textOf(r));
            assert.equal(textOf(r), `re: s${si}-${i}`);
            return r;
          }),
        ),
      );
      assert.equal(results.length, 30);
      assert.equal(server.completed - completedBefore, 30);
      // Over the fake's whole life (the tests before held at most two at once).
      assert.ok(server.maxInflight <= 3, `the fake server held ${server.maxInflight} requests at once; the limit is 3`);
      assert.equal(server.maxInflight, 3, 'the limit is used, not undercut');
    });
  });

  describe('on one daemon with a provider limit of 1, one test after another', { concurrency: 1 }, () => {
    test('a 429 with Retry-After is retried, then succeeds; exhausted retries give a clear error', async () => {
      const { server, daemon } = await limitOf1();
      server.script.push({ status: 429, retryAfter: '1' });
      const shim = await connectWs(cleanup, daemon);
      const startedMs = Date.now();
      const ok = await call(shim, 'chat', { prompt: 'ping' });
      assert.ok(!ok.isError, textOf(ok));
      assert.equal(textOf(ok), 'pong');
      assert.equal(server.requests.length, 2);
      assert.ok(Date.now() - startedMs >= 900, 'the retry waited for Retry-After');

      server.script.push({ status: 429, retryAfter: '0' }, { status: 429, retryAfter: '0' });
      const failed = await call(shim, 'chat', { prompt: 'ping' });
      assert.equal(failed.isError, true);
      assert.match(textOf(failed), /rate limit/i);
      assert.match(textOf(failed), /429/);

      const line = await waitFor(
        () =>
          readJsonLines(metricsPath(daemon.home)).find(
            (l) => ((l.providers as Record<string, { rate_limited: number }>).openai?.rate_limited ?? 0) >= 3,
          ),
        'provider metrics counting the 429s',
      );
      const openai = (line.providers as Record<string, { calls: number; errors: number; rate_limited: number; retries: number }>).openai;
      assert.equal(openai?.calls, 2);
      assert.equal(openai?.errors, 1, JSON.stringify(openai));
      assert.equal(openai?.retries, 2, 'one retry in each call');
    });

    test('cancelling a chat mid-stream aborts it at the provider and frees the slot', async () => {
      const { server, daemon } = await limitOf1();
      // The 429 test ran before on this fake: its requests (all answered, none aborted) are not this test's.
      const before = { requests: server.requests.length, completed: server.completed, aborted: server.aborted };
      server.script.push({ chunks: Array.from({ length: 100 }, (_, i) => `w${i} `), chunkDelayMs: 50 });
      const shim = await connectWs(cleanup, daemon);
      const controller = new AbortController();
      let progressed = 0;
      const cancelled = shim.client.callTool({ name: 'chat', arguments: { prompt: 'long story' } }, undefined, {
        signal: controller.signal,
        onprogress: () => {
          if (++progressed === 2) controller.abort('user pressed stop');
        },
      });
      await assert.rejects(cancelled);
      await waitFor(() => server.aborted - before.aborted === 1, 'the provider request to be aborted', 3_000);
      assert.ok(server.requests.length - before.requests === 1 && server.completed === before.completed);
      // The one slot is free again: the next chat runs at once (it would wait ~5 s otherwise).
      const next = await call(shim, 'chat', { prompt: 'ping' });
      assert.equal(textOf(next), 'pong');
      assert.equal((await getHealth(daemon)).inflight, 0);
    });
  });

  test('no key, bad key, unknown model and timeout each give a clear isError result, and the session goes on', async () => {
    const server = await fake();
    server.apiKey = 'right-key';
    server.script.push({ delayMs: 3_000, text: 'too late' });
    // Both daemons started at once: one with no provider configured at all, one with a timeout,
    // a fixed model list and the same fake standing in for Kimi with the wrong key.
    const [bare, daemon] = await Promise.all([
      startDaemon(cleanup),
      startDaemon(cleanup, {
        env: {
          EXAI_OPENAI_BASE_URL: server.url,
          EXAI_OPENAI_API_KEY: 'right-key',
          EXAI_OPENAI_MODELS: 'fake-small,fake-large',
          EXAI_WS_PROVIDER_TIMEOUT_MS: '500',
          KIMI_API_KEY: 'wrong-key',
          KIMI_API_URL: server.url,
        },
      }),
    ]);
    const lonely = await connectWs(cleanup, bare);
    const none = await call(lonely, 'chat', { prompt: 'ping' });
    assert.equal(none.isError, true);
    assert.match(textOf(none), /KIMI_API_KEY/);
    assert.match(textOf(none), /GLM_API_KEY/);
    const kimiModel = await call(lonely, 'chat', { prompt: 'ping', model: 'kimi-k2-0905-preview' });
    assert.equal(kimiModel.isError, true);
    assert.match(textOf(kimiModel), /Kimi.*not configured.*KIMI_API_KEY/);
    assert.equal((JSON.parse(textOf(await call(lonely, 'version'))) as { pid: number }).pid, bare.pid, 'the session goes on');

    const shim = await connectWs(cleanup, daemon);
    const slow = await call(shim, 'chat', { prompt: 'ping', model: 'fake-small' });
    assert.equal(slow.isError, true);
    assert.match(textOf(slow), /did not finish within 500 ms/);

    const unknown = await call(shim, 'chat', { prompt: 'ping', model: 'no-such-model' });
    assert.equal(unknown.isError, true);
    assert.match(textOf(unknown), /unknown model 'no-such-model'/);
    assert.match(textOf(unknown), /fake-small/);

    const badKey = await call(shim, 'chat', { prompt: 'ping', model: 'kimi-k2-0905-preview' });
    assert.equal(badKey.isError, true);
    assert.match(textOf(badKey), /Kimi.*refused the API key.*401.*KIMI_API_KEY/);

    const fine = await call(shim, 'chat', { prompt: 'ping', model: 'fake-large' });
    assert.equal(textOf(fine), 'pong', 'the session goes on after every failure');

    const health = await getHealth(daemon);
    const text = JSON.stringify(health);
    assert.ok(!text.includes('right-key') && !text.includes('wrong-key'), '/health never shows keys');
    const providers = health.providers as { id: string; configured: boolean; max_inflight: number }[];
    assert.deepEqual(
      providers.map((p) => [p.id, p.configured]),
      [
        ['kimi', true],
        ['glm', false],
        ['openai', true],
      ],
    );
  });
});
