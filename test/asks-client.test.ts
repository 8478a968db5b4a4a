/**
 * Issue 11: a server-to-client request (sampling, elicitation) from a hosted server reaches only
 * the window that caused it, and the daemon never guesses. Two windows, each with five calls in
 * flight at once to ONE shared server-everything, every prompt unique per window and call: no
 * window is ever shown the other window's prompt; a call either gets its own window's answer or
 * fails saying the requester could not be determined (nobody asked). What the daemon learns
 * (tools that ask the client back, then run one window at a time) makes every later round
 * answer all ten, survives a restart, and can be declared in the config; a Streamable HTTP
 * upstream needs no learning, since a request arrives on the stream of the call that caused it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test, type TestContext } from 'node:test';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  type CallToolResult,
  type JSONRPCRequest,
} from '@modelcontextprotocol/sdk/types.js';
import { Cleanup, getHealth, logPath, metricsPath, readJsonLines, startDaemon, waitFor, within, type DaemonHandle } from './helpers.js';
import { everythingEntry, startHostingDaemon, type ServerEntry } from './fixtures/hosted-servers.js';
import { startEverythingHttp } from './fixtures/everything-http.js';
import { connectWs, type WsWindow } from './fixtures/ws-client.js';

const SAMPLING_TOOL = 'trigger-sampling-request';
const ELICITATION_TOOL = 'trigger-elicitation-request';
const SAMPLING = `everything__${SAMPLING_TOOL}`;
const ELICITATION = `everything__${ELICITATION_TOOL}`;
const LONG_RUNNING = 'everything__trigger-long-running-operation';
/** What server-everything puts before the tool's prompt in the sampling request it sends. */
const CONTEXT = `Resource ${SAMPLING_TOOL} context: `;
const CAPABLE = { sampling: {}, elicitation: {} };
/** Calls each window has in flight at once, per round. */
const CALLS = 5;
/** The longest a window holds its answers waiting for the rest of its round's requests. */
const HOLD_MS = 1_500;
/** No call may take longer: a bounded wait, far above what a round needs. */
const CALL_TIMEOUT_MS = 60_000;
const UNDETERMINED = /the requester could not be determined/;
const REFUSED_LOG = 'server request refused: requester unknown';
/**
 * Metrics lines every 200 ms, so a test waits for the counters a fraction of a second; a list
 * waits for the server however long its start takes on a loaded machine (the tests need its
 * tools listed; the list wait itself is test/silent-server.test.ts's).
 */
const FAST_METRICS = { EXAI_WS_METRICS_INTERVAL_MS: '200', EXAI_WS_LIST_WAIT_MS: '0' };

type Who = 'A' | 'B';
const OTHER: Record<Who, Who> = { A: 'B', B: 'A' };

/** A cleanup of the test's own, run when it ends: each test stops its own daemon and servers. */
function cleanupFor(t: TestContext): Cleanup {
  const cleanup = new Cleanup();
  t.after(() => cleanup.run());
  return cleanup;
}

/**
 * Holds a window's answers until `expected` requests reached it in this round, or at most
 * {@link HOLD_MS}: so the calls of a round are truly in flight together, and a round whose
 * requests never all come (they went elsewhere, or wait behind the other window) still ends.
 */
class Arrivals {
  private count = 0;
  private expected = Infinity;
  private release: () => void = () => undefined;
  private all: Promise<void> = Promise.resolve();

  reset(expected: number): void {
    this.count = 0;
    this.expected = expected;
    this.all = new Promise<void>((resolve) => (this.release = resolve));
  }

  async arrive(): Promise<void> {
    this.count++;
    if (this.count >= this.expected) this.release();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.all, new Promise<void>((resolve) => (timer = setTimeout(resolve, HOLD_MS)))]);
    clearTimeout(timer);
  }
}

/**
 * A window: an SDK client over its own WebSocket to the daemon (no shim process: what is tested
 * is the daemon's routing) that records every request the daemon sent it.
 */
