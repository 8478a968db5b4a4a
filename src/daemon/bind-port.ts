/**
 * Which port the daemon listens on (daemon.ts, start): the configured one or, when someone else
 * holds it, a port of the home's own (own-port.ts), kept in state.json.
 */
import { resolve } from 'node:path';
import { updateState } from '../local/user-state.js';
import type { DaemonConfig } from './files/config.js';
import type { Logger } from './files/logger.js';
import { bindFirst, portCandidates } from './files/own-port.js';
import type { DaemonServer } from './web/server.js';

/**
 * Binds the configured port or, when someone else holds it and it is not the daemon's shell's
 * `EXAI_WS_PORT`, a port of the home's own (own-port.ts), kept in state.json so that the next
 * start tries it first. Warns when the URL entries `exai-ws config` printed name another port.
 */
export async function bindPort(
  server: Pick<DaemonServer, 'listen'>,
  config: DaemonConfig,
  logger: Logger | undefined,
  warn: (text: string, details: Record<string, unknown>) => void,
): Promise<number> {
  const { paths, state } = config;
  const candidates = portCandidates({
    port: config.port,
    source: config.portSource,
    statePort: state.port,
    uid: process.getuid?.() ?? -1,
    home: resolve(paths.home),
  });
  const { port, held } = await bindFirst(candidates, (candidate) => server.listen(candidate));
  if (held.length > 0) {
    logger?.info(
      { port, held, port_source: config.portSource, state: paths.state },
      `port ${held.join(', ')} ${held.length === 1 ? 'is' : 'are'} held by another program; this daemon listens on ${port}, kept in state.json`,
    );
  }
  // A port the daemon's shell named by hand is that shell's business, not the home's; port 0
  // asks for any port each time, not for one to keep.
  if (config.portSource !== 'env' && config.port !== 0 && state.port !== port) {
    try {
      updateState(paths, { port });
    } catch (error) {
      warn(`cannot keep this daemon's port ${port} in ${paths.state} (${(error as Error).message}): its next start may listen on another`, {
        port,
      });
    }
  }
  const printed = state.url_port;
  if (printed !== undefined && printed !== port) {
    const there = held.includes(printed) ? 'which another program holds now' : 'where this daemon does not listen';
    warn(
      `the URL entries printed by exai-ws config name port ${printed}, ${there}: this daemon listens on ${port}; print them again (exai-ws config CLIENT) and paste them into your clients (shim entries follow the daemon by themselves)`,
      { url_port: printed, port },
    );
  }
  return port;
}
