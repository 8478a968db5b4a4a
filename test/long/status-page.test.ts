/**
 * The status page in a real headless Chromium (Debian's `chromium`, driven by playwright-core,
 * which downloads no browser): against the real daemon (login through `exai-ws open`, the
 * cookie, a session appearing and going, the daemon going away) and over a fake report (what a
 * user reads). `npm run test:browser`; `.ci/run` installs Chromium when missing. The page
 * without a browser is test/status-page.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { Cleanup, connectShim, startDaemon, waitFor, within } from '../helpers.js';
import { ARTIFACTS, launchChromium } from '../fixtures/chromium.js';
import { fakeReport, loginUrl, pageServer } from '../fixtures/status-page.js';
import type { SessionEntry } from '../../src/local/health.js';

/** A real browser on the status page of the server at `port`, once its live feed is connected; page errors are collected. */
async function livePage(cleanup: Cleanup, port: number): Promise<{ page: Page; problems: string[] }> {
  const context = await launchChromium(cleanup);
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  await page.goto(`http://127.0.0.1:${port}/`, { waitUntil: 'domcontentloaded', timeout: 10_000 });
  await page.locator('body[data-connection="live"]').waitFor({ timeout: 10_000 });
  return { page, problems };
}

describe('the status page in a real headless Chromium, against the real daemon', () => {
  test('login through `exai-ws open`, HttpOnly cookie, a session appears and goes, no console errors', async () => {
    const cleanup = new Cleanup();
    try {
      const daemon = await startDaemon(cleanup);
      const [url, context] = await Promise.all([loginUrl(daemon), launchChromium(cleanup)]);
      const page = await context.newPage();
      const problems: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') problems.push(`console: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));

      const response = await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 10_000 });
      assert.equal(response?.status(), 200);
      // The redirect took the code out of the address bar (and the history).
      assert.equal(page.url(), `http://127.0.0.1:${daemon.port}/`);
      const cookies = await context.cookies();
      const session = cookies.find((c) => c.name === 'exai_ws_session');
      assert.ok(session, `no session cookie in ${JSON.stringify(cookies.map((c) => c.name))}`);
      assert.equal(session.httpOnly, true);
      assert.equal(session.sameSite, 'Strict');
      assert.equal(session.path, '/');
      assert.equal(await page.evaluate(() => (globalThis as unknown as { document: { cookie: string } }).document.cookie), '');

      await page.locator('body[data-connection="live"]').waitFor({ timeout: 10_000 });
      await page.locator('#daemon').getByText(String(daemon.pid), { exact: true }).waitFor({ timeout: 5_000 });

      // The client name is the client's own string: shown as text, never parsed as markup.
      const name = 'status-page-e2e <img src=x onerror=alert(1)>';
      const shim = await connectShim(cleanup, daemon, { name });
      const row = page.locator('#sessions tbody tr', { hasText: name });
      await row.waitFor({ timeout: 10_000 });
      const rowText = await row.innerText();
      assert.match(rowText, /\bws\b/, 'the transport');
      assert.ok(rowText.includes(process.cwd()), `the client's working directory in ${JSON.stringify(rowText)}`);
      assert.equal(await page.locator('#sessions img').count(), 0, 'report text was parsed as HTML');
      assert.match(await page.locator('#sessions-count').innerText(), /\(1\)/);

      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, 'status-page.png'), fullPage: true });
      await page.emulateMedia({ colorScheme: 'dark' });
      await page.screenshot({ path: join(ARTIFACTS, 'status-page-dark.png'), fullPage: true });
      await page.emulateMedia({ colorScheme: 'light' });

      await shim.client.close();
      await row.waitFor({ state: 'detached', timeout: 10_000 });
      await page.locator('#sessions td.empty').waitFor({ timeout: 5_000 });
      assert.deepEqual(problems, [], 'the page logged errors');

      // The daemon goes away: the page says so instead of showing stale numbers as live.
      daemon.proc.kill('SIGTERM');
      await within(daemon.exited, 15_000, 'the daemon to exit');
      await page.locator('body[data-connection="down"]').waitFor({ timeout: 10_000 });
      assert.match(await page.locator('#conn').innerText(), /disconnected/);
    } finally {
      await cleanup.run();
    }
  });
});

