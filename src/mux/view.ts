/** Which servers a session sees: all of them (merged, prefixed) or one, as it is. */
export interface View {
  readonly server?: string | undefined;
  /** The profile the window asked for (`--profile NAME`, `/mcp?profile=NAME`). */
  readonly profile?: string | undefined;
  /** The client's `clientInfo.name`: picks the default profile of a window that asked for none. */
  readonly client?: string | undefined;
  /** The client's working directory: picks `workspace`-scoped instances. */
  readonly workspace?: string | undefined;
  /** The session id: picks `session`-scoped instances. */
  readonly session?: string | undefined;
}
