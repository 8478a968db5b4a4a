/**
 * Sharing one hosted server between sessions whose clients differ: server-to-client requests
 * (sampling, elicitation, roots) reach only the session whose call caused them, and only if its
 * client declared the capability; `resources/updated` reaches only subscribers and the server is
 * subscribed while one session is; log messages respect each session's own level. The server is
 * the real server-everything, which registers its sampling, elicitation and roots tools only
 * when the daemon declared those capabilities, so a capable session connects before the first
 * list starts the server. Sessions are SDK clients over their own WebSocket (what is tested is
 * the daemon's routing, not the shim); the client that never declared sampling is a real shim.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
  type CallToolResult,
  type JSONRPCRequest,
} from '@modelcontextprotocol/sdk/types.js';
import {
  Cleanup,
  getHealth,
  initializeRaw,
  readUntilResponse,
  serially,
  spawnShim,
  textOf,
  waitFor,
  type DaemonHandle,
} from './helpers.js';
import { everythingEntry, serverReport, startHostingDaemon, startTeedEverything } from './fixtures/hosted-servers.js';
import { connectWs } from './fixtures/ws-client.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const SAMPLING = 'everything__trigger-sampling-request';
const ELICITATION = 'everything__trigger-elicitation-request';
const ROOTS = 'everything__get-roots-list';
const LOGGING = 'everything__toggle-simulated-logging';
const UPDATES = 'everything__toggle-subscriber-updates';
/** A client that answers sampling, elicitation and roots requests. */
const CAPABLE = { sampling: {}, elicitation: {}, roots: { listChanged: true } };
const LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

type Scope = 'shared' | 'session';

/** A list waits for the server however long its start takes on a loaded machine: the tests need its tools listed. */
const LIST_WAITS = { EXAI_WS_LIST_WAIT_MS: '0' };

function everythingDaemon(scope: Scope = 'shared'): Promise<DaemonHandle> {
  return startHostingDaemon(cleanup, () => ({ everything: everythingEntry({ scope }) }), LIST_WAITS);
}

/** A sampling answer whose text says who gave it. */
function sampled(text: string) {
  return { model: 'exai-ws-test-model', role: 'assistant' as const, content: { type: 'text' as const, text } };
}

/** The text a sampling request asks about (server-everything puts the tool's prompt in it). */
function promptOf(request: { params: { messages: { content: unknown }[] } }): string {
  const content = request.params.messages[0]?.content as { text?: string } | undefined;
  return content?.text ?? '';
}

/** Records every server-to-client request a client gets that has no handler of its own. */
function recordStray(client: Client): JSONRPCRequest[] {
  const stray: JSONRPCRequest[] = [];
  client.fallbackRequestHandler = (request) => {
    stray.push(request);
    return Promise.reject(new Error(`unexpected ${request.method}`));
  };
  return stray;
}

