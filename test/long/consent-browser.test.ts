/**
 * The daemon as its own OAuth authorization server, in a real headless Chromium, the way a user
 * meets it: the official SDK v2 client connects to `/mcp` with no token, hears 401, registers
 * itself and sends the user to `/oauth/authorize`; the user (logged in to the status page
 * through `exai-ws open --print`, or pasting that link into the page) reads "Allow CLIENT to use
 * exai-ws (N tools)?" and clicks Allow; the code comes back to the client's loopback redirect
 * URI and the client, with its token, calls a tool. The consent page cannot be framed by a page
 * elsewhere. `npm run test:browser`.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Client, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';
import type { BrowserContext } from 'playwright-core';
import { Cleanup, listenLoopback, startDaemon, waitFor, within, type DaemonHandle } from '../helpers.js';
import { ARTIFACTS, launchChromium } from '../fixtures/chromium.js';
import { consentQuestion, logInBrowser } from '../fixtures/consent-flow.js';
import { MemoryOAuthClient, startRedirectCatcher, type RedirectCatcher } from '../fixtures/oauth-client.js';
import { loginUrl } from '../fixtures/status-page.js';

/** A client flow up to the point where the user must act. */
interface Started {
  provider: MemoryOAuthClient;
  transport: StreamableHTTPClientTransport;
  catcher: RedirectCatcher;
  authorizationUrl: URL;
}

function mcpUrl(daemon: DaemonHandle): URL {
  return new URL(`http://127.0.0.1:${daemon.port}/mcp`);
}

/** The SDK client connects with no token: 401, registration, and the URL the user must visit. */
async function startClientFlow(cleanup: Cleanup, daemon: DaemonHandle, name: string): Promise<Started> {
  const catcher = await startRedirectCatcher(cleanup);
  const provider = new MemoryOAuthClient(catcher.redirectUrl, name);
  const transport = new StreamableHTTPClientTransport(mcpUrl(daemon), { authProvider: provider });
  const client = new Client({ name, version: '1.0.0' });
  cleanup.add(() => client.close());
  await assert.rejects(within(client.connect(transport), 15_000, 'the unauthorized connect'), UnauthorizedError);
  assert.equal(provider.authorizationUrls.length, 1, 'the SDK asked to open one authorization URL');
  const authorizationUrl = provider.lastAuthorizationUrl();
  assert.equal(`${authorizationUrl.origin}${authorizationUrl.pathname}`, `http://127.0.0.1:${daemon.port}/oauth/authorize`);
  assert.equal(authorizationUrl.searchParams.get('redirect_uri'), catcher.redirectUrl);
  return { provider, transport, catcher, authorizationUrl };
}

/** The answer at the redirect URI: checked, redeemed by the SDK; then a new client calls `version`. */
async function finishAndCall(cleanup: Cleanup, daemon: DaemonHandle, flow: Started, name: string): Promise<number> {
  const { query: answer, referer } = await within(flow.catcher.next(), 15_000, 'the code at the redirect URI');
  assert.equal(answer.get('error'), null, `the client heard an error: ${answer.toString()}`);
  assert.equal(answer.get('state'), flow.provider.lastState);
  assert.equal(answer.get('iss'), `http://127.0.0.1:${daemon.port}`);
  assert.ok((answer.get('code') ?? '').length > 0);
  assert.equal(referer, undefined, 'the consent page leaked its address to the client');
  await flow.transport.finishAuth(answer);
  assert.ok(flow.provider.tokens()?.access_token, 'no access token after finishAuth');

  const client = new Client({ name, version: '1.0.0' });
  cleanup.add(() => client.close());
  await within(client.connect(new StreamableHTTPClientTransport(mcpUrl(daemon), { authProvider: flow.provider })), 15_000, 'connect');
  const result = await client.callTool({ name: 'version', arguments: {} });
  assert.notEqual(result.isError, true);
  const version = result.structuredContent as { name?: string; pid?: number } | undefined;
  assert.equal(version?.pid, daemon.pid, `the version tool's answer: ${JSON.stringify(result)}`);
  return (await client.listTools()).tools.length;
}

/**
 * A page on another loopback port framing the consent page: Chromium must refuse to render it
 * (CSP frame-ancestors 'none' / X-Frame-Options DENY) even though the browser holds the cookie.
 */
