/** Writes the home's `state.json` (see local/state.ts), whole, so a reader never sees half of it. */
import type { HomePaths } from './files.js';
import { readState, type UserState } from './state.js';
import { homeError } from './home.js';
import { replaceWhole } from './whole-file.js';

/**
 * Merges `patch` into the home's state and writes it. Throws a HomeError when the file cannot
 * be written; callers for whom the state is a convenience catch it and go on.
 */
export function updateState(paths: Pick<HomePaths, 'state'>, patch: UserState): UserState {
  const next = { ...readState(paths), ...patch };
  try {
    replaceWhole(paths.state, `${JSON.stringify(next)}\n`, 0o600);
  } catch (error) {
    throw homeError(error, paths.state, 'the state file');
  }
  return next;
}
