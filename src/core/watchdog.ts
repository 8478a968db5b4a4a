/**
 * Makes sure hosted server processes die with the daemon, even when the daemon is killed with
 * SIGKILL and runs no code at all. (No \`--\` before the negative group id: dash's \`kill\` refuses it.) A tiny `sh` process (about 1 MB) reads the process group ids
 * of the daemon's children from a pipe; when the pipe ends (the daemon is gone, however it
 * went), it sends SIGTERM to every group still listed, then, after 2 s, SIGKILL to those that
 * still have members, and exits. Groups are probed every 0.1 s meanwhile and one seen empty is
 * dropped: its id may be handed to an unrelated process group, which must never be signalled.
 */
import { spawn, type ChildProcess } from 'node:child_process';

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

export class Watchdog {
  private proc: ChildProcess | undefined;
  private failed = false;

  /** Starts watching a process group (its leader's pid). Best effort: never throws. */
  watch(pgid: number): void {
    this.write(`+${pgid}\n`);
  }

  /** Stops watching a group that has no member left. */
  unwatch(pgid: number): void {
    if (this.proc) this.write(`-${pgid}\n`);
  }

  /** Ends the watchdog; call after every child was stopped. Idempotent. */
  close(): void {
    this.proc?.stdin?.end();
    this.proc = undefined;
  }

  private write(line: string): void {
    if (this.failed || process.platform === 'win32') return;
    if (!this.proc) {
      const proc = spawn('/bin/sh', ['-c', SCRIPT], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
      proc.on('error', () => (this.failed = true));
      proc.stdin.on('error', () => undefined);
      // Neither the process nor its pipe may keep the daemon alive.
      proc.unref();
      (proc.stdin as unknown as { unref?: () => void }).unref?.();
      this.proc = proc;
    }
    this.proc.stdin?.write(line);
  }
}
