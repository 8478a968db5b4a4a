/**
 * Makes sure hosted server processes die with the daemon, even when the daemon is killed with
 * SIGKILL and runs no code at all. (No \`--\` before the negative group id: dash's \`kill\` refuses it.) A tiny `sh` process (about 1 MB) reads the process group ids
 * of the daemon's children from a pipe; when the pipe ends (the daemon is gone, however it
 * went), it sends SIGTERM to every group still listed, then, after 2 s, SIGKILL to those that
 * still have members, and exits. Groups are probed every 0.1 s meanwhile and one seen empty is
 * dropped: its id may be handed to an unrelated process group, which must never be signalled.
 *
 * On Windows nothing is spawned: each server's tree is a Job Object created with
 * KILL_ON_JOB_CLOSE whose only handle the daemon holds (see windows-tree.ts). However the
 * daemon dies, the system closes its handles and so ends every tree: the jobs are the watchdog.
 * Where no job could be made (taskkill fallback), a daemon killed outright leaves the trees.
 *
 * {@link Watchdog.adopt} gives a server just spawned the tree of the platform it runs on.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { ProcessGroup, type GroupTiming, type ProcessTree } from './process-group.js';
import { WindowsTrees, type TreeLog } from './windows-tree.js';

const SCRIPT = `
trap '' INT TERM HUP
groups=""
while IFS= read -r line; do
  case "$line" in
    +*) groups="$groups \${line#+}" ;;
    -*) kept=""; for g in $groups; do [ "$g" = "\${line#-}" ] || kept="$kept $g"; done; groups="$kept" ;;
  esac
done
[ -n "$groups" ] || exit 0
for g in $groups; do kill -TERM "-$g" 2>/dev/null; done
i=0
while [ $i -lt 20 ] && [ -n "$groups" ]; do
  sleep 0.1
  kept=""; for g in $groups; do kill -0 "-$g" 2>/dev/null && kept="$kept $g"; done; groups="$kept"
  i=$((i + 1))
done
for g in $groups; do kill -KILL "-$g" 2>/dev/null; done
exit 0
`;

export interface WatchdogOptions {
  /** Default `process.platform`. */
  platform?: NodeJS.Platform;
  /** Where Windows says which mechanism ends the trees (once) and what failed. */
  log?: TreeLog;
  /** The Windows trees (tests pass one with a fake kernel32 and taskkill). */
  windows?: WindowsTrees;
  /** The waits of the POSIX process groups it adopts (their defaults when unset). */
  group?: GroupTiming;
}

export class Watchdog {
  private readonly platform: NodeJS.Platform;
  private readonly log: TreeLog | undefined;
  private windows: WindowsTrees | undefined;
  private readonly group: GroupTiming;
  private proc: ChildProcess | undefined;
  private failed = false;
  /** The groups watched now: a watchdog started late (after EMFILE) is told all of them. */
  private readonly groups = new Set<number>();

  constructor(options: WatchdogOptions = {}) {
    this.platform = options.platform ?? process.platform;
    this.log = options.log;
    this.windows = options.windows;
    this.group = options.group ?? {};
  }

  /**
   * The tree of a server spawned a moment ago (detached, so on POSIX the leader of its own
   * group), watched until it is ended: a {@link ProcessGroup} registered here on POSIX, a job
   * (or the taskkill fallback) on Windows. Never throws.
   */
  adopt(pid: number): ProcessTree {
    return this.platform === 'win32' ? this.windowsTrees().adopt(pid) : new ProcessGroup(pid, this, this.group);
  }

  /** Call before spawning a server: on Windows, binds kernel32 the first time. Never throws. */
  prepare(): void {
    if (this.platform === 'win32') this.windowsTrees().prepare();
  }

  private windowsTrees(): WindowsTrees {
    this.windows ??= new WindowsTrees({ log: this.log });
    return this.windows;
  }

  /** Starts watching a process group (its leader's pid). Best effort: never throws. */
  watch(pgid: number): void {
    this.groups.add(pgid);
    this.write(`+${pgid}\n`);
  }

  /** Stops watching a group that has no member left. */
  unwatch(pgid: number): void {
    this.groups.delete(pgid);
    if (this.proc) this.write(`-${pgid}\n`);
  }

  /** Ends the watchdog; call after every child was stopped. Idempotent. */
  close(): void {
    this.proc?.stdin?.end();
    this.proc = undefined;
  }

  private write(line: string): void {
    if (this.failed || this.platform === 'win32') return;
    if (!this.proc) {
      let proc: ChildProcess;
      try {
        proc = spawn('/bin/sh', ['-c', SCRIPT], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
      } catch {
        return; // tried again with the next group
      }
      const stdin = proc.stdin;
      // No pipe: the daemon is out of descriptors (EMFILE, its 'error' follows). Tried again with
      // the next group, told every group then; a watchdog that could not run at all is given up.
      proc.on('error', (error: NodeJS.ErrnoException) => {
        if (error.code !== 'EMFILE' && error.code !== 'ENFILE' && error.code !== 'EAGAIN') this.failed = true;
        if (this.proc === proc) this.proc = undefined;
      });
      if (!stdin) return;
      stdin.on('error', () => undefined);
      // Neither the process nor its pipe may keep the daemon alive.
      proc.unref();
      (stdin as unknown as { unref?: () => void }).unref?.();
      this.proc = proc;
      stdin.write([...this.groups].map((g) => `+${g}\n`).join(''));
      if (line.startsWith('+')) return; // among the groups just written
    }
    this.proc.stdin?.write(line);
  }
}
