/**
 * `exai-ws login NAME [--print]` and `exai-ws logout NAME`: the CLI's side of the daemon's OAuth
 * login to a remote (`url`) server. The daemon does the login itself (discovery, registration,
 * PKCE, the callback on its own port, the tokens in `$EXAI_WS_HOME/oauth/`); these commands only
 * ask it, over proven requests (health-client.ts), as `exai-ws open` does:
 *
 * - login: `POST /control/login {server}` gives the authorization URL, printed on stdout (one
 *   line) and opened in a browser unless `--print`; then `POST /control/login-wait {state}`
 *   waits (the daemon holds it up to 10 minutes) until the redirect reached the daemon and the
 *   server accepted the token. Exit 0 with `logged in to NAME (issuer ...)` on stderr, else 1
 *   with `exai-ws login: NAME: <reason>`.
 * - logout: `POST /control/logout {server}`; `logged out of NAME` on stdout.
 *
 * No token of any kind is printed: the daemon's answers carry none.
 */
import { provenRequest, type ProvenReply, type ProvenTarget } from '../local/health-client.js';
import { ExitCode } from './exit-codes.js';
import { openInBrowser } from './open.js';
import { daemonTarget, failureText } from './daemon-ask.js';
import { printable, type CommandIo } from './terminal.js';

/** How long starting a login may take: the daemon discovers the server's authorization server and may register with it. */
export const LOGIN_START_TIMEOUT_MS = 60_000;
/** The daemon holds a login-wait up to 10 minutes; the margin lets its own answer arrive first. */
export const LOGIN_WAIT_TIMEOUT_MS = 10 * 60_000 + 30_000;
const LOGOUT_TIMEOUT_MS = 10_000;

export type LoginPath = '/control/login' | '/control/login-wait' | '/control/logout';

/** Sends one proven POST to the daemon; never rejects (provenRequest's contract). */
export type LoginAskFn = (target: ProvenTarget, path: LoginPath, body: unknown, timeoutMs: number) => Promise<ProvenReply>;

export const askLogin: LoginAskFn = (target, path, body, timeoutMs) => provenRequest(target, { method: 'POST', path, body, timeoutMs });

/** What the commands need from outside, injectable so that tests decide every answer. */
export interface LoginDeps {
  ask?: LoginAskFn;
  /** Hands the URL to a browser; false when none can be shown. Never throws. */
  openUrl?: (url: string, env: NodeJS.ProcessEnv) => boolean;
}

/** Why a request got no usable answer, or the answer's status and JSON body. */
type Answer = { ok: true; status: number; body: Record<string, unknown> } | { ok: false; error: string };

/**
 * Logs the daemon in to the `url` server `server`. Resolves to the exit code: 0 once the server
 * took the token (or needs no login), 1 with one line on stderr otherwise.
 */
export async function runLoginCommand(options: { server: string; print: boolean }, io: CommandIo, deps: LoginDeps = {}): Promise<number> {
  const { stdout, stderr, env } = io;
  const { server, print } = options;
  const name = printable(server);
  const fail = (reason: string) => {
    stderr.write(`exai-ws login: ${name}: ${printable(reason)}\n`);
    return ExitCode.FAILURE;
  };
  const target = daemonTarget(env);
  if (typeof target === 'string') return fail(target);
  const ask = deps.ask ?? askLogin;

  const startTimeout = `the daemon did not start the login within ${LOGIN_START_TIMEOUT_MS / 1000} s`;
  const started = answerOf(await ask(target, '/control/login', { server }, LOGIN_START_TIMEOUT_MS), target, startTimeout);
  if (!started.ok) return fail(started.error);
  const { status, body } = started;
  if (status !== 200) return fail(refusal(status, body, 'the login could not start'));
  if (body.already === true) {
    stderr.write(`exai-ws login: ${name} needs no login: it answers without one\n`);
    return ExitCode.OK;
  }
  if (typeof body.url !== 'string' || typeof body.state !== 'string') return fail('the daemon gave no authorization URL');
  // The URL is what the user acts on: it goes to stdout alone, so `--print` can be piped.
  stdout.write(`${body.url}\n`);
  const opened = !print && (deps.openUrl ?? openInBrowser)(body.url, env);
  stderr.write(
    `exai-ws login: ${opened ? 'opened the URL above in your browser' : 'open the URL above in a browser'} to log in to ${name}; ` +
      `waiting up to ${Math.round((LOGIN_WAIT_TIMEOUT_MS - 30_000) / 60_000)} min (Ctrl-C stops waiting)\n`,
  );

  const waitTimeout = 'the login was not completed in time';
  const waited = answerOf(await ask(target, '/control/login-wait', { state: body.state }, LOGIN_WAIT_TIMEOUT_MS), target, waitTimeout);
  if (!waited.ok) return fail(waited.error);
  if (waited.status !== 200) return fail(refusal(waited.status, waited.body, 'the login is not known (it expired)'));
  if (waited.body.ok !== true) return fail(typeof waited.body.error === 'string' ? waited.body.error : 'the login failed');
  stderr.write(`logged in to ${name}${loggedInDetail(waited.body)}\n`);
  return ExitCode.OK;
}

