/**
 * What logins (hosting/oauth/logins.ts) need of the hub: a `url` server's entry, one request
 * to learn its challenge, and the check that a new token is accepted, through the server's
 * shared instance, the one every window's calls use.
 */
import { RpcCode } from '../protocol/codes.js';
import type { LoginHooks } from '../hosting/oauth/logins.js';
import type { Hub } from './hub.js';

/** How long the probe and the check may take. */
const ASK_TIMEOUT_MS = 15_000;

export function loginHooks(hub: Hub): LoginHooks {
  const shared = (name: string) => hub.hosted(name)?.shared;
  return {
    specOf: (name) => {
      const spec = hub.hosted(name)?.spec;
      return spec?.kind === 'http' ? spec : undefined;
    },
    probe: async (name) => {
      // The outcome does not matter: a refusal leaves its challenge with the login.
      await shared(name)?.call('tools/list', {}, { timeoutMs: ASK_TIMEOUT_MS });
    },
    verify: async (name) => {
      const hosted = hub.hosted(name);
      if (hosted === undefined) return 'the server is no longer in the config';
      // A scoped entry has no shared instance: its instances take the token at their next request.
      const server = hosted.shared;
      if (server === undefined) return undefined;
      try {
        await server.retryNow();
      } catch (error) {
        return hub.logins?.need(name)?.message ?? (error as Error).message;
      }
      const outcome = await server.call('tools/list', {}, { timeoutMs: ASK_TIMEOUT_MS });
      if (outcome === null || !('error' in outcome) || outcome.error.code === RpcCode.METHOD_NOT_FOUND) return undefined;
      return hub.logins?.need(name)?.message ?? outcome.error.message;
    },
  };
}