/** The tool result's text, or the protocol error's message: what a user is shown either way. */
async function outcomeText(client: Client, name: string, args: Record<string, unknown> = {}): Promise<{ isError: boolean; text: string }> {
  try {
    const result = (await client.callTool({ name, arguments: args })) as CallToolResult;
    return { isError: result.isError === true, text: result.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n') };
  } catch (error) {
    return { isError: true, text: (error as Error).message };
  }
}

async function toolNames(client: Client): Promise<string[]> {
  return (await client.listTools()).tools.map((t) => t.name);
}

/**
 * One daemon per scope for the tests that open sessions of their own and assert only what those
 * sessions get (capabilities, roots, log levels, a shim without sampling): a fresh daemon each
 * would prove nothing more. They run one after another on it, in the order declared: with the
 * calls of two tests in flight at once, a shared server's request could come from either, and
 * the daemon rightly refuses it (the concurrent sampling tests are about that, on their own
 * daemons). The first on the shared daemon connects a capable session before the first list,
 * so the server offers its sampling, elicitation and roots tools. Sessions of a test that ended
 * stay open, idle, until the file's cleanup: neighbours the later tests must not be confused by.
 */
const lanes: Record<Scope, { daemon?: Promise<DaemonHandle>; next: ReturnType<typeof serially> }> = {
  shared: { next: serially() },
  session: { next: serially() },
};
function onLane<T>(scope: Scope, run: (daemon: DaemonHandle) => Promise<T>): Promise<T> {
  const lane = lanes[scope];
  return lane.next(async () => run(await (lane.daemon ??= everythingDaemon(scope))));
}

// Each test has its own daemon, home and processes, but those on a lane (onLane): they run side by side.
describe('sharing one server', { concurrency: 8 }, () => {
  test('sampling and elicitation go to the calling session; a session that did not declare them gets a clear error', () =>
    onLane('shared', async (daemon) => {
      // A connects first: the server starts (at the first list) seeing A's capabilities.
      const a = await connectWs(cleanup, daemon, { name: 'session-a', capabilities: CAPABLE });
      const b = await connectWs(cleanup, daemon, { name: 'session-b' });
      const aSampling: string[] = [];
      a.client.setRequestHandler(CreateMessageRequestSchema, (request) => {
        aSampling.push(promptOf(request));
        return sampled('the answer of session A');
      });
      let aElicited = 0;
      a.client.setRequestHandler(ElicitRequestSchema, () => {
        aElicited++;
        return { action: 'accept', content: { name: 'Alice of session A', check: true } };
      });
      const bStray = recordStray(b.client);

      // B did not declare sampling, yet lists the tool: the shared server saw A's capabilities.
      const listed = await toolNames(b.client);
      for (const tool of [SAMPLING, ELICITATION, ROOTS]) assert.ok(listed.includes(tool), `${tool} in ${listed.join(', ')}`);

      const aResult = await outcomeText(a.client, SAMPLING, { prompt: 'asked by A', maxTokens: 20 });
      assert.equal(aResult.isError, false, aResult.text);
      assert.match(aResult.text, /the answer of session A/);
      assert.deepEqual(aSampling, ['Resource trigger-sampling-request context: asked by A']);

      const aElicitation = await outcomeText(a.client, ELICITATION);
      assert.equal(aElicitation.isError, false, aElicitation.text);
      assert.match(aElicitation.text, /Name: Alice of session A/);
      assert.equal(aElicited, 1);

      // B's calls: the server's request is refused for B (never sent to B, never to A).
      const bSampling = await outcomeText(b.client, SAMPLING, { prompt: 'asked by B', maxTokens: 20 });
      assert.equal(bSampling.isError, true, bSampling.text);
      assert.match(bSampling.text, /did not declare the sampling capability/);
      const bElicitation = await outcomeText(b.client, ELICITATION);
      assert.equal(bElicitation.isError, true, bElicitation.text);
      assert.match(bElicitation.text, /did not declare the elicitation capability/);

      assert.deepEqual(bStray, []);
      assert.deepEqual(aSampling, ['Resource trigger-sampling-request context: asked by A'], 'A was not asked on B’s behalf');
      assert.equal(aElicited, 1);
    }));

  /**
   * Resolves once the other session's request cannot come before the caller's is answered:
   * `ended()` (the other call ended), or, for two polls in a row, both calls in flight at the
   * daemon and one at the server (the daemon's gate holds the other call back).
   */
  async function otherCannotAsk(daemon: DaemonHandle, ended: () => boolean): Promise<void> {
    let seen = 0;
    await waitFor(
      async () => {
        if (ended()) return true;
        const [health, server] = await Promise.all([getHealth(daemon), serverReport(daemon, 'everything')]);
        seen = server.inflight === 1 && health.inflight === 2 ? seen + 1 : 0;
        return seen >= 2;
      },
      'the other call to wait at the daemon or to have ended',
      30_000,
      50,
    );
  }

  // A shared server's sampling request names no caller. The daemon never guesses: with both
  // sessions' calls in flight it refuses the request (the first round on a fresh home may), learns
  // that the tool asks the client back and from then on runs its calls one session at a time, so
  // the next round answers both. A session-scoped instance has one session: always certain.
  for (const scope of ['shared', 'session'] as const) {
    test(`two sessions sampling at the same time each answer only their own request (scope ${scope})`, () =>
      // Shared scope: a fresh home of its own, where the first round may be refused (see above).
      scope === 'shared' ? everythingDaemon(scope).then(sampleTogether) : onLane(scope, sampleTogether));
    async function sampleTogether(daemon: DaemonHandle): Promise<void> {
      const a = await connectWs(cleanup, daemon, { name: 'session-a', capabilities: { sampling: {} } });
      const c = await connectWs(cleanup, daemon, { name: 'session-c', capabilities: { sampling: {} } });
      // Each handler holds its answer until both requests of the round are out, so both calls are
      // in flight at the server together; or until the other request cannot come before this
      // answer: the other call ended (its request was refused), or the daemon shows it runs the
      // calls one session at a time (the other call waits at the daemon, not at the server).
      const asked: Record<'A' | 'C', string[]> = { A: [], C: [] };
      let release: () => void = () => undefined;
      let both = Promise.resolve();
      let askedThisRound = 0;
      const ended: Record<'A' | 'C', boolean> = { A: false, C: false };
      const handler = (who: 'A' | 'C') => async (request: { params: { messages: { content: unknown }[] } }) => {
        asked[who].push(promptOf(request));
        if (++askedThisRound >= 2) release();
        const other = who === 'A' ? 'C' : 'A';
        const stop = { now: false };
        await Promise.race([both, otherCannotAsk(daemon, () => ended[other] || stop.now)]);
        stop.now = true;
        return sampled(`the answer of session ${who} to [${promptOf(request)}]`);
      };
      a.client.setRequestHandler(CreateMessageRequestSchema, handler('A'));
      c.client.setRequestHandler(CreateMessageRequestSchema, handler('C'));
      assert.ok((await toolNames(a.client)).includes(SAMPLING));

      for (const round of [1, 2]) {
        askedThisRound = 0;
        both = new Promise<void>((resolve) => (release = resolve));
        const prompts = { A: `asked by A in round ${round}`, C: `asked by C in round ${round}` };
        const askedBefore = { A: asked.A.length, C: asked.C.length };
        ended.A = ended.C = false;
        const [aResult, cResult] = await Promise.all([
          outcomeText(a.client, SAMPLING, { prompt: prompts.A, maxTokens: 20 }).finally(() => (ended.A = true)),
          outcomeText(c.client, SAMPLING, { prompt: prompts.C, maxTokens: 20 }).finally(() => (ended.C = true)),
        ]);
        const shown = { A: asked.A.slice(askedBefore.A), C: asked.C.slice(askedBefore.C) };
        for (const [who, other, result] of [
          ['A', 'C', aResult],
          ['C', 'A', cResult],
        ] as const) {
          const prompt = `Resource trigger-sampling-request context: ${prompts[who]}`;
          // Never another session's prompt, whatever the outcome.
          assert.deepEqual(
            shown[who].filter((p) => p !== prompt),
            [],
            `round ${round}: session ${who} was shown another session's prompt`,
          );
          assert.doesNotMatch(result.text, new RegExp(`session ${other}`), `round ${round}: ${who}'s result holds ${other}'s answer`);
          if (result.isError) {
            assert.ok(scope === 'shared' && round === 1, `round ${round}: ${who}'s call failed: ${result.text}`);
            assert.match(result.text, /the requester could not be determined/);
            assert.deepEqual(shown[who], [], `round ${round}: the refused request was shown to session ${who}`);
          } else {
            assert.deepEqual(shown[who], [prompt]);
            assert.ok(result.text.includes(`the answer of session ${who} to [${prompt}]`), `round ${round}: ${result.text}`);
          }
        }
      }
    }
  }

  // A shared server keeps one roots list: before a call from another session the daemon has it fetch the caller's.
  for (const scope of ['shared', 'session'] as const) {
    test(`get-roots-list shows the calling session its own roots, never another session’s (scope ${scope})`, () =>
      onLane(scope, async (daemon) => {
        const a = await connectWs(cleanup, daemon, { name: 'session-a', capabilities: { roots: { listChanged: true } } });
        const c = await connectWs(cleanup, daemon, { name: 'session-c', capabilities: { roots: { listChanged: true } } });
        const rootsOf = (who: string) => ({ roots: [{ uri: `file:///work/project-${who}`, name: `project of session ${who}` }] });
        a.client.setRequestHandler(ListRootsRequestSchema, () => rootsOf('A'));
        c.client.setRequestHandler(ListRootsRequestSchema, () => rootsOf('C'));
        assert.ok((await toolNames(a.client)).includes(ROOTS));

        for (const [client, own, other] of [
          [a.client, 'A', 'C'],
          [c.client, 'C', 'A'],
          [a.client, 'A', 'C'],
        ] as const) {
          const result = await outcomeText(client, ROOTS);
          assert.equal(result.isError, false, result.text);
          assert.doesNotMatch(result.text, new RegExp(`project-${other}`), `session ${own} was shown session ${other}'s roots`);
          assert.match(result.text, new RegExp(`file:///work/project-${own}`), `session ${own}: ${result.text}`);
        }
      }));
  }

  test('resources/updated reaches only subscribed sessions; the server is subscribed once and unsubscribed with the last', async () => {
    const { daemon, received } = await startTeedEverything(cleanup, LIST_WAITS);
    const s1 = await connectWs(cleanup, daemon, { name: 'subscriber-1' });
    const s2 = await connectWs(cleanup, daemon, { name: 'subscriber-2' });
    const none = await connectWs(cleanup, daemon, { name: 'not-subscribed' });
    const updates = new Map<Client, string[]>();
    for (const { client } of [s1, s2, none]) {
      const got: string[] = [];
      updates.set(client, got);
      client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void got.push(n.params.uri));
    }
    const got = (client: Client) => updates.get(client) ?? [];
    assert.equal(s1.client.getServerCapabilities()?.resources?.subscribe, true, 'the daemon declares resource subscriptions');
    const uri = (await s1.client.listResources()).resources.find((r) => r.uri.startsWith('demo://resource/static/'))?.uri;
    assert.ok(uri, 'server-everything lists a static resource');

    /** Starts the server's simulated updates, which sends one update per subscribed URI at once. */
    const pulse = async () => {
      for (let i = 0; i < 2; i++) {
        if (/^Started/.test(textOf(await none.client.callTool({ name: UPDATES, arguments: {} })))) return;
      }
      assert.fail('toggle-subscriber-updates did not start');
    };
    /** Once a session's ping is answered, every update sent to it before has arrived. */
    const settle = (...clients: Client[]) => Promise.all(clients.map((client) => client.ping()));

    // Both at once: the server must still hear a single subscribe.
    await Promise.all([s1.client.subscribeResource({ uri }), s2.client.subscribeResource({ uri })]);
    await pulse();
    await waitFor(() => got(s1.client).length > 0 && got(s2.client).length > 0, 'an update at both subscribers', 5_000);
    await settle(none.client);
    assert.deepEqual(got(none.client), [], 'a session that did not subscribe got resources/updated');
    assert.ok(got(s1.client).every((u) => u === uri));

    // S1 leaves; S2 still holds the server's subscription.
    await s1.client.unsubscribeResource({ uri });
    const s1Before = got(s1.client).length;
    const s2Before = got(s2.client).length;
    await pulse();
    await waitFor(() => got(s2.client).length > s2Before, 'an update at the remaining subscriber', 5_000);
    await settle(s1.client, none.client);
    assert.equal(got(s1.client).length, s1Before, 'an unsubscribed session still got resources/updated');
    assert.deepEqual(got(none.client), []);

    await s2.client.unsubscribeResource({ uri });
    const toServer = (method: string) => received().filter((m) => m.method === method && m.params?.uri === uri);
    await waitFor(() => toServer('resources/unsubscribe').length > 0, 'the unsubscribe at the server', 5_000);
    assert.equal(toServer('resources/subscribe').length, 1, 'the server heard one subscribe for two subscribers');
    assert.equal(toServer('resources/unsubscribe').length, 1, 'the server heard one unsubscribe, with the last subscriber');
  });

  test('log messages reach each session at the level it asked for', () =>
    onLane('shared', async (daemon) => {
      const verbose = await connectWs(cleanup, daemon, { name: 'wants-debug' });
      const quiet = await connectWs(cleanup, daemon, { name: 'wants-error' });
      const levels = new Map<Client, string[]>();
      for (const { client } of [verbose, quiet]) {
        const got: string[] = [];
        levels.set(client, got);
        client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void got.push(n.params.level));
      }
      const seen = (client: Client) => levels.get(client) ?? [];
      const belowError = (level: string) => LEVELS.indexOf(level) < LEVELS.indexOf('error');
      assert.ok((await toolNames(verbose.client)).includes(LOGGING));
      await verbose.client.setLoggingLevel('debug');
      await quiet.client.setLoggingLevel('error');

      // Each start of the simulated logging sends one message of a random level at once: start and
      // stop until the verbose session has seen levels on both sides of 'error'.
      for (let i = 0; i < 80; i++) {
        await verbose.client.callTool({ name: LOGGING, arguments: {} });
        const mine = seen(verbose.client);
        if (i % 2 === 1 && mine.some(belowError) && mine.some((l) => !belowError(l))) break;
      }
      if (/^Started/.test(textOf(await verbose.client.callTool({ name: LOGGING, arguments: {} })))) {
        await verbose.client.callTool({ name: LOGGING, arguments: {} });
      }
      await Promise.all([verbose.client.ping(), quiet.client.ping()]);

      const mine = seen(verbose.client);
      assert.ok(mine.some(belowError), `the debug session got messages below error: ${mine.join(', ')}`);
      assert.deepEqual(
        seen(quiet.client).filter(belowError),
        [],
        `the error session got messages below its level: ${seen(quiet.client).join(', ')}`,
      );
      // Nothing at its level was lost: the quiet session got every message at error or above.
      assert.deepEqual(
        seen(quiet.client),
        mine.filter((l) => !belowError(l)),
      );
      assert.ok(seen(quiet.client).length > 0);
    }));

  test('a client that did not declare sampling is never sent a sampling request; its call fails instead', () =>
    onLane('shared', async (daemon) => {
      const capable = await connectWs(cleanup, daemon, { name: 'capable', capabilities: { sampling: {} } });
      let capableAsked = 0;
      capable.client.setRequestHandler(CreateMessageRequestSchema, () => {
        capableAsked++;
        return sampled('the answer of the capable session');
      });
      assert.ok((await toolNames(capable.client)).includes(SAMPLING));

      const raw = spawnShim(cleanup, daemon.clientEnv);
      await initializeRaw(raw);
      raw.send(
        JSON.stringify({
          jsonrpc: '2.0',
          id: 'call-1',
          method: 'tools/call',
          params: { name: SAMPLING, arguments: { prompt: 'asked by a client without sampling', maxTokens: 20 } },
        }),
      );
      const { response, before } = await readUntilResponse(raw, 'call-1', 15_000);
      assert.deepEqual(
        before.filter((m) => m.id !== undefined && m.method !== undefined),
        [],
        'the client got a server-to-client request',
      );
      const result = response.result as { isError?: boolean; content?: { text?: string }[] } | undefined;
      const shown = result ? (result.content ?? []).map((c) => c.text ?? '').join('\n') : JSON.stringify(response.error);
      assert.ok(result === undefined || result.isError === true, JSON.stringify(response));
      assert.match(shown, /did not declare the sampling capability/);
      assert.equal(capableAsked, 0, 'the capable session was asked on the other client’s behalf');
    }));
});
