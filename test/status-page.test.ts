/**
 * The status page: the StatusPage module over a fake health source (the document's headers, the
 * SSE feed, its bounds), and against the real daemon without a browser (who may see it, the
 * one-time login code, `exai-ws open`). The page in a real headless Chromium is
 * test/long/status-page.test.ts (`npm run test:browser`).
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { request, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { createParser } from 'eventsource-parser';

import { StatusPage } from '../src/daemon/web/status-page.js';
import { browserOpener } from '../src/commands/open.js';
import { Cleanup, closedPort, makeHome, runCli, startDaemon, waitFor, within } from './helpers.js';
import { cliHere } from './fixtures/cli-here.js';
import { fakeReport, fetchStatus, loginUrl, pageServer } from './fixtures/status-page.js';
import type { HealthReport } from '../src/local/health.js';

/** An open SSE feed: its status, parsed events and comments as they arrive, its end. */
interface Feed {
  status: number;
  headers: IncomingMessage['headers'];
  events: string[];
  comments: string[];
  ended: Promise<void>;
  /** Resolves with the `n`th event (1-based), waiting up to `timeoutMs`. */
  event(n: number, timeoutMs?: number): Promise<string>;
  close(): void;
  body: string;
}

function openFeed(port: number): Promise<Feed> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/events' }, (res) => {
      const events: string[] = [];
      const comments: string[] = [];
      const parser = createParser({ onEvent: (e) => events.push(e.data), onComment: (c) => comments.push(c) });
      let body = '';
      const feed: Feed = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        events,
        comments,
        ended: new Promise((r) => res.once('close', () => r())),
        event: (n, timeoutMs = 5_000) => waitFor(() => events[n - 1], `SSE event ${n}`, timeoutMs),
        close: () => req.destroy(),
        get body() {
          return body;
        },
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
        parser.feed(chunk);
      });
      res.on('error', () => undefined);
      resolve(feed);
    });
    req.on('error', reject);
    req.end();
  });
}

async function get(port: number, path = '/'): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() };
}

describe('StatusPage (unit, fake health source)', () => {
  test('the document is self-contained: CSP with a fresh nonce per response, no external asset, no innerHTML', async () => {
    const { port } = await pageServer();
    const first = await get(port);
    const second = await get(port);
    assert.equal(first.status, 200);
    assert.match(String(first.headers['content-type']), /^text\/html; charset=utf-8/);
    assert.equal(first.headers['x-content-type-options'], 'nosniff');
    assert.equal(first.headers['cache-control'], 'no-store');
    assert.equal(first.headers['referrer-policy'], 'no-referrer');
    const csp = String(first.headers['content-security-policy']);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /connect-src 'self'/);
    const nonce = /script-src 'nonce-([^']+)'/.exec(csp)?.[1];
    assert.ok(nonce, `no script nonce in ${csp}`);
    assert.doesNotMatch(csp, /unsafe-eval|unsafe-inline/);
    // Every script and style element carries the response's nonce; none loads anything.
    const scripts = [...first.body.matchAll(/<script([^>]*)>/g)].map((m) => m[1]);
    const styles = [...first.body.matchAll(/<style([^>]*)>/g)].map((m) => m[1]);
    assert.ok(scripts.length >= 1 && styles.length >= 1);
    for (const attrs of [...scripts, ...styles]) assert.equal(attrs, ` nonce="${nonce}"`);
    assert.doesNotMatch(first.body, /\b(src|href)="(?!data:)/, 'a reference to an external asset');
    assert.doesNotMatch(first.body, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
    const secondNonce = /script-src 'nonce-([^']+)'/.exec(String(second.headers['content-security-policy']))?.[1];
    assert.notEqual(secondNonce, nonce, 'the nonce must change with every response');
    assert.equal(Number(first.headers['content-length']), Buffer.byteLength(first.body));
  });

  test('a feed gets the report at once, then each change, and nothing while it stays the same', async () => {
    const server = await pageServer({ intervalMs: 20 });
    const feed = await openFeed(server.port);
    assert.equal(feed.status, 200);
    assert.match(String(feed.headers['content-type']), /^text\/event-stream/);
    assert.equal(feed.headers['cache-control'], 'no-store');
    assert.deepEqual(JSON.parse(await feed.event(1)), server.report);
    // Ten intervals with the same report: still one event.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(feed.events.length, 1, 'an unchanged report was sent again');
    server.report = { ...server.report, uptime_s: 6, sessions: { ...server.report.sessions, total: 1 } };
    const second = JSON.parse(await feed.event(2)) as HealthReport;
    assert.equal(second.sessions.total, 1);
    assert.equal(second.uptime_s, 6);
    feed.close();
  });

  test('a second feed opened later gets the current report at once', async () => {
    const server = await pageServer({ intervalMs: 20 });
    const first = await openFeed(server.port);
    await first.event(1);
    server.report = { ...server.report, version: '10.0.0' };
    await first.event(2);
    const second = await openFeed(server.port);
    assert.equal((JSON.parse(await second.event(1)) as HealthReport).version, '10.0.0');
    first.close();
    second.close();
  });

  test('an idle feed gets a comment heartbeat', async () => {
    const server = await pageServer({ intervalMs: 20, heartbeatMs: 50 });
    const feed = await openFeed(server.port);
    await waitFor(() => feed.comments.length >= 2, 'two heartbeat comments', 5_000);
    assert.equal(feed.events.length, 1, 'heartbeats are comments, not events');
    feed.close();
  });

  test('at most maxClients feeds: one more is answered 503; a client that goes frees its place', async () => {
    const server = await pageServer({ maxClients: 2 });
    const a = await openFeed(server.port);
    const b = await openFeed(server.port);
    await a.event(1);
    await b.event(1);
    const c = await openFeed(server.port);
    assert.equal(c.status, 503);
    await c.ended;
    assert.match(c.body, /too many/);
    assert.equal(server.page.clientCount, 2);
    a.close();
    await waitFor(() => server.page.clientCount === 1, 'the departed feed to be forgotten');
    const d = await openFeed(server.port);
    assert.equal(d.status, 200);
    await d.event(1);
    b.close();
    d.close();
  });

  test('close() ends every open feed and refuses new ones; it is idempotent', async () => {
    const server = await pageServer();
    const feeds = await Promise.all([openFeed(server.port), openFeed(server.port), openFeed(server.port)]);
    await Promise.all(feeds.map((f) => f.event(1)));
    server.page.close();
    server.page.close();
    await Promise.all(feeds.map((f, i) => within(f.ended, 5_000, `feed ${i} to end`)));
    assert.equal(server.page.clientCount, 0);
    const late = await openFeed(server.port);
    assert.equal(late.status, 503);
  });

  test('a client that stops reading is dropped, not buffered without bound', async () => {
    // A report of ~256 KB that changes every 10 ms: a reader that never reads has megabytes
    // waiting within a second once the kernel's socket buffers are full.
    const server = await pageServer({ intervalMs: 10, maxBufferedBytes: 64 * 1024 });
    const padding = 'x'.repeat(256 * 1024);
    let n = 0;
    const timer = setInterval(() => (server.report = { ...server.report, uptime_s: ++n, padding } as HealthReport), 10);
    after(() => clearInterval(timer));
    const socket = connect(server.port, '127.0.0.1');
    after(() => socket.destroy());
    socket.pause(); // never reads
    socket.write(`GET /events HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n\r\n`);
    await waitFor(() => server.page.clientCount === 1, 'the feed to open');
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('error', () => undefined);
    await waitFor(() => server.page.clientCount === 0, 'the slow feed to be dropped', 20_000);
    // The server ended the connection: the client sees it close once it reads again.
    socket.resume();
    await within(closed, 10_000, 'the dropped connection to close');
    clearInterval(timer);
  });

  test('invalid options are refused with a TypeError', () => {
    assert.throws(() => new StatusPage({ health: fakeReport }, { intervalMs: 0 }), TypeError);
    assert.throws(() => new StatusPage({ health: fakeReport }, { maxClients: -1 }), TypeError);
  });
});

