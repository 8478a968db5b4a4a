/**
 * `exai-ws status`, `stop` and `reload`: find the daemon through its address card and ask it.
 * The full report is asked for through a proven request (health-client.ts): the token, or
 * anything else of value, never goes to a listener that has not proven it holds this home's
 * token; liveness asks nothing of value and tells what answers when no proof came. `stop` and
 * `reload` go over the control channel, with the platform's fallback (control-client.ts).
 */

import { readAddressCard, resolveHome } from '../local/files.js';
import { discoverDaemon } from '../local/client-settings.js';
import { strangerMessage } from '../local/proof.js';
import { fetchFullHealth, fetchHealth, provenRequest, type ProvenTarget } from '../local/health-client.js';
import { isDaemonCommandLine, processAlive, processCommandLine } from '../local/pidfile.js';
import { VERSION } from '../protocol/version.js';
import { STATUS_SCHEMA, statusJson, type StatusDown } from './status-view.js';
import { renderStatusTable } from './status-table.js';
import { colorWanted, columnsOf, type CommandIo } from './terminal.js';
import { askReload, fallbackNote, reloadFallback, STOP_WAIT_MS, stopDaemon } from './control-client.js';
import { type ReloadReport, isFullReport, type HealthReport, type LastReload, type Liveness } from '../local/health.js';

const HEALTH_TIMEOUT_MS = 2_000;
/** How long `reload` waits for a SIGHUP (the POSIX fallback) to show in `/health`. */
const RELOAD_WAIT_MS = 10_000;

type Found =
  | {
      live: Liveness;
      /** The full report; null when the daemon did not prove it holds this home's token (see `refused`). */
      health: HealthReport | null;
      /** Where it answers and the token it proved it holds. */
      target: ProvenTarget;
      /** Why there is no full report. */
      refused: string | null;
    }
  | { error: string; stale_pid_file?: { path: string; pid: number } };

async function findDaemon(env: NodeJS.ProcessEnv = process.env): Promise<Found> {
  const paths = resolveHome(env);
  const card = readAddressCard(paths.pid);
  if (!card) return { error: `no daemon is running (no address card at ${paths.pid})` };
  // A card left by a daemon that died without cleaning up (kill -9, a crash, a reboot): its pid
  // is gone, or was reused by a program that is no daemon.
  const stale = (also?: string) => ({
    error: `not running (stale pid file ${paths.pid} from pid ${card.pid})${also ? `; ${also}` : ''}`,
    stale_pid_file: { path: paths.pid, pid: card.pid },
  });
  if (!processAlive(card.pid)) return stale();
  const target: ProvenTarget = { host: card.host, port: card.port, token: discoverDaemon(env, { shell: true }).token };
  const proven = await provenRequest(target, { method: 'GET', path: '/health', timeoutMs: HEALTH_TIMEOUT_MS });
  if (proven.ok && proven.status === 200) {
    const report = proven.body as Liveness | null;
    if (report !== null && typeof report === 'object' && report.pid === card.pid && isFullReport(report)) {
      return { live: report, health: report, target, refused: null };
    }
  }
  // No proof (or another pid): liveness asks nothing of value and tells what answers.
  const live = await fetchHealth(card.host, card.port, HEALTH_TIMEOUT_MS);
  const stranger = !proven.ok && proven.failure === 'unproven' ? strangerMessage(card.host, card.port, proven.detail) : undefined;
  if (!live || live.pid !== card.pid) {
    const commandLine = processCommandLine(card.pid);
    if (commandLine !== null && !isDaemonCommandLine(commandLine)) return stale(stranger);
    return { error: stranger ?? `the daemon (pid ${card.pid}) does not answer on ${card.host}:${card.port}` };
  }
  return { live, health: null, target, refused: refusalOf(live, proven, paths.token) };
}

/** Why the card's own daemon gave no full report: the user's next step in one line. */
function refusalOf(live: Liveness, proven: Awaited<ReturnType<typeof provenRequest>>, tokenPath: string): string {
  const daemon = `the daemon (pid ${live.pid})`;
  if (proven.ok) return `${daemon} gave no full report (HTTP ${proven.status})`;
  if (proven.failure === 'no_token') return `${daemon} cannot be asked: no token file at ${tokenPath} to check its proof with`;
  if (proven.noChallenge === true) {
    // Every daemon since proofs answers the challenge: one that does not is older.
    return `${daemon} (version ${live.version}) is older than this exai-ws (${VERSION}): it cannot prove that it holds this home's token; run \`exai-ws restart\` to run the new version`;
  }
  return `${daemon} did not prove that it holds this home's token, so nothing was sent to it (EXAI_WS_TOKEN or the token file differs from the daemon's)`;
}

