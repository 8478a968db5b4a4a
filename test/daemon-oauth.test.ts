/**
 * The daemon's `/mcp` as an OAuth-protected resource with the daemon as its own authorization
 * server (issue 27), end to end with the OFFICIAL v2 SDK client (`@modelcontextprotocol/client`)
 * given no token at all, only an `OAuthClientProvider` (test/fixtures/oauth-client.ts):
 *
 * 1. `connect()` fails with `UnauthorizedError` once the SDK has followed the 401's
 *    `resource_metadata`, found the authorization server (RFC 8414), registered itself and made
 *    an authorization URL at the daemon's `/oauth/authorize`;
 * 2. a person approves it without a browser cookie: the page asks for the one-time code, the
 *    link `exai-ws open --print` prints buys the cookie, the consent page names the client and
 *    the tool count, Allow lands on the client's loopback redirect; `finishAuth` takes the code
 *    and a new connection lists and calls tools; the same token opens a hosted server's `/mcp/memory`;
 * 3. revoking the client (`/control/clients-revoke`) makes its next call fail: its access token
 *    gets 401 `invalid_token`, its refresh fails, the SDK asks for a login again; a fresh login works;
 * 4. a daemon restarted on the same home and port still takes the access token it issued; the
 *    SDK, holding an access token the daemon does not know (as an expired one), refreshes with
 *    the refresh token issued before the restart (rotated: the old one is spent);
 *    `oauth/issued.json` (0600) holds no token;
 * 5. a token the daemon never issued gets 401 `invalid_token`; the static token still works;
 * 6. no token or code seen shows in the log, `/health` or `/metrics`.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Client, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';
import { Cleanup, closedPort, runCli, startDaemon, textOf, type DaemonHandle } from './helpers.js';
import { memoryEntry, startHostingDaemon } from './fixtures/hosted-servers.js';
import { CLIENT_NAME, MemoryOAuthClient, approveInBrowser, startRedirectCatcher, type RedirectCatcher } from './fixtures/oauth-client.js';

const ACCEPT = 'application/json, text/event-stream';
const INITIALIZE = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};

function origin(daemon: Pick<DaemonHandle, 'port'>): string {
  return `http://127.0.0.1:${daemon.port}`;
}

/** A raw `initialize` POST to `/mcp` with `token` as the bearer: what a client's request meets. */
async function rawMcp(daemon: Pick<DaemonHandle, 'port'>, token: string): Promise<{ status: number; challenge: string }> {
  const res = await fetch(`${origin(daemon)}/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: ACCEPT },
    body: JSON.stringify(INITIALIZE),
  });
  await res.arrayBuffer();
  return { status: res.status, challenge: res.headers.get('www-authenticate') ?? '' };
}

function assertInvalidToken(answer: { status: number; challenge: string }, daemon: DaemonHandle, what: string): void {
  assert.equal(answer.status, 401, what);
  assert.match(answer.challenge, /error="invalid_token"/, what);
  assert.ok(answer.challenge.includes(`resource_metadata="${origin(daemon)}/.well-known/oauth-protected-resource/mcp"`), answer.challenge);
}

/** A raw `grant_type=refresh_token` at the daemon's token endpoint; its JSON answer. */
async function rawRefresh(daemon: Pick<DaemonHandle, 'port'>, refreshToken: string, provider: MemoryOAuthClient) {
  const res = await fetch(`${origin(daemon)}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: provider.registration?.client_id ?? '',
    }),
  });
  return (await res.json()) as { error?: string; access_token?: string; refresh_token?: string };
}

/** The link `exai-ws open --print` prints (the real CLI, finding the daemon through its home). */
async function openLink(daemon: DaemonHandle): Promise<string> {
  const run = await runCli(['open', '--print'], daemon.clientEnv);
  assert.equal(run.code, 0, run.stderr);
  const link = /http:\/\/127\.0\.0\.1:\d+\/\?code=\S+/.exec(run.stdout)?.[0];
  assert.ok(link, `exai-ws open --print printed no link: ${run.stdout}`);
  return link;
}

async function sdkConnect(cleanup: Cleanup, daemon: DaemonHandle, provider: MemoryOAuthClient, path = '/mcp') {
  const transport = new StreamableHTTPClientTransport(new URL(`${origin(daemon)}${path}`), { authProvider: provider });
  const client = new Client({ name: 'daemon-oauth-test', version: '1.0.0' });
  cleanup.add(() => client.close());
  await client.connect(transport);
  return { client, transport };
}

async function assertCallsWork(client: Client): Promise<void> {
  const { tools } = await client.listTools();
  assert.ok(
    tools.some((t) => t.name === 'version'),
    `the built-in version tool is listed: ${tools.map((t) => t.name).join(', ')}`,
  );
  const result = await client.callTool({ name: 'version', arguments: {} });
  assert.notEqual(result.isError, true, textOf(result));
  assert.match(textOf(result), /\d+\.\d+/);
}

