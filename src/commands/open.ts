/**
 * `exai-ws open`: asks the running daemon for a one-time login code (`POST /auth/code` through
 * a proven request: the daemon first proves it holds this home's token, see health-client.ts),
 * prints the status page's URL with that code on stdout and, when a browser can be shown,
 * opens it there (through a page in the home: the code stays off every command line).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { replaceWhole } from '../local/whole-file.js';
import { provenRequest, type ProvenTarget } from '../local/health-client.js';
import { resolveHome, urlHost } from '../local/files.js';
import { daemonTarget, failureText } from './daemon-ask.js';
import { ExitCode } from './exit-codes.js';
import type { CommandIo } from './terminal.js';

const CODE_TIMEOUT_MS = 3_000;

/** What `POST /auth/code` answers. */
interface CodeReply {
  code: string;
  url?: string;
  expires_in_s?: number;
}

type Asked = { ok: true; reply: CodeReply } | { ok: false; error: string };

/**
 * Prints the login URL and (unless `print`, or no display) opens it in a browser. Resolves to
 * the exit code: 1 with one line on stderr when no daemon answers or it does not prove itself.
 */
export async function runOpenCommand(options: { print: boolean }, io: CommandIo): Promise<number> {
  const { stdout, stderr, env } = io;
  const daemon = daemonTarget(env);
  if (typeof daemon === 'string') {
    stderr.write(`exai-ws open: ${daemon}\n`);
    return ExitCode.FAILURE;
  }
  const asked = await askCode(daemon);
  if (!asked.ok) {
    stderr.write(`exai-ws open: ${asked.error}\n`);
    return ExitCode.FAILURE;
  }
  const url = asked.reply.url ?? `http://${urlHost(daemon.host)}:${daemon.port}/?code=${encodeURIComponent(asked.reply.code)}`;
  stdout.write(`${url}\n`);
  if (!options.print) openInBrowser(redirectFile(resolveHome(env).home, url) ?? url, env);
  return ExitCode.OK;
}

/**
 * The browser is handed `<home>/open.html` (0600, in the home only the user can read), a page
 * that goes on to `url`, rather than `url` itself: a command line is readable by every user of
 * the machine (`/proc/PID/cmdline`), and the code in `url` is worth a login to whoever redeems it
 * first. Null when the file cannot be written (the URL is handed over as it is then).
 */
export function redirectFile(home: string, url: string): string | null {
  const path = join(home, 'open.html');
  const href = url.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
  const html = `<!doctype html><meta charset="utf-8"><meta name="referrer" content="no-referrer"><meta http-equiv="refresh" content="0; url=${href}"><title>exai-ws</title><a href="${href}">Continue to exai-ws</a>\n`;
  try {
    replaceWhole(path, html, 0o600);
    return pathToFileURL(path).href;
  } catch {
    return null;
  }
}

async function askCode(target: ProvenTarget): Promise<Asked> {
  const where = `${urlHost(target.host)}:${target.port}`;
  const reply = await provenRequest(target, { method: 'POST', path: '/auth/code', timeoutMs: CODE_TIMEOUT_MS });
  if (!reply.ok) return { ok: false, error: failureText(reply, target) };
  const body = reply.body as Partial<CodeReply> | null;
  if (reply.status !== 200 || body === null || typeof body !== 'object' || typeof body.code !== 'string') {
    return { ok: false, error: `the daemon on ${where} gave no login code (HTTP ${reply.status})` };
  }
  return { ok: true, reply: { code: body.code, url: typeof body.url === 'string' ? body.url : undefined } };
}

/**
 * The program that hands a URL to the user's browser, or null when none can show one: on
 * Linux and the BSDs a graphical session is needed (DISPLAY or WAYLAND_DISPLAY), else
 * xdg-open would start a text browser inside this terminal or fail.
 */
export function browserOpener(
  env: NodeJS.ProcessEnv,
  platform: NodeJS.Platform = process.platform,
): { command: string; args: string[] } | null {
  if (platform === 'darwin') return { command: 'open', args: [] };
  // `start` is a cmd built-in whose quoting mangles URLs; the URL handler takes it verbatim.
  if (platform === 'win32') return { command: 'rundll32', args: ['url.dll,FileProtocolHandler'] };
  if (!env.DISPLAY && !env.WAYLAND_DISPLAY) return null;
  return { command: 'xdg-open', args: [] };
}

/** Hands `url` to the browser on its own, never waited for; false when none can be shown here. Never throws. */
export function openInBrowser(url: string, env: NodeJS.ProcessEnv): boolean {
  const opener = browserOpener(env);
  if (!opener) return false;
  try {
    const child = spawn(opener.command, [...opener.args, url], { detached: true, stdio: 'ignore', env });
    child.on('error', () => undefined);
    child.unref();
    return true;
  } catch {
    // The URL is printed already; that is the fallback.
    return false;
  }
}