/**
 * Prints the daemon's state: a table fitted to the terminal (colour only on a terminal, see
 * colorWanted), or with `json` the stable `StatusJson` / {@link StatusDown} shape (status-view.ts).
 * Resolves to the exit code: 0; 1 when no daemon answers, or when it did not take the token
 * (then only what it tells anyone is shown, `limited` saying why).
 */
export async function runStatusCommand(options: { json: boolean }, io: CommandIo): Promise<number> {
  const { stdout, stderr, env } = io;
  const found = await findDaemon(env);
  if ('error' in found) {
    if (options.json) {
      const down: StatusDown = { schema: STATUS_SCHEMA, status: 'down', ...found };
      stdout.write(`${JSON.stringify(down, null, 2)}\n`);
    } else {
      stderr.write(`exai-ws: ${found.error}\n`);
    }
    return 1;
  }
  const status = found.health ? statusJson(found.health) : statusJson(found.live, found.refused ?? undefined);
  if (options.json) {
    stdout.write(`${JSON.stringify(status, null, 2)}\n`);
  } else {
    stdout.write(renderStatusTable(status, { color: colorWanted(stdout, env), width: columnsOf(stdout) }));
  }
  return status.limited === null ? 0 : 1;
}

/**
 * Asks the daemon to stop (the control channel; on POSIX SIGTERM when it cannot be asked, on
 * Windows a kill outright, said on stderr) and waits until it has exited.
 */
export async function runStopCommand(io: CommandIo): Promise<number> {
  const { stdout, stderr, env } = io;
  const found = await findDaemon(env);
  if ('error' in found) {
    stderr.write(`exai-ws: ${found.error}\n`);
    return 1;
  }
  // Without a full report the daemon did not prove itself: it is not asked. A signal needs no
  // token: the liveness answer proved the pid is this home's daemon.
  const pid = found.live.pid;
  const outcome = await stopDaemon(
    { pid, target: found.health ? found.target : null, why: found.refused ?? undefined, pidPath: resolveHome(env).pid },
    { by: 'exai-ws stop' },
  );
  stderr.write(fallbackNote(outcome, pid));
  if (outcome.stopped) {
    stdout.write(`exai-ws: daemon ${pid} stopped\n`);
    return 0;
  }
  const waited = outcome.how === 'killed' ? 'after it was killed' : `within ${STOP_WAIT_MS / 1000} s`;
  stderr.write(`exai-ws: daemon ${pid} did not stop ${waited}\n`);
  return 1;
}

/** Server names as a status line lists them: comma-separated, or '-' for none. */
function listNames(names: string[] | undefined): string {
  return names && names.length > 0 ? names.join(', ') : '-';
}

/**
 * Asks the daemon to re-read its hosted-servers config and prints what changed: over the control
 * channel, or on POSIX with SIGHUP when it cannot be asked (then once its `/health` reports the
 * new reload). Resolves to the exit code.
 */
export async function runReloadCommand(io: CommandIo): Promise<number> {
  const { stdout, stderr, env } = io;
  const found = await findDaemon(env);
  if ('error' in found) {
    stderr.write(`exai-ws: ${found.error}\n`);
    return 1;
  }
  const { health, target } = found;
  if (health === null) {
    stderr.write(`exai-ws: ${found.refused ?? 'no full report from the daemon'}\n`);
    return 1;
  }
  const asked = await askReload(target);
  if (asked.kind === 'reloaded') {
    stdout.write(reloadedLine(asked.report));
    return 0;
  }
  if (asked.kind === 'failed') {
    stderr.write(`exai-ws: reload failed, the running servers stay as they are: ${asked.error}\n`);
    return 1;
  }
  const fallback = reloadFallback(health.pid, asked.why);
  if (fallback.kind === 'refuse') {
    stderr.write(`exai-ws: ${fallback.message}\n`);
    return 1;
  }
  const before = lastReloadOf(health)?.at;
  process.kill(health.pid, fallback.signal);
  const deadline = Date.now() + RELOAD_WAIT_MS;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    const now = await fetchFullHealth(target.host, target.port, HEALTH_TIMEOUT_MS, target.token);
    const last = now ? lastReloadOf(now) : undefined;
    if (!last || last.at === before) continue;
    if ('error' in last) {
      stderr.write(`exai-ws: reload failed, the running servers stay as they are: ${last.error}\n`);
      return 1;
    }
    stdout.write(reloadedLine(last));
    return 0;
  }
  stderr.write(`exai-ws: the daemon did not report a reload within ${RELOAD_WAIT_MS / 1000} s\n`);
  return 1;
}

function reloadedLine(report: ReloadReport): string {
  return `exai-ws: config reloaded: added ${listNames(report.added)}; removed ${listNames(report.removed)}; restarted ${listNames(report.restarted)}; unchanged ${listNames(report.unchanged)}\n`;
}

function lastReloadOf(health: HealthReport): LastReload | undefined {
  return health.config?.last_reload ?? undefined;
}
