/**
 * What a config reload does to the hosted servers, decided apart from doing it: which entries
 * are added, removed, changed (restarted) or left as they are, which instances stop, and the
 * families the hub keeps. Pure: the hub applies the plan (hub.ts `reload`).
 */
import type { UpstreamSpec } from '../hosting/upstream-config.js';
import type { Upstream } from '../hosting/upstream.js';
import type { ReloadReport } from '../local/health.js';

/** A hosted server's entry and its instances (one, or one per scope key). */
export interface Family {
  spec: UpstreamSpec;
  /** The spec as JSON, to see whether a reload changed it. */
  text: string;
  /** Scope key ('' for shared) -> instance. */
  instances: Map<string, Upstream>;
}

export interface ReloadPlan {
  report: ReloadReport;
  /** Instances of removed and changed entries: they stop. */
  stopping: Upstream[];
  /** The families after the reload, in the new config's order. */
  families: Map<string, Family>;
}

/** Plans a reload from the families in force to the entries `next`; `make` makes the family of a new or changed entry. */
export function planReload(
  current: ReadonlyMap<string, Family>,
  next: readonly UpstreamSpec[],
  make: (spec: UpstreamSpec) => Family,
): ReloadPlan {
  const report: ReloadReport = { added: [], removed: [], restarted: [], unchanged: [] };
  const stopping: Upstream[] = [];
  const families = new Map<string, Family>();
  const wanted = new Set(next.map((spec) => spec.name));
  for (const [name, family] of current) {
    if (wanted.has(name)) continue;
    report.removed.push(name);
    stopping.push(...family.instances.values());
  }
  for (const spec of next) {
    const kept = current.get(spec.name);
    if (kept && kept.text === JSON.stringify(spec)) {
      report.unchanged.push(spec.name);
      families.set(spec.name, kept);
      continue;
    }
    if (kept) {
      report.restarted.push(spec.name);
      stopping.push(...kept.instances.values());
    } else {
      report.added.push(spec.name);
    }
    families.set(spec.name, make(spec));
  }
  return { report, stopping, families };
}
