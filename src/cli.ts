#!/usr/bin/env node
/**
 * The `exai-ws` command: the only composition root. Each command's module is imported on
 * demand, and `exai-ws shim` loads nothing but the bundled shim (start-up time is its budget).
 */
import { createRequire } from 'node:module';
import { parseCommand, type ParsedValues } from './local/args.js';
import { ExitCode } from './commands/exit-codes.js';
import { COMMANDS, commandSpec, type CommandEntry } from './local/specs.js';
import type { CommandArgs } from './commands/runners.js';
import { NAME, VERSION } from './protocol/version.js';

/** `exai-ws --help`: every command with its summary (each command's --help has the details). */
function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  const commands = COMMANDS.map((c) => {
    const [first, ...more] = c.summary.split('\n');
    return [`  ${c.name.padEnd(width)}${first}`, ...more.map((line) => `  ${' '.repeat(width)}${line}`)].join('\n');
  }).join('\n');
  return `${NAME} ${VERSION}: one MCP daemon shared by every client on this machine

Usage: exai-ws <command> [options]      exai-ws <command> --help: that command's usage

Commands:
${commands}

Options:
  -h, --help      show this help
  -v, --version   print the version

Settings: the daemon reads its settings and provider keys (EXAI_WS_PORT, the limits,
KIMI_API_KEY, ... listed in the README) from daemon.env (exai-ws settings; EXAI_WS_SETTINGS names
another file), whichever client starts it; a daemon started by hand takes its shell's over it.
Environment: EXAI_WS_HOME, EXAI_WS_CONFIG, EXAI_WS_SETTINGS (where things are), and for shims
EXAI_WS_AUTOSTART (0: never start a daemon) and EXAI_WS_RECONNECT_MS.
`;
}

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

/** Parses a command's arguments; prints its usage and exits on --help (0) or a usage error (2). */
function parse(spec: CommandEntry, args: readonly string[]): { values: ParsedValues; positionals: string[] } {
  const parsed = parseCommand(spec, args);
  if ('help' in parsed) {
    process.stdout.write(`${spec.usage}\n`);
    process.exit(ExitCode.OK);
  }
  if ('error' in parsed) {
    process.stderr.write(`exai-ws ${spec.name}: ${parsed.error}\n${spec.usage}\n`);
    process.exit(ExitCode.USAGE);
  }
  return parsed;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help') {
    process.stdout.write(mainHelp());
    return;
  }
  if (command === '-v' || command === '--version') {
    if (rest.length > 0) fail(`--version takes no arguments (got '${rest[0]}')`, ExitCode.USAGE);
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  const spec = commandSpec(command);
  if (!spec) {
    fail(
      command.startsWith('-') ? `unknown option '${command}'; run exai-ws --help` : `unknown command '${command}'; run exai-ws --help`,
      ExitCode.USAGE,
    );
  }
  const args = { ...parse(spec, rest), rest };
  const own = PROCESS_COMMANDS[spec.name];
  if (own) return own(args);
  const { RUNNERS } = await import('./commands/runners.js');
  const runner = RUNNERS[spec.name];
  if (!runner) fail(`internal error: no runner for '${spec.name}'`, ExitCode.CRASH);
  process.exitCode = await runner(args, { stdout: process.stdout, stderr: process.stderr, env: process.env });
}

/**
 * The commands that are this process (a long-running daemon, the shim, stdio mode, help); every
 * other command is in commands/runners.ts, run with this process's streams and environment.
 */
const PROCESS_COMMANDS: Readonly<Record<string, (args: CommandArgs) => Promise<void> | void>> = {
  help: ({ positionals }) => {
    const about = positionals[0] === undefined ? undefined : commandSpec(positionals[0]);
    if (positionals[0] !== undefined && !about) fail(`unknown command '${positionals[0]}'; run exai-ws --help`, ExitCode.USAGE);
    process.stdout.write(about ? `${about.usage}\n` : mainHelp());
  },
  shim: () => {
    // The bundled shim (see shim/main.ts) reads its options from process.argv (checked above,
    // the same spec) and exits when the session ends.
    createRequire(import.meta.url)('../shim.cjs');
  },
  daemon: async () => {
    const { runDaemonCommand } = await import('./commands/daemon.js');
    await runDaemonCommand();
  },
  stdio: async () => {
    const { loadConfig } = await import('./daemon/files/config.js');
    const { runStdio } = await import('./daemon/stdio.js');
    await runStdio({ config: loadConfig() });
    process.exit(0);
  },
};

main(process.argv.slice(2)).catch(failWith);
