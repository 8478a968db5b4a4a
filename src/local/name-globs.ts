/**
 * Globs on names (tool and prompt names, server names, client names), as the config writes them:
 * `fs__read_*`, `delete_*`, `cursor*`, `!*_debug`. Names are not paths: `*` crosses any
 * character, `/` and `\` included, on every platform. Matching uses picomatch.
 */
// The posix build: a backslash in a name is a character on every platform, never a separator.
import picomatch from 'picomatch/posix.js';

/** A compiled set of globs; call it with a name. */
export type NameTest = (name: string) => boolean;

export interface GlobOptions {
  /** Case-insensitive (client names: `Visual Studio Code` and `visual studio code` are one client). */
  nocase?: boolean;
}

/** True when `name` matches `glob` (one pattern, no `!`). */
export function globTest(glob: string, options: GlobOptions = {}): NameTest {
  // bash: a single `*` crosses `/` too; dot: a leading `.` is an ordinary character.
  return picomatch(glob, { dot: true, nocase: options.nocase ?? false, bash: true });
}

/** True when `name` matches at least one of `globs` (none: false). */
export function anyGlob(globs: readonly string[], options: GlobOptions = {}): NameTest {
  const tests = globs.map((g) => globTest(g, options));
  return (name) => tests.some((t) => t(name));
}

/**
 * A profile's `tools` filter: a name is shown when it matches at least one pattern without `!`
 * (or there is none) and no pattern with `!`.
 */
export function includeExclude(patterns: readonly string[]): NameTest {
  const shown = anyGlob(patterns.filter((p) => !p.startsWith('!')));
  const hidden = anyGlob(patterns.filter((p) => p.startsWith('!')).map((p) => p.slice(1)));
  const anyShown = patterns.some((p) => !p.startsWith('!'));
  return (name) => (!anyShown || shown(name)) && !hidden(name);
}

/**
 * A server entry's `include_*` / `exclude_*` filter: a name passes when `include` is absent or
 * one of it matches, and none of `exclude` does.
 */
export function entryFilter(include: readonly string[] | undefined, exclude: readonly string[] | undefined): NameTest | undefined {
  if (include === undefined && (exclude === undefined || exclude.length === 0)) return undefined;
  const included = include === undefined ? () => true : anyGlob(include);
  const excluded = anyGlob(exclude ?? []);
  return (name) => included(name) && !excluded(name);
}
