/** `exai-ws daemon`: runs the daemon in the foreground until SIGINT, SIGTERM or `exai-ws stop`. */
import { ConfigError, loadConfig } from '../daemon/config.js';
import { Daemon, type DaemonOptions } from '../daemon/daemon.js';
import { AlreadyRunningError } from '../daemon/pidfile.js';

/**
 * Starts a daemon from the environment, installs signal handlers and exits the process when
 * it has shut down. `extra` lets test fixtures add tools to the built-in server.
 */
export async function runDaemonCommand(extra: Omit<DaemonOptions, 'config'> = {}): Promise<void> {
  let daemon: Daemon;
  try {
    daemon = new Daemon({ ...extra, config: loadConfig() });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`exai-ws: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  try {
    await daemon.start();
  } catch (error) {
    if (error instanceof AlreadyRunningError) {
      process.stderr.write(`exai-ws: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const { host } = daemon.config;
  process.stderr.write(
    `exai-ws: daemon listening on ws://${host.includes(':') ? `[${host}]` : host}:${daemon.port} (pid ${process.pid}, home ${daemon.config.paths.home})\n`,
  );
  const stop = (signal: string) => {
    daemon.close(signal).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  // SIGHUP (`exai-ws reload`) re-reads the hosted-servers config; a closed terminal never stops the daemon.
  process.on('SIGHUP', () => void daemon.reload('SIGHUP'));
}
