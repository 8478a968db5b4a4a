/**
 * The consent page's HTML (consent-routes.ts): pure, from the request waiting for the user.
 * Three pages: "Allow CLIENT to use exai-ws (N tools)" for a browser holding the status page's
 * cookie, the one-time code form for any other, and an error. Every value shown is escaped;
 * the pages load nothing, run one script of their own (pinned by hash) and cannot be framed
 * (consent-routes.ts's headers).
 */
import { createHash } from 'node:crypto';
import type { PendingRequest } from '../authz/authorization-server.js';
import { AUTHZ_PATHS } from '../authz/authorization-server.js';
import { CONSENT_KEY_FRAGMENT, CONSENT_KEY_STORAGE, KEPT_KEYS } from './web-auth.js';
import { escapeHtml } from './html.js';

/**
 * Browser code that keeps a consent key that came in the fragment (`#consent=KEY`) in the
 * origin's storage, beside at most {@link KEPT_KEYS} - 1 earlier ones (a key pushed in by a page
 * elsewhere cannot push the good one out alone), and takes it out of the address bar. The
 * status page runs it too (status-page-document.ts): its login link's redirect brings a key.
 */
export const KEEP_CONSENT_KEY_JS =
  `(() => { const f = '${CONSENT_KEY_FRAGMENT}', s = '${CONSENT_KEY_STORAGE}'; if (!location.hash.startsWith(f)) return;` +
  ` const k = location.hash.slice(f.length); history.replaceState(null, '', location.pathname + location.search);` +
  ` if (!/^[\\w-]{20,64}$/.test(k)) return;` +
  ` try { const kept = (localStorage.getItem(s) || '').split(' ').filter((x) => x && x !== k);` +
  ` localStorage.setItem(s, [k, ...kept].slice(0, ${KEPT_KEYS}).join(' ')); } catch {} })();`;

/**
 * The consent page's one script: keeps a key that came in the fragment, puts the kept keys in the
 * form, and enables the buttons once the page has been visible and focused for a moment (a click
 * aimed at a page that opened this one under the pointer lands on nothing). Static, so that the
 * page's CSP can pin it by hash ({@link CONSENT_SCRIPT_HASH}).
 */
const CONSENT_SCRIPT =
  KEEP_CONSENT_KEY_JS +
  ` (() => { const k = document.querySelector('input[name=key]'); if (k) { try { k.value = localStorage.getItem('${CONSENT_KEY_STORAGE}') || ''; } catch {} }` +
  ` const buttons = document.querySelectorAll('button[data-wait]'); let timer;` +
  ` const arm = () => { clearTimeout(timer); for (const b of buttons) b.disabled = true;` +
  ` if (document.visibilityState === 'visible' && document.hasFocus()) timer = setTimeout(() => { for (const b of buttons) b.disabled = false; }, 700); };` +
  ` addEventListener('focus', arm); addEventListener('blur', arm); document.addEventListener('visibilitychange', arm); arm(); })();`;
export const CONSENT_SCRIPT_HASH = `sha256-${createHash('sha256').update(CONSENT_SCRIPT).digest('base64')}`;

const STYLE =
  'body{font:16px system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;line-height:1.45}' +
  'code{background:#8882;padding:.1em .3em}button,input{font:inherit;padding:.4em .9em;margin:.2em .4em .2em 0}' +
  'input[type=text]{width:100%;box-sizing:border-box}.who{color:#666;font-size:.9em}.error{color:#b00}';

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body><h1>exai-ws</h1>${body}</body></html>`;
}

function hidden(request: PendingRequest): string {
  return `<input type="hidden" name="request" value="${escapeHtml(request.id)}"><input type="hidden" name="csrf" value="${escapeHtml(request.csrf)}">`;
}

function who(request: PendingRequest): string {
  const { client, redirect_uri } = request;
  const source =
    client.kind === 'metadata_document'
      ? `The name is from the client's metadata document at ${client.client_id}.`
      : `The name is the client's own, unverified: any program can register under any name (this one registered with this daemon as ${client.client_id}).`;
  const answer = new URL(redirect_uri);
  return `<p class="who">${escapeHtml(source)} The answer goes to ${escapeHtml(`${answer.host}${answer.pathname}`)} on this machine: allow only a client you just started a login in.</p>`;
}

/** For a browser holding the status page's cookie: allow or deny. */
export function consentPage(request: PendingRequest, tools: number | undefined): string {
  const name = request.client.client_name;
  const count = tools === undefined ? '' : ` (${tools} tool${tools === 1 ? '' : 's'})`;
  return page(
    `Allow ${name}?`,
    `<h2>Allow ${escapeHtml(name)} to use exai-ws${count}?</h2>` +
      `<p>It could then call every tool this daemon serves, over ${escapeHtml(request.resource)}, until you revoke it with <code>exai-ws clients revoke ${escapeHtml(shellWord(name))}</code>.</p>` +
      who(request) +
      `<form method="post" action="${AUTHZ_PATHS.authorize}">${hidden(request)}<input type="hidden" name="key" value="">` +
      `<button type="submit" name="decision" value="allow" data-wait disabled>Allow</button><button type="submit" name="decision" value="deny" data-wait disabled>Deny</button></form>` +
      `<script>${CONSENT_SCRIPT}</script>`,
  );
}

/** For any other browser: the one-time code of `exai-ws open`, then the consent page. */
export function codePage(request: PendingRequest, problem?: string): string {
  const name = request.client.client_name;
  return page(
    `${name} asks to use exai-ws`,
    `<h2>${escapeHtml(name)} asks to use exai-ws</h2>` +
      (problem ? `<p class="error">${escapeHtml(problem)}</p>` : '') +
      `<p>Only you can approve it. Run <code>exai-ws open --print</code> in a terminal and paste the link (or its code) it prints here. ` +
      `Or run <code>exai-ws open</code> and reload this page in the browser it opens.</p>` +
      who(request) +
      `<form method="post" action="${AUTHZ_PATHS.authorize}">${hidden(request)}` +
      `<input type="text" name="code" autocomplete="off" autofocus required placeholder="http://127.0.0.1:PORT/?code=..."><button type="submit">Continue</button></form>`,
  );
}

export function errorPage(message: string): string {
  return page(
    'exai-ws: cannot authorize',
    `<h2>This authorization cannot go on</h2><p class="error">${escapeHtml(message)}</p><p>Start again from your client.</p>`,
  );
}

/** `name` as one word of a POSIX shell line (quoted when it holds anything but plain characters). */
function shellWord(name: string): string {
  return /^[A-Za-z0-9._@%+=:,/-]+$/.test(name) ? name : `'${name.replace(/'/g, `'\\''`)}'`;
}
