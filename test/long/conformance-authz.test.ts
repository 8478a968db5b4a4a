/**
 * The official MCP conformance suite's `authorization` command against the daemon's own
 * authorization server: its metadata (`authorization-server-metadata`, and the CIMD check, a
 * warning at worst) and a whole authorization-code grant with PKCE (`authorization-code-grant`).
 * The suite opens no browser and registers no client: the test registers one through
 * `POST /oauth/register` for the suite's callback `http://127.0.0.1:<CB>/callback`, and a headless
 * Chromium, logged in through `exai-ws open --print` as a user is, opens the URL the suite
 * prints and clicks Allow; the suite's callback server gets the code and the suite redeems it.
 * `npm run test:conformance`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Cleanup, baseEnv, closedPort, startDaemon, within } from '../helpers.js';
import { launchChromium } from '../fixtures/chromium.js';
import { consentQuestion, logInBrowser } from '../fixtures/consent-flow.js';
import { NODE22, SUITE, ensureSuiteInstalled } from './conformance-harness.js';

/** The whole run (metadata, consent, token): seconds; the bound is for a wedged one. */
const RUN_TIMEOUT_MS = 120_000;
const URL_INTRO = 'Access the following URL in your browser';
const CALLBACK_STARTED = 'Callback server started:';

interface Check {
  id: string;
  status: string;
  errorMessage?: string;
}

/** Every check of the run, from each scenario's `checks.json` under `outDir`. */
function checksOf(outDir: string): Check[] {
  const checks: Check[] = [];
  for (const dir of readdirSync(outDir)) {
    const file = join(outDir, dir, 'checks.json');
    if (existsSync(file)) checks.push(...(JSON.parse(readFileSync(file, 'utf8')) as Check[]));
  }
  return checks;
}

/** The suite's process, its output so far, and a promise per line it waits for. */
function runAuthorization(args: string[], cwd: string) {
  const proc = spawn(NODE22, [SUITE, 'authorization', ...args], { cwd, env: baseEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let authorizeUrl: (url: string) => void = () => {};
  let callbackUp: () => void = () => {};
  const urlShown = new Promise<string>((r) => (authorizeUrl = r));
  const callbackListening = new Promise<void>((r) => (callbackUp = r));
  proc.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    const lines = output.split('\n');
    const intro = lines.findIndex((l) => l.startsWith(URL_INTRO));
    const next = intro === -1 ? undefined : lines[intro + 1];
    // The URL is whole once the line after it has begun.
    if (next !== undefined && intro + 2 < lines.length) authorizeUrl(next.trim());
    if (output.includes(CALLBACK_STARTED)) callbackUp();
  });
  proc.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const killer = setTimeout(() => proc.kill('SIGKILL'), RUN_TIMEOUT_MS);
  const exited = new Promise<number | string>((resolve) =>
    proc.once('exit', (code, signal) => {
      clearTimeout(killer);
      resolve(code ?? signal ?? -1);
    }),
  );
  return { proc, output: () => output, urlShown, callbackListening, exited };
}

test(
  'the conformance suite `authorization`: metadata and a code grant approved in Chromium',
  { timeout: RUN_TIMEOUT_MS + 60_000 },
  async (t) => {
    ensureSuiteInstalled();
    const cleanup = new Cleanup();
    try {
      const daemon = await startDaemon(cleanup);
      const issuer = `http://127.0.0.1:${daemon.port}`;
      const callbackPort = await closedPort();
      const redirectUri = `http://127.0.0.1:${callbackPort}/callback`;
      const registered = await fetch(`${issuer}/oauth/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ client_name: 'Conformance Suite', redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' }),
      });
      assert.equal(registered.status, 201, await registered.clone().text());
      const { client_id: clientId } = (await registered.json()) as { client_id: string };

      const outDir = mkdtempSync(join(tmpdir(), 'exai-ws-conformance-authz-'));
      cleanup.add(() => rmSync(outDir, { recursive: true, force: true }));
      const args = ['--url', issuer, '--client-id', clientId, '--port', String(callbackPort), '--resource', `${issuer}/mcp`, '-o', outDir];
      const run = runAuthorization(args, outDir);
      cleanup.add(() => run.proc.kill('SIGKILL'));
      const context = await launchChromium(cleanup);
      await logInBrowser(context, daemon);

      const shown = await within(Promise.race([run.urlShown, run.exited.then(() => '')]), RUN_TIMEOUT_MS, 'the authorization URL');
      assert.ok(shown.startsWith(`${issuer}/oauth/authorize?response_type=code&`), `no authorization URL from the suite:\n${run.output()}`);
      const page = await context.newPage();
      await page.goto(shown, { waitUntil: 'domcontentloaded', timeout: 10_000 });
      assert.match(await consentQuestion(page), /^Allow Conformance Suite to use exai-ws \(\d+ tools?\)\?$/);
      // The suite starts its callback server after printing the URL: it must listen before the answer goes there.
      await within(run.callbackListening, 30_000, "the suite's callback server");
      await page.getByRole('button', { name: 'Allow' }).click();
      await page.waitForURL(`${redirectUri}?**`, { timeout: 10_000 });

      const code = await within(run.exited, RUN_TIMEOUT_MS, 'the suite to end');
      const checks = checksOf(outDir);
      const summary = checks.map((c) => `${c.id}=${c.status}${c.errorMessage ? ` (${c.errorMessage})` : ''}`).join(', ');
      const total = /^Total: .*$/m.exec(run.output())?.[0] ?? 'no total';
      t.diagnostic(`conformance authorization: exit ${code}, ${total}; ${summary}`);
      assert.equal(code, 0, `the suite failed:\n${run.output()}`);
      const status = (id: string) => checks.find((c) => c.id === id)?.status;
      assert.equal(status('authorization-server-metadata'), 'SUCCESS', summary);
      assert.equal(status('authorization-code-grant'), 'SUCCESS', summary);
      assert.notEqual(status('authorization-server-metadata-cimd'), 'FAILURE', summary);
    } finally {
      await cleanup.run();
    }
  },
);
