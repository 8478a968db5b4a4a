/**
 * What a `url` server's 401 and 403 answers said, for its next login (session.ts): the
 * `resource_metadata` URL and scope of its last challenge, the scopes its 403
 * `insufficient_scope` answers asked for (step-up: added to the next login's, never replacing
 * what was asked before), and how many logins in a row the server refused for the same scopes.
 *
 * A refusal counts once per login (the tokens of one login, refreshed or not, are one), so a
 * user who leaves a step-up prompt alone while tokens refresh is not counted out. Everything a
 * server can make grow is bounded: the scopes kept, and the scope strings counted.
 */
import { computeScopeUnion, extractWWWAuthenticateParams } from '@modelcontextprotocol/client';

/** Logins in a row whose tokens the server refused for the same scopes before no more are offered. */
export const MAX_SCOPE_REFUSALS = 3;
/** Most scopes a login asks for from challenges, and the longest scope string taken. */
export const MAX_WANTED_SCOPES = 64;
const MAX_SCOPE_CHARS = 4096;
/** Most distinct challenged scope strings counted (the oldest is forgotten). */
const MAX_COUNTED = 16;

/** What a 403 `insufficient_scope` means now. */
export interface Refusal {
  scope: string | undefined;
  /** Logins in a row refused for this scope; at {@link MAX_SCOPE_REFUSALS} no more are offered. */
  count: number;
}

export class Challenges {
  /** True once the server answered 401 or 403. */
  seen = false;
  resourceMetadataUrl: URL | undefined;
  /** The scope of the last 401's challenge. */
  private scope: string | undefined;
  /** Scopes asked for by 403s, for the next login. */
  private wanted: string | undefined;
  private readonly refusals = new Map<string, { count: number; who: string | undefined }>();

  /**
   * Notes a 401 or 403 answer. `who` names what was refused: the login the token came from (its
   * refreshed tokens are the same login), else the token itself; `granted` is the scope held. A
   * 403 `insufficient_scope` gives the refusal.
   */
  note(response: Response, who: string | undefined, granted: string | undefined): Refusal | undefined {
    const { resourceMetadataUrl, scope: said, error } = extractWWWAuthenticateParams(response);
    const scope = bounded(said);
    this.seen = true;
    if (resourceMetadataUrl !== undefined) this.resourceMetadataUrl = resourceMetadataUrl;
    if (response.status === 401) {
      this.scope = scope;
      return undefined;
    }
    if (error !== 'insufficient_scope') return undefined;
    const key = scope ?? '';
    const counted = this.refusals.get(key) ?? { count: 0, who: undefined };
    if (counted.count === 0 || counted.who !== who) counted.count++;
    counted.who = who;
    this.refusals.delete(key);
    this.refusals.set(key, counted);
    while (this.refusals.size > MAX_COUNTED) this.refusals.delete(this.refusals.keys().next().value as string);
    this.wanted = bounded(computeScopeUnion(this.wanted, this.scope, granted, scope));
    return { scope, count: counted.count };
  }

  /** The scopes a login asks for: the challenges', else `configured`, else (undefined) the SDK's choice. */
  scopeToAsk(configured: string | undefined): string | undefined {
    return bounded(computeScopeUnion(this.wanted, this.scope)) ?? configured;
  }

  /** A logout: scopes asked and refusals counted start over. */
  reset(): void {
    this.wanted = undefined;
    this.refusals.clear();
  }
}

/** A scope string within bounds: at most {@link MAX_WANTED_SCOPES} scopes, each printable, the whole short. */
function bounded(scope: string | undefined): string | undefined {
  if (scope === undefined) return undefined;
  const kept: string[] = [];
  let chars = 0;
  for (const one of scope.split(' ')) {
    if (one.length === 0 || one.length > 256 || !/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(one) || kept.includes(one)) continue;
    if (kept.length >= MAX_WANTED_SCOPES || chars + one.length + 1 > MAX_SCOPE_CHARS) break;
    kept.push(one);
    chars += one.length + 1;
  }
  return kept.length === 0 ? undefined : kept.join(' ');
}
