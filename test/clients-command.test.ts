/**
 * `exai-ws clients` and `exai-ws clients revoke NAME`, end to end: a real daemon, a client that
 * logs in to its `/mcp` through the daemon's own authorization server as an MCP client does
 * (registration, the consent page logged in with the one-time code of `exai-ws open --print`,
 * allow, code for tokens, PKCE), then the real CLI: the client is listed by name; revoked, its
 * access token is refused by `/mcp`, its refresh token by the token endpoint, and the list is
 * empty. No token the daemon issued appears in anything the CLI prints.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { Cleanup, makeHome, runCli, startDaemon, type DaemonHandle } from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const CLIENT_NAME = 'Clients Test Editor';
const REDIRECT = 'http://127.0.0.1:5555/callback';

interface Approved {
  clientId: string;
  accessToken: string;
  refreshToken: string;
}

/** One request to the daemon, bounded; the body read in full. */
async function call(url: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; text: string }> {
  const response = await fetch(url, { redirect: 'manual', ...init, signal: AbortSignal.timeout(10_000) });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

const form = (fields: Record<string, string>) => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(fields).toString(),
});

function hidden(page: string, name: string): string {
  const value = new RegExp(`name="${name}" value="([^"]+)"`).exec(page)?.[1];
  assert.ok(value, `the page has a hidden ${name}: ${page.slice(0, 400)}`);
  return value;
}

/** A client logs in to the daemon's `/mcp` as MCP authorization has it, the user allowing it on the consent page. */
async function approveClient(daemon: DaemonHandle): Promise<Approved> {
  const base = `http://127.0.0.1:${daemon.port}`;
  const registered = await call(`${base}/oauth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: CLIENT_NAME, redirect_uris: [REDIRECT] }),
  });
  assert.equal(registered.status, 201, registered.text);
  const clientId = (JSON.parse(registered.text) as { client_id: string }).client_id;
  const verifier = randomBytes(32).toString('base64url');
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: REDIRECT,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    state: 'st-1',
    resource: `${base}/mcp`,
  });
  const page = await call(`${base}/oauth/authorize?${query.toString()}`);
  assert.equal(page.status, 200, page.text);
  const [request, csrf] = [hidden(page.text, 'request'), hidden(page.text, 'csrf')];
  // The one-time code `exai-ws open --print` would print, given on the consent page.
  const code = await call(`${base}/auth/code`, { method: 'POST', headers: { authorization: `Bearer ${daemon.token}` } });
  assert.equal(code.status, 200, code.text);
  const withCode = form({ request, csrf, code: (JSON.parse(code.text) as { url: string }).url });
  const loggedIn = await call(`${base}/oauth/authorize`, { ...withCode, headers: { ...withCode.headers, origin: base } });
  assert.equal(loggedIn.status, 303, loggedIn.text);
  const cookie = (loggedIn.headers.get('set-cookie') ?? '').split(';')[0] as string;
  // The consent key rides in the redirect's fragment (the page's script puts it in the form).
  const key = new URL(loggedIn.headers.get('location') ?? '', base).hash.replace(/^#consent=/, '');
  const allow = form({ request, csrf, key, decision: 'allow' });
  const allowed = await call(`${base}/oauth/authorize`, { ...allow, headers: { ...allow.headers, origin: base, cookie } });
  assert.equal(allowed.status, 303, allowed.text);
  const back = new URL(allowed.headers.get('location') ?? '');
  assert.equal(`${back.origin}${back.pathname}`, REDIRECT);
  const tokens = await call(
    `${base}/oauth/token`,
    form({
      grant_type: 'authorization_code',
      code: back.searchParams.get('code') ?? '',
      client_id: clientId,
      code_verifier: verifier,
      redirect_uri: REDIRECT,
      resource: `${base}/mcp`,
    }),
  );
  assert.equal(tokens.status, 200, tokens.text);
  const { access_token, refresh_token } = JSON.parse(tokens.text) as { access_token: string; refresh_token: string };
  return { clientId, accessToken: access_token, refreshToken: refresh_token };
}

/** An `initialize` on `/mcp` with `accessToken`: its status. */
async function initializeStatus(daemon: DaemonHandle, accessToken: string): Promise<number> {
  const answer = await call(`http://127.0.0.1:${daemon.port}/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'clients-e2e', version: '1' } },
    }),
  });
  return answer.status;
}

