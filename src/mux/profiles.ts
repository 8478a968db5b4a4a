/**
 * The config's profiles as the hub applies them: which profile a view is in (the one it asked
 * for, else the first whose `clients` match its client's name), which servers and tools that
 * profile shows. Replaced whole on each config reload, so a window's profile follows the file.
 */
import { BUILTIN_SERVER_NAME, type ProfileSpec } from '../hosting/profile-config.js';
import { anyGlob, includeExclude, type NameTest } from '../local/name-globs.js';
import type { View } from './view.js';
import { RpcCode } from '../protocol/codes.js';
import type { RpcErrorObject } from '../protocol/jsonrpc.js';

export { BUILTIN_SERVER_NAME, type ProfileSpec };

/** A profile ready to apply. */
export interface Profile {
  readonly spec: ProfileSpec;
  /** True when the profile shows this server (by name; the built-in one is `exai-ws`). */
  showsServer(name: string): boolean;
  /** True when the profile shows this tool (its name as the window sees it). */
  showsTool(visible: string): boolean;
}

/** What a view's profile is: none, one, or one it asked for that the config no longer has. */
export type ProfileOf = { profile: Profile | undefined } | { missing: string };

interface Compiled extends Profile {
  readonly client: NameTest;
}

export class Profiles {
  private byName = new Map<string, Compiled>();
  private text = '[]';
  /** Each view's profile, found once: views are frozen and replaced when they change. */
  private found = new WeakMap<View, ProfileOf>();

  /** Applies the config's profiles; true when they changed. */
  set(specs: readonly ProfileSpec[]): boolean {
    const text = JSON.stringify(specs);
    if (text === this.text) return false;
    this.text = text;
    this.byName = new Map(specs.map((spec) => [spec.name, compile(spec)]));
    this.found = new WeakMap();
    return true;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  /** The error of a window whose profile a reload took away: it sees nothing, never everything. */
  gone(name: string): RpcErrorObject {
    const known = this.names().join(', ') || 'none';
    return {
      code: RpcCode.INVALID_PARAMS,
      message: `the profile '${name}' is no longer in the config (profiles: ${known}): open the window with another`,
    };
  }

  /**
   * The profile of a view: the one it asked for, else (a window that sees all servers) the
   * first whose `clients` match its client's name. A single-server view has none.
   */
  of(view: View): ProfileOf {
    let of = this.found.get(view);
    if (of === undefined) this.found.set(view, (of = this.find(view)));
    return of;
  }

  private find(view: View): ProfileOf {
    if (view.server !== undefined) return { profile: undefined };
    if (view.profile !== undefined) {
      const asked = this.byName.get(view.profile);
      return asked ? { profile: asked } : { missing: view.profile };
    }
    const client = view.client;
    if (client === undefined || this.byName.size === 0) return { profile: undefined };
    for (const profile of this.byName.values()) if (profile.client(client)) return { profile };
    return { profile: undefined };
  }
}

function compile(spec: ProfileSpec): Compiled {
  const servers = spec.servers === undefined ? undefined : new Set(spec.servers);
  const tools = spec.tools.length === 0 ? () => true : includeExclude(spec.tools);
  return {
    spec,
    showsServer: (name) => servers === undefined || servers.has(name),
    showsTool: tools,
    // Client names as clients write them: `Visual Studio Code` and `visual studio code` are one.
    client: spec.clients.length === 0 ? () => false : anyGlob(spec.clients, { nocase: true }),
  };
}
