/**
 * `npm run bench -- --only oauth`: what a client logged in with the daemon's own OAuth pays
 * against one that sends the static token. One daemon; two official SDK clients on `/mcp`, one
 * with the token, one with an access token the daemon issued (registered, approved with a
 * one-time code as a user would, traded with PKCE); sequential `version` calls in alternating
 * blocks. Also the time a whole login takes (registration to token), without a person's wait.
 */
import { createHash, randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { VERSION_CALL, isEntryPoint, sequential } from './calls.js';
import { installCleanup, runBench, startDaemon, writePhaseResults } from './procs.js';
import { summarize, type Summary } from './stats.js';

const WATCHDOG_MS = 5 * 60_000;

interface OAuthResults {
  latencyUs: { static_token: Summary; access_token: Summary };
  /** One login through every HTTP step (register, authorize, code, allow, token), in ms. */
  loginMs: Summary;
  loadavg_before: number[];
  loadavg_after: number[];
}

/** A login as the consent page takes it from a user holding the one-time code; resolves to an access token. */
async function logIn(base: string, daemonToken: string): Promise<string> {
  const redirect = 'http://127.0.0.1:9/callback';
  const form = { 'content-type': 'application/x-www-form-urlencoded', origin: base };
  const registered = (await (
    await fetch(`${base}/oauth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'bench', redirect_uris: [redirect] }),
    })
  ).json()) as { client_id: string };
  const verifier = randomBytes(32).toString('base64url');
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: registered.client_id,
    redirect_uri: redirect,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    state: 'bench',
  });
  const page = await (await fetch(`${base}/oauth/authorize?${query.toString()}`)).text();
  const hidden = (name: string) => new RegExp(`name="${name}" value="([^"]+)"`).exec(page)?.[1] ?? '';
  const request = hidden('request');
  const csrf = hidden('csrf');
  const link = (
    (await (await fetch(`${base}/auth/code`, { method: 'POST', headers: { authorization: `Bearer ${daemonToken}` } })).json()) as {
      url: string;
    }
  ).url;
  const entered = await fetch(`${base}/oauth/authorize`, {
    method: 'POST',
    redirect: 'manual',
    headers: form,
    body: new URLSearchParams({ request, csrf, code: link }),
  });
  const cookie = (entered.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  const key = new URL(entered.headers.get('location') ?? '', base).hash.replace(/^#consent=/, '');
  const allowed = await fetch(`${base}/oauth/authorize`, {
    method: 'POST',
    redirect: 'manual',
    headers: { ...form, cookie },
    body: new URLSearchParams({ request, csrf, key, decision: 'allow' }),
  });
  const code = new URL(allowed.headers.get('location') ?? '').searchParams.get('code') ?? '';
  const tokens = (await (
    await fetch(`${base}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        client_id: registered.client_id,
        code_verifier: verifier,
        redirect_uri: redirect,
      }),
    })
  ).json()) as { access_token?: string };
  if (!tokens.access_token) throw new Error('the login gave no access token');
  return tokens.access_token;
}

async function connect(url: string, bearer: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${bearer}` } } });
  const client = new Client({ name: 'exai-ws-bench-oauth', version: '1.0.0' }, { capabilities: {} });
  await client.connect(transport);
  return { client, transport };
}

export async function runOAuth(quick: boolean, progress: (line: string) => void): Promise<OAuthResults> {
  const loadBefore = loadavg();
  const daemon = await startDaemon();
  try {
    const base = `http://127.0.0.1:${daemon.port}`;
    const logins: number[] = [];
    let access = '';
    for (let i = 0; i < (quick ? 5 : 20); i++) {
      const started = performance.now();
      access = await logIn(base, daemon.token);
      logins.push(performance.now() - started);
    }
    const clients = { static_token: await connect(`${base}/mcp`, daemon.token), access_token: await connect(`${base}/mcp`, access) };
    const samples = { static_token: [] as number[], access_token: [] as number[] };
    const modes = ['static_token', 'access_token'] as const;
    const deadline = performance.now() + 120_000;
    for (const m of modes) await sequential(clients[m].client, VERSION_CALL, 200, deadline, null);
    const total = quick ? 1_000 : 5_000;
    progress(`oauth: ${total} sequential calls per mode in blocks of 250`);
    for (let done = 0; done < total && performance.now() < deadline; done += 250) {
      for (const m of done % 500 === 0 ? modes : [...modes].reverse())
        await sequential(clients[m].client, VERSION_CALL, 250, deadline, samples[m]);
    }
    for (const m of modes) await clients[m].client.close();
    return {
      latencyUs: { static_token: summarize(samples.static_token), access_token: summarize(samples.access_token) },
      loginMs: summarize(logins),
      loadavg_before: loadBefore,
      loadavg_after: loadavg(),
    };
  } finally {
    await daemon.stop();
  }
}

export async function mainOAuth(quick: boolean): Promise<void> {
  installCleanup(WATCHDOG_MS);
  const startedAt = new Date();
  const progress = (line: string) => process.stderr.write(`bench: ${line}\n`);
  const results = await runOAuth(quick, progress);
  const us = (s: Summary) => `p50 ${s.p50.toFixed(0)} us, p99 ${s.p99.toFixed(0)} us (n ${s.n})`;
  writePhaseResults('oauth', startedAt, quick, 'oauth', results, [
    `/mcp version, static token:  ${us(results.latencyUs.static_token)}`,
    `/mcp version, access token:  ${us(results.latencyUs.access_token)}`,
    `a whole login (register .. token, no person): p50 ${results.loginMs.p50.toFixed(1)} ms (n ${results.loginMs.n})`,
  ]);
}

if (isEntryPoint(import.meta.url)) runBench(() => mainOAuth(process.argv.includes('--quick')));