async function assertNotFramable(cleanup: Cleanup, context: BrowserContext, target: URL): Promise<void> {
  const html = `<!doctype html><title>elsewhere</title><iframe id="f" src="${target.href.replace(/&/g, '&amp;').replace(/"/g, '&quot;')}" width="800" height="400"></iframe>`;
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(html));
  // Chromium keeps a spare connection open, idle and without a request: closed at cleanup, not waited for.
  const port = await listenLoopback(cleanup, server);
  const page = await context.newPage();
  const refusals: string[] = [];
  page.on('console', (m) => {
    if (/frame-ancestors|X-Frame-Options/i.test(m.text())) refusals.push(m.text());
  });
  await page.goto(`http://127.0.0.1:${port}/`, { waitUntil: 'load', timeout: 10_000 });
  const frame = page.frames().find((f) => f !== page.mainFrame());
  assert.ok(frame, 'no iframe');
  // A blocked frame is left on Chromium's error page: no consent question, no Allow button.
  assert.doesNotMatch(frame.url(), /\/oauth\/authorize/, `the frame shows ${frame.url()}`);
  assert.equal(await frame.getByRole('button', { name: 'Allow' }).count(), 0);
  await waitFor(() => refusals.length > 0, 'Chromium to report its refusal to frame the consent page', 5_000);
  await page.close();
}

describe('consent in a real headless Chromium: the SDK client, the daemon as its authorization server', () => {
  test('logged in through `exai-ws open --print`: "Allow CLIENT to use exai-ws (N tools)", Allow, the code, a tool call', async () => {
    const cleanup = new Cleanup();
    try {
      const daemon = await startDaemon(cleanup);
      const name = 'Consent Browser E2E';
      const [flow, context] = await Promise.all([startClientFlow(cleanup, daemon, name), launchChromium(cleanup)]);
      await logInBrowser(context, daemon);

      await assertNotFramable(cleanup, context, flow.authorizationUrl);

      const page = await context.newPage();
      const response = await page.goto(flow.authorizationUrl.href, { waitUntil: 'domcontentloaded', timeout: 10_000 });
      assert.equal(response?.status(), 200);
      const question = await consentQuestion(page);
      const tools = /^Allow (.+) to use exai-ws \((\d+) tools?\)\?$/.exec(question);
      assert.ok(tools, `the consent question: ${JSON.stringify(question)}`);
      assert.equal(tools[1], name);
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, 'consent-page.png'), fullPage: true });

      await page.getByRole('button', { name: 'Allow' }).click();
      await page.waitForURL(`${flow.catcher.redirectUrl}?**`, { timeout: 10_000 });
      const listed = await finishAndCall(cleanup, daemon, flow, name);
      assert.equal(Number(tools[2]), listed, 'the page promised as many tools as the client lists');
    } finally {
      await cleanup.run();
    }
  });

  test('a browser without the cookie: the code form, the pasted `exai-ws open --print` link, consent, Allow', async () => {
    const cleanup = new Cleanup();
    try {
      const daemon = await startDaemon(cleanup);
      const name = 'Consent Code E2E';
      const [flow, context] = await Promise.all([startClientFlow(cleanup, daemon, name), launchChromium(cleanup)]);
      const page = await context.newPage();
      await page.goto(flow.authorizationUrl.href, { waitUntil: 'domcontentloaded', timeout: 10_000 });
      assert.equal(await consentQuestion(page), `${name} asks to use exai-ws`);
      assert.equal(await page.getByRole('button', { name: 'Allow' }).count(), 0, 'Allow offered without a login');

      await page.locator('input[name="code"]').fill(await loginUrl(daemon));
      await page.getByRole('button', { name: 'Continue' }).click();
      await page.waitForURL(/\/oauth\/authorize\?request=/, { timeout: 10_000 });
      assert.match(await consentQuestion(page), new RegExp(`^Allow ${name} to use exai-ws \\(\\d+ tools?\\)\\?$`));
      const cookies = await context.cookies(`http://127.0.0.1:${daemon.port}/`);
      assert.ok(
        cookies.some((c) => c.name === 'exai_ws_session' && c.httpOnly),
        'the code gave the browser the session cookie',
      );

      await page.getByRole('button', { name: 'Allow' }).click();
      await page.waitForURL(`${flow.catcher.redirectUrl}?**`, { timeout: 10_000 });
      await finishAndCall(cleanup, daemon, flow, name);
    } finally {
      await cleanup.run();
    }
  });
});
