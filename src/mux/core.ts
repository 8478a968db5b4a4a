/**
 * Builds the server core: the hub with the built-in server and the user's hosted servers.
 * Shared by the daemon and stdio mode; the caller owns the returned hub and closes it.
 */
import { existsSync } from 'node:fs';
import { basename, isAbsolute } from 'node:path';
import type { McpServer } from '@modelcontextprotocol/server';
import { registerAiTools } from '../builtin/ai-tools.js';
import { builtinUpstream, createBuiltinServer } from '../builtin/builtin.js';
import { ChildTransport, SpawnError, type ChildSpec } from '../hosting/child-transport.js';
import { Hub } from './hub.js';
import type { CoreCountReason, CoreLog } from '../hosting/core-log.js';
import { NpxResolver } from '../hosting/npx.js';
import type { Providers } from '../builtin/providers/providers.js';
import { ServerLink, notSupported } from '../hosting/server-link.js';
import type { LearnedTools } from './server-requests.js';
import type { RememberedLists } from './remembered-lists.js';
import { DEFAULT_INIT_TIMEOUT_MS, WORKSPACE_FOLDER, type UpstreamSpec } from '../hosting/upstream-config.js';
import type { ProfileSpec } from '../hosting/profile-config.js';
import { Upstream, type Started } from '../hosting/upstream.js';
import type { HostingTimers } from '../hosting/upstream-options.js';
import { Watchdog } from '../hosting/watchdog.js';
import { OAuthLogins } from '../hosting/oauth/logins.js';
import type { OAuthVault } from '../hosting/oauth/vault.js';
import { loginHooks } from './login-hooks.js';
import { mergeEnv, planWindowsLaunch } from '../hosting/windows-command.js';

/** A lifecycle event of the core for the log; `level` when it is not `info`. */

export interface CoreOptions {
  startedAtMs: number;
  /** Deadline for list calls to servers, in milliseconds. */
  listTimeoutMs: number;
  /** The model providers behind `chat` and `listmodels`; the caller owns them. */
  providers: Providers;
  /** The user's hosted servers (already validated). */
  upstreams?: readonly UpstreamSpec[];
  /** The config's profiles (see mux/profiles.ts). */
  profiles?: readonly ProfileSpec[];
  /** Adds tools to the built-in server before it starts (tests add fixture tools here). */
  configureBuiltin?: ((server: McpServer) => void) | undefined;
  /** Lifecycle events of hosted servers, and each line they write to stderr. */
  log?: CoreLog;
  /** Tools known to ask the client back (a file in the daemon's home); in memory when not given. */
  learned?: LearnedTools;
  /** Hosted servers' lists remembered once seen (files in the daemon's home); in memory when not given. */
  remembered?: RememberedLists;
  /** Bounds a client's answer to a server's sampling, elicitation or roots request, in milliseconds. */
  requestTimeoutMs?: number;
  /** Counts an event for the metrics (`origin_unknown`). */
  count?: (reason: CoreCountReason) => void;
  /** Start `npx` entries as the file npx would run, without npx in front (default true). */
  npxDirect?: boolean;
  /** How long a list waits for servers still starting (see Catalog; DEFAULT_LIST_WAIT_MS when unset). */
  listWaitMs?: number;
  /** Deadline of a hosted server's start for entries that set none (DEFAULT_INIT_TIMEOUT_MS when unset). */
  initTimeoutMs?: number;
  /** Restart backoff and process group waits (hostingTimers; their defaults when unset). */
  timers?: HostingTimers;
  /**
   * OAuth logins to `url` servers: where tokens are kept, and the daemon's callback URL
   * (undefined while it has no port). Without it `url` servers send only their `headers`.
   */
  oauth?: { vault: OAuthVault; redirectUrl: () => string | undefined };
}

