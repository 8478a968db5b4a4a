/**
 * Every local error code, in one table (as ws lists its `WS_ERR_*` codes in one place). A local
 * error is one the process raises for itself, the shim, the CLI or the daemon: it carries one of
 * these string codes in `code`, never crosses the wire, and its message is for the user.
 *
 * Wire errors are apart and stay apart: numeric JSON-RPC codes and WebSocket close codes in
 * protocol/codes.ts, the hello's refusal codes there too. A local error that must reach a client
 * is turned into one of those by whoever answers (a -32011, an `isError` tool result).
 *
 * Here, not in protocol/: these codes are the opposite of the wire. Here, not higher: the
 * shim, the CLI and every room of the daemon raise them (local/ is below all of them).
 */

/** Each local error code and what it means, one line each. */
export const LOCAL_ERRORS = Object.freeze({
  EHOME: "the daemon's home (EXAI_WS_HOME) or a file in it cannot be used: wrong type, no permission, a full or read-only disk",
  ECONFIG: "the daemon's configuration (environment or settings file) is invalid",
  EALREADY_RUNNING: 'another daemon already holds the pid lock of this home',
  EUPSTREAM_CONFIG: 'the hosted-servers config file cannot be read or is not valid JSON',
  EJSON_SYNTAX: 'a JSON text has a syntax mistake (internal to the config reader, which reports it by line and column)',
  ESPAWN: 'a hosted server process could not be started (`systemCode` names why: ENOENT, EMFILE, E2BIG, EUNSAFE, ...)',
  ELIST: 'a server answered a list call (tools/list, ...) with a JSON-RPC error (`rpc` holds it)',
  EUNAVAILABLE: 'the server of a single-server view could not start, so its list cannot be made',
  EABORTED: 'a call was cancelled while it waited for a provider slot',
  EPROVIDER_NOT_CONFIGURED: 'no provider is configured for the model asked for',
  EPROVIDER_UNAUTHORIZED: 'the provider refused the API key',
  EPROVIDER_RATE_LIMITED: 'the provider kept answering 429 past the attempts or the retry budget',
  EPROVIDER_TIMEOUT: 'the provider did not finish within EXAI_WS_PROVIDER_TIMEOUT_MS',
  EPROVIDER_CANCELLED: 'the chat was cancelled by its caller',
  EPROVIDER_UNKNOWN_MODEL: 'no configured provider offers the model asked for',
  EPROVIDER_UNREACHABLE: 'the provider is configured but could not be reached',
  EPROVIDER_ERROR: 'the provider answered with another HTTP error',
  ELOGIN_NEEDED: 'a `url` server needs an OAuth login (or one with more scopes) that only a person can give: `exai-ws login NAME`',
  EUNKNOWN_SERVER: 'no `url` server of that name in the config (for a login or a logout)',
  EPROVIDER_RETRY: 'one provider attempt was answered 429 and will be retried (internal: never leaves the provider)',
} as const);

/** A local error code: a key of {@link LOCAL_ERRORS}. */
export type LocalErrorCode = keyof typeof LOCAL_ERRORS;

/** True when `code` is a registered local error code. */
export function isLocalErrorCode(code: unknown): code is LocalErrorCode {
  return typeof code === 'string' && Object.hasOwn(LOCAL_ERRORS, code);
}
