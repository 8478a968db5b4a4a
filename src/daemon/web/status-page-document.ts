/**
 * The status page's HTML document: markup, style and the script that renders the feed. Kept
 * apart from the server side (status-page.ts) because it is browser code held as text.
 *
 * The script inserts report data with `textContent` and attributes only: never `innerHTML`.
 * It reconnects the feed when it breaks and says so on the page while it is down.
 */
import { KEEP_CONSENT_KEY_JS } from './consent-page.js';

const STYLE = `
:root { color-scheme: light dark; --bg: #fff; --fg: #1d1f23; --muted: #61666f; --line: #d9dce1; --head: #f3f4f6;
  --ok: #11703a; --warn: #8a5a00; --bad: #b3261e; --badge: #eef0f3; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #16181c; --fg: #e4e6ea; --muted: #9aa0a9; --line: #30343b; --head: #1f2228;
    --ok: #5fd08d; --warn: #e6b450; --bad: #ff7b72; --badge: #262a31; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { display: flex; align-items: baseline; gap: 1rem; flex-wrap: wrap; padding: .8rem 1.5rem;
  border-bottom: 1px solid var(--line); position: sticky; top: 0; background: var(--bg); }
h1 { font-size: 1.15rem; margin: 0; }
h2 { font-size: 1rem; margin: 1.4rem 0 .4rem; }
h2 .count { color: var(--muted); font-weight: normal; }
main { padding: 0 1.5rem 2rem; max-width: 1400px; }
.badge { padding: .1rem .55rem; border-radius: 999px; background: var(--badge); font-size: .85rem; }
#conn.live { color: var(--ok); }
#conn.down { color: var(--bad); font-weight: 600; }
body.stale main { opacity: .55; }
#updated { color: var(--muted); font-size: .85rem; margin-left: auto; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1.2rem; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--head); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; }
td.path, td.err { word-break: break-all; max-width: 32rem; }
td.empty { color: var(--muted); font-style: italic; }
.ok { color: var(--ok); } .warn { color: var(--warn); } .bad { color: var(--bad); }
.muted { color: var(--muted); }
ul { margin: .3rem 0; padding-left: 1.2rem; }
code { font: .9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
`;

