/**
 * The official conformance suite's client leg, with exai-ws as the client (issue 24): for each
 * scenario that is not about authorization, the suite starts its scenario server and runs
 * test/fixtures/conformance-client-window.ts with that server's URL; the command starts a real
 * daemon hosting the URL as the `url` server `scenario`, and a window (the v2 SDK client, at
 * the era the suite runs at) does through `/mcp/scenario` what the scenario expects of a
 * client. The scenario's checks are then about what the daemon sent the server: the version
 * header and the per-request `_meta`, Mcp-Method and Mcp-Name, Mcp-Param-* for `x-mcp-header`,
 * the requestState echo, no fetch of a network `$ref`.
 *
 * The `auth/*` scenarios (issue 26) make the daemon log in: the command runs `exai-ws login
 * scenario --print`, follows the URL headlessly to the suite's authorization server (which
 * approves at once and redirects to the daemon's callback), then the window lists and calls the
 * scenario's tool; their checks are about discovery, registration, PKCE, scopes, the resource
 * indicator, the issuer. Where the client is expected to refuse (a mismatched resource or issuer,
 * a scope that will never be granted) the window's part cannot go through, and the checks alone
 * say whether exai-ws refused at the right point. The extension auth scenarios (client
 * credentials, enterprise-managed, DPoP, workload identity) are run and reported, not scored.
 *
 * One scenario at a time (`--scenario`, `--spec-version` of its set; `--requirements` would run
 * every client scenario of the set at once, 25 auth ones included, each with its own daemon
 * for some), and the test also checks the scenario is still required by that set.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ROOT, Cleanup, baseEnv, makeHome } from '../helpers.js';
import { INSTALL_TIMEOUT_MS, NODE22, SUITE, ensureSuiteInstalled, type Requirements } from './conformance-harness.js';

const HARNESS = join(ROOT, 'dist', 'test', 'fixtures', 'conformance-client-window.js');
/** The suite's bound on the command (the command bounds itself at 25 s). */
const CLIENT_TIMEOUT_MS = 40_000;
/** One scenario's whole run: the suite's start, the command, the checks. */
const RUN_TIMEOUT_MS = 90_000;
/** The extension auth scenarios the time budget allows for (the suite lists 6). */
const AUTH_EXTENSIONS_AT_MOST = 10;

interface Case {
  scenario: string;
  set: Requirements;
  /** Why exai-ws does not pass it yet (the scenario's test is todo), if it does not. */
  todo?: string;
  /** The client is expected to refuse (the suite's `allowClientError`): the window's part cannot go through. */
  refuses?: true;
}

/** The auth scenarios both sets score (introduced in 2025-11-25 or before). */
const AUTH_BOTH: readonly Omit<Case, 'set'>[] = [
  { scenario: 'auth/metadata-default' },
  { scenario: 'auth/metadata-var1' },
  { scenario: 'auth/metadata-var2' },
  { scenario: 'auth/metadata-var3' },
  { scenario: 'auth/basic-cimd' },
  { scenario: 'auth/scope-from-www-authenticate' },
  { scenario: 'auth/scope-from-scopes-supported' },
  { scenario: 'auth/scope-omitted-when-undefined' },
  { scenario: 'auth/scope-step-up' },
  { scenario: 'auth/scope-retry-limit', refuses: true },
  { scenario: 'auth/token-endpoint-auth-basic' },
  { scenario: 'auth/token-endpoint-auth-post' },
  { scenario: 'auth/token-endpoint-auth-none' },
  { scenario: 'auth/pre-registration' },
];

/** The auth scenarios 2026-07-28 adds. */
const AUTH_2026: readonly Omit<Case, 'set'>[] = [
  { scenario: 'auth/resource-mismatch', refuses: true },
  { scenario: 'auth/offline-access-scope' },
  { scenario: 'auth/offline-access-not-supported' },
  { scenario: 'auth/authorization-server-migration' },
  { scenario: 'auth/iss-supported' },
  { scenario: 'auth/iss-not-advertised' },
  { scenario: 'auth/iss-supported-missing', refuses: true },
  { scenario: 'auth/iss-wrong-issuer', refuses: true },
  { scenario: 'auth/iss-unexpected', refuses: true },
  { scenario: 'auth/iss-normalized', refuses: true },
  { scenario: 'auth/metadata-issuer-mismatch', refuses: true },
];