describe('exai-ws open: the browser opener', () => {
  test('Linux needs a display; macOS and Windows have their own opener', () => {
    assert.equal(browserOpener({}, 'linux'), null);
    assert.deepEqual(browserOpener({ DISPLAY: ':0' }, 'linux'), { command: 'xdg-open', args: [] });
    assert.deepEqual(browserOpener({ WAYLAND_DISPLAY: 'wayland-0' }, 'linux'), { command: 'xdg-open', args: [] });
    assert.equal(browserOpener({}, 'darwin')?.command, 'open');
    assert.equal(browserOpener({}, 'win32')?.command, 'rundll32');
  });
});

// The tests are independent (each its own login code, cookie or home): they run side by side.
describe('the status page against the real daemon, without a browser', { concurrency: 3 }, () => {
  // One daemon for the two tests that log in to its page: each uses a login code of its own and
  // neither changes the daemon, so a fresh one each would prove nothing more.
  const shared = new Cleanup();
  after(() => shared.run());
  let daemonStarted: ReturnType<typeof startDaemon> | undefined;
  const pageDaemon = (): ReturnType<typeof startDaemon> => (daemonStarted ??= startDaemon(shared));

  test('without the cookie or token `/` and `/events` are 401; a code works once; a bad cookie is refused', async () => {
    const cleanup = new Cleanup();
    try {
      const daemon = await pageDaemon();
      for (const path of ['/', '/events']) {
        const res = await fetchStatus(daemon, path);
        assert.equal(res.status, 401, `${path} without credentials`);
        assert.doesNotMatch(await res.text(), /"sessions"|9\.9\.9|exai-ws-test/);
        const bad = await fetchStatus(daemon, path, { cookie: 'exai_ws_session=not-a-session' });
        assert.equal(bad.status, 401, `${path} with a made-up cookie`);
        await bad.body?.cancel();
      }
      const page = await fetchStatus(daemon, '/');
      assert.match(page.headers.get('content-type') ?? '', /text\/html/);

      const url = new URL(await loginUrl(daemon));
      const first = await fetchStatus(daemon, url.pathname + url.search);
      assert.equal(first.status, 303);
      // The consent key rides in the fragment (web-auth.ts CONSENT_KEY_STORAGE); the code is gone from the URL.
      assert.match(first.headers.get('location') ?? '', /^\/#consent=[\w-]{40,}$/);
      const setCookie = first.headers.get('set-cookie') ?? '';
      assert.match(setCookie, /HttpOnly/i);
      assert.match(setCookie, /SameSite=Strict/i);
      const cookie = setCookie.split(';')[0] ?? '';
      const again = await fetchStatus(daemon, url.pathname + url.search);
      assert.equal(again.status, 401, 'a used code must be refused');
      assert.equal(again.headers.get('set-cookie'), null);

      // The cookie opens both the page and its feed.
      const withCookie = await fetchStatus(daemon, '/', { cookie });
      assert.equal(withCookie.status, 200);
      assert.match(withCookie.headers.get('content-security-policy') ?? '', /script-src 'nonce-/);
      await withCookie.body?.cancel();
      const controller = new AbortController();
      const feed = await fetch(`http://127.0.0.1:${daemon.port}/events`, { headers: { cookie }, signal: controller.signal });
      assert.equal(feed.status, 200);
      assert.match(feed.headers.get('content-type') ?? '', /^text\/event-stream/);
      const reader = feed.body!.getReader();
      let text = '';
      while (!/^data: .*\n/m.test(text)) {
        const chunk = await within(reader.read(), 5_000, 'the first SSE event');
        if (chunk.done) break;
        text += Buffer.from(chunk.value).toString('utf8');
      }
      const data = /^data: (.*)$/m.exec(text)?.[1];
      assert.ok(data, `no event in ${text}`);
      assert.equal((JSON.parse(data) as HealthReport).pid, daemon.pid);
      controller.abort();

      // The token works as a bearer header too (scripts, curl).
      const bearer = await fetchStatus(daemon, '/', { authorization: `Bearer ${daemon.token}` });
      assert.equal(bearer.status, 200);
      await bearer.body?.cancel();
    } finally {
      await cleanup.run();
    }
  });

  test('`exai-ws open` with a display hands the URL to xdg-open and prints it; the URL logs in', async () => {
    const cleanup = new Cleanup();
    try {
      const daemon = await pageDaemon();
      const bin = makeHome(cleanup);
      const seen = join(bin, 'opened.txt');
      writeFileSync(join(bin, 'xdg-open'), `#!/bin/sh\nprintf '%s\\n' "$@" > ${JSON.stringify(seen)}\n`);
      chmodSync(join(bin, 'xdg-open'), 0o755);
      // A display (DISPLAY alone is enough on Linux) and the fake xdg-open first on the PATH.
      const env = { ...daemon.clientEnv, PATH: `${bin}:${process.env.PATH ?? ''}`, DISPLAY: ':99' };
      const run = await runCli(['open'], env);
      assert.equal(run.code, 0, run.stderr);
      const printed = run.stdout.trim();
      const opened = await waitFor(() => (existsSync(seen) ? readFileSync(seen, 'utf8').trim() || null : null), 'xdg-open to be run');
      // The browser gets a page of the home (0600) that goes on to the URL: the code is on no command line.
      assert.ok(!opened.includes('code='), `the code is on xdg-open's command line: ${opened}`);
      const page = fileURLToPath(opened);
      assert.equal(statSync(page).mode & 0o777, 0o600);
      assert.ok(readFileSync(page, 'utf8').includes(`url=${printed.replace(/&/g, '&amp;')}"`), 'the page goes on to the printed URL');
      const url = new URL(printed);
      const res = await fetchStatus(daemon, url.pathname + url.search);
      assert.equal(res.status, 303);
    } finally {
      await cleanup.run();
    }
  });

  test('`exai-ws open` exits 1 with one line when no daemon answers', async () => {
    const cleanup = new Cleanup();
    try {
      const home = makeHome(cleanup);
      const noToken = await runCli(['open', '--print'], { EXAI_WS_HOME: home });
      assert.equal(noToken.code, 1);
      assert.equal(noToken.stdout, '');
      assert.equal(noToken.stderr.trim().split('\n').length, 1, noToken.stderr);
      // A token and an address card, but nothing listening there (a daemon killed with -9).
      const port = await closedPort();
      mkdirSync(join(home, 'logs'), { recursive: true });
      writeFileSync(join(home, 'token'), 'a'.repeat(43));
      writeFileSync(
        join(home, 'logs', 'ws_daemon.pid'),
        JSON.stringify({ pid: 999999, host: '127.0.0.1', port, version: '0', started_at: '' }),
      );
      // The same command in this process (test/fixtures/cli-here.ts): the real CLI's exit 1 is shown above.
      const down = await cliHere(['open', '--print'], { EXAI_WS_HOME: home });
      assert.equal(down.code, 1);
      assert.equal(down.stdout, '');
      assert.match(down.stderr, new RegExp(`^exai-ws open: no daemon answers on 127\\.0\\.0\\.1:${port}`));
      assert.equal(down.stderr.trim().split('\n').length, 1, down.stderr);
    } finally {
      await cleanup.run();
    }
  });
});
