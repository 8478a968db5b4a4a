/**
 * `exai-ws token rotate`: replaces this home's token. With a daemon running it asks the daemon
 * (a proven request, health-client.ts) to make the new token, write the token file and take it
 * at once: open sessions go on, new connections and reconnects (which read the file again) use
 * the new one, and the old one is refused from then on. With no daemon it writes a new token
 * file, which the next daemon takes. A token that does not come from the token file
 * (`EXAI_WS_TOKEN`) is not this command's to change.
 */
import { mkdirSync } from 'node:fs';
import { provenRequest } from '../local/health-client.js';
import { cardIsLive } from '../local/pidfile.js';
import { rotateTokenFile } from '../local/token.js';
import { readAddressCard, readTokenFile, urlHost } from '../local/files.js';
import { resolveClientSettings } from '../local/client-settings.js';
import { strangerMessage } from '../local/proof.js';
import { ExitCode } from './exit-codes.js';
import type { CommandIo } from './terminal.js';
import { TOKEN_SPEC } from '../local/specs.js';

const ROTATE_TIMEOUT_MS = 5_000;

/** What to do about the entries `exai-ws config` printed: they carry the token itself. */
const REPASTE =
  'entries printed by `exai-ws config` (the URL entries and their Authorization header) hold the old token: ' +
  'print them again with `exai-ws config CLIENT` and paste them';

/** Runs `exai-ws token ACTION`; resolves to the exit code (1 with one line on stderr on failure, 2 on a usage error). */
export async function runTokenCommand(action: string | undefined, io: CommandIo): Promise<number> {
  const { stdout, stderr, env } = io;
  if (action !== 'rotate') {
    stderr.write(`exai-ws token: ${action === undefined ? 'which action?' : `unknown action '${action}'`}\n${TOKEN_SPEC.usage}\n`);
    return ExitCode.USAGE;
  }
  const fail = (message: string) => {
    stderr.write(`exai-ws token rotate: ${message}\n`);
    return ExitCode.FAILURE;
  };
  // The token the daemon was started with: this shell's, else the settings file's, else the file.
  const { paths, token: inUse, tokenSource } = resolveClientSettings(env, { shell: true });
  if (tokenSource === 'shell' || (inUse !== null && inUse !== readTokenFile(paths.token))) {
    return fail(
      'the token in use comes from EXAI_WS_TOKEN, not from the token file: change it where EXAI_WS_TOKEN is set, ' +
        'then restart the daemon with it (`exai-ws restart`)',
    );
  }
  const card = readAddressCard(paths.pid);
  if (card && (await cardIsLive(card))) {
    const where = `${urlHost(card.host)}:${card.port}`;
    if (card.port <= 0) return fail(`the daemon (pid ${card.pid}) is still starting; try again in a moment`);
    const reply = await provenRequest(
      { host: card.host, port: card.port, token: inUse },
      { method: 'POST', path: '/auth/rotate', timeoutMs: ROTATE_TIMEOUT_MS },
    );
    if (!reply.ok) {
      // A new file beside a daemon that keeps the old token would lock every window out of it.
      const why =
        reply.failure === 'unproven'
          ? strangerMessage(card.host, card.port, reply.detail)
          : reply.failure === 'no_token'
            ? `the daemon (pid ${card.pid}) runs, but there is no token file at ${paths.token} to check its proof with`
            : `the daemon (pid ${card.pid}) did not answer on ${where} (${reply.detail})`;
      return fail(`${why}; nothing was changed (\`exai-ws restart\` starts a daemon that can rotate it)`);
    }
    const body = reply.body as { message?: unknown } | null;
    if (reply.status !== 200) {
      const message = body !== null && typeof body === 'object' && typeof body.message === 'string' ? body.message : `HTTP ${reply.status}`;
      return fail(`the daemon (pid ${card.pid}) did not rotate the token: ${message}`);
    }
    stdout.write(
      `exai-ws: new token written to ${paths.token} (mode 0600) and taken by the daemon (pid ${card.pid}) at once: ` +
        `open windows go on and reconnect with it; the old token is refused\n` +
        `exai-ws: ${REPASTE}\n`,
    );
    return ExitCode.OK;
  }
  try {
    mkdirSync(paths.home, { recursive: true, mode: 0o700 });
    rotateTokenFile(paths.token);
  } catch (error) {
    return fail((error as Error).message);
  }
  stdout.write(
    `exai-ws: new token written to ${paths.token} (mode 0600); no daemon runs: the next one takes it\n` + `exai-ws: ${REPASTE}\n`,
  );
  return ExitCode.OK;
}