/**
 * What a client given only a provider goes through: `connect()` refused with UnauthorizedError
 * and an authorization URL; the person approves it; `finishAuth`; a new connection that works.
 * Returns the authorization code, to look for later where it must not be.
 */
async function login(cleanup: Cleanup, daemon: DaemonHandle, provider: MemoryOAuthClient, catcher: RedirectCatcher): Promise<string> {
  const urls = provider.authorizationUrls.length;
  const transport = new StreamableHTTPClientTransport(new URL(`${origin(daemon)}/mcp`), { authProvider: provider });
  const refused = new Client({ name: 'daemon-oauth-test', version: '1.0.0' });
  cleanup.add(() => refused.close());
  await assert.rejects(refused.connect(transport), (e: unknown) => e instanceof UnauthorizedError);
  assert.equal(provider.authorizationUrls.length, urls + 1, 'the SDK asked to open one authorization URL');
  const url = provider.lastAuthorizationUrl();
  assert.equal(`${url.origin}${url.pathname}`, `${origin(daemon)}/oauth/authorize`);
  assert.equal(url.searchParams.get('client_id'), provider.registration?.client_id);
  assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(url.searchParams.get('redirect_uri'), catcher.redirectUrl);
  assert.equal(url.searchParams.get('resource'), `${origin(daemon)}/mcp`);

  const approval = await approveInBrowser(url, await openLink(daemon), catcher);
  assert.match(approval.codePage, /exai-ws open --print/, 'without a cookie the page asks for the one-time code');
  assert.match(approval.consentHeading, new RegExp(`^Allow ${CLIENT_NAME} to use exai-ws \\(\\d+ tools?\\)\\?$`));
  assert.equal(`${approval.location.origin}${approval.location.pathname}`, catcher.redirectUrl);
  assert.equal(approval.callback.get('state'), provider.lastState);
  const code = approval.callback.get('code');
  assert.ok(code, 'the redirect carries a code');
  await transport.finishAuth(approval.callback);
  assert.ok(provider.current?.access_token, 'finishAuth saved tokens');
  assert.ok(provider.current.refresh_token, 'with a refresh token');
  return code;
}

async function newClient(cleanup: Cleanup): Promise<{ provider: MemoryOAuthClient; catcher: RedirectCatcher }> {
  const catcher = await startRedirectCatcher(cleanup);
  return { provider: new MemoryOAuthClient(catcher.redirectUrl), catcher };
}

/** Everything that must never show: each token set the client held and each code it redeemed. */
function secretsOf(provider: MemoryOAuthClient, codes: readonly string[]): string[] {
  const tokens = provider.savedTokens.flatMap((t) => [t.access_token, t.refresh_token ?? '']);
  return [...tokens, ...codes].filter((s) => s.length > 0);
}

async function assertNowhere(daemon: DaemonHandle, secrets: readonly string[]): Promise<void> {
  const auth = { authorization: `Bearer ${daemon.token}` };
  const health = await fetch(`${origin(daemon)}/health`, { headers: auth });
  const metrics = await fetch(`${origin(daemon)}/metrics`, { headers: auth });
  assert.equal(health.status, 200);
  assert.equal(metrics.status, 200);
  const places: Record<string, string> = {
    log: readFileSync(join(daemon.home, 'logs', 'ws_daemon.log'), 'utf8'),
    '/health': await health.text(),
    '/metrics': await metrics.text(),
  };
  assert.ok(places.log?.includes('OAuth client approved'), 'the log has the approval (it was read)');
  for (const [place, text] of Object.entries(places))
    for (const secret of secrets) assert.ok(!text.includes(secret), `${place} holds a token or code (${secret.slice(0, 6)}...)`);
}