/** Has the daemon forget its login to `server`. Resolves to the exit code. */
export async function runLogoutCommand(options: { server: string }, io: CommandIo, deps: LoginDeps = {}): Promise<number> {
  const { stdout, stderr, env } = io;
  const name = printable(options.server);
  const fail = (reason: string) => {
    stderr.write(`exai-ws logout: ${name}: ${printable(reason)}\n`);
    return ExitCode.FAILURE;
  };
  const target = daemonTarget(env);
  if (typeof target === 'string') return fail(target);
  const reply = await (deps.ask ?? askLogin)(target, '/control/logout', { server: options.server }, LOGOUT_TIMEOUT_MS);
  const asked = answerOf(reply, target, `the daemon did not answer within ${LOGOUT_TIMEOUT_MS / 1000} s`);
  if (!asked.ok) return fail(asked.error);
  if (asked.status !== 200) return fail(refusal(asked.status, asked.body, 'the login could not be forgotten'));
  stdout.write(`logged out of ${name}${asked.body.forgot === false ? ' (no login was held)' : ''}\n`);
  return ExitCode.OK;
}

/** A proven reply as these commands reason about it: the reasons in words (`timedOut` for a request that ran out of time), the body as an object. */
function answerOf(reply: ProvenReply, target: ProvenTarget, timedOut: string): Answer {
  if (reply.ok) {
    const body = reply.body !== null && typeof reply.body === 'object' ? (reply.body as Record<string, unknown>) : {};
    return { ok: true, status: reply.status, body };
  }
  return { ok: false, error: failureText(reply, target, timedOut) };
}

/** Why a non-200 answer refused, in words: the daemon's own `error`, else what the status means. */
function refusal(status: number, body: Record<string, unknown>, fallback: string): string {
  // A daemon older than logins answers its generic 404, with a hint listing its routes.
  if (status === 404 && body.error === 'not found' && typeof body.hint === 'string') {
    return 'the daemon is older than this exai-ws and cannot log in to servers: run `exai-ws restart`';
  }
  const error = typeof body.error === 'string' ? body.error : null;
  if (status === 503) return `the daemon is not running servers now (starting or shutting down)${error ? `: ${error}` : ''}`;
  if (error !== null) return error;
  return `${fallback} (HTTP ${status})`;
}

/** ` (issuer X, expires in 52 min)`, or less when the daemon did not say. */
function loggedInDetail(body: Record<string, unknown>, nowMs: number = Date.now()): string {
  const parts: string[] = [];
  if (typeof body.issuer === 'string') parts.push(`issuer ${printable(body.issuer)}`);
  const expires = typeof body.expires_at === 'string' ? Date.parse(body.expires_at) : Number.NaN;
  if (Number.isFinite(expires)) parts.push(`token expires in ${Math.max(0, Math.round((expires - nowMs) / 60_000))} min`);
  return parts.length > 0 ? ` (${parts.join(', ')})` : '';
}
