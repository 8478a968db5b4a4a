/**
 * Whether a client process named by its hello `pid` still exists: how the daemon tells a
 * client that died (kill -9, a crash) from one whose connection merely dropped, without
 * waiting out the resume grace.
 */
import { readFileSync } from 'node:fs';
import { processAlive } from './pidfile.js';

/** True when signal 0 reaches `pid`: it exists and this daemon may signal it. */
export function pidVisible(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false; // ESRCH, or EPERM: someone else's process, whose death could not be seen either
  }
}

/**
 * True when `pid` has exited: no such process ({@link processAlive}), or on Linux a zombie, which has
 * exited and only waits for its parent to collect its status (or X, dead). A stopped process
 * (SIGSTOP) is alive. Never throws.
 */
export function pidGone(pid: number): boolean {
  if (!processAlive(pid)) return true;
  const state = process.platform === 'linux' ? procState(pid) : undefined;
  return state === 'Z' || state === 'X';
}

/** Field 3 of /proc/<pid>/stat (after the command name, which may hold spaces or parentheses). */
function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}