test('a client with no token logs in to /mcp with the one-time code, calls tools, is revoked, logs in again', async (t) => {
  const cleanup = new Cleanup();
  t.after(() => cleanup.run());
  const daemon = await startHostingDaemon(cleanup, (home) => ({ memory: memoryEntry(home) }));
  const { provider, catcher } = await newClient(cleanup);

  const codes = [await login(cleanup, daemon, provider, catcher)];
  const discovery = provider.discoveryState();
  assert.equal(discovery?.resourceMetadataUrl, `${origin(daemon)}/.well-known/oauth-protected-resource/mcp`, 'PRM from the 401');
  assert.equal(discovery.authorizationServerMetadata?.issuer, origin(daemon), 'the daemon is the authorization server');
  assert.ok(provider.registration?.client_id, 'registered dynamically');

  const { client } = await sdkConnect(cleanup, daemon, provider);
  await assertCallsWork(client);
  // The same token opens a hosted server's own endpoint.
  const saved = provider.savedTokens.length;
  const hosted = await sdkConnect(cleanup, daemon, provider, '/mcp/memory');
  const hostedTools = (await hosted.client.listTools()).tools.map((tool) => tool.name);
  assert.ok(
    hostedTools.some((name) => name.endsWith('read_graph')),
    hostedTools.join(', '),
  );
  assert.equal(provider.savedTokens.length, saved, '/mcp/memory took the token /mcp was given');
  const revokedTokens = provider.current;
  assert.ok(revokedTokens?.refresh_token);

  const revoke = await fetch(`${origin(daemon)}/control/clients-revoke`, {
    method: 'POST',
    headers: { authorization: `Bearer ${daemon.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: CLIENT_NAME }),
  });
  const revoked = (await revoke.json()) as { revoked?: { client_name?: string }[] };
  assert.equal(revoke.status, 200, JSON.stringify(revoked));
  assert.deepEqual(
    revoked.revoked?.map((c) => c.client_name),
    [CLIENT_NAME],
  );
  assertInvalidToken(await rawMcp(daemon, revokedTokens.access_token), daemon, 'a revoked access token');

  // The SDK refreshes (refused: its refresh token was revoked too) and then asks for a login.
  const urls = provider.authorizationUrls.length;
  await assert.rejects(client.callTool({ name: 'version', arguments: {} }), (e: unknown) => e instanceof UnauthorizedError);
  assert.equal(provider.authorizationUrls.length, urls + 1, 'the SDK asked for a login again');
  assert.deepEqual(provider.invalidated, ['tokens'], 'invalid_grant: the SDK dropped its tokens and kept its registration');
  assert.notEqual(provider.current?.access_token, revokedTokens.access_token, 'the revoked tokens are not kept');
  const refused = await rawRefresh(daemon, revokedTokens.refresh_token, provider);
  assert.equal(refused.error, 'invalid_grant', 'a revoked refresh token is refused');

  codes.push(await login(cleanup, daemon, provider, catcher));
  const again = await sdkConnect(cleanup, daemon, provider);
  await assertCallsWork(again.client);

  // Tokens the daemon never issued are refused; the static token (scripts) is unaffected.
  assertInvalidToken(await rawMcp(daemon, randomBytes(32).toString('base64url')), daemon, 'an unknown token');
  assert.equal((await rawMcp(daemon, daemon.token)).status, 200, 'the daemon token still works on /mcp');

  await assertNowhere(daemon, secretsOf(provider, codes));
});

test('tokens survive a restart on the same home and port, the SDK refreshes a token the daemon does not know; issued.json holds none', async (t) => {
  const cleanup = new Cleanup();
  t.after(() => cleanup.run());
  const port = await closedPort();
  const env = { EXAI_WS_PORT: String(port) };
  const first = await startDaemon(cleanup, { env });
  assert.equal(first.port, port);
  const { provider, catcher } = await newClient(cleanup);
  const code = await login(cleanup, first, provider, catcher);
  const before = provider.current;
  assert.ok(before?.refresh_token);
  const { client } = await sdkConnect(cleanup, first, provider);
  await assertCallsWork(client);
  await client.close();

  first.proc.kill('SIGTERM');
  await first.exited;
  const issued = join(first.home, 'oauth', 'issued.json');
  assert.equal(statSync(issued).mode & 0o777, 0o600);
  const stored = readFileSync(issued, 'utf8');
  assert.ok(stored.length > 0 && stored.includes(provider.registration?.client_id ?? '?'), 'the grant is kept');
  for (const secret of [before.access_token, before.refresh_token]) assert.ok(!stored.includes(secret), 'issued.json holds a token');

  const second = await startDaemon(cleanup, { home: first.home, env });
  assert.equal(second.port, port, 'the restarted daemon listens on the same port');
  assert.equal((await rawMcp(second, before.access_token)).status, 200, 'the access token issued before the restart');
  const saved = provider.savedTokens.length;
  const again = await sdkConnect(cleanup, second, provider);
  await assertCallsWork(again.client);
  assert.equal(provider.savedTokens.length, saved, 'the SDK used its token as it was');

  // The access token the client holds is one the daemon does not know (as an expired one): the
  // SDK is told invalid_token, refreshes with the refresh token issued before the restart, and
  // the call goes through.
  provider.current = { ...before, access_token: randomBytes(32).toString('base64url') };
  const result = await again.client.callTool({ name: 'version', arguments: {} });
  assert.notEqual(result.isError, true, textOf(result));
  assert.equal(provider.savedTokens.length, saved + 1, 'one refresh');
  const renewed = provider.current;
  assert.ok(renewed?.refresh_token && renewed.refresh_token !== before.refresh_token, 'the refresh token was rotated');
  assert.equal((await rawMcp(second, renewed.access_token)).status, 200);
  // Within a minute of the rotation the replaced token still answers (two processes of one client
  // refreshing at once), with the same new refresh token: the login stays one chain.
  const raced = await rawRefresh(second, before.refresh_token, provider);
  assert.equal(raced.refresh_token, renewed.refresh_token, JSON.stringify({ error: raced.error }));
  assert.equal((await rawMcp(second, raced.access_token ?? '')).status, 200);

  await assertNowhere(second, [...secretsOf(provider, [code]), raced.access_token ?? '']);
});