interface AskedWindow {
  who: Who;
  conn: WsWindow;
  /** Every sampling prompt this window was shown, in order. */
  prompts: string[];
  /** The name this window answered each elicitation with, in order (each one unique). */
  elicited: string[];
  /** Requests it has no handler for (sent to a client that did not declare the capability). */
  stray: JSONRPCRequest[];
  arrivals: Arrivals;
}

/** The answer window `who` gives to a prompt: it names both, so a result shows who answered what. */
function answerOf(who: Who, prompt: string): string {
  return `window ${who} answers [${prompt}]`;
}

async function openWindow(
  cleanup: Cleanup,
  daemon: Pick<DaemonHandle, 'url' | 'token'>,
  who: Who,
  capabilities: Record<string, unknown> = CAPABLE,
): Promise<AskedWindow> {
  const conn = await connectWs(cleanup, daemon, { name: `window-${who}`, capabilities });
  const window: AskedWindow = { who, conn, prompts: [], elicited: [], stray: [], arrivals: new Arrivals() };
  if (capabilities.sampling !== undefined) {
    conn.client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
      const content = request.params.messages[0]?.content as { text?: string } | undefined;
      const prompt = content?.text ?? '';
      window.prompts.push(prompt);
      await window.arrivals.arrive();
      return { model: 'exai-ws-test-model', role: 'assistant', content: { type: 'text', text: answerOf(who, prompt) } };
    });
  }
  if (capabilities.elicitation !== undefined) {
    conn.client.setRequestHandler(ElicitRequestSchema, async () => {
      const name = `window ${who} answer ${window.elicited.length + 1}`;
      window.elicited.push(name);
      await window.arrivals.arrive();
      return { action: 'accept', content: { name, check: true } };
    });
  }
  conn.client.fallbackRequestHandler = (request) => {
    window.stray.push(request);
    return Promise.reject(new Error(`unexpected ${request.method}`));
  };
  return window;
}

/** Two capable windows, both connected before the first list starts the server (it offers the tools then). */
async function openPair(cleanup: Cleanup, daemon: Pick<DaemonHandle, 'url' | 'token'>): Promise<AskedWindow[]> {
  const windows = [await openWindow(cleanup, daemon, 'A'), await openWindow(cleanup, daemon, 'B')];
  for (const { who, conn } of windows) {
    const tools = (await conn.client.listTools()).tools.map((t) => t.name);
    for (const tool of [SAMPLING, ELICITATION]) assert.ok(tools.includes(tool), `window ${who} lists ${tool}: ${tools.join(', ')}`);
  }
  return windows;
}

interface Outcome {
  who: Who;
  /** The prompt as the server shows it (sampling only). */
  prompt: string;
  isError: boolean;
  text: string;
}

/** A tool call's result text, or the protocol error's message: what the user is shown either way. */
async function call(window: AskedWindow, name: string, args: Record<string, unknown> = {}): Promise<{ isError: boolean; text: string }> {
  try {
    const result = (await window.conn.client.callTool({ name, arguments: args }, undefined, {
      timeout: CALL_TIMEOUT_MS,
    })) as CallToolResult;
    return { isError: result.isError === true, text: result.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n') };
  } catch (error) {
    return { isError: true, text: (error as Error).message };
  }
}

/** Every window makes {@link CALLS} calls at once, all windows together; prompts `A-<label>-c3`. */
function round(windows: AskedWindow[], tool: string, label: string): Promise<Outcome[]> {
  for (const window of windows) window.arrivals.reset(CALLS);
  return Promise.all(
    windows.flatMap((window) =>
      Array.from({ length: CALLS }, async (_, i) => {
        const prompt = `${window.who}-${label}-c${i + 1}`;
        const args = tool === SAMPLING ? { prompt, maxTokens: 20 } : {};
        return { who: window.who, prompt: `${CONTEXT}${prompt}`, ...(await call(window, tool, args)) };
      }),
    ),
  );
}

/** One line per call: who asked what, and the answer (or error) it got. */
function outcomeLines(outcomes: Outcome[]): string {
  return outcomes
    .map((o) => {
      const got = o.isError ? `ERROR ${o.text}` : (/window [AB] answers \[[^\]]*\]/.exec(o.text)?.[0] ?? o.text);
      return `  ${o.who} asked ${o.prompt.slice(CONTEXT.length)}, got: ${got.replace(/\s+/g, ' ').slice(0, 200)}`;
    })
    .join('\n');
}

