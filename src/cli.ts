#!/usr/bin/env node
/**
 * The `exai-ws` command: the only composition root. Each command's module is imported on
 * demand, and `exai-ws shim` loads nothing but the bundled shim (start-up time is its budget).
 */
import { createRequire } from 'node:module';
import { ExitCode } from './commands/exit-codes.js';
import { NAME, VERSION } from './version.js';

const HELP = `${NAME} ${VERSION}: one MCP daemon shared by every client on this machine

Usage: exai-ws <command> [options]

Commands:
  daemon            run the daemon in the foreground (ws://127.0.0.1:8765 by default)
  shim              bridge stdio to the daemon: use this as the MCP server command in clients
  stdio             serve the core as a plain stdio MCP server, without a daemon
  status            show the running daemon (exit 1 when none answers); --json for JSON
  stop              stop the running daemon gracefully
  restart           replace the running daemon (or start one when none runs) with one started
                    from this shell's environment, detached, logging to logs/ws_daemon.log;
                    like an auto-started daemon it exits after EXAI_WS_IDLE_EXIT_MS (8 h) with
                    no session (EXAI_WS_IDLE_EXIT_MS=0: never)
  reload            re-read the hosted servers' config (the daemon also watches the file)
  import            copy a client's MCP servers into the daemon's config and print the shim
                    entry that replaces them: --from vscode|claude|cursor [path] [--dry-run]
  config            print a client's entry, ready to paste, with absolute paths and the token:
                    vscode|cursor|claude-code (Streamable HTTP, http://127.0.0.1:PORT/mcp, and
                    the shim form) or claude-desktop (the shim); --server NAME: one hosted server
  service           install|uninstall|status: run the daemon from your login (a systemd user
                    unit on Linux, a launchd agent on macOS); EXAI_WS_SERVICE_MANAGER=none
                    writes or removes the file and prints the systemctl/launchctl commands
  help              show this help

Options:
  -h, --help        show this help
  -v, --version     print the version

Environment: EXAI_WS_HOME, EXAI_WS_HOST, EXAI_WS_PORT, EXAI_WS_TOKEN, EXAI_WS_BACKPRESSURE,
EXAI_WS_AUTOSTART (0: shims never start a daemon), EXAI_WS_IDLE_EXIT_MS, LOG_LEVEL and the
limits listed in the README.
`;

function fail(message: string, code: number = ExitCode.FAILURE): never {
  process.stderr.write(`exai-ws: ${message}\n`);
  process.exit(code);
}

/**
 * The last resort for an error no command handled. Errors a user can act on (an invalid
 * configuration, an unusable home) are one line with their own exit code; anything else is a
 * bug: its stack is printed and the exit code is {@link ExitCode.CRASH}. Matched by name, so
 * that this file imports no command's modules (`exai-ws shim` must start fast).
 */
function failWith(error: unknown): never {
  if (error instanceof Error && error.name === 'ConfigError') fail(error.message, ExitCode.CONFIG);
  if (error instanceof Error && error.name === 'HomeError') fail(`cannot use the home directory: ${error.message}`, ExitCode.HOME);
  fail(`internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`, ExitCode.CRASH);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case 'help':
    case '-h':
    case '--help':
      process.stdout.write(HELP);
      return;
    case '-v':
    case '--version':
      process.stdout.write(`${VERSION}\n`);
      return;
    case 'shim':
      // The bundled shim (see shim/main.ts) reads its options from process.argv and exits
      // when the session ends.
      createRequire(import.meta.url)('../shim.cjs');
      return;
    case 'daemon': {
      const { runDaemonCommand } = await import('./commands/daemon.js');
      await runDaemonCommand();
      return;
    }
    case 'stdio': {
      const { loadConfig } = await import('./daemon/config.js');
      const { runStdio } = await import('./daemon/stdio.js');
      await runStdio({ config: loadConfig() });
      process.exit(0);
      return;
    }
    case 'status': {
      const { runStatusCommand } = await import('./commands/status.js');
      process.exitCode = await runStatusCommand({ json: rest.includes('--json') });
      return;
    }
    case 'stop': {
      const { runStopCommand } = await import('./commands/status.js');
      process.exitCode = await runStopCommand();
      return;
    }
    case 'restart': {
      const { runRestartCommand } = await import('./commands/restart.js');
      process.exitCode = await runRestartCommand();
      return;
    }
    case 'reload': {
      const { runReloadCommand } = await import('./commands/status.js');
      process.exitCode = await runReloadCommand();
      return;
    }
    case 'import': {
      const { runImportCommand } = await import('./commands/import.js');
      process.exitCode = runImportCommand(rest);
      return;
    }
    case 'config': {
      const { runClientSetupCommand } = await import('./commands/client-setup.js');
      process.exitCode = await runClientSetupCommand(rest);
      return;
    }
    case 'service': {
      const { runServiceCommand } = await import('./commands/service.js');
      process.exitCode = await runServiceCommand(rest);
      return;
    }
    default:
      fail(`unknown command '${command}'; run exai-ws --help`);
  }
}

main(process.argv.slice(2)).catch(failWith);
