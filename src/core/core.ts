/** Builds the server core (the hub with the built-in server), shared by daemon and stdio mode. */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { registerAiTools } from './ai-tools.js';
import { BUILTIN_SERVER, createBuiltinServer, linkInMemory } from './builtin.js';
import { Hub } from './hub.js';
import type { Providers } from './providers/providers.js';

export interface CoreOptions {
  startedAtMs: number;
  /** Deadline for list calls to servers, in milliseconds. */
  listTimeoutMs: number;
  /** The model providers behind `chat` and `listmodels`; the caller owns them. */
  providers: Providers;
  /** Adds tools to the built-in server before it starts (tests add fixture tools here). */
  configureBuiltin?: ((server: McpServer) => void) | undefined;
}

/** Creates and starts the core; the caller owns the returned hub and closes it. */
export async function startCore(options: CoreOptions): Promise<Hub> {
  const builtin = createBuiltinServer({ startedAtMs: options.startedAtMs });
  registerAiTools(builtin, options.providers);
  options.configureBuiltin?.(builtin);
  const hub = new Hub([{ link: await linkInMemory(BUILTIN_SERVER, builtin), prefix: null }], { listTimeoutMs: options.listTimeoutMs });
  await hub.start();
  return hub;
}