/** Creates and starts the core: the built-in server at once, eager hosted servers in the background. */
export async function startCore(options: CoreOptions): Promise<Hub> {
  const builtin = createBuiltinServer({ startedAtMs: options.startedAtMs });
  registerAiTools(builtin, options.providers);
  options.configureBuiltin?.(builtin);
  const builtinServer = await builtinUpstream(builtin);
  const watchdog = new Watchdog({ log: options.log, group: options.timers?.group });
  const npx = options.npxDirect === false ? undefined : new NpxResolver();
  const logins = options.oauth && new OAuthLogins(options.oauth.vault, options.oauth.redirectUrl, options.log);
  const create = (spec: UpstreamSpec, key: string | undefined): Upstream => {
    const instance = key === undefined || spec.scope === 'shared' ? spec : forScope(spec, key);
    return new Upstream({
      name: spec.name,
      prefix: spec.prefix ? spec.name : null,
      idleTimeoutMs: spec.idleTimeoutMs,
      scope: spec.scope,
      scopeKey: spec.scope === 'shared' ? undefined : key,
      retryFailedStart: spec.scope === 'shared',
      initTimeoutMs: spec.initTimeoutMs ?? options.initTimeoutMs ?? DEFAULT_INIT_TIMEOUT_MS,
      asksClient: spec.asksClient,
      restartBackoffMs: options.timers?.restartBackoffMs,
      // The sessions' capabilities when it starts (they change as sessions come and go).
      launch: (wire) => launch(instance, wire, { watchdog, options, npx, logins }, hub.requests.declared()),
      log: options.log,
    });
  };
  const hub: Hub = new Hub(
    builtinServer,
    options.upstreams ?? [],
    {
      listTimeoutMs: options.listTimeoutMs,
      listWaitMs: options.listWaitMs,
      log: options.log,
      afterClose: () => watchdog.close(),
      create,
      learned: options.learned,
      remembered: options.remembered,
      requestTimeoutMs: options.requestTimeoutMs,
      count: options.count,
    },
    options.profiles,
  );
  if (logins) {
    hub.logins = logins;
    logins.hooks = loginHooks(hub);
  }
  await builtinServer.connect();
  // Eager servers warm up in the background; the first call waits for them like a lazy start.
  void hub.start();
  return hub;
}

/** An instance's entry, with the values in it that came from a client (see ChildSpec.clientValues). */
type Instance = UpstreamSpec & { readonly clientValues?: readonly string[] };

/**
 * A workspace instance's entry: `${workspaceFolder}` (and `${workspaceFolderBasename}`) in
 * args, env and cwd become the workspace directory (its last part), which is also the default
 * working directory. A session instance's is unchanged. The folder is the client's word, so it
 * is named as such: on Windows it must not reach cmd.exe as syntax.
 */
function forScope(spec: UpstreamSpec, key: string): Instance {
  if (spec.kind !== 'stdio' || spec.scope !== 'workspace') return spec;
  const fill = (text: string) => text.split(WORKSPACE_FOLDER).join(key).split('${workspaceFolderBasename}').join(basename(key));
  const folder = isAbsolute(key) ? key : undefined;
  // A session with no folder known starts it where the daemon runs, not in a path made from nothing.
  const cwd = spec.cwd === undefined || (folder === undefined && spec.cwd.startsWith(WORKSPACE_FOLDER)) ? folder : fill(spec.cwd);
  return {
    ...spec,
    args: spec.args.map(fill),
    env: Object.fromEntries(Object.entries(spec.env).map(([k, v]) => [k, fill(v)])),
    cwd,
    clientValues: [key, basename(key)],
  };
}

/** True for errors that mean an HTTP server can no longer be reached (refused, reset, cut off). */
function connectionLost(error: Error): boolean {
  const text = `${error.message} ${String((error as { cause?: unknown }).cause ?? '')}`;
  return /fetch failed|ECONNREFUSED|ECONNRESET|EPIPE|terminated|other side closed|socket hang up/i.test(text);
}

/**
 * Why spawning gave ENOENT, as a shell says it (`uvx: command not found`), with Node's own words
 * naming the command: most often the command is not on the daemon's PATH (a service or an
 * auto-started daemon may have another PATH than the shell); else the working directory is missing.
 */
function notFound(command: string, cwd: string | undefined, error: Error): string {
  if (cwd !== undefined && !existsSync(cwd))
    return `cannot start "${command}": its working directory ${cwd} does not exist (${error.message})`;
  return `${command}: command not found (${error.message}: not on the daemon's PATH; give its full path in the config entry)`;
}

/** How long a new workspace instance may take to ask for its roots before calls reach it. */
const ROOTS_WAIT_MS = 1_000;
const ROOTS_SETTLE_MS = 50;

/** Resolves once the server's first request of this method has been answered. */
function firstRequest(link: ServerLink, method: string): Promise<void> {
  return new Promise((resolve) => {
    const handler = link.onrequest;
    link.onrequest = async (request, context) => {
      const answer = handler ? await handler(request, context) : notSupported(request.method);
      // The server applies the answer asynchronously: give it a moment before calls arrive.
      if (request.method === method) setTimeout(resolve, ROOTS_SETTLE_MS);
      return answer;
    };
  });
}

