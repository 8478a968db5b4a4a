/**
 * Every `exai-ws` command's options and usage, in one place: the CLI parses with these, each
 * command's `--help` prints its usage, `exai-ws --help` lists the summaries, and a test holds
 * the README to the same list. Free of other imports (the shim bundle includes it).
 */
import type { CommandSpec } from './args.js';

export interface CommandEntry extends CommandSpec {
  /** One line (or a few, indented) for `exai-ws --help`. */
  summary: string;
}

const DAEMON: CommandEntry = {
  name: 'daemon',
  summary: 'run the daemon in the foreground (ws://127.0.0.1:8765 by default)',
  usage: `usage: exai-ws daemon

Runs the daemon in the foreground, in this process, until Ctrl-C (Ctrl-Break or closing the
console window on Windows), SIGTERM or \`exai-ws stop\`.
Settings come from daemon.env (exai-ws settings), with this shell's variables (EXAI_WS_PORT,
... see the README) over it. It runs with the Node options it is given: auto-start,
\`exai-ws restart\`, the service and \`npm run daemon\` give --max-semi-space-size=4; by hand,
add it with NODE_OPTIONS=--max-semi-space-size=4. \`exai-ws reload\` (or SIGHUP, off Windows)
re-reads the hosted servers' config.
Exit codes: 0 stopped, 1 another daemon runs or the port is taken, 2 invalid
configuration, 73 unusable home, 70 crash.`,
};

export const SHIM_SPEC: CommandEntry = {
  name: 'shim',
  summary:
    'bridge stdio to the daemon: use this as the MCP server command in clients\n--server NAME: one hosted server alone, unprefixed; --profile NAME: a profile of the config',
  usage: `usage: exai-ws shim [--server NAME | --profile NAME]

Bridges the MCP client's stdio to the daemon (starting it when none runs, unless
EXAI_WS_AUTOSTART=0), reconnecting and resuming when the daemon goes away. Use it as the MCP
server command in a client's config (the same as \`node dist/shim.cjs\`).

Options:
  --server NAME   show the client one hosted server alone, with its own names (unprefixed)
  --profile NAME  show the client what the profile NAME of the config shows (its servers,
                  its tools, or tool search); an unknown profile is an error`,
  options: { server: { type: 'string' }, profile: { type: 'string' } },
};

const STDIO: CommandEntry = {
  name: 'stdio',
  summary: 'serve the core as a plain stdio MCP server, without a daemon',
  usage: `usage: exai-ws stdio

Serves the built-in tools and the hosted servers of the config as one plain stdio MCP server
in this process, with no daemon (the classic one-copy-per-window mode).`,
};

const STATUS: CommandEntry = {
  name: 'status',
  summary:
    'show the running daemon: sessions by client, hosted servers, providers, last reload\n(exit 1 when none answers); --json for stable JSON',
  usage: `usage: exai-ws status [--json]

Shows the running daemon: version, pid, address, uptime; the sessions by client (transport,
working directory, age, calls in flight, p99 latency); the hosted servers (state, pid, scope,
restarts, last error); the url servers' logins (logged in, needs login, refresh failing); the
model providers (configured, in flight / limit, queued, 429s); the last config reload. Exit 1
when no daemon answers.

Options:
  --json   the same as stable JSON (schema 1)`,
  options: { json: { type: 'boolean' } },
};

const STOP: CommandEntry = {
  name: 'stop',
  summary: 'stop the running daemon gracefully',
  usage: `usage: exai-ws stop

Stops the running daemon gracefully (calls in flight get EXAI_WS_DRAIN_MS to finish) and waits
until it is gone.`,
};

const RESTART: CommandEntry = {
  name: 'restart',
  summary:
    'replace the running daemon (or start one when none runs) with a new one that reads your\nsettings (daemon.env), detached, logging to logs/ws_daemon.log; like an auto-started daemon\nit exits after EXAI_WS_IDLE_EXIT_MS (8 h) with no session (EXAI_WS_IDLE_EXIT_MS=0: never)',
  usage: `usage: exai-ws restart

Replaces the running daemon (or starts one when none runs) with a new one, detached, logging to
logs/ws_daemon.log, which reads your settings file (daemon.env: exai-ws settings) and none of
this shell's EXAI_WS_* or provider variables. Shims reconnect to it. Like an
auto-started daemon it exits after EXAI_WS_IDLE_EXIT_MS (8 h) with no session
(EXAI_WS_IDLE_EXIT_MS=0: never).`,
};

const RELOAD: CommandEntry = {
  name: 'reload',
  summary: "re-read the hosted servers' config (the daemon also watches the file)",
  usage: `usage: exai-ws reload

Asks the daemon to re-read the hosted servers' config and prints what changed (the daemon also
watches the file). Exit 1 when the new config is invalid: the running servers stay.`,
};

