/** Which servers a session sees: all of them (merged, prefixed) or one, as it is. */
export interface View {
  readonly server?: string | undefined;
  /** The client's working directory: picks `workspace`-scoped instances. */
  readonly workspace?: string | undefined;
  /** The session id: picks `session`-scoped instances. */
  readonly session?: string | undefined;
}