const CASES: readonly Case[] = [
  { scenario: 'tools_call', set: '2025-11-25' },
  { scenario: 'tools_call', set: '2026-07-28' },
  {
    scenario: 'request-metadata',
    set: '2026-07-28',
  },
  { scenario: 'sep-2322-client-request-state', set: '2026-07-28' },
  { scenario: 'http-standard-headers', set: '2026-07-28' },
  {
    scenario: 'http-custom-headers',
    set: '2026-07-28',
  },
  {
    scenario: 'http-invalid-tool-headers',
    set: '2026-07-28',
  },
  { scenario: 'json-schema-ref-no-deref', set: '2026-07-28' },
  ...AUTH_BOTH.map((c) => ({ ...c, set: '2025-11-25' as const })),
  ...AUTH_BOTH.map((c) => ({ ...c, set: '2026-07-28' as const })),
  ...AUTH_2026.map((c) => ({ ...c, set: '2026-07-28' as const })),
];

interface Check {
  id: string;
  name?: string;
  status: string;
  description?: string;
  errorMessage?: string;
}

interface ClientRun {
  exitCode: number;
  output: string;
  checks: Check[];
  /** What the command wrote on stderr (its phases, and why it failed). */
  clientStderr: string;
}

const cleanup = new Cleanup();
after(() => cleanup.run());

function suite(args: string[]): Promise<{ exitCode: number; output: string }> {
  return new Promise((resolve) => {
    execFile(NODE22, [SUITE, ...args], { env: baseEnv(), timeout: RUN_TIMEOUT_MS, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      const code = error && typeof error.code === 'number' ? error.code : error ? -1 : 0;
      resolve({ exitCode: code, output: `${stdout}${stderr}` });
    });
  });
}

interface Listed {
  /** The client scenarios the set scores. */
  scored: string[];
  /** Its extension client scenarios about authorization (run and reported, never scored). */
  authExtensions: string[];
}

/** A requirement set's client scenarios, as the suite lists them. */
async function clientScenarios(set: Requirements): Promise<Listed> {
  const { output } = await suite(['list', '--client', '--requirements', set]);
  const section = output.slice(output.indexOf('Client scenarios'), output.indexOf('Run and reported'));
  const reported = output.slice(output.indexOf('Run and reported'));
  const extensions = reported.slice(reported.indexOf('extension'), reported.search(/^\s+added-after-release|^\s+pending/m));
  return {
    scored: [...section.matchAll(/^\s+- (\S+)$/gm)].map((m) => m[1] ?? ''),
    authExtensions: [...extensions.matchAll(/^\s+- (auth\/\S+) \[client\]$/gm)].map((m) => m[1] ?? ''),
  };
}

/**
 * Runs one scenario with the command; `set` undefined runs it outside any requirement set (what
 * an extension scenario needs: a set's `--spec-version` skips it as not on the spec timeline).
 */
async function runScenario(scenario: string, set: Requirements | undefined, out: string): Promise<ClientRun> {
  const dir = join(out, set ?? 'extensions', scenario);
  const command = `${process.execPath} ${HARNESS}`;
  const args = ['client', '--command', command, '--scenario', scenario, ...(set ? ['--spec-version', set] : [])];
  const { exitCode, output } = await suite([...args, '--timeout', String(CLIENT_TIMEOUT_MS), '-o', dir]);
  // The suite names its results `<dir>/<scenario>-<time>`, so `auth/x` lands in `<dir>/auth/x-<time>`.
  const parent = join(dir, dirname(scenario));
  const results = existsSync(parent) ? readdirSync(parent).filter((d) => d.startsWith(`${basename(scenario)}-`)) : [];
  const at = results.length === 1 ? join(parent, results[0] ?? '') : undefined;
  const read = (file: string) => (at && existsSync(join(at, file)) ? readFileSync(join(at, file), 'utf8') : '');
  const checksText = read('checks.json');
  return { exitCode, output, checks: checksText ? (JSON.parse(checksText) as Check[]) : [], clientStderr: read('stderr.txt') };
}

const shortOf = (k: Check) => k.status === 'FAILURE' || k.status === 'WARNING';

/** Every check, with the suite's words for those that fell short (its description where it gave no message). */
const verdicts = (run: ClientRun) =>
  run.checks
    .map((k) => {
      const why = k.errorMessage ?? (shortOf(k) ? k.description : undefined);
      return `${k.id} ${k.name ?? ''}: ${k.status}${why ? ` (${why})` : ''}`;
    })
    .join('\n');

