/**
 * A session's client window as the log and `/health` see it: who the client said it is (the
 * `session initialized` line), the profile in force, the size of the last tools list it was sent,
 * and its client's cap (issue 25). A list longer than the cap is warned about once per session,
 * not once per list: a window lists its tools again after every change, and one line says it.
 */
import { clip } from '../../protocol/jsonrpc.js';
import type { SessionEntry } from '../../local/health.js';
import type { ToolCapLookup } from '../../hosting/tool-caps-config.js';
import type { RouterHub } from '../../mux/hub.js';
import type { SessionContext, ToolListSize } from '../../mux/session-context.js';
import type { Logger } from '../files/logger.js';

/** What `/health` says of a window's tools (see SessionEntry). */
export type WindowToolsReport = Required<
  Pick<SessionEntry, 'profile' | 'profile_missing' | 'tools' | 'tools_bytes' | 'tool_cap' | 'over_cap'>
>;

/** What to do about a window over its client's cap, as the log says it. */
export const OVER_CAP_HINT = 'give this window a profile (exai-ws shim --profile NAME or /mcp?profile=NAME) or use tool search';
/** The same for a window that has a profile already. */
export const OVER_CAP_PROFILE_HINT = "narrow its profile's servers or tools, or turn on the profile's search";

export interface ClientWindowDeps {
  hub: Pick<RouterHub, 'profileOf'>;
  logger: Logger;
  /** The cap of a client by its clientInfo name (the `client_tool_caps` in force); absent: no caps. */
  toolCap?: ToolCapLookup | undefined;
}

export class ClientWindow {
  private warned = false;

  constructor(
    private readonly sessionId: string,
    private readonly context: SessionContext,
    private readonly deps: ClientWindowDeps,
  ) {}

  /** The client's initialize, logged (its strings, of any size, cut short). */
  initialized(params: Record<string, unknown> | undefined): void {
    const info = params?.clientInfo as { name?: unknown; version?: unknown } | undefined;
    const label = (value: unknown) => (typeof value === 'string' ? clip(value, 256) : undefined);
    this.deps.logger.info(
      {
        session_id: this.sessionId,
        mcp_client: label(info?.name),
        mcp_client_version: label(info?.version),
        protocol: label(params?.protocolVersion),
      },
      'session initialized',
    );
  }

  /** The window was sent a tools list: the first one over its client's cap is logged at warn. */
  listed(size: ToolListSize): void {
    if (this.warned) return;
    const cap = this.cap();
    if (cap === null || size.count <= cap) return;
    this.warned = true;
    const { name, missing } = this.profile();
    this.deps.logger.warn(
      {
        session_id: this.sessionId,
        client: clip(this.context.clientName, 256),
        tools: size.count,
        tool_cap: cap,
        profile: name,
        profile_missing: missing || undefined,
        tools_bytes: size.bytes,
        hint: name === null || missing ? OVER_CAP_HINT : OVER_CAP_PROFILE_HINT,
      },
      "window's tools list is longer than its client takes",
    );
  }

  /** For `/health`: the profile in force, the last list's size, the cap (both as they are now). */
  report(): WindowToolsReport {
    const { name, missing } = this.profile();
    const tools = this.context.tools;
    const cap = this.cap();
    return {
      profile: name,
      profile_missing: missing,
      tools: tools?.count ?? null,
      tools_bytes: tools?.bytes ?? null,
      tool_cap: cap,
      over_cap: tools !== undefined && cap !== null && tools.count > cap,
    };
  }

  private cap(): number | null {
    return this.deps.toolCap?.(this.context.clientInfo?.name) ?? null;
  }

  private profile(): { name: string | null; missing: boolean } {
    const of = this.deps.hub.profileOf(this.context.view);
    if ('missing' in of) return { name: of.missing, missing: true };
    return { name: of.profile?.spec.name ?? null, missing: false };
  }
}
