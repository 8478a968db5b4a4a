/**
 * The parts of test/long/conformance.test.ts that run and read the official MCP conformance
 * suite: one run of a requirement set against a URL, its per-scenario verdicts and checks, the
 * token proxy in front of the daemon, and the report printed when the daemon falls short.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { ROOT, baseEnv, type Cleanup } from '../helpers.js';

export const PREFIX = join(ROOT, 'test', 'conformance');
export const NODE22 = join(PREFIX, 'node_modules', 'node', 'bin', 'node');
export const SUITE = join(PREFIX, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
/** One run of a whole requirement set; it takes seconds, the bound is for a wedged scenario. */
export const SUITE_TIMEOUT_MS = 300_000;
/** Bound on installing the suite's prefix (a registry that hangs fails the test). */
export const INSTALL_TIMEOUT_MS = 300_000;
/** The suite's own bound on one scenario (its default is 30 s). */
const SCENARIO_TIMEOUT_MS = 20_000;

/** The two revisions whose frozen requirement sets are run. */
export type Requirements = '2025-11-25' | '2026-07-28';

/** One scenario's verdict, and the checks that failed or warned (the suite's own words). */
export interface ScenarioResult {
  passed: boolean;
  /** False for what the suite runs and reports but never scores (extensions, pending, added later). */
  scored: boolean;
  checksPassed: number;
  checksFailed: number;
  failures: string[];
  warnings: string[];
  /** Every check the scenario made, in order, as `id=STATUS`. */
  checks: string[];
}

export interface SuiteRun {
  /** Scenario name -> result, in the order the suite ran them. */
  scenarios: Map<string, ScenarioResult>;
  exitCode: number | null;
  output: string;
  durationMs: number;
}

/**
 * Runs one requirement set's server scenarios against `url` with the prefix's Node 22, results
 * under `outDir`. The verdict per scenario is the suite's own (its summary: a scenario with any
 * FAILURE check fails); the failing checks come from each scenario's checks.json. `onScenario`
 * hears each scenario as it starts. Never throws for what the server did: a run that printed no
 * summary has no scenarios, and the tests say so with its output.
 */
export async function runSuite(
  url: string,
  outDir: string,
  requirements: Requirements,
  onScenario: (name: string) => void = () => {},
): Promise<SuiteRun> {
  mkdirSync(outDir, { recursive: true });
  const started = Date.now();
  const args = [SUITE, 'server', '--url', url, '--requirements', requirements, '--timeout', String(SCENARIO_TIMEOUT_MS), '-o', outDir];
  const proc = spawn(NODE22, args, { cwd: outDir, env: baseEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
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
  return { scenarios: parseSummary(output, checksByScenario(outDir)), exitCode, output, durationMs: Date.now() - started };
}

/** The summary's verdicts, and which scenarios its "Not scored" list names. */
function parseSummary(output: string, checks: Map<string, CheckLines>): Map<string, ScenarioResult> {
  const summary = output.slice(output.lastIndexOf('=== SUMMARY ==='));
  const notScoredAt = summary.indexOf('Not scored for');
  const unscored = new Set(notScoredAt === -1 ? [] : [...summary.slice(notScoredAt).matchAll(/^ {2}[✓✗] (\S+) \(/gmu)].map((m) => m[1]));
  const scenarios = new Map<string, ScenarioResult>();
  for (const match of summary.matchAll(/^([✓✗]) (\S+): (\d+) passed, (\d+) failed/gmu)) {
    const [, mark, name, passed, failed] = match as unknown as [string, string, string, string, string];
    const own = checks.get(name);
    scenarios.set(name, {
      passed: mark === '✓',
      scored: !unscored.has(name),
      checksPassed: Number(passed),
      checksFailed: Number(failed),
      failures: own?.FAILURE ?? [],
      warnings: own?.WARNING ?? [],
      checks: own?.all ?? [],
    });
  }
  return scenarios;
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

/** `scenarios passed/total, checks passed/total` over the scored scenarios of a run. */
export function tally(run: SuiteRun): string {
  const scored = [...run.scenarios.values()].filter((r) => r.scored);
  const passed = scored.filter((r) => r.passed).length;
  const checksPassed = scored.reduce((n, r) => n + r.checksPassed, 0);
  const checks = scored.reduce((n, r) => n + r.checksPassed + r.checksFailed, 0);
  const unscored = run.scenarios.size - scored.length;
  return `scored scenarios ${passed}/${scored.length}, their checks ${checksPassed}/${checks} (and ${unscored} unscored scenarios run), ${run.durationMs} ms`;
}

/** One request through the proxy, for the failure report. */
export interface Exchange {
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

export interface TokenProxy {
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
export async function startTokenProxy(cleanup: Cleanup, daemonPort: number, token: string): Promise<TokenProxy> {
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
    if (exchanges.length < 4000) exchanges.push(exchange);
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
export function table(direct: SuiteRun, daemon: SuiteRun): string {
  const names = [...new Set([...direct.scenarios.keys(), ...daemon.scenarios.keys()])];
  const verdict = (r: ScenarioResult | undefined) => (r === undefined ? 'absent' : r.passed ? 'pass' : 'FAIL');
  const width = Math.max(0, ...names.map((n) => n.length));
  const rows = names.map((name) => {
    const d = daemon.scenarios.get(name);
    const dr = direct.scenarios.get(name);
    const warned = (r: ScenarioResult | undefined) => (r?.warnings.length ? ` (${r.warnings.length} warnings)` : '');
    const unscored = (dr ?? d)?.scored === false ? '  (not scored)' : '';
    const line = `${name.padEnd(width)}  direct ${`${verdict(dr)}${warned(dr)}`.padEnd(20)}  daemon ${verdict(d)}${warned(d)}${unscored}`;
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
export function outcome(r: ScenarioResult | undefined): string[] {
  if (r === undefined) return ['absent'];
  const decisive = r.checks.filter((c) => !c.endsWith('=INFO'));
  const info = [...new Set(r.checks.filter((c) => c.endsWith('=INFO')))].sort();
  return [r.passed ? 'passed' : 'FAILED', ...decisive, ...info];
}

/** Per scenario where the two runs differ: both outcomes, side by side. */
export function differences(direct: SuiteRun, daemon: SuiteRun): string[] {
  const names = [...new Set([...direct.scenarios.keys(), ...daemon.scenarios.keys()])];
  return names.flatMap((name) => {
    const d = outcome(direct.scenarios.get(name));
    const v = outcome(daemon.scenarios.get(name));
    if (JSON.stringify(d) === JSON.stringify(v)) return [];
    return [`${name}\n  direct: ${d.join(' ')}\n  daemon: ${v.join(' ')}`];
  });
}

/** The proxy's record of some scenarios' requests (tagged `SET/SCENARIO`), headers without the token. */
export function exchangesOf(proxy: TokenProxy, scenarios: string[]): string {
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

/**
 * Installs the suite's own prefix when a fresh clone lacks it, exactly as its lock file says,
 * so `npm test` needs no extra step. Bounded: a registry that hangs fails the test.
 */
export function ensureSuiteInstalled(): void {
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
