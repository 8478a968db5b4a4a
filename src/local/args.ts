/**
 * The one argument parser of every `exai-ws` command: Node's `util.parseArgs` over a spec per
 * command. `--help` anywhere means "print the usage and do nothing else"; an unknown option or
 * a positional the command does not take is an error that names it. Kept small and free of
 * other imports: the CLI loads it for every command, the shim included.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>;

export interface CommandSpec {
  /** The command as typed: `status`, `service`. */
  name: string;
  /** Printed by `exai-ws NAME --help`, and after a usage error. Ends without a newline. */
  usage: string;
  /** util.parseArgs options; `-h/--help` is added. */
  options?: OptionSpecs;
  /** How many positionals the command takes (default none). */
  positionals?: { min: number; max: number };
}

export type ParsedValues = Record<string, string | boolean | undefined>;

export type Parsed = { help: true } | { error: string } | { values: ParsedValues; positionals: string[] };

const HELP_OPTION: OptionSpecs = { help: { type: 'boolean', short: 'h' } };

/**
 * Parses a command's arguments. Never throws: a usage problem comes back as `{ error }`
 * (one sentence naming the bad argument), for the caller to print with the usage and exit 2.
 */
export function parseCommand(spec: CommandSpec, args: readonly string[]): Parsed {
  // --help wins over everything else on the line, even an unknown option before it.
  if (args.some((a) => a === '--help' || a === '-h')) return { help: true };
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({
      args: [...args],
      options: { ...spec.options, ...HELP_OPTION },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    return { error: describeParseError(error) };
  }
  const { min, max } = spec.positionals ?? { min: 0, max: 0 };
  const { positionals } = parsed;
  if (positionals.length > max) {
    const extra = positionals[max] as string;
    return { error: max === 0 ? `unexpected argument '${extra}'` : `unexpected extra argument '${extra}'` };
  }
  if (positionals.length < min) return { error: `missing argument` };
  for (const [name, option] of Object.entries(spec.options ?? {})) {
    const value = parsed.values[name];
    if (option.type === 'string' && value === '') return { error: `--${name} needs a value` };
  }
  return { values: parsed.values as ParsedValues, positionals };
}

/** util.parseArgs' messages are long and mention internals; keep the part that names the argument. */
function describeParseError(error: unknown): string {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const option = /Unknown option '([^']+)'/.exec(message)?.[1];
    return option ? `unknown option '${option}'` : message;
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    // "Option '-s, --server <value>' argument missing", "... is ambiguous", "Option '--json' does not take an argument"
    const option = /'(?:-\w, )?(--[\w-]+)/.exec(message)?.[1];
    if (option) return message.includes('does not take') ? `${option} takes no value` : `${option} needs a value`;
  }
  return message.split('\n')[0] ?? message;
}
