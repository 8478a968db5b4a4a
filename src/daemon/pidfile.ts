/**
 * The single-instance lock and address card `logs/ws_daemon.pid`: created exclusively; a
 * card whose process is gone, or does not answer `/health` as that pid, is stale and taken
 * over; removed on clean exit.
 */
import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { readAddressCard, type AddressCard } from '../protocol/files.js';
import { fetchHealth } from './health-client.js';

export class AlreadyRunningError extends Error {
  override name = 'AlreadyRunningError';
  constructor(readonly card: AddressCard) {
    super(`another exai-ws daemon is already running: pid ${card.pid} on ${card.host}:${card.port} (started ${card.started_at})`);
  }
}

/** True while a process with this pid exists (EPERM still means it exists). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True when the card's daemon is alive and answers `/health` as itself. */
export async function cardIsLive(card: AddressCard, timeoutMs = 1_000): Promise<boolean> {
  if (!processAlive(card.pid)) return false;
  if (card.port === 0) return true; // still binding: alive counts
  const health = await fetchHealth(card.host, card.port, timeoutMs);
  return health !== null && health.pid === card.pid;
}

export class PidLock {
  private released = false;
  constructor(readonly path: string) {}

  /** Rewrites the card in place (atomic rename), e.g. once the port is known. */
  update(card: AddressCard): void {
    const tmp = `${this.path}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(card)}\n`, { mode: 0o644 });
    renameSync(tmp, this.path);
  }

  /** Removes the card if it is still ours. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    try {
      const card = JSON.parse(readFileSync(this.path, 'utf8')) as Partial<AddressCard>;
      if (card.pid === process.pid) unlinkSync(this.path);
    } catch {
      // Already gone or unreadable: nothing of ours to remove.
    }
  }
}

/**
 * Takes the lock or throws {@link AlreadyRunningError} naming the running daemon.
 * Stale cards are removed and the exclusive create is tried again.
 */
export async function acquirePidLock(path: string, card: AddressCard): Promise<PidLock> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      writeFileSync(path, `${JSON.stringify(card)}\n`, { flag: 'wx', mode: 0o644 });
      return new PidLock(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const existing = readAddressCard(path);
    if (existing && existing.pid !== process.pid && (await cardIsLive(existing))) {
      throw new AlreadyRunningError(existing);
    }
    try {
      unlinkSync(path);
    } catch {
      // Someone else removed it first; try again.
    }
  }
  throw new Error(`could not take the pid file ${path}`);
}
