/**
 * The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
 * test/conformance/package.json with the Node 22 it needs) run against the daemon's `/mcp`, for
 * both frozen requirement sets: 2025-11-25 (initialize, sessions) and 2026-07-28 (stateless,
 * `server/discover`, the per-request `_meta` envelope, multi-round-trip results).
 *
 * The conformance fixture (test/fixtures/conformance-server.ts, on the SDK v2, serving both
 * eras) is served over HTTP twice: once as the baseline, reached directly, and once as the
 * daemon's `url` upstream `conformance`, reached unprefixed at `/mcp/conformance`. Every scored
 * scenario must pass directly, and the daemon must give every scenario the same verdict and
 * deciding checks as the fixture itself. The suite cannot send a token, so a small proxy in
 * front of the daemon adds `Authorization` and forwards everything else as it came (the
 * DNS-rebinding scenario's foreign Host and Origin included).
 *
 * Through the daemon, every scenario of both sets gives the same result as directly.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ROOT, Cleanup, baseEnv, makeHome, spawnChild, startDaemon, waitFor } from '../helpers.js';
import { serverReport } from '../fixtures/hosted-servers.js';
import { CONFORMANCE_LISTENING } from '../fixtures/conformance-server.js';
import {
  INSTALL_TIMEOUT_MS,
  SUITE_TIMEOUT_MS,
  ensureSuiteInstalled,
  differences,
  exchangesOf,
  outcome,
  runSuite,
  startTokenProxy,
  table,
  tally,
  type Requirements,
  type SuiteRun,
  type TokenProxy,
} from './conformance-harness.js';

const FIXTURE = join(ROOT, 'dist', 'test', 'fixtures', 'conformance-server.js');
/** The hosted server's name in the daemon's config, and so its path under `/mcp/`. */
const UPSTREAM = 'conformance';

const SETS: readonly Requirements[] = ['2025-11-25', '2026-07-28'];
/** Why a set's same-result test is todo, if it is. */
const SAME_RESULT_TODO: Record<Requirements, string | undefined> = {
  '2025-11-25': undefined,
  '2026-07-28': undefined,
};
/** Scenarios each set must run (a suite that silently ran fewer would pass vacuously). */
const MUST_RUN: Record<Requirements, string[]> = {
  '2025-11-25': ['server-initialize', 'tools-call-with-progress', 'tools-call-sampling', 'resources-subscribe', 'dns-rebinding-protection'],
  '2026-07-28': [
    'server-stateless',
    'caching',
    'sep-2164-resource-not-found',
    'input-required-result-basic-elicitation',
    'input-required-result-tampered-state',
    'dns-rebinding-protection',
  ],
};

const cleanup = new Cleanup();
after(() => cleanup.run());

