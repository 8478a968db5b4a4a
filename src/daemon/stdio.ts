/**
 * `exai-ws stdio`: the same core and session code as the daemon, served as a plain stdio MCP
 * server to one client, with no daemon. The classic mode, and the baseline for benchmarks.
 * Stdout carries only MCP messages; logs go to stderr.
 */
import type { Readable, Writable } from 'node:stream';
import type { McpServer } from '@modelcontextprotocol/server';
import { CloseCode, RpcCode } from '../protocol/codes.js';
import { clip, rpcError } from '../protocol/jsonrpc.js';
import { startCore } from '../mux/core.js';
import { Providers } from '../builtin/providers/providers.js';
import type { DaemonConfig } from './files/config.js';
import { coreLog, createLogger } from './files/logger.js';
import { Metrics } from './files/metrics.js';
import { wireFanout } from './sessions/fanout.js';
import { Session } from './sessions/session.js';
import { reportUnserializable } from './sessions/unsendable.js';
import { StdioTransport } from '../transport/stdio.js';
import { toolCapLookup } from '../hosting/tool-caps-config.js';

export interface StdioOptions {
  config: DaemonConfig;
  input?: Readable;
  output?: Writable;
  configureBuiltin?: (server: McpServer) => void;
}

/** Serves one MCP session on the given streams; resolves when input ends and the core closed. */
export async function runStdio(options: StdioOptions): Promise<void> {
  const input = options.input ?? process.stdin;
  const output = options.output ?? process.stdout;
  const { config } = options;
  const { logger } = createLogger(null, config.logLevel);
  // As in the daemon, a servers file that cannot be used is no reason to refuse the built-in tools.
  if (config.upstreams.error !== undefined) {
    logger.warn({ err: config.upstreams.error, config: config.upstreamsPath }, 'config file not applied: no hosted servers');
  }
  const hub = await startCore({
    startedAtMs: Date.now(),
    listTimeoutMs: config.callTimeoutMs,
    providers: new Providers(config.providers),
    upstreams: config.upstreams.servers,
    profiles: config.upstreams.profiles,
    npxDirect: config.npxDirect,
    listWaitMs: config.listWaitMs,
    initTimeoutMs: config.initTimeoutMs,
    log: coreLog(logger),
    requestTimeoutMs: config.callTimeoutMs,
    configureBuiltin: options.configureBuiltin,
  });
  const metrics = new Metrics();
  const session = new Session(
    'stdio',
    { name: 'stdio', version: '' },
    {
      hub,
      config,
      metrics,
      logger,
      expire: () => undefined,
      toolCap: toolCapLookup(config.upstreams.toolCaps),
    },
  );
  wireFanout(hub, {
    list: () => [session],
    get: (id) => (id === session.id ? session : undefined),
    unsendable: (n, reason) => reportUnserializable({ logger, metrics }, { kind: 'notification', method: clip(n.method, 100), reason }),
  });
  const transport = new StdioTransport({
    input,
    output,
    maxLineBytes: config.maxBytes,
    onoversize: (bytes) =>
      session.send(rpcError(null, RpcCode.INVALID_REQUEST, `message of ${bytes}+ bytes exceeds the ${config.maxBytes}-byte limit`)),
  });
  const ended = new Promise<void>((resolve) => (transport.onclose = () => resolve()));
  transport.onmessage = (line) => session.receive(line);
  session.attach(transport);
  await ended;
  session.close(CloseCode.NORMAL, 'stdin closed');
  await hub.close();
}