describe('the status page renders the report as a user reads it (headless Chromium, fake report)', () => {
  test('"1 session" in the title (2 sessions later), a watched file says so, a file not applied shows its error', async () => {
    const cleanup = new Cleanup();
    try {
      const server = await pageServer({ intervalMs: 50 });
      const error =
        "the config file /home/someone/.config/exai-ws/config.json is not valid JSON: line 4, column 4: a trailing comma: JSON allows no comma before '}'";
      const config = {
        path: '/home/someone/.config/exai-ws/config.json',
        exists: true,
        watching: '/home/someone/.config/exai-ws',
        problems: [],
        error,
        last_reload: null,
      };
      server.report = { ...fakeReport(), sessions: { total: 1, attached: 1, detached: 0, list: [] }, config };
      const { page, problems } = await livePage(cleanup, server.port);
      assert.equal(await page.title(), 'exai-ws 9.9.9 \u00b7 1 session');
      const shown = await page.locator('#config').innerText();
      assert.match(shown, /changes\s+watched: applied as soon as it is saved/);
      assert.match(shown, /not applied\s+the config file .* line 4, column 4: a trailing comma.*\(no hosted servers until it is fixed\)/);

      // Fixed, and not watched any more: the page follows.
      server.report = {
        ...server.report,
        sessions: { total: 2, attached: 2, detached: 0, list: [] },
        config: { ...config, watching: null, error: null },
      };
      await waitFor(async () => (await page.title()).endsWith('2 sessions'), 'the title with 2 sessions', 5_000);
      const after = await page.locator('#config').innerText();
      assert.match(after, /changes\s+not watched: exai-ws reload applies an edit/);
      assert.doesNotMatch(after, /not applied/);
      assert.deepEqual(problems, []);
    } finally {
      await cleanup.run();
    }
  });

  test("each window's profile, tools and list size; a window over its client's cap is warned about", async () => {
    const cleanup = new Cleanup();
    try {
      const server = await pageServer({ intervalMs: 50 });
      const window = { transport: 'ws', state: 'attached', cwd: null, age_s: 5, inflight: 0, requests: 1, p99_ms: 1 } as const;
      const windows: SessionEntry[] = [
        { ...window, id: 'a', client: 'cursor-vscode', client_version: '1', profile: null, profile_missing: false, tools: 57 },
        { ...window, id: 'b', client: 'claude-code', client_version: '2', profile: 'web', profile_missing: false, tools: 12 },
      ];
      Object.assign(windows[0] as SessionEntry, { tools_bytes: 41_000, tool_cap: 40, over_cap: true });
      Object.assign(windows[1] as SessionEntry, { tools_bytes: 10_035, tool_cap: null, over_cap: false });
      server.report = { ...fakeReport(), sessions: { total: 2, attached: 2, detached: 0, list: windows } };
      const { page, problems } = await livePage(cleanup, server.port);
      const headers = await page.locator('#sessions th').allInnerTexts();
      assert.deepEqual(headers.slice(3, 7), ['era', 'profile', 'tools', 'list size']);
      const over = await page.locator('#sessions tbody tr', { hasText: 'cursor-vscode' }).locator('td').allInnerTexts();
      assert.deepEqual(over.slice(4, 7), ['\u2014', '57', '40.0 KB']);
      assert.equal(await page.locator('#sessions tbody tr', { hasText: 'cursor-vscode' }).locator('td.warn').count(), 2);
      const under = await page.locator('#sessions tbody tr', { hasText: 'claude-code' }).locator('td').allInnerTexts();
      assert.deepEqual(under.slice(4, 7), ['web', '12', '9.8 KB']);
      assert.deepEqual(await page.locator('#over-cap li').allInnerTexts(), [
        'cursor-vscode: 57 tools, more than its client takes (40): give this window a profile or use tool search',
      ]);
      assert.deepEqual(problems, []);
    } finally {
      await cleanup.run();
    }
  });
});
