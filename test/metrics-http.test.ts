/**
 * `GET /metrics` on the real daemon: token-gated like every endpoint (401 with
 * `WWW-Authenticate: Bearer`; the token or the status page's cookie lets a scraper in), the
 * text parses as Prometheus text (the shipped daemon's too: prom-client loads on the first
 * scrape), the open-sessions gauge follows a real shim session (SDK
 * client through the shim), a direct WebSocket session and a Streamable HTTP session as they open and close, and a tool
 * call shows in the requests counter by method, tool and outcome, while a made-up tool name
 * shows only as `other`.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Cleanup, connectShim, startDaemon, textOf, waitFor, type DaemonHandle } from './helpers.js';
import { connectHttp, rawRequest, type RawResponse } from './fixtures/http-client.js';
import { connectWs } from './fixtures/ws-client.js';
import { parseChecked, samplesOf, valueOf, type Family } from './fixtures/exposition.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

function getMetrics(daemon: Pick<DaemonHandle, 'port'>, headers: Record<string, string>): Promise<RawResponse> {
  return rawRequest(daemon.port, { method: 'GET', path: '/metrics', headers });
}

/** One authorised scrape, checked and parsed. */
async function scrape(daemon: Pick<DaemonHandle, 'port' | 'token'>): Promise<{ families: Map<string, Family>; bytes: number }> {
  const res = await getMetrics(daemon, { authorization: `Bearer ${daemon.token}` });
  assert.equal(res.status, 200, res.body.slice(0, 300));
  assert.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  return { families: parseChecked(res.body), bytes: Buffer.byteLength(res.body) };
}

async function openSessions(daemon: DaemonHandle): Promise<Record<string, number | undefined>> {
  const { families } = await scrape(daemon);
  const open = (transport: string) => valueOf(families, 'exai_ws_sessions_open', { transport });
  return { ws: open('ws'), http: open('http'), stdio: open('stdio') };
}

