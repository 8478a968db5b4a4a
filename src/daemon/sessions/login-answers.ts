/**
 * What a window is told when its call failed because a `url` server needs a login (or more
 * scopes): never a wait for a person, always at once what to do.
 *
 * - A client that declared URL-mode elicitation (`capabilities.elicitation.url`) gets the
 *   URL-elicitation-required error of 2025-11-25 (-32042) with the authorization URL; opening it
 *   logs in through the daemon's callback, and the window then hears
 *   `notifications/elicitation/complete` for it and may call again.
 * - Any other client gets a tool error (a JSON-RPC error for what is not a tool call) naming
 *   `exai-ws login NAME`.
 * - A server that kept refusing the scopes granted gets why, and no login is offered.
 */
import { isObject } from '../../protocol/jsonrpc.js';
import { RpcCode } from '../../protocol/codes.js';
import type { CallOutcome } from '../../hosting/server-link.js';
import type { OAuthLogins } from '../../hosting/oauth/logins.js';

/** The URL-elicitation-required error (2025-11-25). */
export const URL_ELICITATION_REQUIRED = -32042;

export interface LoginWindow {
  /** The client's declared capabilities. */
  readonly capabilities: Readonly<Record<string, unknown>> | undefined;
  /** Sends the window a notification; false when it is gone. */
  tell(message: object): boolean;
}

/**
 * The outcome the window gets for `outcome` of a call of `method` to `server`: unchanged unless
 * it failed for want of a login. Never rejects.
 */
export async function loginAware(
  outcome: CallOutcome,
  server: string,
  method: string,
  window: LoginWindow,
  logins: OAuthLogins | undefined,
): Promise<CallOutcome> {
  if (outcome === null || !('error' in outcome) || outcome.error.code !== RpcCode.UPSTREAM_UNAVAILABLE) return outcome;
  const need = logins?.need(server);
  if (need === undefined || logins === undefined) return outcome;
  if (need.kind === 'refused') return told(method, server, `${need.message}; \`exai-ws status\` shows the login`);
  const prompt = `${server} needs a login: run \`exai-ws login ${server}\`, then call again`;
  if (!declaresUrlElicitation(window.capabilities)) return told(method, server, `${prompt} (${need.message})`);
  const elicitationId = `exai-ws-login-${server}-${Date.now().toString(36)}`;
  let url: string;
  try {
    const started = await logins.begin(
      server,
      (ended) => {
        if (ended.ok) window.tell({ jsonrpc: '2.0', method: 'notifications/elicitation/complete', params: { elicitationId } });
      },
      true,
    );
    // It needs none after all (it answered meanwhile): the window may simply call again.
    if (!('url' in started)) return told(method, server, `${server} answered without a login meanwhile: call again`);
    url = started.url;
  } catch (error) {
    return told(method, server, `${prompt} (the login cannot start: ${(error as Error).message})`);
  }
  const message = `Log in to ${server} to use it from this window (and every other one).`;
  return {
    error: {
      code: URL_ELICITATION_REQUIRED,
      message: `${server} needs a login`,
      data: { elicitations: [{ mode: 'url', elicitationId, url, message }] },
    },
  };
}

/** True when the client declared URL-mode elicitation (2025-11-25: `elicitation: { url: {} }`). */
export function declaresUrlElicitation(capabilities: Readonly<Record<string, unknown>> | undefined): boolean {
  const elicitation = capabilities?.elicitation;
  return isObject(elicitation) && isObject(elicitation.url);
}

/** A tool call's error is a tool result (the model reads it); anything else stays a JSON-RPC error. */
function told(method: string, server: string, text: string): CallOutcome {
  if (method === 'tools/call') return { result: { content: [{ type: 'text', text }], isError: true } };
  return { error: { code: RpcCode.UPSTREAM_UNAVAILABLE, message: text, data: { server } } };
}