const LOGS: CommandEntry = {
  name: 'logs',
  summary: 'print the daemon log readably: -f to follow, --session ID, --level L, -n N lines',
  usage: `usage: exai-ws logs [-f] [--session ID] [--level LEVEL] [-n N] [--json]

Prints the daemon's JSONL log (logs/ws_daemon.log) readably. Lines that are not JSON (a crash's
stack) are printed as they are: kept by --level, left out by --session and --json.

Options:
  -f, --follow      keep printing new lines (across rotation) until Ctrl-C
  --session ID      only the lines of that session (its id, or its start as status shows it)
  --level LEVEL     only that level and worse: trace, debug, info, warn, error, fatal
  -n, --lines N     the last N lines (default 50; 0: all, rotated files included)
  --json            the matching lines as they are (JSONL)`,
  options: {
    follow: { type: 'boolean', short: 'f' },
    session: { type: 'string' },
    level: { type: 'string' },
    lines: { type: 'string', short: 'n' },
    json: { type: 'boolean' },
  },
};

const OPEN: CommandEntry = {
  name: 'open',
  summary: 'open the status page in a browser (prints a one-time login URL); --print: print only',
  usage: `usage: exai-ws open [--print]

Prints a one-time URL of the daemon's status page (http://127.0.0.1:PORT/?code=...) and opens
it in the browser when one is available. The code is good once, for 60 s; the browser keeps an
HttpOnly session cookie instead.

Options:
  --print   print the URL only, do not start a browser`,
  options: { print: { type: 'boolean' } },
};

export const IMPORT_SPEC: CommandEntry = {
  name: 'import',
  summary:
    "copy a client's MCP servers into the daemon's config and print the shim entry that\nreplaces them: --from vscode|claude|cursor [path] [--dry-run]",
  usage: `usage: exai-ws import --from vscode|claude|cursor [PATH] [--dry-run]

Copies the MCP servers a client starts on its own into the daemon's config (EXAI_WS_CONFIG)
and prints the one shim entry that replaces them. PATH: the client's config file (default:
where that client keeps it). An entry using \${workspaceFolder} becomes a workspace-scoped server
(the variable kept); importing again merges: what the source does not name stays.

Options:
  --from CLIENT   vscode, claude or cursor
  --dry-run       print the config that would be written; write nothing`,
  options: { from: { type: 'string' }, 'dry-run': { type: 'boolean' } },
  positionals: { min: 0, max: 1 },
};

export const CONFIG_SPEC: CommandEntry = {
  name: 'config',
  summary:
    "print a client's entry, ready to paste, with absolute paths:\nvscode|cursor|claude-code|gemini|codex (Streamable HTTP, http://127.0.0.1:PORT/mcp,\nand the shim form) or claude-desktop (the shim); --server NAME: one hosted server",
  usage: `usage: exai-ws config vscode|cursor|claude-code|gemini|codex|claude-desktop [--server NAME]

Prints the entry for that client, ready to paste, with absolute paths: Streamable HTTP
(http://127.0.0.1:PORT/mcp) for VS Code, Cursor, Claude Code, Gemini CLI and Codex CLI, the
shim for Claude Desktop, and the shim form as the alternative everywhere. VS Code, Cursor,
Claude Code and Gemini CLI get the URL alone first, with no secret: they log in through the
daemon's consent page (exai-ws clients lists them); then the URL with the token in a header,
for clients without MCP authorization. The
port is the running daemon's, else EXAI_WS_PORT of the settings file, else the port the
daemon last listened on (its own, when another program held the default), else 8765. When the
daemon later has to listen elsewhere, status says so: print the entry again.

Options:
  --server NAME   one hosted server alone, unprefixed (/mcp/NAME, shim --server NAME)
  --profile NAME  a profile of the config (/mcp?profile=NAME, shim --profile NAME)`,
  options: { server: { type: 'string' }, profile: { type: 'string' } },
  positionals: { min: 0, max: 1 },
};

export const SERVICE_SPEC: CommandEntry = {
  name: 'service',
  summary:
    'install|uninstall|status: run the daemon from your login (a systemd user unit on Linux,\na launchd agent on macOS, a Task Scheduler task on Windows); EXAI_WS_SERVICE_MANAGER=none\nwrites or removes the file and prints the systemctl/launchctl/schtasks commands',
  usage: `usage: exai-ws service install|uninstall|status

Runs the daemon from your login: a systemd user unit on Linux, a launchd agent on macOS, a
per-user Task Scheduler task on Windows (no administrator needed).
  install     write the unit (plist, task XML) and start it
  uninstall   stop it and remove the file
  status      show whether it is installed and running
EXAI_WS_SERVICE_MANAGER=none writes or removes the file and prints the systemctl/launchctl/
schtasks commands instead of running them.`,
  positionals: { min: 0, max: 1 },
};

