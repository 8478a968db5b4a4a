/**
 * Running Node.js for Windows under Wine from the Linux test runner (scripts/windows-e2e.sh sets
 * EXAI_WS_WINDOWS_NODE and WINEPREFIX). A Windows process whose stdout is a Linux pipe fails with
 * EBADF, so its stdout and stderr go to files. Wine's processes are Linux processes too: what a
 * test must see gone is found by a marker in its command line, from /proc.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export const WINE = '/usr/lib/wine/wine64';

/** Node.js for Windows, or undefined when the script that installs it did not run. */
export const WINDOWS_NODE = process.env.EXAI_WS_WINDOWS_NODE;

/** A Linux path as Windows processes under Wine name it (drive Z: is `/`). */
export function winPath(linuxPath: string): string {
  return `Z:${linuxPath.replace(/\//g, '\\')}`;
}

/** A Windows path under drive Z: back as a Linux path. */
export function linuxPath(windowsPath: string): string {
  return windowsPath.replace(/^Z:/i, '').replace(/\\/g, '/');
}

export interface WineProcess {
  child: ChildProcess;
  /** What it wrote so far to stdout, or stderr. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code once it exited. */
  exited: Promise<number | null>;
}

/**
 * Starts `node.exe args...` under Wine with `env` (Wine passes the Linux environment on; it sets
 * the Windows ones, APPDATA, PATH, USERNAME, itself). `dir` gets its output files.
 */
export function wineNode(args: readonly string[], options: { env: Record<string, string>; dir: string; name: string }): WineProcess {
  if (!WINDOWS_NODE) throw new Error('EXAI_WS_WINDOWS_NODE is not set: run these tests with scripts/windows-e2e.sh');
  const out = join(options.dir, `${options.name}.out`);
  const err = join(options.dir, `${options.name}.err`);
  const outFd = openSync(out, 'w');
  const errFd = openSync(err, 'w');
  const child = spawn(WINE, [WINDOWS_NODE, ...args], { env: options.env, stdio: ['ignore', outFd, errFd] });
  closeSync(outFd);
  closeSync(errFd);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.once('error', () => resolve(null));
  });
  const read = (path: string) => () => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return '';
    }
  };
  return { child, stdout: read(out), stderr: read(err), exited };
}

/** Runs `node.exe args...` to its end; the exit code and what it printed. */
export async function runWineNode(
  args: readonly string[],
  options: { env: Record<string, string>; dir: string; name: string; timeoutMs?: number },
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = wineNode(args, options);
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  const code = await proc.exited;
  clearTimeout(timer);
  return { code, stdout: proc.stdout(), stderr: proc.stderr() };
}

/** The Linux pids of live processes whose command line contains `marker` (zombies left out). */
export function processesWith(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes(marker) && processLives(Number(entry))) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** True while the Linux process `pid` lives (a zombie counts as gone). */
export function processLives(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}
