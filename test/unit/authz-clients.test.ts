/**
 * Who may ask the daemon's authorization server for a token (daemon/authz/clients.ts):
 * registrations (loopback redirect URIs, bounded, expiring) and Client ID Metadata Documents
 * (https only, never this machine, bounded, cached), on a fake clock with an injected fetch.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FetchLike } from '@modelcontextprotocol/client';
import {
  ClientRegistry,
  DOCUMENT_TIMEOUT_MS,
  MAX_DOCUMENT_BYTES,
  MAX_REGISTRATIONS,
  REGISTRATION_TTL_MS,
  UNUSED_REGISTRATION_TTL_MS,
  isDocumentUrl,
  isRefusal,
  matchRedirect,
  type KnownClient,
  type OAuthRefusal,
} from '../../src/daemon/authz/clients.js';

const DOC = 'https://client.example.com/oauth/metadata.json';

function registered(registry: ClientRegistry, body: unknown): KnownClient {
  const client = registry.register(body);
  if (isRefusal(client)) assert.fail(`refused: ${client.error_description}`);
  return client;
}

function refused(outcome: KnownClient | OAuthRefusal, error: string): OAuthRefusal {
  assert.ok(isRefusal(outcome), `expected a refusal ${error}, got ${JSON.stringify(outcome)}`);
  assert.equal(outcome.error, error, outcome.error_description);
  return outcome;
}

/** A fetch that answers `document` (as JSON, or as given) and counts its calls. */
function documentFetch(document: unknown, headers: Record<string, string> = {}): { fetch: FetchLike; calls: RequestInit[] } {
  const calls: RequestInit[] = [];
  const fetch: FetchLike = (_url, init) => {
    calls.push(init ?? {});
    const body = typeof document === 'string' ? document : JSON.stringify(document);
    return Promise.resolve(new Response(body, { status: 200, headers: { 'content-type': 'application/json', ...headers } }));
  };
  return { fetch, calls };
}

test('a registration needs a loopback redirect URI; a web one beside it is accepted', () => {
  const registry = new ClientRegistry({ now: () => 1_000 });
  const client = registered(registry, {
    redirect_uris: ['https://vscode.dev/redirect', 'http://127.0.0.1:33418/'],
    client_name: 'Visual Studio Code',
  });
  assert.match(client.client_id, /^exai-/);
  assert.equal(client.client_name, 'Visual Studio Code');
  assert.equal(client.kind, 'registered');
  const answer = ClientRegistry.registrationAnswer(client);
  assert.equal(answer.token_endpoint_auth_method, 'none');
  assert.deepEqual(answer.redirect_uris, ['https://vscode.dev/redirect', 'http://127.0.0.1:33418/']);

  refused(registry.register({ redirect_uris: ['https://example.com/cb'] }), 'invalid_redirect_uri');
  refused(registry.register({ redirect_uris: ['http://127.0.0.1:9/cb#frag'] }), 'invalid_redirect_uri');
  refused(registry.register({ redirect_uris: ['https://127.0.0.1/cb'] }), 'invalid_redirect_uri');
  refused(registry.register({ redirect_uris: [] }), 'invalid_client_metadata');
  refused(registry.register('not an object'), 'invalid_client_metadata');
  refused(registry.register({ redirect_uris: ['http://localhost/cb'], grant_types: ['client_credentials'] }), 'invalid_client_metadata');
  assert.equal(registry.size, 1, 'refusals register nothing');
  // Kept across restarts only once a user approved it: a flood of registrations writes nothing.
  assert.equal(registry.registrations.length, 0);
  registry.used(client.client_id);
  assert.deepEqual(
    registry.registrations.map((c) => c.client_id),
    [client.client_id],
  );
});

test('registrations are bounded: the oldest never authorized gives way; when all were authorized, a refusal', () => {
  let now = 1_000_000;
  const registry = new ClientRegistry({ now: () => now });
  const ids: string[] = [];
  for (let i = 0; i < MAX_REGISTRATIONS; i++) {
    ids.push(registered(registry, { redirect_uris: ['http://127.0.0.1/cb'], client_name: `c${i}` }).client_id);
    now += 1;
  }
  registry.used(ids[0] as string);
  const extra = registered(registry, { redirect_uris: ['http://127.0.0.1/cb'] });
  assert.equal(registry.size, MAX_REGISTRATIONS);
  assert.ok(registry.known(ids[0] as string), 'the oldest was authorized: it stays');
  assert.equal(registry.known(ids[1] as string), undefined, 'the oldest never authorized was evicted');
  assert.ok(registry.known(extra.client_id));

  for (const id of [...ids, extra.client_id]) registry.used(id);
  const full = refused(registry.register({ redirect_uris: ['http://127.0.0.1/cb'] }), 'temporarily_unavailable');
  assert.match(full.error_description, /exai-ws clients revoke/);
  assert.equal(registry.size, MAX_REGISTRATIONS);
  assert.ok(registry.known(ids[0] as string) && registry.known(extra.client_id), 'nothing authorized was evicted');
});

