/**
 * The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
 * test/conformance/package.json with the Node 22 it needs) run against the daemon's `/mcp`.
 *
 * The daemon hosts the conformance fixture (test/fixtures/conformance-server.ts) as the upstream
 * `conformance`, reached unprefixed at `/mcp/conformance`. The same fixture served directly by
 * the official SDK's Streamable HTTP server is the baseline: every active server scenario must
 * pass both ways, and none may pass direct and fail through the daemon. The suite cannot send a
 * token, so a small proxy in front of the daemon adds `Authorization` and forwards everything
 * else as it came (the DNS-rebinding scenario's foreign Host and Origin included).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ROOT, Cleanup, baseEnv, makeHome, spawnChild, startDaemon, waitFor } from '../helpers.js';
import { waitReady } from '../fixtures/hosted-servers.js';
import { CONFORMANCE_LISTENING } from '../fixtures/conformance-server.js';

const PREFIX = join(ROOT, 'test', 'conformance');
const NODE22 = join(PREFIX, 'node_modules', 'node', 'bin', 'node');
const SUITE = join(PREFIX, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
const FIXTURE = join(ROOT, 'dist', 'test', 'fixtures', 'conformance-server.js');
/** The hosted server's name in the daemon's config, and so its path under `/mcp/`. */
const UPSTREAM = 'conformance';
/** One run of the whole active suite; it takes seconds, the bound is for a wedged scenario. */
const SUITE_TIMEOUT_MS = 180_000;
const INSTALL_TIMEOUT_MS = 300_000;

const cleanup = new Cleanup();
after(() => cleanup.run());

/**
 * Installs the suite's own prefix when a fresh clone lacks it, exactly as its lock file says,
 * so `npm test` needs no extra step. Bounded: a registry that hangs fails the test.
 */
function ensureSuiteInstalled(): void {
  if (existsSync(SUITE) && existsSync(NODE22)) return;
  // Under `npm test` npm names itself; run that one rather than whichever npm PATH finds first.
  const npmCli = process.env.npm_execpath;
  const [command, prefixArgs] = npmCli?.endsWith('.js') ? [process.execPath, [npmCli]] : ['npm', []];
  execFileSync(command, [...prefixArgs, 'ci', '--prefix', PREFIX, '--no-audit', '--no-fund'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: INSTALL_TIMEOUT_MS,
    env: baseEnv(),
  });
  if (!existsSync(SUITE) || !existsSync(NODE22)) throw new Error(`npm ci --prefix ${PREFIX} left no suite or no Node 22`);
}

/** One scenario's verdict, and the checks that failed or warned (the suite's own words). */
interface ScenarioResult {
  passed: boolean;
  failures: string[];
  warnings: string[];
  /** Every check the scenario made, in order, as `id=STATUS`. */
  checks: string[];
}

interface SuiteRun {
  /** Scenario name -> result, in the order the suite ran them. */
  scenarios: Map<string, ScenarioResult>;
  exitCode: number | null;
  output: string;
  durationMs: number;
}

/**
 * Runs the active server suite against `url` with the prefix's Node 22, results under `outDir`.
 * The verdict per scenario is the suite's own (its summary: a scenario with any FAILURE check
 * fails); the failing checks come from each scenario's checks.json. `onScenario` hears each
 * scenario as it starts.
 */
async function runSuite(url: string, outDir: string, onScenario: (name: string) => void = () => {}): Promise<SuiteRun> {
  mkdirSync(outDir, { recursive: true });
  const started = Date.now();
  // Every scenario, the pending ones too (server-sse-polling among them): what is compared is
  // the daemon against the server itself, not a list of what the suite already requires.
  const proc = spawn(NODE22, [SUITE, 'server', '--url', url, '--suite', 'all', '-o', outDir], {
    cwd: outDir,
    env: baseEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let pending = '';
  proc.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const scenario = /^=== Running scenario: (\S+) ===$/.exec(line);
      if (scenario?.[1] !== undefined) onScenario(scenario[1]);
    }
  });
  proc.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const killer = setTimeout(() => proc.kill('SIGKILL'), SUITE_TIMEOUT_MS);
  const exitCode = await new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  clearTimeout(killer);
  const durationMs = Date.now() - started;

  const checks = checksByScenario(outDir);
  const scenarios = new Map<string, ScenarioResult>();
  const summary = output.slice(output.lastIndexOf('=== SUMMARY ==='));
  for (const match of summary.matchAll(/^([✓✗]) (\S+): \d+ passed, \d+ failed/gmu)) {
    const [, mark, name] = match as unknown as [string, string, string];
    const own = checks.get(name);
    scenarios.set(name, { passed: mark === '✓', failures: own?.FAILURE ?? [], warnings: own?.WARNING ?? [], checks: own?.all ?? [] });
  }
  if (scenarios.size === 0) throw new Error(`the suite printed no summary (exit ${exitCode}):\n${output.slice(-4000)}`);
  return { scenarios, exitCode, output, durationMs };
}

