/**
 * What the commands that ask the daemon over a proven request share (`exai-ws open`, `login`,
 * `logout`): where the daemon is with the token to prove with, and why a request got no usable
 * answer, in the words the user reads.
 */
import type { ProvenReply, ProvenTarget } from '../local/health-client.js';
import { resolveHome, urlHost } from '../local/files.js';
import { discoverDaemon } from '../local/client-settings.js';
import { strangerMessage } from '../local/proof.js';

/** Where the daemon answers and the token to prove with, or why there is none. */
export function daemonTarget(env: NodeJS.ProcessEnv): ProvenTarget | string {
  const daemon = discoverDaemon(env, { shell: true });
  if (daemon.token === null) {
    return `no token (no valid token file at ${resolveHome(env).token}, EXAI_WS_TOKEN unset): is the daemon running?`;
  }
  return { host: daemon.host, port: daemon.port, token: daemon.token };
}

/**
 * Why a proven request got no answer, in words; `timedOut` for a request that ran out of time
 * (it reached a daemon), else that is said as nothing answering.
 */
export function failureText(reply: Extract<ProvenReply, { ok: false }>, target: ProvenTarget, timedOut?: string): string {
  const where = `${urlHost(target.host)}:${target.port}`;
  switch (reply.failure) {
    case 'unproven':
      return strangerMessage(target.host, target.port, reply.detail);
    case 'refused':
      return `the daemon on ${where} refused the proof (is EXAI_WS_HOME the daemon's?)`;
    case 'no_token':
      return 'no token to prove with: is the daemon running?';
    case 'unreachable':
      return timedOut !== undefined && reply.detail === 'timeout'
        ? timedOut
        : `no daemon answers on ${where} (start one with \`exai-ws daemon\`)`;
  }
}