test('a registration never authorized is forgotten after 24 h; an authorized one lives on', async () => {
  let now = 5_000_000;
  const registry = new ClientRegistry({ now: () => now });
  const idle = registered(registry, { redirect_uris: ['http://127.0.0.1/cb'] });
  const busy = registered(registry, { redirect_uris: ['http://127.0.0.1/cb'] });
  registry.used(busy.client_id);
  now += UNUSED_REGISTRATION_TTL_MS - 1;
  assert.equal(await registry.resolve(idle.client_id), idle, 'still good just before 24 h');
  now += 1;
  refused(await registry.resolve(idle.client_id), 'invalid_client');
  assert.equal(registry.known(idle.client_id), undefined);
  assert.equal(await registry.resolve(busy.client_id), busy);
  now += REGISTRATION_TTL_MS;
  refused(await registry.resolve(busy.client_id), 'invalid_client');
});

test('matchRedirect: a registered loopback URI on any port, same host and path; never a web one', () => {
  const registry = new ClientRegistry();
  const client = registered(registry, {
    redirect_uris: ['http://127.0.0.1:33418/callback', 'http://localhost/cb?x=1', 'https://vscode.dev/redirect'],
  });
  assert.equal(matchRedirect(client, 'http://127.0.0.1:5555/callback'), 'http://127.0.0.1:5555/callback');
  assert.equal(matchRedirect(client, 'http://127.0.0.1/callback'), 'http://127.0.0.1/callback');
  assert.equal(matchRedirect(client, 'http://localhost:80/cb?x=1'), 'http://localhost:80/cb?x=1');
  for (const uri of [
    'http://127.0.0.1:5555/other',
    'http://localhost:5555/callback',
    'http://127.0.0.1:5555/callback#f',
    'http://localhost/cb?x=2',
    'https://127.0.0.1:33418/callback',
    'https://vscode.dev/redirect',
    'http://evil.example/callback',
    'not a uri',
  ])
    assert.equal(matchRedirect(client, uri), null, uri);
});

test('a metadata document URL is https with a path, never naming this machine', () => {
  for (const url of [DOC, 'https://example.com/c', 'https://10.0.0.1/client']) assert.equal(isDocumentUrl(url), true, url);
  for (const url of [
    'http://client.example.com/oauth/metadata.json',
    'https://client.example.com/',
    'https://client.example.com',
    'https://client.example.com/x#f',
    'https://user@client.example.com/x',
    'https://localhost/x',
    'https://LOCALHOST/x',
    'https://localhost./x',
    'https://app.localhost/x',
    'https://127.0.0.1/x',
    'https://127.9.9.9/x',
    'https://127.1/x',
    'https://2130706433/x',
    'https://0.0.0.0/x',
    'https://[::1]/x',
    'https://[::ffff:127.0.0.1]/x',
    'https://[fe80::1]/x',
    'exai-abc',
  ])
    assert.equal(isDocumentUrl(url), false, url);
});

test('a metadata document: fetched (no redirects followed), checked, cached until its max-age', async () => {
  let now = 1_000;
  const { fetch, calls } = documentFetch(
    { client_id: DOC, client_name: 'Doc Client', redirect_uris: ['http://127.0.0.1/cb'] },
    { 'cache-control': 'public, max-age=60' },
  );
  const registry = new ClientRegistry({ now: () => now, fetch });
  const client = await registry.resolve(DOC);
  assert.ok(!isRefusal(client));
  assert.equal(client.kind, 'metadata_document');
  assert.equal(client.client_name, 'Doc Client');
  assert.equal(calls.length, 1);
  assert.equal(calls[0]?.redirect, 'error');
  now += 59_999;
  assert.equal(await registry.resolve(DOC), client);
  assert.equal(calls.length, 1, 'cached');
  now += 1;
  assert.ok(!isRefusal(await registry.resolve(DOC)));
  assert.equal(calls.length, 2, 'fetched again past max-age');
  assert.equal(registry.registrations.length, 0, 'a document is no registration');

  const loopback = documentFetch({});
  const local = new ClientRegistry({ fetch: loopback.fetch });
  refused(await local.resolve('https://127.0.0.1/client.json'), 'invalid_client');
  refused(await local.resolve('https://localhost./client.json'), 'invalid_client');
  assert.equal(loopback.calls.length, 0, 'never fetched from this machine');
});

