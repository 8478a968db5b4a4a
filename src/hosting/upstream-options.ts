/**
 * The options of an {@link Upstream} (one server behind the hub) and their defaults: how it is
 * launched, named, scoped, retried and bounded.
 */
import { GROUP_GRACE_MS, KILLED_WAIT_MS, type GroupTiming } from './process-group.js';
import type { ServerLink } from './server-link.js';
import type { UpstreamScope } from '../local/health.js';
import { scaledMs } from '../local/timer-scale.js';

/** What a started server is: its link, and the process id when it is a process. */
export interface Started {
  link: ServerLink;
  pid?: number | undefined;
  /** Why it went away, once it did (exit status, the end of its stderr). */
  exitReason?: () => string;
}

export interface UpstreamOptions {
  name: string;
  /** Tool and prompt prefix; null keeps bare names. */
  prefix: string | null;
  /** Starts the server and completes its initialize handshake; rejects when it cannot. */
  launch: (wire: (link: ServerLink) => void) => Promise<Started>;
  /** 0 = never stop for idleness. */
  idleTimeoutMs: number;
  /** `shared` (one instance), or one instance per `workspace` / `session`, named by `scopeKey`. */
  scope?: UpstreamScope;
  scopeKey?: string | undefined;
  /**
   * Retry a failed start in the background, with the restart backoff, until it starts or is
   * closed: for shared instances, which every session sees (a scoped one retries on its next use).
   */
  retryFailedStart?: boolean;
  /** The server's tools declared to ask the client back (`asks_client`). */
  asksClient?: readonly string[];
  /**
   * Deadline for a start, in milliseconds: from the moment its connection is made (after npx
   * resolved the package) until it has answered `initialize`. None when undefined.
   */
  initTimeoutMs?: number | undefined;
  /** The waits before restart number 1, 2, ... (the last one repeats), in ms; {@link RESTART_BACKOFF_MS} when unset. */
  restartBackoffMs?: readonly number[] | undefined;
  /** Reports lifecycle events for the log; `level` when it is not `info` (see CoreLog). */
  log?: (event: string, details: Record<string, unknown>, level?: 'debug' | 'warn') => void;
}

export const RESTART_BACKOFF_MS = Object.freeze([250, 500, 1_000, 2_000, 5_000, 10_000, 30_000]);
/** A call waits for a restart due within this long; later ones fail at once with -32011. */
export const WAIT_FOR_RESTART_MS = 5_000;

/** The fixed waits of hosted servers' lifecycles, as one value to pass from the daemon's config down. */
export interface HostingTimers {
  /** See {@link UpstreamOptions.restartBackoffMs}. */
  readonly restartBackoffMs: readonly number[];
  /** A process group's grace before SIGKILL, and its wait after it (process-group.ts). */
  readonly group: GroupTiming;
}

/**
 * The hosting timers times `scale` (`EXAI_WS_TIMER_SCALE`, local/timer-scale.ts): tests shorten
 * the waits they would otherwise sit out; users keep scale 1, the defaults.
 */
export function hostingTimers(scale = 1): HostingTimers {
  const scaled = (ms: number) => scaledMs(ms, scale);
  return {
    restartBackoffMs: Object.freeze(RESTART_BACKOFF_MS.map(scaled)),
    group: Object.freeze({ graceMs: scaled(GROUP_GRACE_MS), killedWaitMs: scaled(KILLED_WAIT_MS) }),
  };
}

/** The wait before the next start after `failures` failures in a row (the last step repeats). */
export function backoff(failures: number, sequence: readonly number[] = RESTART_BACKOFF_MS): number {
  return sequence[Math.min(failures, sequence.length) - 1] ?? 0;
}

/** Up this long, a server's crash counts as a first failure again. */
export const STABLE_UPTIME_MS = 60_000;
