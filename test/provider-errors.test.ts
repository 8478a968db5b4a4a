/**
 * A provider that is configured but cannot be used says exactly that, in `chat` and
 * `listmodels` and in `/health`'s providers: unreachable (with its URL and what the system
 * said) or refusing its key (naming the variable), never "no model provider is configured".
 * Through the real daemon and the official SDK client (over a direct WebSocket), against a closed port and
 * the local fake OpenAI-compatible server.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { CLI, Cleanup, baseEnv, closedPort, getHealth, startDaemon, textOf, type DaemonHandle } from './helpers.js';
import { FakeOpenAI } from './fixtures/fake-openai.js';
import { connectWs, type WsWindow } from './fixtures/ws-client.js';

const run = promisify(execFile);
const cleanup = new Cleanup();
after(() => cleanup.run());

interface ToolResult {
  isError?: boolean;
  content: { type: string; text?: string }[];
  structuredContent?: Record<string, unknown>;
}

interface ProviderHealth {
  id: string;
  label: string;
  configured: boolean;
  base_url: string | null;
  state: string;
  last_error: string | null;
  last_error_at: string | null;
  calls: number;
  errors: number;
  rate_limited: number;
  inflight: number;
  waiting: number;
  max_inflight: number;
  default_model: string | null;
}

async function call(shim: WsWindow, name: string, args: Record<string, unknown> = {}): Promise<ToolResult> {
  return (await shim.client.callTool({ name, arguments: args })) as ToolResult;
}

async function provider(daemon: DaemonHandle, id: string): Promise<ProviderHealth> {
  const found = ((await getHealth(daemon)).providers as ProviderHealth[]).find((p) => p.id === id);
  assert.ok(found, `/health lists provider ${id}`);
  return found;
}
// Each test has its own daemon, home and processes: they run side by side. Windows are direct
// WebSocket SDK clients: what a provider answers is the daemon's, whatever carries the session.
describe('provider errors', { concurrency: true }, () => {
  test('an OpenAI-compatible endpoint that is down: chat and listmodels say it could not be reached, with its URL', async () => {
    const url = `http://127.0.0.1:${await closedPort()}/v1`;
    const daemon = await startDaemon(cleanup, { env: { EXAI_OPENAI_BASE_URL: url, EXAI_OPENAI_API_KEY: 'secret-key-down' } });
    const before = await provider(daemon, 'openai');
    assert.deepEqual([before.configured, before.state, before.last_error, before.base_url], [true, 'unknown', null, url]);
    assert.equal((await provider(daemon, 'kimi')).state, 'not_configured');

    const shim = await connectWs(cleanup, daemon);
    const expected = new RegExp(
      `OpenAI-compatible \\(EXAI_OPENAI_BASE_URL=${url.replace(/[.]/g, '\\.')}\\) is configured but could not be reached: .*ECONNREFUSED`,
    );
    for (const model of ['auto', 'some-model']) {
      const chat = await call(shim, 'chat', { prompt: 'ping', model });
      assert.equal(chat.isError, true);
      assert.match(textOf(chat), expected, `chat with model ${model}`);
      assert.doesNotMatch(textOf(chat), /no model provider is configured/);
    }
    const listed = await call(shim, 'listmodels');
    assert.match(textOf(listed), /OpenAI-compatible \[openai\]: configured/);
    assert.match(textOf(listed), expected);
    assert.doesNotMatch(textOf(listed), /no provider is configured/);

    const after = await provider(daemon, 'openai');
    assert.equal(after.state, 'unreachable');
    assert.match(after.last_error ?? '', expected);
    assert.ok(after.last_error_at && Date.parse(after.last_error_at) > Date.parse(new Date(Date.now() - 60_000).toISOString()));
    assert.ok(!JSON.stringify(await getHealth(daemon)).includes('secret-key-down'), '/health never shows keys');

    // `exai-ws status` shows the same, as JSON and in its table.
    const env = { ...baseEnv(), ...daemon.clientEnv };
    const [asJson, asTable] = await Promise.all([
      run(process.execPath, [CLI, 'status', '--json'], { env, timeout: 20_000 }),
      run(process.execPath, [CLI, 'status'], { env, timeout: 20_000 }),
    ]);
    const json = JSON.parse(asJson.stdout) as {
      providers: { id: string; state: string | null; last_error: string | null }[];
    };
    const shown = json.providers.find((p) => p.id === 'openai');
    assert.equal(shown?.state, 'unreachable');
    assert.match(shown?.last_error ?? '', expected);
    assert.match(asTable.stdout, /openai\s+yes\s+unreachable/);
  });

  test('an endpoint that refuses the key: chat and listmodels name the key variable; a good call sets the state back to ok', async () => {
    const server = await new FakeOpenAI().start();
    cleanup.add(() => server.close());
    server.apiKey = 'the-right-key';
    // Four daemons, one per provider setting (read at start), started at once: each is used alone.
    const [wrong, keyless, right, kimi] = await Promise.all([
      startDaemon(cleanup, { env: { EXAI_OPENAI_BASE_URL: server.url, EXAI_OPENAI_API_KEY: 'a-wrong-key' } }),
      startDaemon(cleanup, { env: { EXAI_OPENAI_BASE_URL: server.url } }),
      startDaemon(cleanup, {
        env: { EXAI_OPENAI_BASE_URL: server.url, EXAI_OPENAI_API_KEY: 'the-right-key', EXAI_OPENAI_MODELS: 'fake-small' },
      }),
      startDaemon(cleanup, { env: { KIMI_API_KEY: 'wrong', KIMI_API_URL: server.url } }),
    ]);
    const shim = await connectWs(cleanup, wrong);
    const refused =
      /OpenAI-compatible \(EXAI_OPENAI_BASE_URL=.*\) is configured but refused the API key \(HTTP 401\): check EXAI_OPENAI_API_KEY/;
    const chat = await call(shim, 'chat', { prompt: 'ping' });
    assert.equal(chat.isError, true);
    assert.match(textOf(chat), refused);
    assert.match(textOf(await call(shim, 'listmodels')), refused);
    const health = await provider(wrong, 'openai');
    assert.equal(health.state, 'unauthorized');
    assert.match(health.last_error ?? '', refused);

    // No key at all: the variable to set.
    const keylessShim = await connectWs(cleanup, keyless);
    assert.match(textOf(await call(keylessShim, 'chat', { prompt: 'ping' })), /wants an API key \(HTTP 401\): set EXAI_OPENAI_API_KEY/);

    // The right key, with a model named up front (no listing): one good chat, state ok, counted.
    const rightShim = await connectWs(cleanup, right);
    assert.equal((await provider(right, 'openai')).state, 'unknown', 'no contact yet');
    assert.equal(textOf(await call(rightShim, 'chat', { prompt: 'ping' })), 'pong');
    const ok = await provider(right, 'openai');
    assert.deepEqual([ok.state, ok.calls, ok.errors, ok.last_error, ok.default_model], ['ok', 1, 0, null, 'fake-small']);

    // A Kimi key refused by its (fake) endpoint names KIMI_API_KEY, and only Kimi is marked.
    const kimiShim = await connectWs(cleanup, kimi);
    const kimiChat = await call(kimiShim, 'chat', { prompt: 'ping' });
    assert.match(
      textOf(kimiChat),
      /Kimi \(Moonshot\) \(KIMI_API_URL=.*\) is configured but refused the API key \(HTTP 401\): check KIMI_API_KEY/,
    );
    const states = ((await getHealth(kimi)).providers as ProviderHealth[]).map((p) => [p.id, p.state, p.calls, p.errors]);
    assert.deepEqual(states, [
      ['kimi', 'unauthorized', 1, 1],
      ['glm', 'not_configured', 0, 0],
      ['openai', 'not_configured', 0, 0],
    ]);
  });
});
