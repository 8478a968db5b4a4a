/**
 * The hosted-servers config in force: the file as the start read it, each reload, and the watch
 * that reloads it shortly after it changes, appears or goes away (daemon.ts starts the watch
 * once running and closes it first on shutdown). What `/health` reports of it is {@link report}.
 */
import { existsSync } from 'node:fs';
import { loadUpstreamConfig, type UpstreamConfig } from '../hosting/upstream-config.js';
import { toolCapLookup, type ToolCapLookup } from '../hosting/tool-caps-config.js';
import type { HealthReport, LastReload, ReloadReport } from '../local/health.js';
import type { Hub } from '../mux/hub.js';
import { ConfigWatcher } from './files/config-watcher.js';
import type { Logger } from './files/logger.js';

/** Quiet time after a config file change before it is read. */
const CONFIG_SETTLE_MS = 250;

export interface ConfigReloadsOptions {
  /** The config file (`EXAI_WS_CONFIG`, else the default). */
  path: string;
  /** The idle time of hosted servers, as the config file is read with it. */
  upstreamIdleMs: number;
  /** What the start read. */
  initial: UpstreamConfig;
}

export class ConfigReloads {
  private readonly options: ConfigReloadsOptions;
  /** The hosted-servers config in force (replaced by each successful reload). */
  private upstreams: UpstreamConfig;
  /** The `client_tool_caps` in force, compiled (replaced with {@link upstreams}). */
  private caps: ToolCapLookup;
  /**
   * Why the config file as it is on disk is not in force (unreadable, not valid JSON: line and
   * column), found at start or by a reload; cleared by the next reload that applies it.
   */
  private configError: string | undefined;
  private watcher: ConfigWatcher | undefined;
  private lastReload: LastReload | undefined;

  constructor(options: ConfigReloadsOptions) {
    this.options = options;
    this.upstreams = options.initial;
    this.caps = toolCapLookup(options.initial.toolCaps);
    this.configError = options.initial.error;
  }

  /** At start, once the hub runs: each entry refused and a file not applied, logged. */
  logAtStart(logger: Logger): void {
    const { initial, path } = this.options;
    for (const problem of initial.problems) {
      logger.warn({ ...problem, config: initial.path }, 'config entry refused');
    }
    if (this.configError !== undefined) {
      logger.warn(
        { err: this.configError, config: path },
        'config file not applied: no hosted servers until it is fixed (it is applied as soon as it is saved)',
      );
    }
  }

  /**
   * Re-reads the hosted-servers config and applies it: added servers start, removed ones stop,
   * changed ones restart, the rest keep running; sessions get `list_changed`. A file that is not
   * valid JSON changes nothing (the error, with line and column, is logged and reported by
   * `/health`). A file that is gone means no hosted servers, as at a start without one.
   */
  async reload(hub: Pick<Hub, 'reload'>, reason: string, logger: Logger | undefined): Promise<ReloadReport | Error> {
    let next: UpstreamConfig;
    try {
      next = loadUpstreamConfig(this.options.path, this.options.upstreamIdleMs);
    } catch (error) {
      this.configError = (error as Error).message;
      this.lastReload = { at: new Date().toISOString(), error: (error as Error).message };
      logger?.error({ reason, err: (error as Error).message }, 'config reload failed; the running servers stay as they are');
      return error as Error;
    }
    for (const problem of next.problems) logger?.warn({ ...problem, config: next.path }, 'config entry refused');
    const removed = next.path === null && this.upstreams.path !== null;
    this.upstreams = next;
    this.caps = toolCapLookup(next.toolCaps);
    this.configError = undefined;
    const report = await hub.reload(next.servers, next.profiles);
    this.lastReload = { at: new Date().toISOString(), ...report, file: next.path !== null, refused: next.problems.length };
    if (removed) logger?.info({ reason, config: this.options.path, ...report }, 'config file removed: no hosted servers');
    else logger?.info({ reason, ...report }, 'config reloaded');
    return report;
  }

  /**
   * Calls `onchange` shortly after the config file changes, appears or goes away, even when its
   * folder does not exist yet (see ConfigWatcher), and at once when it changed since the start.
   */
  watch(onchange: () => void, logger: Logger | undefined): void {
    const { path } = this.options;
    this.watcher = new ConfigWatcher({
      path,
      settleMs: CONFIG_SETTLE_MS,
      onchange,
      onproblem: (problem) =>
        'error' in problem
          ? logger?.warn({ err: problem.error, config: path }, 'config file not watched; retrying (exai-ws reload works meanwhile)')
          : logger?.info({ watching: problem.watching, config: path }, 'config file watched again'),
    });
    this.watcher.start();
    // Written (or fixed) between the read at start and the watch: not missed.
    if ((this.upstreams.path !== null) !== existsSync(path) || (this.configError !== undefined && usable(path))) {
      onchange();
    }
  }

  /** The most tools a client of this name takes, by the caps in force; null: no known cap. */
  toolCap(client: string | undefined): number | null {
    return this.caps(client);
  }

  /** Stops watching. */
  close(): void {
    this.watcher?.close();
  }

  /** The `config` part of `/health`. */
  report(): HealthReport['config'] {
    return {
      path: this.options.path,
      exists: this.upstreams.path !== null,
      watching: this.watcher?.watching ?? null,
      problems: this.upstreams.problems,
      error: this.configError ?? null,
      last_reload: this.lastReload ?? null,
    };
  }
}

/** True when the config file can be read and parsed now. */
function usable(path: string): boolean {
  try {
    loadUpstreamConfig(path);
    return true;
  } catch {
    return false;
  }
}