/**
 * One round of sampling calls: no window was shown the other's prompt, each prompt was shown
 * once at most, each answered call carries its own window's answer to its own prompt, each
 * failed call says the requester could not be determined and its prompt was shown to nobody.
 * With `all`, every call must have been answered. Returns the number of refused calls.
 */
async function samplingRound(windows: AskedWindow[], label: string, all: boolean): Promise<number> {
  const shownBefore = new Map(windows.map((w) => [w.who, w.prompts.length]));
  const outcomes = await round(windows, SAMPLING, label);
  const detail = outcomeLines(outcomes);
  for (const window of windows) {
    const shown = window.prompts.slice(shownBefore.get(window.who));
    const foreign = shown.filter((p) => !p.startsWith(`${CONTEXT}${window.who}-`));
    assert.deepEqual(foreign, [], `round ${label}: window ${window.who} was shown another window's prompt\n${detail}`);
    assert.deepEqual(window.stray, [], `round ${label}: window ${window.who} got a request it has no handler for`);
  }
  const everShown = windows.flatMap((w) => w.prompts);
  assert.equal(new Set(everShown).size, everShown.length, `a prompt was shown twice: ${everShown.join(', ')}`);
  const shownTo = (prompt: string) => windows.filter((w) => w.prompts.includes(prompt)).map((w) => w.who);
  for (const o of outcomes) {
    if (o.isError) {
      assert.match(o.text, UNDETERMINED, `round ${label}: ${o.who}'s call failed otherwise\n${detail}`);
      assert.deepEqual(shownTo(o.prompt), [], `round ${label}: the refused request ${o.prompt} was shown to a window`);
    } else {
      assert.ok(o.text.includes(answerOf(o.who, o.prompt)), `round ${label}: ${o.who}'s result lacks its own answer\n${detail}`);
      assert.doesNotMatch(
        o.text,
        new RegExp(`window ${OTHER[o.who]}`),
        `round ${label}: ${o.who}'s result holds the other window's answer`,
      );
      assert.deepEqual(shownTo(o.prompt), [o.who]);
    }
  }
  const refused = outcomes.filter((o) => o.isError).length;
  if (all) assert.equal(refused, 0, `round ${label}: every call must be answered\n${detail}`);
  return refused;
}

/**
 * One round of elicitation calls (the server's message is fixed: the answers tell them apart):
 * each answered call shows exactly one answer, given by its own window, and each window's
 * answers of the round went to its own calls, one each; failed calls say the requester could
 * not be determined. Returns the number of refused calls.
 */
async function elicitationRound(windows: AskedWindow[], label: string, all: boolean): Promise<number> {
  const answeredBefore = new Map(windows.map((w) => [w.who, w.elicited.length]));
  const outcomes = await round(windows, ELICITATION, label);
  const detail = outcomes.map((o) => `${o.who}: ${o.isError ? 'ERROR ' : ''}${o.text.replace(/\s+/g, ' ').slice(0, 200)}`).join('\n');
  for (const window of windows) {
    assert.deepEqual(window.stray, [], `round ${label}: window ${window.who} got a request it has no handler for`);
    const given = window.elicited.slice(answeredBefore.get(window.who)).sort();
    const received: string[] = [];
    for (const o of outcomes.filter((x) => x.who === window.who)) {
      if (o.isError) {
        assert.match(o.text, UNDETERMINED, `round ${label}: ${o.who}'s call failed otherwise\n${detail}`);
        continue;
      }
      const names = [...new Set([...o.text.matchAll(/window [AB] answer \d+/g)].map((m) => m[0]))];
      assert.equal(names.length, 1, `round ${label}: one answer per result, got ${names.join(', ')}\n${detail}`);
      assert.ok(names[0]?.startsWith(`window ${window.who} `), `round ${label}: ${window.who}'s call got ${names[0]}\n${detail}`);
      received.push(names[0] ?? '');
    }
    assert.deepEqual(received.sort(), given, `round ${label}: window ${window.who}'s answers went to its own calls, one each`);
  }
  const refused = outcomes.filter((o) => o.isError).length;
  if (all) assert.equal(refused, 0, `round ${label}: every call must be answered\n${detail}`);
  return refused;
}