type CheckLines = Partial<Record<'FAILURE' | 'WARNING', string[]>> & { all: string[] };

/**
 * Scenario -> its FAILURE and WARNING checks as `id: message details`, and every check as
 * `id=STATUS`, from `server-<scenario>-<time>/checks.json`.
 */
function checksByScenario(outDir: string): Map<string, CheckLines> {
  const byScenario = new Map<string, CheckLines>();
  for (const dir of readdirSync(outDir)) {
    const name = /^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(dir)?.[1];
    const file = join(outDir, dir, 'checks.json');
    if (name === undefined || !existsSync(file)) continue;
    const checks = JSON.parse(readFileSync(file, 'utf8')) as { id: string; status: string; errorMessage?: string; details?: unknown }[];
    const lines: CheckLines = { all: checks.map((c) => `${c.id}=${c.status}`) };
    for (const c of checks) {
      if (c.status !== 'FAILURE' && c.status !== 'WARNING') continue;
      const details = c.details === undefined ? '' : ` ${JSON.stringify(c.details).slice(0, 600)}`;
      (lines[c.status] ??= []).push(`${c.id}: ${c.errorMessage ?? ''}${details}`);
    }
    byScenario.set(name, lines);
  }
  return byScenario;
}

/** Serves the fixture directly (the SDK's Streamable HTTP server) and returns its `/mcp` URL. */
async function startDirectFixture(): Promise<string> {
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

/** One request through the proxy, for the failure report. */
interface Exchange {
  scenario: string;
  method: string;
  path: string;
  requestHeaders: IncomingHttpHeaders;
  requestBody: string;
  status?: number;
  responseHeaders?: IncomingHttpHeaders;
  responseBody: string;
}

const EXCHANGE_BODY_BYTES = 1500;

interface TokenProxy {
  url: (path: string) => string;
  exchanges: Exchange[];
  setScenario: (name: string) => void;
}

/**
 * A reverse proxy on 127.0.0.1 port 0 in front of the daemon that adds the bearer token and
 * forwards everything else unchanged, streaming both ways (SSE included), and closes the
 * daemon side when the client goes. `Host` naming the proxy becomes the daemon's own (what any
 * reverse proxy does); any other `Host`, and every `Origin`, reach the daemon as sent, so the
 * daemon alone decides what a foreign one gets. The proxy answers nothing itself except 502
 * when the daemon cannot be reached.
 */
async function startTokenProxy(daemonPort: number, token: string): Promise<TokenProxy> {
  const exchanges: Exchange[] = [];
  let scenario = '';
  let proxyPort = 0;
  const proxyHosts = () => [`127.0.0.1:${proxyPort}`, `localhost:${proxyPort}`];
  const server: Server = createServer((req, res) => {
    const headers: IncomingHttpHeaders = { ...req.headers, authorization: `Bearer ${token}` };
    if (req.headers.host !== undefined && proxyHosts().includes(req.headers.host)) headers.host = `127.0.0.1:${daemonPort}`;
    const exchange: Exchange = {
      scenario,
      method: req.method ?? '',
      path: req.url ?? '',
      requestHeaders: { ...req.headers },
      requestBody: '',
      responseBody: '',
    };
    if (exchanges.length < 2000) exchanges.push(exchange);
    const upstream = request({ host: '127.0.0.1', port: daemonPort, method: req.method, path: req.url, headers }, (up) => {
      exchange.status = up.statusCode;
      exchange.responseHeaders = up.headers;
      res.writeHead(up.statusCode ?? 502, up.headers);
      res.flushHeaders();
      up.on('data', (chunk: Buffer) => {
        if (exchange.responseBody.length < EXCHANGE_BODY_BYTES) exchange.responseBody += chunk.toString().slice(0, EXCHANGE_BODY_BYTES);
      });
      up.pipe(res);
    });
    upstream.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/plain' });
      res.end(`proxy: ${err.message}`);
    });
    req.on('data', (chunk: Buffer) => {
      if (exchange.requestBody.length < EXCHANGE_BODY_BYTES) exchange.requestBody += chunk.toString().slice(0, EXCHANGE_BODY_BYTES);
    });
    req.pipe(upstream);
    // A client that hangs up (an SSE stream it is done with) must close the daemon's side too.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxyPort = (server.address() as AddressInfo).port;
  cleanup.add(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return {
    url: (path) => `http://127.0.0.1:${proxyPort}${path}`,
    exchanges,
    setScenario: (name) => (scenario = name),
  };
}

/** The per-scenario table printed when the daemon falls short of the direct baseline. */
function table(direct: SuiteRun, daemon: SuiteRun): string {
  const names = [...new Set([...direct.scenarios.keys(), ...daemon.scenarios.keys()])];
  const verdict = (r: ScenarioResult | undefined) => (r === undefined ? 'absent' : r.passed ? 'pass' : 'FAIL');
  const width = Math.max(...names.map((n) => n.length));
  const rows = names.map((name) => {
    const d = daemon.scenarios.get(name);
    const warned = (r: ScenarioResult | undefined) => (r?.warnings.length ? ` (${r.warnings.length} warnings)` : '');
    const dr = direct.scenarios.get(name);
    const line = `${name.padEnd(width)}  direct ${`${verdict(dr)}${warned(dr)}`.padEnd(20)}  daemon ${verdict(d)}${warned(d)}`;
    return d && !d.passed ? `${line}\n${d.failures.map((f) => `${' '.repeat(width + 4)}${f}`).join('\n')}` : line;
  });
  return rows.join('\n');
}

/**
 * What must be the same both ways for one scenario: its verdict, every check that decides
 * (SUCCESS, FAILURE, WARNING) with its status in the order the suite made them, then the INFO
 * checks it made, by id only. INFO checks are not counted: the suite logs one per HTTP request
 * (`outgoing-request`), response (`incoming-response`) and SSE event (`incoming-sse-event`),
 * and how many of those there are depends on the transport (a client that polls makes a
 * request more when the daemon closes a stream the server would have kept open); a check whose
 * status is INFO one way and something else the other still differs.
 */
function outcome(r: ScenarioResult | undefined): string[] {
  if (r === undefined) return ['absent'];
  const decisive = r.checks.filter((c) => !c.endsWith('=INFO'));
  const info = [...new Set(r.checks.filter((c) => c.endsWith('=INFO')))].sort();
  return [r.passed ? 'passed' : 'FAILED', ...decisive, ...info];
}

/** Per scenario where the two runs differ: both outcomes, side by side. */
function differences(direct: SuiteRun, daemon: SuiteRun): string[] {
  const names = [...new Set([...direct.scenarios.keys(), ...daemon.scenarios.keys()])];
  return names.flatMap((name) => {
    const d = outcome(direct.scenarios.get(name));
    const v = outcome(daemon.scenarios.get(name));
    if (JSON.stringify(d) === JSON.stringify(v)) return [];
    return [`${name}\n  direct: ${d.join(' ')}\n  daemon: ${v.join(' ')}`];
  });
}

/** The proxy's record of the failing scenarios' requests, headers without the token. */
function exchangesOf(proxy: TokenProxy, scenarios: string[]): string {
  return proxy.exchanges
    .filter((e) => scenarios.includes(e.scenario))
    .map((e) => {
      const { authorization: _a, ...requestHeaders } = e.requestHeaders;
      return [
        `[${e.scenario}] ${e.method} ${e.path} -> ${e.status ?? 'no response'}`,
        `  request headers: ${JSON.stringify(requestHeaders)}`,
        `  request body: ${e.requestBody}`,
        `  response headers: ${JSON.stringify(e.responseHeaders ?? {})}`,
        `  response body: ${e.responseBody}`,
      ].join('\n');
    })
    .join('\n');
}

describe('the official MCP conformance suite', { timeout: INSTALL_TIMEOUT_MS + 3 * SUITE_TIMEOUT_MS }, () => {
  let direct: SuiteRun;
  let viaDaemon: SuiteRun;
  let proxy: TokenProxy;
  let daemonStderr: () => string = () => '';

  before(async () => {
    ensureSuiteInstalled();
    const out = makeHome(cleanup);

    direct = await runSuite(await startDirectFixture(), join(out, 'direct'));

    // The shipped daemon (no fixture tools), hosting the fixture from its config file.
    const home = makeHome(cleanup);
    const config = { mcpServers: { [UPSTREAM]: { command: process.execPath, args: [FIXTURE], start: 'eager' } } };
    writeFileSync(join(home, 'config.json'), JSON.stringify(config));
    // A POST stream still running after 50 ms is closed after its priming event (the client
    // polls it back with Last-Event-ID, 100 ms later): the daemon cannot know when the stdio
    // fixture would close its stream, and every longer call of the suite (progress, logging,
    // sampling, elicitation, test_reconnection) then goes through a poll.
    const daemon = await startDaemon(cleanup, {
      home,
      plain: true,
      env: { EXAI_WS_HTTP_POLL_MS: '50', EXAI_WS_HTTP_RETRY_MS: '100' },
    });
    daemonStderr = () => daemon.stderr();
    await waitReady(daemon, UPSTREAM, 15_000);
    proxy = await startTokenProxy(daemon.port, daemon.token);
    viaDaemon = await runSuite(proxy.url(`/mcp/${UPSTREAM}`), join(out, 'daemon'), (name) => proxy.setScenario(name));
  });

  test('the suite runs its active server scenarios, DNS-rebinding protection among them', () => {
    for (const name of [
      'server-initialize',
      'tools-call-with-progress',
      'tools-call-sampling',
      'resources-subscribe',
      'dns-rebinding-protection',
    ]) {
      assert.ok(direct.scenarios.has(name), `the suite did not run ${name}:\n${direct.output.slice(-3000)}`);
    }
    assert.deepEqual([...viaDaemon.scenarios.keys()], [...direct.scenarios.keys()], 'both runs cover the same scenarios');
  });

  test('the fixture served directly by the SDK passes every active server scenario', () => {
    const failed = [...direct.scenarios].filter(([, r]) => !r.passed).map(([name]) => name);
    assert.deepEqual(failed, [], `the fixture itself fails scenarios (fix the fixture):\n${table(direct, direct)}`);
    assert.equal(direct.exitCode, 0);
  });

  test('through the daemon at /mcp/conformance (behind the token proxy) every active server scenario passes', () => {
    const failed = [...viaDaemon.scenarios].filter(([, r]) => !r.passed).map(([name]) => name);
    assert.deepEqual(
      failed,
      [],
      `scenarios failing through the daemon:\n${table(direct, viaDaemon)}\n\nHTTP exchanges:\n${exchangesOf(proxy, failed)}\n\ndaemon stderr (tail):\n${daemonStderr().slice(-3000)}`,
    );
    assert.equal(viaDaemon.exitCode, 0);
  });

  test('the DNS-rebinding probe reached the daemon with its foreign Host and Origin, and the daemon refused it (403)', () => {
    // The scenario counts any 4xx as a refusal; this pins it on the daemon's Host/Origin rule,
    // not on the proxy or on a missing token.
    const probes = proxy.exchanges.filter((e) => e.scenario === 'dns-rebinding-protection');
    const foreign = probes.filter((e) => e.requestHeaders.host === 'evil.example.com');
    assert.equal(foreign.length, 1, `the suite's probes: ${exchangesOf(proxy, ['dns-rebinding-protection'])}`);
    assert.equal(foreign[0]?.requestHeaders.origin, 'http://evil.example.com');
    assert.equal(foreign[0]?.status, 403, exchangesOf(proxy, ['dns-rebinding-protection']));
    const loopback = probes.filter((e) => e.requestHeaders.host !== 'evil.example.com');
    assert.ok(loopback.length >= 1 && loopback.every((e) => e.status === 200), exchangesOf(proxy, ['dns-rebinding-protection']));
  });

  test('every scenario gives the same result through the daemon as against the server itself', (t) => {
    for (const line of table(direct, viaDaemon).split('\n')) t.diagnostic(line);
    t.diagnostic(`suite run: direct ${direct.durationMs} ms, through the daemon ${viaDaemon.durationMs} ms`);
    const differ = differences(direct, viaDaemon);
    const names = differ.map((d) => d.slice(0, d.indexOf('\n')));
    assert.deepEqual(
      differ,
      [],
      `through the daemon, not as direct:\n${differ.join('\n')}\n\nHTTP exchanges:\n${exchangesOf(proxy, names)}\n\ndaemon stderr (tail):\n${daemonStderr().slice(-3000)}`,
    );
  });

  test('SSE polling (SEP-1699) passes both ways: a priming event first, retry, the stream closed and resumed with Last-Event-ID', (t) => {
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
