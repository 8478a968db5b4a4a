/**
 * A port of the home's own (DESIGN.md, "Security model": every user gets a daemon of their own
 * with zero configuration). A loopback port can be held by anyone on the machine: another
 * user's daemon, another home's, any program. When the port a daemon would bind is held and
 * the user did not name it in the daemon's own shell (`EXAI_WS_PORT` by hand: a refusal, as
 * asked), the daemon binds another one and keeps it in state.json, so that it listens on the
 * same port at its next start and `exai-ws config` prints that port.
 *
 * The other ports are derived from the user and the home, so a home tries the same ones at
 * every start even before state.json says anything, and two users (or two homes) try different
 * ones. They lie above the well-known ports and below every system's ephemeral range (Linux
 * 32768-60999; macOS, the BSDs and Windows 49152-65535), where outgoing connections would take
 * them at random. Port 0 (any free port) comes last and always binds.
 */
import type { PortSource } from './config.js';

/** Lowest port of the home's own. */
export const OWN_PORT_MIN = 20_000;
/** How many ports the derived ones spread over: 20000-31999. */
export const OWN_PORT_SPAN = 12_000;
/** Derived ports tried after the configured one (and the remembered one), before port 0. */
export const OWN_PORT_TRIES = 4;

/**
 * The `attempt`-th port of the home's own: a stable function of the user id (-1 where there
 * is none, on Windows) and the home's path (FNV-1a, 32 bits), in
 * [{@link OWN_PORT_MIN}, {@link OWN_PORT_MIN} + {@link OWN_PORT_SPAN}).
 */
export function ownPort(uid: number, home: string, attempt: number): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(`${uid}\0${home}\0${attempt}`, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return OWN_PORT_MIN + (hash % OWN_PORT_SPAN);
}

export interface PortChoice {
  /** The port the configuration names (`DaemonConfig.port`). */
  port: number;
  /** Where it came from: only `env` (the daemon's shell, by hand) is never moved. */
  source: PortSource;
  /** The port the home's daemon last listened on (state.json), if any. */
  statePort?: number | undefined;
  uid: number;
  /** The home's absolute path. */
  home: string;
}

/**
 * The ports to try, in order: the configured one; unless it came from the daemon's shell, then
 * the remembered one (a port set in the settings file that someone else holds: the daemon keeps
 * the one it took instead), {@link OWN_PORT_TRIES} derived ones, and 0. No port twice.
 */
export function portCandidates(choice: PortChoice): number[] {
  if (choice.source === 'env' || choice.port === 0) return [choice.port];
  const derived = Array.from({ length: OWN_PORT_TRIES }, (_, attempt) => ownPort(choice.uid, choice.home, attempt));
  return [...new Set([choice.port, ...(choice.statePort === undefined ? [] : [choice.statePort]), ...derived, 0])];
}

/** The port bound, and the ones tried before it that someone else held. */
export interface BoundPort {
  port: number;
  held: number[];
}

/**
 * Binds the first candidate that `listen` can take (it resolves with the bound port). The first
 * candidate is passed over only when it is in use (EADDRINUSE); a later one also when it may not
 * be bound (EACCES: Windows reserves port ranges so). Any other error, or the last candidate's,
 * rejects as `listen` did.
 */
export async function bindFirst(candidates: readonly number[], listen: (port: number) => Promise<number>): Promise<BoundPort> {
  const held: number[] = [];
  for (const [index, candidate] of candidates.entries()) {
    try {
      return { port: await listen(candidate), held };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const passOver = code === 'EADDRINUSE' || (index > 0 && code === 'EACCES');
      if (!passOver || index === candidates.length - 1) throw error;
      held.push(candidate);
    }
  }
  throw new Error('no port to bind');
}
