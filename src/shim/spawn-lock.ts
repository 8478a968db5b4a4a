/**
 * The spawn lock `logs/ws_daemon.spawn.lock`: held by the one process that is starting a daemon
 * for this home (a shim's auto-start, `exai-ws restart`), so that shims starting at once on a
 * cold home spawn one daemon instead of one each; the others wait for its address card. The
 * pid lock (local/pidfile.ts) still decides which daemon runs: this lock only saves spawning
 * daemons that would lose.
 *
 * - Created exclusively, holding `{pid, at, nonce}`; its holder touches it every second.
 * - Stale when its holder's pid is gone or it was not touched for `staleMs` (a holder that hung
 *   or a pid reused after a crash). A stale lock is removed only while it still holds the text
 *   judged stale; a taker that loses a race there costs one extra spawn, which the pid lock
 *   then refuses.
 * Node built-ins only: the shim bundles this file.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, unlinkSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import type { HomePaths } from '../local/files.js';
import { processAlive } from '../local/pidfile.js';
import { createWhole } from '../local/whole-file.js';

/** How often a holder touches its lock, so that waiters can tell it from an abandoned one. */
export const SPAWN_LOCK_TOUCH_MS = 1_000;

/** Where the spawn lock of a home is. */
export function spawnLockPath(paths: HomePaths): string {
  return join(paths.logs, 'ws_daemon.spawn.lock');
}

export interface SpawnLock {
  readonly path: string;
  /** Removes the lock if it is still ours. Idempotent; never throws. */
  release(): void;
}

/** Who holds a lock: its pid and when it was last touched. Null when there is none (or it vanished). */
export function spawnLockHolder(path: string): { pid: number | null; ageMs: number } | null {
  try {
    const text = readFileSync(path, 'utf8');
    return { pid: holderPid(text), ageMs: Date.now() - statSync(path).mtimeMs };
  } catch {
    return null;
  }
}

/**
 * Takes the lock if nobody (alive) holds it: the lock, or null when another process holds it.
 * Throws the file system's error when the lock cannot be created for another reason (the logs
 * directory is missing or not writable).
 */
export function tryTakeSpawnLock(path: string, staleMs: number): SpawnLock | null {
  for (let attempt = 0; attempt < 2; attempt++) {
    const taken = createLock(path);
    if (taken) return taken;
    if (!removeIfStale(path, staleMs)) return null;
  }
  return null;
}

/** Waits (bounded) until the lock can be taken; null when another holder kept it past `waitMs`. */
export async function takeSpawnLock(path: string, options: { staleMs: number; waitMs: number }): Promise<SpawnLock | null> {
  const deadline = Date.now() + options.waitMs;
  for (;;) {
    const lock = tryTakeSpawnLock(path, options.staleMs);
    if (lock || Date.now() >= deadline) return lock;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function createLock(path: string): SpawnLock | null {
  const text = `${JSON.stringify({ pid: process.pid, at: new Date().toISOString(), nonce: randomBytes(8).toString('hex') })}\n`;
  // Whole and exclusive, as the address card is: a waiter never reads a half-written lock.
  if (!createWhole(path, text, 0o600)) return null;
  const touch = setInterval(() => {
    try {
      const now = new Date();
      utimesSync(path, now, now);
    } catch {
      // Removed as stale by a waiter (this process hung): the pid lock still decides.
    }
  }, SPAWN_LOCK_TOUCH_MS);
  // Holding the lock must never keep a shim alive.
  touch.unref();
  let released = false;
  return {
    path,
    release() {
      if (released) return;
      released = true;
      clearInterval(touch);
      try {
        if (readFileSync(path, 'utf8') === text) unlinkSync(path);
      } catch {
        // Already gone: nothing of ours to remove.
      }
    },
  };
}

/** Removes the lock when its holder is gone or it is older than `staleMs`; true when it is gone now. */
function removeIfStale(path: string, staleMs: number): boolean {
  let text: string;
  let ageMs: number;
  try {
    text = readFileSync(path, 'utf8');
    ageMs = Date.now() - statSync(path).mtimeMs;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
  const pid = holderPid(text);
  // An unparseable lock is one being written (or a wreck): only its age can tell.
  const holderGone = pid !== null && !processAlive(pid);
  if (!holderGone && ageMs <= staleMs) return false;
  try {
    if (readFileSync(path, 'utf8') === text) unlinkSync(path);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

function holderPid(text: string): number | null {
  try {
    const pid = (JSON.parse(text) as { pid?: unknown } | null)?.pid;
    return typeof pid === 'number' && Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}
