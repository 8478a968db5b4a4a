/**
 * Eras on the status page (issue 24), in a real headless Chromium over a made-up report: the era
 * of each session and hosted server, and the stateless 2026-07-28 clients by name. Run with
 * `node --test dist/test/long/status-page-eras.test.js` (needs Debian's `chromium`, as
 * test/long/status-page.test.ts).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { Cleanup } from '../helpers.js';
import { fakeReport, pageServer } from '../fixtures/status-page.js';
import type { HealthReport } from '../../src/local/health.js';

function chromiumPath(): string {
  const candidates = [process.env.CHROMIUM_PATH, '/usr/lib/chromium/chromium', '/usr/bin/chromium', '/usr/bin/chromium-browser'];
  const found = candidates.find((p): p is string => typeof p === 'string' && p.length > 0 && existsSync(p));
  if (!found) throw new Error('no Chromium found: apt-get install -y chromium');
  return found;
}

test('the page shows the era of each session and server, and the stateless clients by name', async () => {
  const cleanup = new Cleanup();
  try {
    const server = await pageServer({ intervalMs: 50 });
    cleanup.add(() => new Promise<void>((resolve) => server.server.close(() => resolve())));
    const session = { id: 's1', transport: 'stdio', state: 'attached', client: 'window', client_version: '1', cwd: null, age_s: 3 };
    server.report = {
      ...fakeReport(),
      sessions: { total: 1, attached: 1, detached: 0, list: [{ ...session, inflight: 0, requests: 2, p99_ms: 1, era: '2025-11-25' }] },
      servers: [
        {
          name: 'modern-srv',
          scope: 'shared',
          scope_key: null,
          state: 'ready',
          pid: null,
          restarts: 0,
          retries: 0,
          uptime_s: 1,
          sessions: 1,
          inflight: 0,
          last_error: null,
          asks_client: [],
          era: '2026-07-28',
        },
        {
          name: 'legacy-srv',
          scope: 'shared',
          scope_key: null,
          state: 'ready',
          pid: 7,
          restarts: 0,
          retries: 0,
          uptime_s: 1,
          sessions: 1,
          inflight: 0,
          last_error: null,
          asks_client: [],
          era: '2025-11-25',
        },
      ],
      stateless_clients: [{ client: 'agent <b>x</b>', era: '2026-07-28', requests: 5, last_seen_s: 2 }],
    } as HealthReport;
    const profile = mkdtempSync(join(tmpdir(), 'exai-ws-chromium-'));
    cleanup.add(() => rmSync(profile, { recursive: true, force: true }));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath(),
      headless: true,
      timeout: 20_000,
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--no-first-run'],
    });
    cleanup.add(() => context.close());
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    await page.goto(`http://127.0.0.1:${server.port}/`, { waitUntil: 'domcontentloaded', timeout: 10_000 });
    await page.locator('body[data-connection="live"]').waitFor({ timeout: 10_000 });
    const cells = async (selector: string): Promise<string[]> =>
      (await page.locator(selector).allInnerTexts()).map((row) => row.replace(/\s+/g, ' ').trim());
    assert.deepEqual(await cells('#sessions thead tr'), ['client transport state era working directory age in flight requests p99 ms']);
    assert.match((await cells('#sessions tbody tr'))[0] ?? '', /^window 1 stdio attached 2025-11-25 /);
    const servers = await cells('#servers tbody tr');
    assert.match(servers[0] ?? '', /^modern-srv ready 2026-07-28 /);
    assert.match(servers[1] ?? '', /^legacy-srv ready 2025-11-25 7 /);
    assert.deepEqual(await cells('#stateless tbody tr'), ['agent <b>x</b> 2026-07-28 5 2s ago'], 'the name as text, never markup');
    assert.match(await page.locator('#stateless-count').innerText(), /\(1\)/);
    assert.deepEqual(problems, []);
  } finally {
    await cleanup.run();
  }
});
