/**
 * The exit codes of `exai-ws` commands, one list for scripts and service managers to test
 * against (the numbers above 63 follow BSD's sysexits.h). Kept free of imports: the CLI loads
 * this on every command, the shim included.
 */
export const ExitCode = {
  OK: 0,
  /** A general failure: another daemon already runs, the port is taken, nothing answers. */
  FAILURE: 1,
  /** The configuration (environment or hosted-servers file) is invalid. */
  CONFIG: 2,
  /** A usage error: an unknown command or option, a missing or extra argument (the usage follows on stderr). */
  USAGE: 2,
  /** A bug: an uncaught exception or unhandled rejection (the stack is on stderr). */
  CRASH: 70,
  /** EXAI_WS_HOME cannot be used: a path of the wrong type, no permission, a full disk. */
  HOME: 73,
} as const;
