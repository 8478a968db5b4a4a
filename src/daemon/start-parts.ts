/**
 * The parts of the daemon that need none of its state (daemon.ts composes them in the order
 * written there): its two files, what the settings give the user to act on, why a start was
 * refused, and its memory and sockets for `/health`.
 */
import { getHeapStatistics } from 'node:v8';
import { HomeError, homeError, secureHome } from '../local/home.js';
import { ensureToken } from '../local/token.js';
import { AlreadyRunningError } from '../local/pidfile.js';
import { isSecretName } from '../local/settings.js';
import type { HealthReport, MemoryReport } from '../local/health.js';
import type { DaemonConfig } from './files/config.js';
import { LineFile } from './files/line-file.js';
import { createLogger, type DaemonLogger, type Logger } from './files/logger.js';

/**
 * The log and the metrics file. Throws `HomeError` when the log cannot be opened; a metrics
 * file that cannot be written is told once per failure spell, not once per interval (`/health`
 * keeps the count).
 */
export function openDaemonFiles(config: DaemonConfig): { log: DaemonLogger; metricsFile: LineFile } {
  const { paths } = config;
  let log: DaemonLogger;
  try {
    // An auto-started daemon's stderr is its log file (see shim/autostart.ts): copying warnings
    // there would write each one twice.
    const stderrFd = config.autoStarted ? null : 2;
    log = createLogger({ path: paths.log, maxBytes: config.logMaxBytes, files: config.logFiles }, config.logLevel, stderrFd);
  } catch (error) {
    throw homeError(error, paths.log, 'the log file');
  }
  const logger = log.logger;
  const metricsFile = new LineFile({
    path: paths.metrics,
    maxBytes: config.metricsMaxBytes,
    files: config.metricsFiles,
    onfail: (error) =>
      logger.warn(
        { err: error.message, file: paths.metrics },
        'metrics write failed; dropping metrics lines until it can be written again',
      ),
    onresume: (dropped) => logger.info({ dropped_lines: dropped, file: paths.metrics }, 'metrics file writable again'),
  });
  return { log, metricsFile };
}

/**
 * The token, after the pid lock (only the lock holder writes the token file, so daemons started
 * at once agree on one), and the settings' warnings. On Windows, who may read the token and the
 * settings (acl.ts) is checked without waiting for it: its warnings count while `live()`.
 */
export function takeToken(
  config: DaemonConfig,
  logger: Logger,
  warn: (text: string, details: Record<string, unknown>) => void,
  home: { homeCreated: boolean; live: () => boolean },
): string {
  const { paths } = config;
  const { token, written } = ensureToken(paths.token, config.token);
  if (written === 'created') logger.info({ path: paths.token }, 'token file created');
  else if (written) logger.warn({ path: paths.token, reason: written }, 'token file held no usable token: replaced with a new one');
  for (const text of settingsWarnings(config)) warn(text, { settings: config.settings.path });
  void secureHome(paths, config.settings.path, home.homeCreated).then((lines) => {
    if (home.live()) for (const text of lines) warn(text, { home: paths.home });
  });
  return token;
}

/**
 * Logs why a start failed. Another daemon holding the home, or a home the user must fix, is an
 * expected refusal, not a fault: the caller prints it as one plain line, so keep it out of
 * stderr (warn and worse are copied there).
 */
export function logStartFailure(logger: Logger, error: unknown, port: number): void {
  if (error instanceof AlreadyRunningError) logger.info({ running_pid: error.card.pid }, 'daemon start refused: already running');
  else if (error instanceof HomeError)
    logger.info({ path: error.path, err: error.message }, 'daemon start refused: the home cannot be used');
  else if ((error as NodeJS.ErrnoException).syscall === 'listen')
    logger.info({ err: (error as Error).message, port }, 'daemon start refused: cannot listen');
  else logger.error({ err: (error as Error).message }, 'daemon failed to start');
}

/** What the settings file and the launching client's environment give the user to act on. */
export function settingsWarnings(config: DaemonConfig): string[] {
  const { settings } = config;
  const out: string[] = [];
  if (settings.error) out.push(`${settings.error}; the defaults apply`);
  for (const problem of settings.problems) out.push(`${settings.path} line ${problem.line}: ${problem.message}`);
  if (settings.readable_by_others && settings.values.some((v) => v.source === 'file' && isSecretName(v.name))) {
    out.push(`${settings.path} holds keys and others can read it: chmod 600 ${settings.path}`);
  }
  if (settings.legacy_service_env !== null) {
    out.push(
      `${settings.legacy_service_env} is from an earlier exai-ws: new service units do not read it, and its settings belong in ${settings.path}; exai-ws service install moves them there`,
    );
  }
  if (settings.ignored_env.length > 0) {
    const names = settings.ignored_env.join(', ');
    const keep = settings.ignored_env.map((name) => `exai-ws settings set ${name}=...`).join('; ');
    out.push(
      `the client that started this daemon passed ${names}, which the daemon no longer takes from a client (its settings come from ${settings.path}); to keep ${settings.ignored_env.length === 1 ? 'it' : 'them'}: ${keep}, then exai-ws restart`,
    );
  }
  return out;
}

/** The daemon's own memory, for `/health`: a leak shows as heap that keeps growing. */
export function memoryReport(): MemoryReport {
  const heap = getHeapStatistics();
  let rss: number | null = null;
  try {
    rss = process.memoryUsage.rss();
  } catch {
    // Reading the resident size can fail (out of file descriptors); the heap figures cannot.
  }
  return { heap_used_bytes: heap.used_heap_size, heap_total_bytes: heap.total_heap_size, rss_bytes: rss };
}

/** The connection guard's counts for `/health` (connections.ts); zeros before the server exists. */
export function socketsReport(
  counts: { open: number; unauthenticated: number; descriptorCap: number | undefined } | undefined,
): HealthReport['sockets'] {
  if (!counts) return { open: 0, unauthenticated: 0, descriptor_cap: null };
  return { open: counts.open, unauthenticated: counts.unauthenticated, descriptor_cap: counts.descriptorCap ?? null };
}
