/** A small client for the daemon's `GET /health`, used by the pid lock, `status` and `stop`. */
import { request } from 'node:http';
import type { ReloadReport } from '../core/hub.js';
import type { ProviderHealth } from '../core/providers/providers.js';
import type { ServerReport } from '../core/upstream.js';
import type { ConfigProblem } from '../core/upstream-config.js';
import type { SettingsHealth } from './config.js';

export interface HealthReport {
  status: string;
  name: string;
  version: string;
  pid: number;
  host: string;
  port: number;
  started_at: string;
  uptime_s: number;
  sessions: {
    total: number;
    attached: number;
    detached: number;
    /** Open sessions by how their client is connected. */
    by_transport?: Record<'ws' | 'http' | 'stdio', number>;
    list?: SessionEntry[];
  };
  inflight: number;
  /** The log file and the stderr copy; null before the daemon opened its log. */
  log?: LogHealth | null;
  /** The metrics file (`logs/metrics.jsonl`). */
  metrics_file?: FileHealth | null;
  memory?: MemoryReport;
  /** Started by a shim or `exai-ws restart` (`EXAI_WS_AUTOSTARTED=1`). */
  auto_started?: boolean;
  /** How long it stays with no session before it exits; null: never (started by hand, or 0). */
  idle_exit_ms?: number | null;
  // Optional from here: readers (status, the page, the exporter) must also take the report of
  // a daemon of another version (a CLI upgraded while the old daemon still runs).
  /** Open WebSocket connections (sessions and connections still saying hello). */
  connections?: number;
  /** Hosted server instances; `asks_client`: its tools known to ask the client back (run one session at a time). */
  servers?: (ServerReport & { asks_client: string[] })[];
  config?: ConfigHealth;
  providers?: ProviderHealth[];
  limits?: { max_sessions: number; max_inflight: number; max_bytes: number };
  /** The settings file (`daemon.env`) and where each setting in force came from. */
  settings?: SettingsHealth;
  /** What the user should act on (ignored client variables, a settings file others can read, ...), in words. */
  warnings?: string[];
}

/** The hosted servers' config file, as `/health` reports it. */
export interface ConfigHealth {
  path: string;
  /** False while there is no file (no hosted servers). */
  exists: boolean;
  /** The path the watcher watches (the file, or the folder it is awaited in); null: not watched. */
  watching: string | null;
  /** Entries the daemon refused. */
  problems: readonly ConfigProblem[];
  /**
   * Why the file as it is now is not in force (unreadable, not valid JSON, with line and
   * column), found at start (no hosted servers then) or by a reload (the running ones stay);
   * null when it is in force. Absent from older daemons.
   */
  error?: string | null;
  last_reload: LastReload | null;
}

/** The outcome of the last live reload, for `/health` and `exai-ws status`. */
export type LastReload = { at: string } & ({ error: string } | (ReloadReport & { file: boolean; refused: number }));

/** One open session, as `/health` lists it. */
export interface SessionEntry {
  id: string;
  transport: 'ws' | 'http' | 'stdio';
  state: string;
  client: string;
  client_version: string;
  cwd: string | null;
  age_s: number;
  inflight: number;
  /** Requests answered in this session so far. */
  requests: number;
  /** 99th percentile latency of its last 1000 answered requests, in ms; null before any. */
  p99_ms: number | null;
}

/** One best-effort JSONL file: lines it took, lines it dropped, its rotation. */
export interface FileHealth {
  path: string;
  written_lines: number;
  /** Lines lost: write errors (full disk, permissions, I/O), oversized lines, a full buffer. */
  dropped_lines: number;
  rotations: number;
  last_error: { code: string; message: string; at: string } | null;
  /** True while writes fail; writing is retried about once a second. */
  failing: boolean;
  max_bytes: number;
  /** Rotated generations kept beside the current file. */
  files: number;
}

export interface LogHealth extends Omit<FileHealth, 'path'> {
  /** Log calls whose arguments could not be serialised (a short stand-in line was logged). */
  unserializable_calls: number;
  /** Warning lines that could not be copied to stderr. */
  stderr_dropped_lines: number;
}

export interface MemoryReport {
  heap_used_bytes: number;
  heap_total_bytes: number;
  /** Null when the resident size could not be read. */
  rss_bytes: number | null;
}

/** What `/health` tells anyone, token or not: enough to find and probe the daemon. */
export const LIVENESS_FIELDS = [
  'status',
  'name',
  'version',
  'pid',
  'host',
  'port',
  'started_at',
  'uptime_s',
  'auto_started',
  'idle_exit_ms',
] as const satisfies readonly (keyof HealthReport)[];

export type Liveness = Pick<HealthReport, (typeof LIVENESS_FIELDS)[number]>;

/** True when the daemon took the token and answered the full report, not liveness only. */
export function isFullReport(report: Liveness): report is HealthReport {
  return typeof (report as Partial<HealthReport>).sessions === 'object';
}

/**
 * Fetches the full `/health` report with the token; null when nothing answers in time, or the
 * daemon did not take the token (it then answers liveness only).
 */
export async function fetchFullHealth(host: string, port: number, timeoutMs: number, token: string): Promise<HealthReport | null> {
  const report = await fetchHealth(host, port, timeoutMs, token);
  return report && isFullReport(report) ? report : null;
}

/**
 * Fetches `/health`: liveness only, or with a token the daemon takes the full report (tell them
 * apart with {@link isFullReport}); null when nothing answers in time or the answer is not a
 * health report.
 */
export function fetchHealth(host: string, port: number, timeoutMs: number, token?: string | null): Promise<Liveness | null> {
  return new Promise((resolve) => {
    const headers = token ? { authorization: `Bearer ${token}` } : undefined;
    const req = request({ host, port, path: '/health', method: 'GET', timeout: timeoutMs, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Liveness;
          resolve(res.statusCode === 200 && typeof body.pid === 'number' ? body : null);
        } catch {
          resolve(null);
        }
      });
      res.on('error', () => resolve(null));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
    req.end();
  });
}
