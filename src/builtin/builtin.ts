/**
 * The built-in MCP server: one SDK `McpServer` shared by every session through the router.
 * It is just another server behind a {@link ServerLink}, so it takes the same code path as
 * the user's hosted servers.
 */
import { InMemoryTransport, McpServer } from '@modelcontextprotocol/server';
import type { CallToolResult, JsonSchemaType, JsonSchemaValidator, jsonSchemaValidator } from '@modelcontextprotocol/server';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/server/validators/ajv';
import { z } from 'zod';
import { NAME, VERSION } from '../protocol/version.js';
import { ServerLink } from '../hosting/server-link.js';
import { Upstream } from '../hosting/upstream.js';

/** The name the router uses for the built-in server; its tools keep bare names. */
export const BUILTIN_SERVER = 'exai-ws';

export interface BuiltinContext {
  /** When the hosting process started serving, for uptime. */
  startedAtMs: number;
}

/**
 * The SDK's JSON Schema validator (ajv), made on first use. The SDK's server uses it only for
 * what a client answers to an elicitation, which no built-in tool asks for; made at start, it
 * cost every daemon start 5 to 15 ms of CPU (ajv compiles its formats).
 */
class ValidatorOnFirstUse implements jsonSchemaValidator {
  private made: AjvJsonSchemaValidator | undefined;

  getValidator<T>(schema: JsonSchemaType): JsonSchemaValidator<T> {
    this.made ??= new AjvJsonSchemaValidator();
    return this.made.getValidator<T>(schema);
  }
}

/** Creates the built-in server with the shipped tools registered. Tests may add fixture tools. */
export function createBuiltinServer(context: BuiltinContext): McpServer {
  const server = new McpServer({ name: NAME, version: VERSION }, { jsonSchemaValidator: new ValidatorOnFirstUse() });
  server.registerTool(
    'version',
    {
      title: 'exai-ws version',
      description: 'Report the exai-ws version, Node.js version, platform, server process id and uptime.',
      inputSchema: {},
      outputSchema: {
        name: z.string(),
        version: z.string(),
        node: z.string(),
        platform: z.string(),
        pid: z.number(),
        uptime_s: z.number(),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    (): CallToolResult => {
      const info = {
        name: NAME,
        version: VERSION,
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        pid: process.pid,
        uptime_s: Math.round((Date.now() - context.startedAtMs) / 100) / 10,
      };
      return { content: [{ type: 'text', text: JSON.stringify(info) }], structuredContent: info };
    },
  );
  return server;
}

/** Connects a server to a new link over an in-memory transport pair. The link is not started. */
export async function linkInMemory(name: string, server: McpServer): Promise<ServerLink> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  return new ServerLink(name, clientSide);
}

/**
 * The built-in server as the hub hosts it: an {@link Upstream} that never idles out, linked in
 * memory to `server` (which the caller has finished registering tools on).
 */
export async function builtinUpstream(server: McpServer): Promise<Upstream> {
  const link = await linkInMemory(BUILTIN_SERVER, server);
  return new Upstream({
    name: BUILTIN_SERVER,
    prefix: null,
    idleTimeoutMs: 0,
    launch: (wire) => {
      wire(link);
      return link.start().then(() => ({ link }));
    },
  });
}