export const SETTINGS_SPEC: CommandEntry = {
  name: 'settings',
  summary:
    "list|set NAME=value|unset NAME: the daemon's settings and provider keys (daemon.env),\nwhich every daemon reads however it starts; changes apply at its next start",
  usage: `usage: exai-ws settings list
       exai-ws settings set NAME=value [NAME=value ...]
       exai-ws settings unset NAME [NAME ...]

The daemon's settings file, daemon.env in your config folder (~/.config/exai-ws/daemon.env;
EXAI_WS_SETTINGS names another): the same names as the environment variables (EXAI_WS_PORT,
EXAI_WS_MAX_SESSIONS, KIMI_API_KEY, ...). Every daemon reads it, whichever client or command
starts it. \`list\` shows each setting (keys masked) and the lines that were not taken;
\`set\` and \`unset\` write the file (mode 0600). A change takes effect at the daemon's next
start: exai-ws restart.`,
  positionals: { min: 1, max: 64 },
};

export const TOKEN_SPEC: CommandEntry = {
  name: 'token',
  summary:
    "rotate: replace this home's token (the running daemon takes the new one at once;\nentries printed by exai-ws config must be printed and pasted again)",
  usage: `usage: exai-ws token rotate

Makes a new random token, writes it to the token file (0600) and, when a daemon runs, has it
take the new token at once: open windows go on and reconnect with it, and the old token is
refused from then on. Entries printed by \`exai-ws config\` hold the token itself: print and
paste them again. Refused when the token comes from EXAI_WS_TOKEN (change it there).`,
  positionals: { min: 0, max: 1 },
};

export const LOGIN_SPEC: CommandEntry = {
  name: 'login',
  summary:
    'log the daemon in to a url server that asks for OAuth: prints the authorization URL,\nopens a browser (--print: print only) and waits; one login serves every window',
  usage: `usage: exai-ws login NAME [--print]

Has the running daemon log in to the url server NAME of the config with OAuth: prints the
authorization URL (one line on stdout), opens it in the browser when one can be shown, and
waits (up to 10 min) until the login came back to the daemon
(http://127.0.0.1:PORT/oauth/callback) and the server took the token. The daemon keeps the
tokens in $EXAI_WS_HOME/oauth/ (yours alone) and refreshes them; every window and client
uses the one login. Exit 0 when logged in (or when the server needs no login), 1 with the
reason otherwise.

Options:
  --print   print the URL only, do not start a browser (open it in a browser on this machine:
            the login comes back to 127.0.0.1)`,
  options: { print: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
};

export const LOGOUT_SPEC: CommandEntry = {
  name: 'logout',
  summary: "forget the daemon's OAuth login to the url server NAME (its next call needs a login again)",
  usage: `usage: exai-ws logout NAME

Has the running daemon forget its OAuth login to the url server NAME: its tokens are removed
from $EXAI_WS_HOME/oauth/ and its next call needs \`exai-ws login NAME\` again.`,
  positionals: { min: 1, max: 1 },
};

export const CLIENTS_SPEC: CommandEntry = {
  name: 'clients',
  summary:
    "list the MCP clients that logged in to /mcp with the daemon's own OAuth;\nclients revoke NAME: revoke one's tokens; --json: the daemon's JSON",
  usage: `usage: exai-ws clients [--json]
       exai-ws clients revoke NAME

Lists the MCP clients that hold tokens the daemon issued itself: a client that speaks MCP
authorization (VS Code, Claude Code, Cursor, Gemini CLI) logs in to http://127.0.0.1:PORT/mcp
through the daemon's consent page, where you allowed it. Each with its name, client id, how many
approvals hold tokens, when first approved and when last used. \`clients revoke NAME\` revokes
every token of the clients of that name (or client id): their next request must be allowed
again. Exit 0; 1 with the reason (no daemon, no client of that name).

Options:
  --json   print the daemon's answer as JSON`,
  options: { json: { type: 'boolean' } },
  positionals: { min: 0, max: 2 },
};

const HELP: CommandEntry = {
  name: 'help',
  summary: 'show this help (exai-ws COMMAND --help: that command)',
  usage: `usage: exai-ws help [COMMAND]`,
  positionals: { min: 0, max: 1 },
};

/** In the order `exai-ws --help` lists them. */
export const COMMANDS: readonly CommandEntry[] = [
  DAEMON,
  SHIM_SPEC,
  STDIO,
  STATUS,
  STOP,
  RESTART,
  RELOAD,
  LOGS,
  OPEN,
  IMPORT_SPEC,
  CONFIG_SPEC,
  SETTINGS_SPEC,
  SERVICE_SPEC,
  TOKEN_SPEC,
  LOGIN_SPEC,
  LOGOUT_SPEC,
  CLIENTS_SPEC,
  HELP,
];

export function commandSpec(name: string): CommandEntry | undefined {
  return COMMANDS.find((c) => c.name === name);
}