describe('exai-ws clients', () => {
  test('lists the client the user allowed; revoke ends its tokens; then none is listed; no token is printed', async () => {
    const daemon = await startDaemon(cleanup);
    const env = daemon.clientEnv;
    const none = await runCli(['clients'], env);
    assert.equal(none.code, 0, none.stderr);
    assert.equal(
      none.stdout,
      `no client holds a token; clients that speak MCP authorization log in at http://127.0.0.1:${daemon.port}/mcp\n`,
    );

    const approved = await approveClient(daemon);
    assert.equal(await initializeStatus(daemon, approved.accessToken), 200, 'the access token opens a session');
    const printed: string[] = [];

    const listed = await runCli(['clients'], env);
    printed.push(listed.stdout, listed.stderr);
    assert.equal(listed.code, 0, listed.stderr);
    const row = listed.stdout.split('\n').find((line) => line.includes(CLIENT_NAME));
    assert.ok(row, listed.stdout);
    assert.match(row, new RegExp(`^ {2}${CLIENT_NAME} +${approved.clientId} +1 +\\d+s ago +\\d+s ago$`));

    const json = await runCli(['clients', '--json'], env);
    printed.push(json.stdout, json.stderr);
    const clients = (JSON.parse(json.stdout) as { clients: { client_name: string; client_id: string; grants: number }[] }).clients;
    assert.deepEqual(
      clients.map((c) => [c.client_name, c.client_id, c.grants]),
      [[CLIENT_NAME, approved.clientId, 1]],
    );

    const unknown = await runCli(['clients', 'revoke', 'Nobody'], env);
    printed.push(unknown.stdout, unknown.stderr);
    assert.equal(unknown.code, 1);
    assert.equal(
      unknown.stderr,
      `exai-ws clients: no client named Nobody holds a token; the clients that do: ${CLIENT_NAME} (${approved.clientId})\n`,
    );
    assert.equal(await initializeStatus(daemon, approved.accessToken), 200, 'a revoke that matched nothing revoked nothing');

    const revoked = await runCli(['clients', 'revoke', CLIENT_NAME], env);
    printed.push(revoked.stdout, revoked.stderr);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal(revoked.stdout, `revoked ${CLIENT_NAME} (client id ${approved.clientId})\n`);

    assert.equal(await initializeStatus(daemon, approved.accessToken), 401, 'the revoked access token is refused');
    const refreshed = await call(
      `http://127.0.0.1:${daemon.port}/oauth/token`,
      form({ grant_type: 'refresh_token', refresh_token: approved.refreshToken, client_id: approved.clientId }),
    );
    assert.equal(refreshed.status, 400, `the revoked refresh token gets nothing: ${refreshed.text}`);
    assert.ok(!refreshed.text.includes('access_token'), refreshed.text);

    const after = await runCli(['clients'], env);
    printed.push(after.stdout, after.stderr);
    assert.equal(after.code, 0, after.stderr);
    assert.match(after.stdout, /^no client holds a token; /);

    for (const text of printed) {
      assert.ok(!text.includes(approved.accessToken) && !text.includes(approved.refreshToken), `no issued token printed: ${text}`);
      assert.ok(!text.includes(daemon.token), 'nor the daemon token');
    }
  });

  test('with no daemon running: one line, exit 1; an unknown action: the usage, exit 2', async () => {
    // A home whose daemon never ran: no token, no address (a stopped daemon's port could be anyone's by now).
    const env = { EXAI_WS_HOME: makeHome(cleanup) };
    const run = await runCli(['clients'], env);
    assert.equal(run.code, 1);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /^exai-ws clients: no token \(no valid token file at .*\): is the daemon running\?\n$/);
    const usage = await runCli(['clients', 'forget', 'x'], env);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /usage: exai-ws clients \[--json\]/);
  });
});