/** Serves the fixture over HTTP (both eras) and returns its `/mcp` URL. */
async function startHttpFixture(): Promise<string> {
  const { proc, stderr } = spawnChild(cleanup, process.execPath, [FIXTURE, '--http', '0'], {
    env: baseEnv(),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const port = await waitFor(
    () => {
      if (proc.exitCode !== null) throw new Error(`the fixture exited during start: ${stderr()}`);
      return new RegExp(`${CONFORMANCE_LISTENING} 127\\.0\\.0\\.1:(\\d+)`).exec(stderr())?.[1];
    },
    'the conformance fixture to listen',
    15_000,
  );
  return `http://127.0.0.1:${port}/mcp`;
}

interface SetRuns {
  direct: SuiteRun;
  viaDaemon: SuiteRun;
}

describe('the official MCP conformance suite, both requirement sets', { timeout: INSTALL_TIMEOUT_MS + 4 * SUITE_TIMEOUT_MS }, () => {
  const runs = new Map<Requirements, SetRuns>();
  let proxy: TokenProxy;
  let daemonStderr: () => string = () => '';
  const runsOf = (set: Requirements): SetRuns => {
    const both = runs.get(set);
    assert.ok(both, `the ${set} set did not run`);
    return both;
  };
  /** The proxy's record of some scenarios of one set. */
  const exchanges = (set: Requirements, names: string[]) =>
    exchangesOf(
      proxy,
      names.map((n) => `${set}/${n}`),
    );

  before(async () => {
    ensureSuiteInstalled();
    const out = makeHome(cleanup);
    const directUrl = await startHttpFixture();

    // The shipped daemon (no fixture tools), hosting a second fixture as a remote (url) server.
    const home = makeHome(cleanup);
    const config = { mcpServers: { [UPSTREAM]: { url: await startHttpFixture(), start: 'eager' } } };
    writeFileSync(join(home, 'config.json'), JSON.stringify(config));
    // A POST stream still running after 50 ms is closed after its priming event (the client
    // polls it back with Last-Event-ID, 100 ms later), so every longer call of the suite
    // (progress, logging, sampling, elicitation, test_reconnection) also goes through a poll.
    const daemon = await startDaemon(cleanup, {
      home,
      plain: true,
      env: { EXAI_WS_HTTP_POLL_MS: '50', EXAI_WS_HTTP_RETRY_MS: '100' },
    });
    daemonStderr = () => daemon.stderr();
    await waitFor(async () => (await serverReport(daemon, UPSTREAM)).state === 'ready', `${UPSTREAM} ready in /health`, 15_000);
    proxy = await startTokenProxy(cleanup, daemon.port, daemon.token);

    for (const set of SETS) {
      const direct = await runSuite(directUrl, join(out, set, 'direct'), set);
      const viaDaemon = await runSuite(proxy.url(`/mcp/${UPSTREAM}`), join(out, set, 'daemon'), set, (name) =>
        proxy.setScenario(`${set}/${name}`),
      );
      runs.set(set, { direct, viaDaemon });
    }
  });

  for (const set of SETS) {
    const todo = SAME_RESULT_TODO[set];

    test(`${set}: the suite runs the set's server scenarios, ${MUST_RUN[set].join(', ')} among them`, (t) => {
      const { direct, viaDaemon } = runsOf(set);
      t.diagnostic(`${set} direct: ${tally(direct)}`);
      t.diagnostic(`${set} through the daemon: ${tally(viaDaemon)}`);
      for (const name of MUST_RUN[set]) {
        assert.ok(direct.scenarios.get(name)?.scored, `the suite did not run ${name} as a scored scenario:\n${direct.output.slice(-3000)}`);
      }
    });

    test(`${set}: the fixture served directly passes every scored scenario`, () => {
      const { direct } = runsOf(set);
      const failed = [...direct.scenarios].filter(([, r]) => r.scored && !r.passed).map(([name]) => name);
      assert.deepEqual(failed, [], `the fixture itself fails scenarios (fix the fixture):\n${table(direct, direct)}`);
      assert.equal(direct.exitCode, 0, direct.output.slice(-3000));
    });

    test(`${set}: through the daemon at /mcp/conformance (behind the token proxy) every scored scenario passes`, () => {
      const { direct, viaDaemon } = runsOf(set);
      assert.ok(
        viaDaemon.scenarios.size > 0,
        `the suite printed no summary (exit ${viaDaemon.exitCode}):\n${viaDaemon.output.slice(-4000)}`,
      );
      const failed = [...viaDaemon.scenarios].filter(([, r]) => r.scored && !r.passed).map(([name]) => name);
      assert.deepEqual(
        failed,
        [],
        `scenarios failing through the daemon:\n${table(direct, viaDaemon)}\n\nHTTP exchanges:\n${exchanges(set, failed)}\n\ndaemon stderr (tail):\n${daemonStderr().slice(-3000)}`,
      );
      assert.equal(viaDaemon.exitCode, 0);
    });

    test(`${set}: every scenario gives the same result through the daemon as against the fixture itself`, { todo }, (t) => {
      const { direct, viaDaemon } = runsOf(set);
      for (const line of table(direct, viaDaemon).split('\n')) t.diagnostic(line);
      t.diagnostic(`${set} suite run: direct ${direct.durationMs} ms, through the daemon ${viaDaemon.durationMs} ms`);
      assert.deepEqual([...viaDaemon.scenarios.keys()], [...direct.scenarios.keys()], 'both runs cover the same scenarios');
      const differ = differences(direct, viaDaemon);
      const names = differ.map((d) => d.slice(0, d.indexOf('\n')));
      assert.deepEqual(
        differ,
        [],
        `through the daemon, not as direct:\n${differ.join('\n')}\n\nHTTP exchanges:\n${exchanges(set, names)}\n\ndaemon stderr (tail):\n${daemonStderr().slice(-3000)}`,
      );
    });
  }

  test('2025-11-25: the DNS-rebinding probe reached the daemon with its foreign Host and Origin, and the daemon refused it (403)', () => {
    // The scenario counts any 4xx as a refusal; this pins it on the daemon's Host/Origin rule,
    // not on the proxy or on a missing token.
    const tag = '2025-11-25/dns-rebinding-protection';
    const probes = proxy.exchanges.filter((e) => e.scenario === tag);
    const report = exchangesOf(proxy, [tag]);
    const foreign = probes.filter((e) => e.requestHeaders.host === 'evil.example.com');
    assert.equal(foreign.length, 1, `the suite's probes: ${report}`);
    assert.equal(foreign[0]?.requestHeaders.origin, 'http://evil.example.com');
    assert.equal(foreign[0]?.status, 403, report);
    // The loopback probe: its initialize (200) and the initialized notification (202).
    const loopback = probes.filter((e) => e.requestHeaders.host !== 'evil.example.com');
    assert.ok(loopback.length >= 1 && loopback.every((e) => e.status === 200 || e.status === 202), report);
  });

  test('2025-11-25: SSE polling (SEP-1699) passes both ways: a priming event first, retry, the stream closed and resumed with Last-Event-ID', (t) => {
    const { direct, viaDaemon } = runsOf('2025-11-25');
    for (const name of ['server-sse-polling', 'server-sse-multiple-streams']) {
      t.diagnostic(`${name} direct: ${outcome(direct.scenarios.get(name)).join(' ')}`);
      t.diagnostic(`${name} daemon: ${outcome(viaDaemon.scenarios.get(name)).join(' ')}`);
    }
    for (const [way, run] of [
      ['direct', direct],
      ['through the daemon', viaDaemon],
    ] as const) {
      const polling = run.scenarios.get('server-sse-polling');
      assert.ok(polling?.passed, `server-sse-polling ${way}: ${JSON.stringify(polling)}`);
      for (const check of ['server-sse-priming-event=SUCCESS', 'server-sse-retry-field=SUCCESS', 'server-sse-disconnect-resume=SUCCESS']) {
        assert.ok(polling.checks.includes(check), `server-sse-polling ${way} lacks ${check}: ${polling.checks.join(' ')}`);
      }
      const streams = run.scenarios.get('server-sse-multiple-streams');
      assert.ok(
        streams?.checks.includes('server-sse-streams-functional=SUCCESS'),
        `server-sse-multiple-streams ${way}: ${JSON.stringify(streams)}`,
      );
    }
  });
});
