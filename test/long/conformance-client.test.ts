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
 * One scenario at a time (`--scenario`, `--spec-version` of its set; `--requirements` would run
 * every client scenario of the set at once, 25 auth ones included, each with its own daemon
 * for some), and the test also checks the scenario is still required by that set.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ROOT, Cleanup, baseEnv, makeHome } from '../helpers.js';
import { INSTALL_TIMEOUT_MS, NODE22, SUITE, ensureSuiteInstalled, type Requirements } from './conformance-harness.js';

const HARNESS = join(ROOT, 'dist', 'test', 'fixtures', 'conformance-client-window.js');
/** The suite's bound on the command (the command bounds itself at 25 s). */
const CLIENT_TIMEOUT_MS = 40_000;
/** One scenario's whole run: the suite's start, the command, the checks. */
const RUN_TIMEOUT_MS = 90_000;

interface Case {
  scenario: string;
  set: Requirements;
  /** Why exai-ws does not pass it yet (the scenario's test is todo), if it does not. */
  todo?: string;
}

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
];

interface Check {
  id: string;
  name?: string;
  status: string;
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

/** The client scenarios a requirement set scores, as the suite lists them. */
async function requiredClientScenarios(set: Requirements): Promise<string[]> {
  const { output } = await suite(['list', '--client', '--requirements', set]);
  const section = output.slice(output.indexOf('Client scenarios'), output.indexOf('Run and reported'));
  return [...section.matchAll(/^\s+- (\S+)$/gm)].map((m) => m[1] ?? '');
}

async function runScenario(c: Case, out: string): Promise<ClientRun> {
  const dir = join(out, c.set, c.scenario);
  const command = `${process.execPath} ${HARNESS}`;
  const args = ['client', '--command', command, '--scenario', c.scenario, '--spec-version', c.set];
  const { exitCode, output } = await suite([...args, '--timeout', String(CLIENT_TIMEOUT_MS), '-o', dir]);
  const results = existsSync(dir) ? readdirSync(dir).filter((d) => d.startsWith(c.scenario.replace(/\//g, '-'))) : [];
  const at = results.length === 1 ? join(dir, results[0] ?? '') : undefined;
  const read = (file: string) => (at && existsSync(join(at, file)) ? readFileSync(join(at, file), 'utf8') : '');
  const checksText = read('checks.json');
  return { exitCode, output, checks: checksText ? (JSON.parse(checksText) as Check[]) : [], clientStderr: read('stderr.txt') };
}

const verdicts = (run: ClientRun) =>
  run.checks.map((k) => `${k.id} ${k.name ?? ''}: ${k.status}${k.errorMessage ? ` (${k.errorMessage})` : ''}`).join('\n');

describe(
  "the conformance suite's client leg, with exai-ws as the client",
  { timeout: INSTALL_TIMEOUT_MS + CASES.length * RUN_TIMEOUT_MS },
  () => {
    let out = '';
    const required = new Map<Requirements, string[]>();

    before(async () => {
      ensureSuiteInstalled();
      out = makeHome(cleanup);
      for (const set of ['2025-11-25', '2026-07-28'] as const) required.set(set, await requiredClientScenarios(set));
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
          const run = await runScenario(c, out);
          t.diagnostic(`${c.set} ${c.scenario}: suite exit ${run.exitCode} in ${Date.now() - started} ms`);
          for (const line of verdicts(run).split('\n')) t.diagnostic(line);
          const report = `checks:\n${verdicts(run)}\n\nthe command's stderr:\n${run.clientStderr.slice(-3000)}\n\nsuite output (tail):\n${run.output.slice(-2000)}`;
          assert.ok(run.checks.length > 0, `the suite recorded no checks:\n${report}`);
          // The window did its whole part (so no check passed because nothing was asked).
          assert.match(run.clientStderr, new RegExp(`${c.scenario}: the window's part done`), report);
          assert.deepEqual(
            run.checks.filter((k) => k.status === 'FAILURE' || k.status === 'WARNING').map((k) => `${k.id} ${k.name ?? ''}`),
            [],
            report,
          );
          assert.match(run.output, /OVERALL: PASSED/, report);
          assert.equal(run.exitCode, 0, report);
        },
      );
    }
  },
);