/** Browser code, ES2020, no modules. Runs under the page's CSP: no eval, no inline handlers. */
const SCRIPT = `
'use strict';
${KEEP_CONSENT_KEY_JS}
const $ = (id) => document.getElementById(id);
const NUM = new Set(['pid', 'age', 'in flight', 'requests', 'p99 ms', 'restarts', 'queued', "429s", 'calls', 'errors', 'sessions', 'tools', 'list size']);
const GOOD = new Set(['ok', 'ready', 'running', 'attached', 'yes']);
const BAD = new Set(['error', 'failed', 'crashed', 'unreachable', 'unauthorized', 'closed', 'stopped']);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = show(text);
  if (cls) node.className = cls;
  return node;
}
function show(v) {
  if (v === null || v === undefined || v === '') return '\\u2014';
  return String(v);
}
function duration(s) {
  if (typeof s !== 'number' || !Number.isFinite(s)) return null;
  s = Math.max(0, Math.round(s));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (d) return d + 'd ' + h + 'h';
  if (h) return h + 'h ' + m + 'm';
  if (m) return m + 'm ' + r + 's';
  return r + 's';
}
function time(iso) {
  const t = typeof iso === 'string' ? new Date(iso) : null;
  return t && !Number.isNaN(t.getTime()) ? t.toLocaleString() : null;
}
function stateClass(state) {
  const s = String(state);
  return GOOD.has(s) ? 'ok' : BAD.has(s) ? 'bad' : 'warn';
}
/** A cell: a plain value, or { text, cls, title }. */
function cell(c, header) {
  const spec = c !== null && typeof c === 'object' ? c : { text: c };
  const classes = [spec.cls || '', NUM.has(header) ? 'num' : ''].join(' ').trim();
  const td = el('td', show(spec.text), classes);
  if (spec.title) td.title = String(spec.title);
  return td;
}
function fillTable(id, headers, rows, empty) {
  const table = $(id);
  const head = el('tr');
  for (const h of headers) head.append(el('th', h, NUM.has(h) ? 'num' : ''));
  const thead = el('thead');
  thead.append(head);
  const tbody = el('tbody');
  if (rows.length === 0) {
    const td = el('td', empty, 'empty');
    td.colSpan = headers.length;
    const tr = el('tr');
    tr.append(td);
    tbody.append(tr);
  }
  for (const row of rows) {
    const tr = el('tr');
    row.forEach((c, i) => tr.append(cell(c, headers[i])));
    tbody.append(tr);
  }
  table.replaceChildren(thead, tbody);
}
function fillList(id, pairs) {
  const dl = $(id);
  const nodes = [];
  for (const [k, v, cls] of pairs) {
    nodes.push(el('dt', k));
    nodes.push(el('dd', v, cls));
  }
  dl.replaceChildren(...nodes);
}
/** '812 B', '9.8 KB', '1.4 MB'. */
function bytes(n) {
  if (typeof n !== 'number') return null;
  return n < 1024 ? n + ' B' : n < 1048576 ? (n / 1024).toFixed(1) + ' KB' : (n / 1048576).toFixed(1) + ' MB';
}
/** '1 session', '2 sessions', '0 sessions'. */
function plural(n, noun) {
  return n + ' ' + noun + (n === 1 ? '' : 's');
}
function count(id, n) {
  $(id).textContent = typeof n === 'number' ? '(' + n + ')' : '';
}

function renderDaemon(r) {
  const autoStarted = r.auto_started === true
    ? 'yes' + (typeof r.idle_exit_ms === 'number' ? ' (exits after ' + duration(r.idle_exit_ms / 1000) + ' with no session)' : '')
    : r.auto_started === false ? 'no' : null;
  const s = r.sessions || {};
  const mem = r.memory || {};
  fillList('daemon', [
    ['status', r.status, stateClass(r.status)],
    ['version', r.version],
    ['pid', r.pid],
    ['address', r.host && r.port ? 'ws://' + r.host + ':' + r.port + '  (HTTP: /mcp)' : null],
    ['uptime', duration(r.uptime_s)],
    ['started', time(r.started_at)],
    ['auto-started', autoStarted],
    ['sessions', s.total === undefined ? null : s.total + ' (' + s.attached + ' attached, ' + s.detached + ' detached)'],
    ['in flight', r.inflight],
    ['memory', typeof mem.rss_bytes === 'number' ? Math.round(mem.rss_bytes / 1048576) + ' MiB resident' : null],
  ]);
}
function renderSessions(r) {
  const list = ((r.sessions && r.sessions.list) || []).slice();
  list.sort((a, b) => String(a.client).localeCompare(String(b.client)) || (b.age_s || 0) - (a.age_s || 0));
  count('sessions-count', list.length);
  fillTable('sessions', ['client', 'transport', 'state', 'era', 'profile', 'tools', 'list size', 'working directory', 'age', 'in flight',
    'requests', 'p99 ms'],
    list.map((s) => [
      { text: [s.client, s.client_version].filter(Boolean).join(' '), title: s.id },
      s.transport,
      { text: s.state, cls: stateClass(s.state) },
      s.era,
      { text: s.profile_missing ? s.profile + ' (gone)' : s.profile, cls: s.profile_missing ? 'bad' : '' },
      { text: s.tools, cls: s.over_cap ? 'warn' : '', title: typeof s.tool_cap === 'number' ? 'its client takes ' + s.tool_cap : '' },
      { text: bytes(s.tools_bytes), cls: s.over_cap ? 'warn' : '' },
      { text: s.cwd, cls: 'path' },
      duration(s.age_s),
      s.inflight,
      s.requests,
      typeof s.p99_ms === 'number' ? Math.round(s.p99_ms * 10) / 10 : null,
    ]), 'no session open');
  // A window over its client's cap: the client leaves tools out, or refuses them all.
  $('over-cap').replaceChildren(...list.filter((s) => s.over_cap === true).map((s) => el('li', s.client + ': ' + s.tools +
    ' tools, more than its client takes (' + s.tool_cap + '): give this window a profile or use tool search', 'warn')));
  const stateless = Array.isArray(r.stateless_clients) ? r.stateless_clients : [];
  count('stateless-count', stateless.length);
  fillTable('stateless', ['client', 'era', 'requests', 'last seen'],
    stateless.map((c) => [c.client, c.era, c.requests, typeof c.last_seen_s === 'number' ? duration(c.last_seen_s) + ' ago' : null]),
    'none since the daemon started');
}
/** A url server's OAuth login, in the words of exai-ws status (commands/status-login.ts); never a token (none is in the report). */
function loginCell(s) {
  const l = s.login;
  if (!l || typeof l !== 'object') return null;
  const run = 'run exai-ws login ' + s.name;
  if (l.state === 'logged_in') {
    const left = (Date.parse(l.expires_at) - Date.now()) / 1000;
    const expiry = Number.isFinite(left) ? (left >= 0 ? 'expires in ' + duration(left) : 'expired ' + duration(-left) + ' ago') : '';
    const parts = [l.issuer ? 'issuer ' + l.issuer : '', expiry].filter(Boolean);
    return { text: 'logged in' + (parts.length ? ' (' + parts.join(', ') + ')' : ''), cls: 'ok', title: l.scope ? 'scopes: ' + l.scope : '' };
  }
  if (l.state === 'needs_login') return { text: 'needs login: ' + run + (l.error ? ' (' + l.error + ')' : ''), cls: 'warn' };
  if (l.state === 'refresh_failing') return { text: 'refresh failing: ' + (l.error || 'the token could not be refreshed') + '; ' + run + ' if it goes on', cls: 'err bad' };
  if (l.state === 'refused') return { text: 'refused: ' + (l.error || 'the server kept refusing the scopes granted'), cls: 'err bad' };
  return { text: 'no login asked for', cls: 'muted' };
}
function renderServers(r) {
  const list = Array.isArray(r.servers) ? r.servers : [];
  count('servers-count', list.length);
  fillTable('servers', ['server', 'state', 'login', 'era', 'pid', 'scope', 'scope key', 'sessions', 'restarts', 'last error'],
    list.map((s) => [
      s.name,
      { text: s.state, cls: stateClass(s.state) },
      loginCell(s),
      s.era,
      s.pid,
      s.scope,
      { text: s.scope_key, cls: 'path' },
      s.sessions,
      s.restarts,
      { text: s.last_error, cls: s.last_error ? 'err bad' : 'err' },
    ]), 'no hosted server configured');
}
function renderProviders(r) {
  const list = Array.isArray(r.providers) ? r.providers : [];
  fillTable('providers', ['provider', 'configured', 'in flight', 'queued', "429s", 'calls', 'errors', 'state', 'last error'],
    list.map((p) => [
      { text: p.label || p.id, title: p.base_url || '' },
      { text: p.configured ? 'yes' : 'no', cls: p.configured ? 'ok' : 'muted' },
      { text: show(p.inflight) + ' / ' + show(p.max_inflight), cls: 'num' },
      p.waiting,
      p.rate_limited,
      p.calls,
      p.errors,
      { text: p.state, cls: p.state === undefined ? '' : p.state === 'not_configured' || p.state === 'unknown' ? 'muted' : stateClass(p.state) },
      { text: p.last_error, cls: p.last_error ? 'err bad' : 'err', title: time(p.last_error_at) || '' },
    ]), 'no model provider');
}
function renderConfig(r) {
  const c = r.config || {};
  const last = c.last_reload;
  let reload = 'none since start', cls = 'muted';
  if (last && typeof last.error === 'string') {
    reload = 'failed at ' + time(last.at) + ': ' + last.error;
    cls = 'bad';
  } else if (last) {
    const n = (k) => (Array.isArray(last[k]) ? last[k].length : 0);
    reload = 'ok at ' + time(last.at) + ': ' + n('added') + ' added, ' + n('removed') + ' removed, ' + n('restarted') + ' restarted, ' +
      n('unchanged') + ' unchanged' + (last.refused ? ', ' + last.refused + ' entries refused' : '');
    cls = last.refused ? 'warn' : 'ok';
  }
  // watching: the folder watched (the file's own, or the nearest one above while it is missing), null: none.
  const watched = typeof c.watching === 'string' ? 'watched: applied as soon as it is saved'
    : c.watching === null ? 'not watched: exai-ws reload applies an edit' : null;
  const pairs = [
    ['file', c.path === undefined ? null : c.path + (c.exists === false ? ' (not found)' : '')],
    ['changes', watched, typeof c.watching === 'string' ? 'ok' : 'warn'],
  ];
  // A file that could not be used at start: no hosted server runs from it until it is fixed.
  const reloadFailed = last && typeof last.error === 'string';
  if (typeof c.error === 'string' && !reloadFailed) pairs.push(['not applied', c.error + ' (no hosted servers until it is fixed)', 'bad']);
  pairs.push(['last reload', reload, cls]);
  fillList('config', pairs);
  const problems = Array.isArray(c.problems) ? c.problems : [];
  const ul = $('problems');
  ul.replaceChildren(...problems.map((p) => el('li', (p.server || '?') + (p.key ? '.' + p.key : '') + ': ' + p.reason, 'bad')));
}
function renderWarnings(r) {
  const warnings = Array.isArray(r.warnings) ? r.warnings : [];
  $('warnings').replaceChildren(...warnings.map((w) => el('li', String(w), 'warn')));
}
function renderSettings(r) {
  const t = r.settings || {};
  const values = Array.isArray(t.values) ? t.values : [];
  const problems = Array.isArray(t.problems) ? t.problems : [];
  fillList('settings', [
    ['file', t.path === undefined ? null : t.path + (t.exists === false ? ' (none: defaults)' : '')],
    ...values.map((v) => [v.name, v.value + (v.source === 'env' ? '  (daemon environment)' : '  (daemon.env)')]),
    ...problems.map((p) => ['line ' + p.line, 'not taken: ' + p.message, 'warn']),
  ]);
}
function renderFiles(r) {
  const file = (f) => {
    if (!f) return [null, ''];
    const text = f.dropped_lines + ' dropped of ' + (f.written_lines + f.dropped_lines) + (f.failing ? ', failing: ' + (f.last_error ? f.last_error.message : '') : '');
    return [text, f.dropped_lines > 0 || f.failing ? 'bad' : 'ok'];
  };
  const [log, logCls] = file(r.log);
  const [metrics, metricsCls] = file(r.metrics_file);
  fillList('files', [
    ['log lines', log, logCls],
    ['metrics lines', metrics, metricsCls],
  ]);
}

function render(r) {
  for (const part of [renderDaemon, renderWarnings, renderSessions, renderServers, renderProviders, renderConfig, renderSettings, renderFiles]) {
    try {
      part(r);
    } catch (e) {
      // One malformed part must not blank the others.
      console.error('status page: cannot render', part.name, e);
    }
  }
  document.title = 'exai-ws ' + show(r.version) + ' \\u00b7 ' + plural((r.sessions && r.sessions.total) || 0, 'session');
  $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
}

function setConnection(state, text) {
  const conn = $('conn');
  conn.className = 'badge ' + state;
  conn.textContent = text;
  document.body.classList.toggle('stale', state !== 'live');
  document.body.dataset.connection = state;
}

let source = null;
let retryMs = 1000;
let retryTimer = 0;
function connect() {
  clearTimeout(retryTimer);
  if (source) source.close();
  source = new EventSource('/events');
  source.onmessage = (e) => {
    let report;
    try {
      report = JSON.parse(e.data);
    } catch {
      return;
    }
    retryMs = 1000;
    setConnection('live', 'live');
    render(report);
  };
  source.onerror = () => {
    setConnection('down', 'disconnected \\u2014 reconnecting');
    // The browser retries a broken stream itself; a refused one (401, 503) it gives up on.
    if (source.readyState !== EventSource.CLOSED) return;
    source.close();
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 30000);
    void signedOut();
  };
}
/** A daemon that restarted no longer knows this page's cookie: say what to do. */
async function signedOut() {
  try {
    const res = await fetch('/health', { cache: 'no-store' });
    const body = await res.json();
    if (body && body.sessions === undefined) setConnection('down', 'signed out \\u2014 run exai-ws open for a new link');
  } catch {
    // Down: the reconnect goes on.
  }
}
connect();
`;