/** What every launch shares: `npx` is unset when EXAI_WS_NPX_DIRECT=0, `logins` without OAuth. */
interface LaunchParts {
  watchdog: Watchdog;
  options: CoreOptions;
  npx: NpxResolver | undefined;
  logins: OAuthLogins | undefined;
}

/** Starts one hosted server and completes its initialize handshake. */
async function launch(
  spec: Instance,
  wire: (link: ServerLink) => void,
  { watchdog, options, npx, logins }: LaunchParts,
  declared: Record<string, unknown>,
): Promise<Started> {
  if (spec.kind === 'http') {
    // The SDK's client transports (and the stream tagging with its SSE parser) load with the
    // first hosted server that needs one: a daemon that hosts none (or none yet) starts without them.
    const [{ StreamableHTTPClientTransport }, { tagStreams }] = await Promise.all([
      import('@modelcontextprotocol/client'),
      import('../hosting/http-streams.js'),
    ]);
    // Its requests come on the response stream of the call that caused them: say which one.
    const streams = tagStreams(undefined, {
      onRejectedTool: (tool, why) => options.log?.('tool left out: invalid x-mcp-header', { server: spec.name, tool, why }, 'warn'),
    });
    // Its OAuth login, shared by every window: the token on each request, 401s and 403s watched.
    const login = await logins?.sessionFor(spec);
    const transport = new StreamableHTTPClientTransport(new URL(spec.url), {
      requestInit: { headers: { ...spec.headers } },
      fetch: login ? login.watch(streams.fetch) : streams.fetch,
      ...(login ? { authProvider: login.transportAuth, onInsufficientScope: 'throw' as const } : {}),
    });
    const link = new ServerLink(spec.name, transport, {
      capabilities: declared,
      protocol: spec.protocol,
      isFatal: connectionLost,
      streamOf: (id) => streams.takeStreamOf(id),
    });
    wire(link);
    await link.start();
    return { link, exitReason: () => `the connection to ${spec.url} closed` };
  }
  const { getDefaultEnvironment } = await import('@modelcontextprotocol/client/stdio');
  const configured = {
    command: spec.command,
    args: spec.args,
    env: mergeEnv(getDefaultEnvironment(), spec.env),
    cwd: spec.cwd,
    clientValues: spec.clientValues,
  };
  const direct = await npx?.resolve(configured);
  if (direct) options.log?.('server runs without npx', { server: spec.name, file: direct.file });
  let planned: ChildSpec;
  try {
    // On Windows a .cmd or .bat goes through cmd.exe; elsewhere, and for anything else, as it is.
    planned = planWindowsLaunch(direct ?? configured);
  } catch (error) {
    throw startFailure(spec.name, configured, error);
  }
  const transport = new ChildTransport(planned, watchdog);
  transport.onstderr = (line) => options.log?.('server stderr', { server: spec.name, line }, 'debug');
  const exitReason = () => {
    const tail = transport.stderr.trim().split('\n').slice(-3).join(' | ');
    return `the server process exited (${transport.exitStatus ?? 'unknown status'})${tail ? `: ${tail}` : ''}`;
  };
  // A workspace instance's roots are its workspace, answered by the daemon itself.
  const capabilities = spec.scope === 'workspace' ? { ...declared, roots: {} } : declared;
  const link = new ServerLink(spec.name, transport, { capabilities, protocol: spec.protocol });
  wire(link);
  // A workspace instance usually asks for its roots at once: let it have them before calls arrive.
  const rootsAsked = spec.scope === 'workspace' ? firstRequest(link, 'roots/list') : undefined;
  try {
    await link.start();
    if (rootsAsked) await Promise.race([rootsAsked, new Promise((r) => setTimeout(r, ROOTS_WAIT_MS))]);
  } catch (error) {
    // The next start asks npx again: its cache may have been cleared under the resolved file.
    npx?.forget(configured);
    if (error instanceof SpawnError) throw startFailure(spec.name, configured, error);
    if (transport.exitStatus !== undefined) throw new Error(exitReason());
    throw error;
  }
  return { link, pid: transport.pid, exitReason };
}

/**
 * A server with no process at all (ENOENT, EACCES, EMFILE, E2BIG, EUNSAFE...): the cause, by its
 * code, is the user's to read. Anything but a SpawnError is returned as it is.
 */
function startFailure(name: string, configured: ChildSpec, error: unknown): unknown {
  if (!(error instanceof SpawnError)) return error;
  const why = error.systemCode === 'ENOENT' ? notFound(configured.command, configured.cwd, error) : error.message;
  return new Error(`server ${name} could not be started: ${error.systemCode} ${why}`);
}
