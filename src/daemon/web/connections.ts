/**
 * The daemon's accepted connections, kept within what the process can afford. Anyone on the
 * machine may connect without the token, so connections that have not authenticated yet (no
 * authorized request on the socket; a WebSocket before its hello is accepted) are bounded:
 * past {@link GuardOptions.maxUnauthenticated} the OLDEST of them is dropped, so a flood of idle
 * connections cannot lock out the window that connects next (a shim upgrades at once and says
 * hello within milliseconds: a real window is never the oldest idle one for long).
 *
 * And the daemon stops taking connections before its descriptors run out: it keeps
 * {@link GuardOptions.fdReserve} descriptors for its own work (spawning servers, rotating its
 * log, the sessions already open). A connection past that drops the oldest unauthenticated one,
 * or when there is none, is refused at once. The descriptor limit is the soft RLIMIT_NOFILE;
 * where it cannot be learned (no `/proc`), only the unauthenticated bound applies.
 *
 * Descriptors in use are counted from `/proc/self/fd`, which costs about 0.13 ms at 260
 * descriptors and grows with their number, so never per connection: a count is taken now and
 * then ({@link SAMPLE_NEAR_MS} apart near the cap, {@link SAMPLE_FAR_MS} otherwise) and sockets
 * accepted or closed since are added or taken off exactly. What drifts between two counts (pipes
 * of a server started meanwhile) is what the reserve is for.
 *
 * Drops and refusals are counted (`metrics.reject`) and logged once per spell: a warning when
 * the first one happens, a summary when none happened for {@link SPELL_QUIET_MS}.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** How often the HTTP server looks for connections past those deadlines (times `config.timerScale`). */
export const CONNECTIONS_CHECK_MS = 1_000;

/** Descriptors are counted at most this often while the estimate is within {@link NEAR_CAP_FDS} of the cap. */
export const SAMPLE_NEAR_MS = 500;
/**
 * Near the cap: within this many descriptors of it. Not the reserve, which may be 0: what a
 * spawn or a log rotation opened since the last count must be seen before the cap is reached.
 */
export const NEAR_CAP_FDS = 64;
/** ... and at most this often otherwise (only on a new connection: an idle daemon counts nothing). */
export const SAMPLE_FAR_MS = 10_000;
/**
 * Descriptors left free whatever the reserve (even `EXAI_WS_FD_RESERVE=0`): a connection is only
 * seen once accepted, so at the very limit accepting fails and nothing could ever give way.
 */
export const MIN_FREE_FDS = 4;
/** A spell of drops ends (and is summed up in the log) after this long without one. */
export const SPELL_QUIET_MS = 10_000;

/** Why a connection was dropped or refused, as counted by `metrics.reject`. */
export type ConnectionRejectReason = 'unauthenticated_limit' | 'fd_reserve_dropped' | 'fd_reserve_refused';

/** What the guard needs of a socket (a `net.Socket`; tests pass their own). */
export interface GuardedSocket {
  destroy(): void;
  once(event: 'close', listener: () => void): unknown;
}

/** The process's descriptors: its limit and how many are open; undefined when unknown. */
export interface DescriptorProbe {
  limit(): number | undefined;
  inUse(): number | undefined;
}

export interface GuardOptions {
  maxUnauthenticated: number;
  fdReserve: number;
  /** Default: {@link procDescriptors}. */
  descriptors?: DescriptorProbe;
  reject: (reason: ConnectionRejectReason) => void;
  /** Once per spell of drops: its start, and its end with the counts. */
  log: (level: 'warn' | 'info', details: Record<string, unknown>, message: string) => void;
  now?: () => number;
}

export class ConnectionGuard {
  /** Not authenticated yet, oldest first (a Set keeps insertion order). */
  private readonly unauthenticated = new Set<GuardedSocket>();
  private readonly authenticated = new Set<GuardedSocket>();
  private readonly options: GuardOptions;
  private readonly descriptors: DescriptorProbe;
  private readonly now: () => number;
  /** The soft descriptor limit, read once; undefined: unknown, no cap. */
  private readonly limit: number | undefined;
  private fdsAtSample = 0;
  private socketsAtSample = 0;
  private sampledAtMs = -Infinity;
  /** The last count was taken within {@link NEAR_CAP_FDS} of the cap. */
  private sampledNear = false;
  private spell: { startedAtMs: number; lastAtMs: number; counts: Partial<Record<ConnectionRejectReason, number>> } | undefined;
  private spellTimer: NodeJS.Timeout | undefined;

  constructor(options: GuardOptions) {
    this.options = options;
    this.descriptors = options.descriptors ?? procDescriptors();
    this.now = options.now ?? Date.now;
    this.limit = this.descriptors.limit();
  }

  /** Open connections in total, and those not authenticated yet. */
  get counts(): { open: number; unauthenticated: number } {
    return { open: this.unauthenticated.size + this.authenticated.size, unauthenticated: this.unauthenticated.size };
  }

  /** The most sockets the descriptor limit leaves room for now (estimate), or undefined without a limit. */
  get descriptorCap(): number | undefined {
    return this.limit === undefined ? undefined : this.limit - Math.max(this.options.fdReserve, MIN_FREE_FDS);
  }