/** The checks that failed or warned, with the suite's words, each once (a check repeats with every login round). */
const shortfalls = (run: ClientRun) => [
  ...new Set(run.checks.filter(shortOf).map((k) => `${k.id}: ${k.status}: ${k.errorMessage ?? k.description ?? ''}`)),
];

describe(
  "the conformance suite's client leg, with exai-ws as the client",
  { timeout: INSTALL_TIMEOUT_MS + (CASES.length + AUTH_EXTENSIONS_AT_MOST) * RUN_TIMEOUT_MS },
  () => {
    let out = '';
    const required = new Map<Requirements, string[]>();
    const authExtensions = new Set<string>();

    before(async () => {
      ensureSuiteInstalled();
      out = makeHome(cleanup);
      for (const set of ['2025-11-25', '2026-07-28'] as const) {
        const listed = await clientScenarios(set);
        required.set(set, listed.scored);
        for (const name of listed.authExtensions) authExtensions.add(name);
      }
    });

    test('every scored auth scenario of each set has a case', () => {
      for (const set of ['2025-11-25', '2026-07-28'] as const) {
        const cased = CASES.filter((c) => c.set === set).map((c) => c.scenario);
        const missing = (required.get(set) ?? []).filter((name) => name.startsWith('auth/') && !cased.includes(name));
        assert.deepEqual(missing, [], `${set} scores auth scenarios with no case here`);
      }
    });

    for (const c of CASES) {
      test(
        `${c.set} ${c.scenario}: through the daemon, the scenario passes`,
        { todo: c.todo, timeout: RUN_TIMEOUT_MS + 10_000 },
        async (t) => {
          assert.ok(
            required.get(c.set)?.includes(c.scenario),
            `${c.scenario} is not a scored client scenario of ${c.set}: ${required.get(c.set)?.join(', ')}`,
          );
          const started = Date.now();
          const run = await runScenario(c.scenario, c.set, out);
          t.diagnostic(`${c.set} ${c.scenario}: suite exit ${run.exitCode} in ${Date.now() - started} ms`);
          for (const line of verdicts(run).split('\n')) t.diagnostic(line);
          const report = `checks:\n${verdicts(run)}\n\nthe command's stderr:\n${run.clientStderr.slice(-4000)}\n\nsuite output (tail):\n${run.output.slice(-2000)}`;
          assert.ok(run.checks.length > 0, `the suite recorded no checks:\n${report}`);
          if (c.refuses) {
            // Refusing is the point, so the window's part cannot be asked for; the scenario's own
            // checks (each made at the step where the client had to stop) must all have passed.
            assert.ok(
              run.checks.some((k) => k.status === 'SUCCESS'),
              `no check passed:\n${report}`,
            );
          } else {
            // The window did its whole part (so no check passed because nothing was asked).
            assert.match(run.clientStderr, new RegExp(`${c.scenario}: the window's part done`), report);
          }
          assert.deepEqual(
            run.checks.filter(shortOf).map((k) => `${k.id} ${k.name ?? ''}`),
            [],
            report,
          );
          assert.match(run.output, /OVERALL: PASSED/, report);
          assert.equal(run.exitCode, 0, report);
        },
      );
    }

    test(
      'the extension auth scenarios are run and reported (never scored)',
      { timeout: AUTH_EXTENSIONS_AT_MOST * RUN_TIMEOUT_MS },
      async (t) => {
        assert.ok(authExtensions.size > 0, 'the suite listed no extension auth scenarios');
        assert.ok(
          authExtensions.size <= AUTH_EXTENSIONS_AT_MOST,
          `more extension auth scenarios than budgeted: ${[...authExtensions].join(', ')}`,
        );
        for (const scenario of authExtensions) {
          const run = await runScenario(scenario, undefined, out);
          const passed = /OVERALL: PASSED/.test(run.output);
          t.diagnostic(`extension ${scenario}: ${passed ? 'passed' : 'FAILED'} (suite exit ${run.exitCode}, ${run.checks.length} checks)`);
          for (const line of shortfalls(run)) t.diagnostic(`  ${line}`);
          // Reported, not scored; but a run that recorded nothing is the harness failing, not exai-ws.
          assert.ok(run.checks.length > 0, `${scenario}: the suite recorded no checks:\n${run.output.slice(-2000)}`);
        }
      },
    );
  },
);