/** `$EXAI_WS_HOME/asks-client.json`: the tools learned per server entry ({} when there is none yet). */
function learned(home: string): Record<string, string[]> {
  try {
    const json = JSON.parse(readFileSync(join(home, 'asks-client.json'), 'utf8')) as { servers?: Record<string, string[]> };
    return json.servers ?? {};
  } catch {
    return {};
  }
}

async function waitLearned(home: string, server: string, tool: string): Promise<void> {
  await waitFor(
    () => learned(home)[server]?.includes(tool),
    `${tool} listed under ${server} in asks-client.json (it holds ${JSON.stringify(learned(home))})`,
  );
}

/** `asks_client` of a hosted server's `/health` report (declared + learned, sorted). */
async function asksClientInHealth(daemon: Pick<DaemonHandle, 'port' | 'token'>, server: string): Promise<unknown> {
  const health = await getHealth(daemon);
  const report = (health.servers as { name: string; asks_client?: unknown }[]).find((s) => s.name === server);
  assert.ok(report, `/health lists ${server}`);
  return report.asks_client;
}

/** The refusal log lines; the log is written in batches, so the caller waits for the count. */
function refusalLines(home: string): Record<string, unknown>[] {
  return readJsonLines(logPath(home)).filter((l) => l.msg === REFUSED_LOG);
}

/** `rejections.origin_unknown` of the last metrics line (0 before any). */
function originUnknown(home: string): number {
  const last = readJsonLines(metricsPath(home)).at(-1);
  return (last?.rejections as Record<string, number> | undefined)?.origin_unknown ?? 0;
}

/**
 * Refusals are logged as warnings (server, method, sessions) and each one is counted in the
 * metrics. A burst of refusals may share a log line (a later line says how many went unlogged
 * since the one before), so the log holds at least one line and never more lines, or more
 * refusals accounted for, than there were.
 */
async function assertRefusalsRecorded(home: string, refused: number, methods: string[]): Promise<void> {
  await waitFor(() => refusalLines(home).length >= 1, `a '${REFUSED_LOG}' line in the log`, 10_000);
  await waitFor(() => originUnknown(home) >= refused, `metrics rejections.origin_unknown to reach ${refused}`, 10_000);
  assert.equal(originUnknown(home), refused, 'metrics count each refusal once');
  const lines = refusalLines(home);
  for (const line of lines) {
    assert.equal(line.level, 40, `logged as a warning: ${JSON.stringify(line)}`);
    assert.equal(line.server, 'everything', JSON.stringify(line));
    assert.ok(methods.includes(line.method as string), JSON.stringify(line));
    assert.ok(line.sessions !== undefined, `the line says how many sessions had calls in flight: ${JSON.stringify(line)}`);
  }
  const accounted = lines.reduce((sum, line) => sum + 1 + ((line.refused_since_last_line as number | undefined) ?? 0), 0);
  assert.ok(accounted <= refused, `the log accounts for ${accounted} refusals, there were ${refused}: ${JSON.stringify(lines)}`);
}

function sharedEverything(cleanup: Cleanup, extra: ServerEntry = {}): Promise<DaemonHandle> {
  return startHostingDaemon(cleanup, () => ({ everything: everythingEntry(extra) }), FAST_METRICS);
}

/** Stops what outlives one test: the daemon the first test hands on. */
const fileCleanup = new Cleanup();
after(() => fileCleanup.run());