  /**
   * A connection was just accepted (the HTTP server's 'connection' event): tracked as not
   * authenticated until {@link authenticate}. May destroy the oldest unauthenticated
   * connection, or this one when the descriptors are short and no other can give way.
   */
  admit(socket: GuardedSocket): void {
    this.unauthenticated.add(socket);
    socket.once('close', () => {
      this.unauthenticated.delete(socket);
      this.authenticated.delete(socket);
    });
    if (this.unauthenticated.size > this.options.maxUnauthenticated) this.drop('unauthenticated_limit');
    if (!this.overCap()) return;
    // The new socket is the newest: it goes only when no other unauthenticated one is left.
    this.drop(this.unauthenticated.size > 1 ? 'fd_reserve_dropped' : 'fd_reserve_refused');
  }

  /** A request on the socket passed the token, proof or cookie check, or its hello was accepted. */
  authenticate(socket: GuardedSocket): void {
    if (!this.unauthenticated.delete(socket)) return;
    this.authenticated.add(socket);
  }

  /** Ends the spell summary timer (the daemon is closing). */
  close(): void {
    if (this.spellTimer) clearTimeout(this.spellTimer);
    this.spellTimer = undefined;
  }

  /** Destroys the oldest unauthenticated socket. */
  private drop(reason: ConnectionRejectReason): void {
    const oldest = this.unauthenticated.values().next().value;
    if (oldest === undefined) return;
    this.unauthenticated.delete(oldest);
    oldest.destroy();
    this.options.reject(reason);
    this.noteSpell(reason);
  }

  /** True when the descriptors open (estimated) leave less than the reserve. */
  private overCap(): boolean {
    const cap = this.descriptorCap;
    if (cap === undefined) return false;
    const sockets = this.counts.open;
    let estimate = this.fdsAtSample + (sockets - this.socketsAtSample);
    const near = estimate >= cap - NEAR_CAP_FDS;
    // Entering the near zone counts at once, whenever the last count was: what was opened since
    // a count taken far from the cap (a server's pipes, moments before a flood) must not be
    // learned only when accepting already fails.
    if ((near && !this.sampledNear) || this.now() - this.sampledAtMs >= (near ? SAMPLE_NEAR_MS : SAMPLE_FAR_MS)) {
      const inUse = this.descriptors.inUse();
      this.sampledAtMs = this.now();
      if (inUse !== undefined) {
        this.fdsAtSample = inUse;
        this.socketsAtSample = sockets;
        estimate = inUse;
      }
      this.sampledNear = estimate >= cap - NEAR_CAP_FDS;
    }
    return estimate > cap;
  }

  private noteSpell(reason: ConnectionRejectReason): void {
    if (!this.spell) {
      this.spell = { startedAtMs: this.now(), lastAtMs: this.now(), counts: {} };
      const { open, unauthenticated } = this.counts;
      this.options.log(
        'warn',
        { reason, open, unauthenticated, max_unauthenticated: this.options.maxUnauthenticated, fd_limit: this.limit ?? null },
        reason === 'unauthenticated_limit'
          ? 'too many connections without the token: dropping the oldest (counted until this stops)'
          : 'descriptors running short: dropping or refusing connections without the token (counted until this stops)',
      );
    }
    this.spell.counts[reason] = (this.spell.counts[reason] ?? 0) + 1;
    this.spell.lastAtMs = this.now();
    // One timer per spell, not one per drop: a flood drops thousands a second.
    if (!this.spellTimer) this.endSpellAfter(SPELL_QUIET_MS);
  }

  private endSpellAfter(ms: number): void {
    this.spellTimer = setTimeout(() => {
      this.spellTimer = undefined;
      const quietMs = this.now() - (this.spell?.lastAtMs ?? 0);
      if (this.spell && quietMs < SPELL_QUIET_MS) this.endSpellAfter(SPELL_QUIET_MS - quietMs);
      else this.endSpell();
    }, ms);
    this.spellTimer.unref();
  }

  private endSpell(): void {
    const spell = this.spell;
    this.spell = undefined;
    if (!spell) return;
    const durationMs = this.now() - spell.startedAtMs;
    this.options.log('info', { ...spell.counts, duration_ms: durationMs }, 'connections without the token: no more drops');
  }
}

/**
 * The soft RLIMIT_NOFILE from `/proc/self/limits` ("Max open files"), and the descriptors in
 * `/proc/self/fd`. Both unknown without `/proc` (macOS, Windows) or for an unlimited limit.
 */
export function procDescriptors(): DescriptorProbe {
  return {
    limit: () => {
      try {
        return parseOpenFilesLimit(readFileSync('/proc/self/limits', 'utf8'));
      } catch {
        return undefined;
      }
    },
    inUse: () => {
      try {
        // Less one: the directory handle readdir opened for the listing itself.
        return readdirSync('/proc/self/fd').length - 1;
      } catch {
        return undefined;
      }
    },
  };
}

/** The soft limit in a `/proc/<pid>/limits` text; undefined when absent or unlimited. */
export function parseOpenFilesLimit(text: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith('Max open files'));
  const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
  if (soft === undefined || !/^\d+$/.test(soft)) return undefined;
  return Number(soft);
}