/**
 * The page for one response; `nonce` is the CSP nonce of that response (base64, so it needs
 * no escaping in an attribute).
 */
export function statusDocument(nonce: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>exai-ws status</title>
<link rel="icon" href="data:,">
<style nonce="${nonce}">${STYLE}</style>
</head>
<body class="stale" data-connection="connecting">
<header>
<h1>exai-ws</h1>
<span id="conn" class="badge">connecting</span>
<span id="updated"></span>
</header>
<main>
<h2>Daemon</h2>
<dl id="daemon"></dl>
<ul id="warnings"></ul>
<h2>Sessions <span id="sessions-count" class="count"></span></h2>
<table id="sessions"></table>
<ul id="over-cap"></ul>
<h2>Stateless clients (2026-07-28 over HTTP, a session per request) <span id="stateless-count" class="count"></span></h2>
<table id="stateless"></table>
<h2>Hosted servers <span id="servers-count" class="count"></span></h2>
<table id="servers"></table>
<h2>Model providers</h2>
<table id="providers"></table>
<h2>Configuration</h2>
<dl id="config"></dl>
<ul id="problems"></ul>
<h2>Settings</h2>
<dl id="settings"></dl>
<h2>Log files</h2>
<dl id="files"></dl>
</main>
<noscript><p>This page needs JavaScript for its live view; <code>exai-ws status</code> shows the same.</p></noscript>
<script nonce="${nonce}">${SCRIPT}</script>
</body>
</html>
`;
}