/**
 * The first test's daemon, handed on when that test ends (passed or not) to the test of a window
 * without the sampling capability. That test needs no fresh daemon: its windows are its own and
 * the first test's are idle by then, and the refusal it asserts comes from the capability, which
 * no learning changes (its calls are the only ones in flight, as on a fresh daemon). The first
 * test needs the fresh home: it is about what the daemon learns there.
 */
let handOn: (daemon: Promise<DaemonHandle>) => void = () => undefined;
const firstTestsDaemon = new Promise<DaemonHandle>((resolve) => (handOn = resolve));
// Each test has its own daemon, home and processes: they run side by side.
describe('asks the client', { concurrency: 3 }, () => {
  test('two windows, five concurrent sampling then elicitation calls each, one shared server: never the other window’s request; learned after the first round', async (t) => {
    const cleanup = cleanupFor(t);
    const started = sharedEverything(fileCleanup);
    t.after(() => handOn(started));
    const daemon = await started;
    const windows = await openPair(cleanup, daemon);

    let refused = 0;
    for (let r = 1; r <= 3; r++) refused += await samplingRound(windows, `s${r}`, r > 1);
    t.diagnostic(`sampling: ${refused} of ${2 * CALLS} calls refused in the first round`);
    await waitLearned(daemon.home, 'everything', SAMPLING_TOOL);

    let elicitationRefused = 0;
    for (let r = 1; r <= 3; r++) elicitationRefused += await elicitationRound(windows, `e${r}`, r > 1);
    t.diagnostic(`elicitation: ${elicitationRefused} of ${2 * CALLS} calls refused in the first round`);
    await waitLearned(daemon.home, 'everything', ELICITATION_TOOL);
    assert.deepEqual(await asksClientInHealth(daemon, 'everything'), [ELICITATION_TOOL, SAMPLING_TOOL]);

    if (refused + elicitationRefused > 0) {
      await assertRefusalsRecorded(daemon.home, refused + elicitationRefused, ['sampling/createMessage', 'elicitation/create']);
    }
  });

  test('an uncertain origin is refused, logged and counted, and nobody is asked; the tool is not marked from it', async (t) => {
    const cleanup = cleanupFor(t);
    const daemon = await sharedEverything(cleanup);
    const [a, b] = (await openPair(cleanup, daemon)) as [AskedWindow, AskedWindow];

    // B has a call to another tool in flight: A's sampling request could come from either window.
    const long = call(b, LONG_RUNNING, { duration: 4, steps: 4 });
    await waitFor(async () => (await getHealth(daemon)).inflight >= 1, 'B’s long-running call in flight at the daemon');
    a.arrivals.reset(1);
    const refused = await call(a, SAMPLING, { prompt: 'A-uncertain', maxTokens: 20 });
    assert.equal(refused.isError, true, refused.text);
    assert.match(refused.text, UNDETERMINED);
    const longResult = await long;
    assert.equal(longResult.isError, false, longResult.text);
    assert.match(longResult.text, /Long running operation completed/);
    for (const window of [a, b]) {
      assert.deepEqual(window.prompts, [], `window ${window.who} was asked`);
      assert.deepEqual(window.stray, []);
    }
    await assertRefusalsRecorded(daemon.home, 1, ['sampling/createMessage']);
    // Calls of two tools were in flight: nothing says which one asks.
    assert.deepEqual(learned(daemon.home).everything ?? [], []);
    assert.deepEqual(await asksClientInHealth(daemon, 'everything'), []);

    // Alone, A's call is certainly A's.
    const alone = await call(a, SAMPLING, { prompt: 'A-alone', maxTokens: 20 });
    assert.equal(alone.isError, false, alone.text);
    assert.ok(alone.text.includes(answerOf('A', `${CONTEXT}A-alone`)), alone.text);
    assert.deepEqual(a.prompts, [`${CONTEXT}A-alone`]);
    assert.deepEqual(b.prompts, []);
  });

  test('what was learned survives a daemon restart: the first round after it answers all ten', async (t) => {
    const cleanup = cleanupFor(t);
    const first = await sharedEverything(cleanup);
    const before = await openPair(cleanup, first);
    const refused = await samplingRound(before, 'r1', false);
    t.diagnostic(`${refused} of ${2 * CALLS} calls refused in the first round on a fresh home`);
    await waitLearned(first.home, 'everything', SAMPLING_TOOL);

    for (const window of before) await window.conn.client.close();
    first.proc.kill('SIGTERM');
    assert.equal(await within(first.exited, 20_000, 'the daemon to stop on SIGTERM'), 0);

    const second = await startDaemon(cleanup, { home: first.home, env: FAST_METRICS });
    assert.notEqual(second.pid, first.pid);
    const after = await openPair(cleanup, second);
    await samplingRound(after, 'after-restart-r1', true);
    assert.deepEqual(await asksClientInHealth(second, 'everything'), [SAMPLING_TOOL]);
  });

  test('a Streamable HTTP upstream: two windows, five concurrent calls each, all answered from the first round, nothing to learn', async (t) => {
    const cleanup = cleanupFor(t);
    const http = await startEverythingHttp(cleanup);
    const daemon = await startHostingDaemon(cleanup, () => ({ everything: { url: http.url } }), FAST_METRICS);
    const windows = await openPair(cleanup, daemon);

    for (let r = 1; r <= 3; r++) await samplingRound(windows, `http-s${r}`, true);
    await elicitationRound(windows, 'http-e1', true);
    // Every request came on the stream of the call that caused it: certain, so nothing is marked.
    assert.deepEqual(learned(daemon.home).everything ?? [], []);
    assert.deepEqual(await asksClientInHealth(daemon, 'everything'), []);
  });

  test('a window without the sampling capability is never asked and gets a clear error at once; the capable window is not asked for it', async (t) => {
    const cleanup = cleanupFor(t);
    // The first test's daemon, once that test ended: its server already offers sampling (it was
    // started by capable windows), and lists the tool to both windows here.
    const daemon = await firstTestsDaemon;
    const capable = await openWindow(cleanup, daemon, 'A');
    const without = await openWindow(cleanup, daemon, 'B', {});
    const tools = (await without.conn.client.listTools()).tools.map((t) => t.name);
    assert.ok(tools.includes(SAMPLING) && tools.includes(ELICITATION), tools.join(', '));

    const outcomes = await Promise.all([
      ...Array.from({ length: 3 }, (_, i) => call(without, SAMPLING, { prompt: `B-without-c${i + 1}`, maxTokens: 20 })),
      call(without, ELICITATION),
    ]);
    t.diagnostic(`what the window without sampling is shown: ${outcomes[0]?.text.replace(/\s+/g, ' ')}`);
    // The error names the client as it introduced itself, so a user with several windows knows which.
    outcomes.forEach((o, i) => {
      const capability = i < 3 ? 'sampling' : 'elicitation';
      assert.equal(o.isError, true, o.text);
      assert.match(o.text, new RegExp(`the client \\(window-B\\) did not declare the ${capability} capability`), o.text);
      assert.doesNotMatch(o.text, /timed out|timeout/i, o.text);
    });
    assert.deepEqual(without.stray, [], 'the window without the capability was sent a request');
    assert.deepEqual(capable.prompts, [], 'the capable window was asked on the other window’s behalf');
    assert.deepEqual(capable.elicited, []);
    assert.deepEqual(capable.stray, []);
  });

  for (const declared of [[SAMPLING_TOOL], ['*']]) {
    test(`a declared tool (asks_client ${JSON.stringify(declared)}) runs one window at a time from the first call: the first round on a fresh home answers all ten`, async (t) => {
      const cleanup = cleanupFor(t);
      const daemon = await sharedEverything(cleanup, { asks_client: declared });
      const windows = await openPair(cleanup, daemon);
      if (declared[0] !== '*') assert.deepEqual(await asksClientInHealth(daemon, 'everything'), [SAMPLING_TOOL]);
      await samplingRound(windows, 'declared-r1', true);
      await samplingRound(windows, 'declared-r2', true);
      if (declared[0] === '*') await elicitationRound(windows, 'declared-e1', true);
    });
  }
});
