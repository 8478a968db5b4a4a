/**
 * Watches the hosted-servers config file, which may not exist yet, nor its folder, nor the
 * folders above it (a fresh machine has no `~/.config/exai-ws`). It watches the nearest folder
 * that exists on the way to the file and moves the watch down as folders appear (and back up
 * when they are deleted), so the file is picked up the moment it is written. Changes are
 * reported after a quiet time, since editors write in several steps.
 *
 * fs.watch is not recursive here: one inotify watch at a time, on a folder that rarely changes
 * (`~/.config` sees a new entry when an app is installed, not on every save). When no watch can
 * be set up (inotify limits, permissions), placing it is tried again with a backoff capped at
 * {@link MAX_RETRY_MS}, and the file's own state is compared on each try, so an edit is still
 * noticed, late, and never by a tight poll.
 *
 * A config file that is a symbolic link (dotfile managers link `config.json` into a
 * repository) is followed: the link and every link on the way to the real file are watched
 * the same way, each in its own folder, so an edit of the target is seen like an edit of the
 * file, and a link pointed elsewhere moves the watches with it.
 */
import { readlinkSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

export interface ConfigWatcherOptions {
  /** The config file (absolute). */
  path: string;
  /** Quiet time after the last event before `onchange`, in milliseconds. */
  settleMs: number;
  /** The file may have changed (appeared, been edited, been deleted): read it again. */
  onchange: () => void;
  /** A watch could not be set up (reported once per spell) or works again. */
  onproblem?: (problem: { error: string } | { resolved: true; watching: string }) => void;
}

/** First wait before trying again to set up a watch that failed. */
const FIRST_RETRY_MS = 1_000;
/** Longest wait between such tries. */
export const MAX_RETRY_MS = 30_000;
/** More moves in one placement than any path has levels means the tree keeps changing: stop there. */
const MAX_MOVES = 64;

/** Links followed from the config file to its target; a longer chain is a loop. */
const MAX_LINK_HOPS = 16;

type State = 'new' | 'watching' | 'retrying' | 'closed';

/**
 * Watches the config file and, when it is a link, every path on the way to its target (see the
 * file comment). A change of any of them reports a change of the file.
 */
export class ConfigWatcher {
  private readonly options: ConfigWatcherOptions;
  /** The file's own watch (the link itself when it is one). */
  private readonly own: EntryWatcher;
  /** Watches of the link targets, by path. */
  private readonly targets = new Map<string, EntryWatcher>();
  private closed = false;

  constructor(options: ConfigWatcherOptions) {
    this.options = options;
    this.own = new EntryWatcher({ ...options, onchange: () => this.changed() });
  }

  /** The folder being watched for the file itself: its own once it exists, else the nearest one above. */
  get watching(): string | undefined {
    return this.own.watching;
  }

  /** Starts watching. Never throws: a watch that cannot be set up is retried. */
  start(): void {
    if (this.closed) return;
    this.own.start();
    this.follow();
  }

  /** Stops watching; no `onchange` after this. Idempotent. */
  close(): void {
    this.closed = true;
    this.own.close();
    for (const target of this.targets.values()) target.close();
    this.targets.clear();
  }

  private changed(): void {
    if (this.closed) return;
    // A link may have been made, removed or pointed elsewhere: watch where it leads now.
    this.follow();
    this.options.onchange();
  }

  /** Watches each target on the file's chain of links, and no other. */
  private follow(): void {
    const chain = new Set(linkTargets(this.options.path));
    for (const [path, target] of this.targets) {
      if (chain.has(path)) continue;
      target.close();
      this.targets.delete(path);
    }
    for (const path of chain) {
      if (this.targets.has(path)) continue;
      const target = new EntryWatcher({ ...this.options, path, onchange: () => this.changed() });
      this.targets.set(path, target);
      target.start();
    }
  }
}

/** The paths a chain of links starting at `path` leads through, `path` excluded; empty when it is no link. */
function linkTargets(path: string): string[] {
  const targets: string[] = [];
  let current = path;
  for (let hops = 0; hops < MAX_LINK_HOPS; hops++) {
    let link: string;
    try {
      link = readlinkSync(current);
    } catch {
      break; // not a link (EINVAL), or not there
    }
    current = resolve(dirname(current), link);
    if (current === path || targets.includes(current)) break;
    targets.push(current);
  }
  return targets;
}

/** Watches one entry of a folder that may not exist yet (the file comment's rules), without following it. */
class EntryWatcher {
  private readonly options: ConfigWatcherOptions;
  private readonly folder: string;
  private readonly name: string;
  private state: State = 'new';
  private watcher: FSWatcher | undefined;
  /** The folder watched, and its identity (a folder deleted and made again is another one). */
  private watched: { path: string; id: string } | undefined;
  /** The folder watched last, kept while no watch works: to tell a move to or from the file's folder. */
  private placedAt: string | undefined;
  private settleTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = FIRST_RETRY_MS;
  /** The file's state when last looked at while no watch worked. */
  private fileSeen: string | undefined;
  private problem: string | undefined;

  constructor(options: ConfigWatcherOptions) {
    this.options = options;
    this.folder = dirname(options.path);
    this.name = basename(options.path);
  }

  /** The folder being watched: the file's own once it exists, else the nearest one above. */
  get watching(): string | undefined {
    return this.state === 'watching' ? this.watched?.path : undefined;
  }

  /** Starts watching. Never throws: a watch that cannot be set up is retried (see the file comment). */
  start(): void {
    if (this.state !== 'new') return;
    this.state = 'retrying';
    this.place();
  }

  /** Stops watching; no `onchange` after this. Idempotent. */
  close(): void {
    this.state = 'closed';
    this.unwatch();
    if (this.settleTimer) clearTimeout(this.settleTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }

  /** Puts the watch on the nearest existing folder; reports a change when that moved to or from the file's own. */
  private place(): void {
    for (let moves = 0; moves < MAX_MOVES && this.state !== 'closed'; moves++) {
      const target = nearestFolder(this.folder);
      if (this.watcher && this.watched && target.path === this.watched.path && target.id === this.watched.id) return;
      const before = this.placedAt;
      this.unwatch();
      try {
        const watcher = watch(target.path, { persistent: false }, (_event, name) => this.event(name));
        // A watched folder that is deleted may end its watch with an error: place it again.
        watcher.on('error', () => {
          if (this.watcher !== watcher) return;
          this.unwatch();
          this.retryLater();
        });
        this.watcher = watcher;
      } catch (error) {
        this.failed(error as Error);
        return;
      }
      this.watched = target;
      this.placedAt = target.path;
      this.state = 'watching';
      this.retryMs = FIRST_RETRY_MS;
      if (this.problem !== undefined) {
        this.problem = undefined;
        this.options.onproblem?.({ resolved: true, watching: target.path });
      }
      // Reaching the file's folder (it may hold the file already) or leaving it (deleted with
      // it); the first placement is not a change: the caller has just read the file.
      if (before !== undefined && (target.path === this.folder) !== (before === this.folder)) this.changed();
      // Loop: a folder below may have appeared while this watch was being set up.
    }
  }

  private event(name: string | Buffer | null): void {
    if (this.state !== 'watching') return;
    const own = this.watched?.path === this.folder;
    if (own && (name === null || String(name) === this.name)) this.changed();
    // Any other entry may be the next folder down appearing, or the watched folder going away.
    if (!own || name === null || String(name) !== this.name) this.place();
  }

  private changed(): void {
    if (this.state === 'closed') return;
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => {
      this.settleTimer = undefined;
      if (this.state !== 'closed') this.options.onchange();
    }, this.options.settleMs);
    this.settleTimer.unref();
  }

  private failed(error: Error): void {
    const message = `cannot watch ${this.options.path}: ${error.message}`;
    if (this.problem !== message) this.options.onproblem?.({ error: message });
    this.problem = message;
    this.retryLater();
  }

  /** Tries to place the watch again after a backoff; meanwhile the file's state is compared on each try. */
  private retryLater(): void {
    if (this.state === 'closed' || this.retryTimer) return;
    this.state = 'retrying';
    this.fileSeen ??= fileState(this.options.path);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.state === 'closed') return;
      const now = fileState(this.options.path);
      if (now !== this.fileSeen) this.changed();
      this.fileSeen = now;
      this.place();
    }, this.retryMs);
    this.retryTimer.unref();
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
  }

  private unwatch(): void {
    const watcher = this.watcher;
    this.watcher = undefined;
    this.watched = undefined;
    watcher?.close();
    if (this.state === 'watching') this.state = 'retrying';
  }
}

/** The deepest existing folder at or above `folder` (the root always exists), with its identity. */
function nearestFolder(folder: string): { path: string; id: string } {
  let path = folder;
  for (;;) {
    try {
      const stat = statSync(path);
      if (stat.isDirectory()) return { path, id: `${stat.dev}:${stat.ino}:${stat.birthtimeMs}` };
    } catch {
      // Not there (or not readable): look one level up.
    }
    const up = dirname(path);
    if (up === path) return { path, id: 'root' };
    path = up;
  }
}

/** What is needed to notice an edit without a watch: existence, size, modification time. */
function fileState(path: string): string {
  try {
    const stat = statSync(path);
    return `${stat.size}:${stat.mtimeMs}:${stat.ino}`;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? 'error';
  }
}
