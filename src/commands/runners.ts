/**
 * What each command that ends with an exit code runs, by name (local/specs.ts): a declarative
 * table, used by the CLI (cli.ts, with the process's own streams and environment) and by tests
 * that run a command in their own process against a real daemon. The commands that are the
 * process itself (`daemon`, `shim`, `stdio`, `help`) stay in cli.ts. Each command's module is
 * imported on demand, so that `exai-ws shim` loads none of them.
 */
import { homedir } from 'node:os';
import { ExitCode } from './exit-codes.js';
import type { ParsedValues } from '../local/args.js';
import type { CommandIo, OutputStream } from './terminal.js';

/** A command's parsed arguments; `rest` is what followed its name, for commands that parse their own. */
export interface CommandArgs {
  values: ParsedValues;
  positionals: string[];
  rest: string[];
}

/**
 * Where a command writes and what it reads: streams (`logs` waits on their backpressure), the
 * environment, and the user's home for `service` (the process's own when left out).
 */
export interface RunnerIo extends CommandIo {
  stdout: NodeJS.WritableStream & OutputStream;
  stderr: NodeJS.WritableStream;
  userHome?: string;
}

type Runner = (args: CommandArgs, io: RunnerIo) => Promise<number>;

/** `--lines` as a whole number; undefined when not given, NaN when not a whole number >= 0. */
function linesOf(values: ParsedValues): number | undefined {
  if (values.lines === undefined) return undefined;
  const lines = Number(values.lines);
  return Number.isInteger(lines) && lines >= 0 ? lines : Number.NaN;
}

export const RUNNERS: Readonly<Record<string, Runner>> = {
  status: async ({ values }, io) => (await import('./status.js')).runStatusCommand({ json: values.json === true }, io),
  stop: async (_args, io) => (await import('./status.js')).runStopCommand(io),
  reload: async (_args, io) => (await import('./status.js')).runReloadCommand(io),
  restart: async (_args, io) => (await import('./restart.js')).runRestartCommand(io),
  logs: async ({ values }, io) => {
    const lines = linesOf(values);
    if (Number.isNaN(lines)) {
      io.stderr.write(`exai-ws logs: --lines takes a whole number (got '${String(values.lines)}')\n`);
      return ExitCode.USAGE;
    }
    const options = { follow: values.follow === true, session: values.session as string | undefined, lines, json: values.json === true };
    return (await import('./logs.js')).runLogsCommand({ ...options, level: values.level as string | undefined }, io);
  },
  open: async ({ values }, io) => (await import('./open.js')).runOpenCommand({ print: values.print === true }, io),
  import: async ({ rest }, io) => (await import('./import.js')).runImportCommand(rest, io),
  config: async ({ rest }, io) => (await import('./client-setup.js')).runClientSetupCommand(rest, io),
  settings: async ({ positionals }, io) =>
    (await import('./settings.js')).runSettingsCommand(positionals, {
      env: io.env,
      out: (text) => io.stdout.write(text),
      err: (text) => io.stderr.write(text),
    }),
  service: async ({ rest }, io) => (await import('./service.js')).runServiceCommand(rest, { ...io, userHome: io.userHome ?? homedir() }),
  token: async ({ positionals }, io) => (await import('./token.js')).runTokenCommand(positionals[0], io),
  // The spec takes exactly one positional: the parser refused the line before this without it.
  login: async ({ values, positionals }, io) =>
    (await import('./login.js')).runLoginCommand({ server: positionals[0] ?? '', print: values.print === true }, io),
  logout: async ({ positionals }, io) => (await import('./login.js')).runLogoutCommand({ server: positionals[0] ?? '' }, io),
  clients: async ({ values, positionals }, io) => {
    const { clientsAction, runClientsCommand } = await import('./clients.js');
    const action = clientsAction(positionals);
    if (typeof action === 'string') {
      const { CLIENTS_SPEC } = await import('../local/specs.js');
      io.stderr.write(`exai-ws clients: ${action}\n${CLIENTS_SPEC.usage}\n`);
      return ExitCode.USAGE;
    }
    return runClientsCommand({ ...action, json: values.json === true }, io);
  },
};