/** Scrapes until the open-sessions gauge reads `expected` (bounded); returns the last reading on failure. */
async function gaugeReaches(daemon: DaemonHandle, expected: { ws: number; http: number }, what: string): Promise<void> {
  let last: Record<string, number | undefined> = {};
  try {
    await waitFor(
      async () => {
        last = await openSessions(daemon);
        return last.ws === expected.ws && last.http === expected.http && last.stdio === 0;
      },
      what,
      15_000,
      100,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; last reading ${JSON.stringify(last)}`);
  }
}
/**
 * One daemon for the tests that read what they caused as a difference (refusals, a call's
 * counters) or not at all (the cookie): none of them refuses a scraper or calls a tool for
 * another. The gauge test counts every session from none, and has its own.
 */
let shared: Promise<DaemonHandle> | undefined;
function sharedDaemon(): Promise<DaemonHandle> {
  shared ??= startDaemon(cleanup);
  return shared;
}

// The tests run side by side.
describe('metrics over HTTP', { concurrency: true }, () => {
  test('/metrics refuses a scraper without the token or with a wrong one: 401, WWW-Authenticate: Bearer, no metrics', async () => {
    const daemon = await sharedDaemon();
    const failuresBefore = valueOf((await scrape(daemon)).families, 'exai_ws_auth_failures_total') ?? 0;
    const refused: Record<string, string>[] = [{}, { authorization: `Bearer ${daemon.token}x` }, { authorization: daemon.token }];
    for (const headers of refused) {
      const res = await getMetrics(daemon, headers);
      assert.equal(res.status, 401, JSON.stringify(headers));
      assert.equal(res.headers['www-authenticate'], 'Bearer');
      assert.doesNotMatch(res.body, /exai_ws_|# TYPE/);
    }
    // The refusals are counted where a scraper with the token can see them.
    const { families } = await scrape(daemon);
    assert.equal((valueOf(families, 'exai_ws_auth_failures_total') ?? 0) - failuresBefore, 3);
  });

  test('the status page cookie lets a browser read /metrics too', async () => {
    const daemon = await sharedDaemon();
    const issued = await rawRequest(daemon.port, {
      method: 'POST',
      path: '/auth/code',
      headers: { authorization: `Bearer ${daemon.token}` },
    });
    assert.equal(issued.status, 200, issued.body);
    const code = String(issued.json?.code);
    const redeemed = await rawRequest(daemon.port, { method: 'GET', path: `/?code=${encodeURIComponent(code)}` });
    assert.equal(redeemed.status, 303);
    const setCookie = redeemed.headers['set-cookie']?.[0] ?? '';
    const cookie = setCookie.split(';')[0] ?? '';
    assert.match(cookie, /^exai_ws_session=./);
    const res = await getMetrics(daemon, { cookie });
    assert.equal(res.status, 200, res.body.slice(0, 200));
    assert.ok(valueOf(parseChecked(res.body), 'exai_ws_sessions_open', { transport: 'ws' }) !== undefined);
  });

  test('the open-sessions gauge goes up as a shim session and an HTTP session open, and back down as they close', async (t) => {
    // The shipped daemon (cli.js in chunks), which loads prom-client from its own chunk on this first scrape.
    const daemon = await startDaemon(cleanup, { plain: true });
    const first = (await scrape(daemon)).families;
    assert.ok((valueOf(first, 'process_cpu_seconds_total') ?? 0) > 0, "prom-client's process series are on the first scrape");
    assert.ok(valueOf(first, 'nodejs_eventloop_lag_p99_seconds') !== undefined);
    await gaugeReaches(daemon, { ws: 0, http: 0 }, 'no session at start');

    const shim = await connectShim(cleanup, daemon, { name: 'metrics-test-shim' });
    await gaugeReaches(daemon, { ws: 1, http: 0 }, 'the shim session counted under ws');
    const http = await connectHttp(cleanup, daemon, { name: 'metrics-test-http' });
    await gaugeReaches(daemon, { ws: 1, http: 1 }, 'the HTTP session counted under http');

    // The figure for the report: a scrape with three sessions open.
    // The second WebSocket session without a shim: the gauge counts sessions, whatever opened them.
    const third = await connectWs(cleanup, daemon, { name: 'metrics-test-ws' });
    await gaugeReaches(daemon, { ws: 2, http: 1 }, 'a second WebSocket session');
    const { bytes, families } = await scrape(daemon);
    t.diagnostic(`scrape with 3 sessions: ${bytes} bytes, ${[...families.values()].reduce((n, f) => n + f.samples.length, 0)} samples`);
    await third.client.close();

    await shim.client.close();
    await gaugeReaches(daemon, { ws: 0, http: 1 }, 'the WebSocket sessions gone once their clients closed');
    await http.transport.terminateSession();
    await http.client.close();
    await gaugeReaches(daemon, { ws: 0, http: 0 }, 'the HTTP session gone once terminated');
    const after = (await scrape(daemon)).families;
    assert.equal(valueOf(after, 'exai_ws_sessions_opened_total'), 3);
    const closed = samplesOf(after, 'exai_ws_sessions_closed_total').reduce((n, s) => n + s.value, 0);
    assert.equal(closed, 3, JSON.stringify(samplesOf(after, 'exai_ws_sessions_closed_total')));
  });

  test('a tools/call of version counts under method tools/call, tool version, outcome ok; a made-up tool only under other', async () => {
    const daemon = await sharedDaemon();
    const { client } = await connectWs(cleanup, daemon);
    const requests = (families: Map<string, Family>, tool: string, outcome: string): number =>
      valueOf(families, 'exai_ws_requests_total', { method: 'tools/call', tool, outcome }) ?? 0;
    const before = (await scrape(daemon)).families;

    assert.match(textOf(await client.callTool({ name: 'version', arguments: {} })), /\d+\.\d+\.\d+/);
    const made = 'made_up_tool_7f3a9c';
    // Refused one way or another (a JSON-RPC error or an error result); either way it is counted.
    await client.callTool({ name: made, arguments: {} }).catch(() => undefined);

    const { families } = await scrape(daemon);
    assert.equal(requests(families, 'version', 'ok') - requests(before, 'version', 'ok'), 1);
    assert.equal(requests(families, 'version', 'error'), 0);
    const other = requests(families, 'other', 'ok') + requests(families, 'other', 'error');
    const otherBefore = requests(before, 'other', 'ok') + requests(before, 'other', 'error');
    assert.equal(other - otherBefore, 1, 'the made-up tool counted once under other');
    const tools = new Set(samplesOf(families, 'exai_ws_requests_total').map((s) => s.labels.tool));
    assert.ok(!tools.has(made), `tool label values: ${[...tools].join(', ')}`);
    const histogramCount = valueOf(families, 'exai_ws_request_duration_seconds_count', { method: 'tools/call' }) ?? 0;
    assert.ok(histogramCount >= 2, `tools/call latency count ${histogramCount}`);
    assert.ok((valueOf(families, 'exai_ws_request_duration_seconds_count', { method: 'initialize' }) ?? 0) >= 1);
  });
});