test('a metadata document naming another client_id, malformed, failing or oversized is refused', async () => {
  const refusedBy = async (fetch: FetchLike, why: RegExp) => {
    const outcome = refused(await new ClientRegistry({ fetch }).resolve(DOC), 'invalid_client');
    assert.match(outcome.error_description, why);
  };
  const good = { client_id: DOC, redirect_uris: ['http://127.0.0.1/cb'] };
  await refusedBy(documentFetch({ ...good, client_id: 'https://other.example.com/doc' }).fetch, /names another client_id/);
  await refusedBy(documentFetch({ client_id: DOC }).fetch, /is not valid/);
  await refusedBy(documentFetch('{not json').fetch, /could not be read/);
  await refusedBy(() => Promise.resolve(new Response('gone', { status: 404 })), /HTTP 404/);
  const big = JSON.stringify({ ...good, padding: 'x'.repeat(MAX_DOCUMENT_BYTES) });
  assert.ok(Buffer.byteLength(big) > MAX_DOCUMENT_BYTES);
  await refusedBy(documentFetch(big).fetch, /more than 65536 bytes/);
  // Just under the bound is read.
  const fits = JSON.stringify({ ...good, padding: '' });
  const padded = JSON.stringify({ ...good, padding: 'x'.repeat(MAX_DOCUMENT_BYTES - Buffer.byteLength(fits)) });
  assert.equal(Buffer.byteLength(padded), MAX_DOCUMENT_BYTES);
  assert.ok(!isRefusal(await new ClientRegistry({ fetch: documentFetch(padded).fetch }).resolve(DOC)));
});

test('a metadata document that never comes fails at the deadline, not later', async () => {
  // The deadline (DOCUMENT_TIMEOUT_MS, 5 s) is not injectable: it is AbortSignal.timeout inside
  // boundedFetch. Rather than wait 5 s, the timeout signal is swapped for one the test fires,
  // for the synchronous start of the fetch only; the length asked for is checked.
  let aborted = false;
  const neverAnswers: FetchLike = (_url, init) =>
    new Promise<Response>((_resolve, reject) => {
      init?.signal?.addEventListener('abort', () => {
        aborted = true;
        reject(init.signal?.reason as Error);
      });
    });
  const registry = new ClientRegistry({ fetch: neverAnswers });
  const deadline = new AbortController();
  const asked: number[] = [];
  const realTimeout = AbortSignal.timeout.bind(AbortSignal);
  AbortSignal.timeout = (ms: number) => {
    asked.push(ms);
    return deadline.signal;
  };
  let outcome: Promise<KnownClient | OAuthRefusal>;
  try {
    outcome = registry.resolve(DOC);
  } finally {
    AbortSignal.timeout = realTimeout;
  }
  assert.deepEqual(asked, [DOCUMENT_TIMEOUT_MS], 'one deadline, of 5 s');
  deadline.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
  const refusal = refused(await outcome, 'invalid_client');
  assert.ok(aborted, 'the fetch was told to stop');
  assert.match(refusal.error_description, /did not answer within 5 s/);
});

test("a published client's document as it is (port-less loopback URIs): its redirect on a port of the moment is matched", async () => {
  // The shape Claude Code publishes at its client_id (its issue tracker quotes it): loopback
  // redirect URIs without a port, while the CLI listens on a new port each login.
  const id = 'https://claude.example/oauth/claude-code-client-metadata';
  const document = {
    client_id: id,
    client_name: 'Claude Code',
    redirect_uris: ['http://localhost/callback', 'http://127.0.0.1/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  };
  const client = await new ClientRegistry({ fetch: documentFetch(document).fetch }).resolve(id);
  if (isRefusal(client)) assert.fail(client.error_description);
  assert.equal(client.kind, 'metadata_document');
  assert.equal(client.client_name, 'Claude Code');
  assert.equal(matchRedirect(client, 'http://localhost:3118/callback'), 'http://localhost:3118/callback');
  assert.equal(matchRedirect(client, 'http://127.0.0.1:52163/callback'), 'http://127.0.0.1:52163/callback');
  assert.equal(matchRedirect(client, 'http://localhost:3118/elsewhere'), null);
});
