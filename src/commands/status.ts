/** `exai-ws status` and `exai-ws stop`: find the daemon through its address card and ask it. */
import { discoverDaemon, readAddressCard, resolveHome } from '../protocol/files.js';
import { fetchFullHealth, fetchHealth, type HealthReport } from '../daemon/health-client.js';
import { isDaemonCommandLine, processAlive, processCommandLine } from '../daemon/pidfile.js';

const HEALTH_TIMEOUT_MS = 2_000;
/** How long `stop` and `restart` wait for the daemon to exit after SIGTERM. */
export const STOP_WAIT_MS = 30_000;
const RELOAD_WAIT_MS = 10_000;

type Found = { health: HealthReport; pidPath: string; token: string } | { error: string; stale_pid_file?: { path: string; pid: number } };

async function findDaemon(): Promise<Found> {
  const paths = resolveHome();
  const card = readAddressCard(paths.pid);
  if (!card) return { error: `no daemon is running (no address card at ${paths.pid})` };
  // A card left by a daemon that died without cleaning up (kill -9, a crash, a reboot): its pid
  // is gone, or was reused by a program that is no daemon.
  const stale = {
    error: `not running (stale pid file ${paths.pid} from pid ${card.pid})`,
    stale_pid_file: { path: paths.pid, pid: card.pid },
  };
  if (!processAlive(card.pid)) return stale;
  const live = await fetchHealth(card.host, card.port, HEALTH_TIMEOUT_MS);
  if (!live || live.pid !== card.pid) {
    const commandLine = processCommandLine(card.pid);
    if (commandLine !== null && !isDaemonCommandLine(commandLine)) return stale;
    return { error: `the daemon (pid ${card.pid}) does not answer on ${card.host}:${card.port}` };
  }
  const { token } = discoverDaemon();
  const health = token ? await fetchFullHealth(card.host, card.port, HEALTH_TIMEOUT_MS, token) : null;
  if (!health || !token) {
    return {
      error: `the daemon (pid ${card.pid}) did not take this user's token (${token ? "EXAI_WS_TOKEN or the token file differs from the daemon's" : `no token file at ${paths.token}`})`,
    };
  }
  return { health, pidPath: paths.pid, token };
}

/** Prints the daemon's state; resolves to the exit code (1 when no daemon answers). */
export async function runStatusCommand(options: { json: boolean }): Promise<number> {
  const found = await findDaemon();
  if ('error' in found) {
    if (options.json) process.stdout.write(`${JSON.stringify({ status: 'down', ...found })}\n`);
    else process.stderr.write(`exai-ws: ${found.error}\n`);
    return 1;
  }
  const h = found.health;
  if (options.json) {
    process.stdout.write(`${JSON.stringify(h)}\n`);
    return 0;
  }
  const lines = [
    `exai-ws ${h.version}: ${h.status}`,
    `  address   ws://${h.host}:${h.port}  (Streamable HTTP: http://${h.host}:${h.port}/mcp)`,
    `  pid       ${h.pid}`,
    `  uptime    ${formatUptime(h.uptime_s)}`,
    ...(typeof h.idle_exit_ms === 'number'
      ? [`  idle exit after ${formatUptime(Math.round(h.idle_exit_ms / 1000))} with no session (auto-started)`]
      : []),
    `  sessions  ${h.sessions.total} (${h.sessions.attached} attached, ${h.sessions.detached} detached${transportCounts(h)})`,
    ...sessionLines(h),
    `  in flight ${h.inflight}`,
    ...fileLines(h),
    ...configLines(h),
    ...hostedLines(h),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

/** `; 2 ws, 1 http`: how the open sessions are connected. */
function transportCounts(h: HealthReport): string {
  const by = h.sessions.by_transport;
  if (!by) return '';
  const parts = Object.entries(by)
    .filter(([, n]) => n > 0)
    .map(([kind, n]) => `${n} ${kind}`);
  return parts.length > 0 ? `; ${parts.join(', ')}` : '';
}

/** One line per open session: its client, transport, age and calls in flight (the first 20). */
function sessionLines(h: HealthReport): string[] {
  const list = h.sessions.list ?? [];
  const lines = list
    .slice(0, 20)
    .map(
      (s) =>
        `    ${s.client}${s.client_version && s.client_version !== 'unknown' ? ` ${s.client_version}` : ''} via ${s.transport}, ${s.state}, ${formatUptime(s.age_s)} old, ${s.inflight} in flight${s.cwd ? `, ${s.cwd}` : ''}`,
    );
  if (list.length > 20) lines.push(`    ... and ${list.length - 20} more`);
  return lines;
}

/** Sends SIGTERM to the daemon and waits until it has removed its address card. */
export async function runStopCommand(): Promise<number> {
  const found = await findDaemon();
  if ('error' in found) {
    process.stderr.write(`exai-ws: ${found.error}\n`);
    return 1;
  }
  const pid = found.health.pid;
  if (await terminate(pid, STOP_WAIT_MS)) {
    process.stdout.write(`exai-ws: daemon ${pid} stopped\n`);
    return 0;
  }
  process.stderr.write(`exai-ws: daemon ${pid} did not stop within ${STOP_WAIT_MS / 1000} s\n`);
  return 1;
}

/** Sends SIGTERM (a graceful shutdown) and waits up to `timeoutMs` for the process to be gone; true once it is. */
export async function terminate(pid: number, timeoutMs: number): Promise<boolean> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    // Gone already.
  }
  const deadline = Date.now() + timeoutMs;
  while (processAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/** Server names as a status line lists them: comma-separated, or '-' for none. */
function listNames(names: string[] | undefined): string {
  return names && names.length > 0 ? names.join(', ') : '-';
}

/**
 * Asks the daemon to re-read its hosted-servers config (SIGHUP) and prints what changed, once
 * its `/health` reports the new reload. Resolves to the exit code.
 */
export async function runReloadCommand(): Promise<number> {
  const found = await findDaemon();
  if ('error' in found) {
    process.stderr.write(`exai-ws: ${found.error}\n`);
    return 1;
  }
  const { health } = found;
  const before = lastReloadOf(health)?.at;
  process.kill(health.pid, 'SIGHUP');
  const deadline = Date.now() + RELOAD_WAIT_MS;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    const now = await fetchFullHealth(health.host, health.port, HEALTH_TIMEOUT_MS, found.token);
    const last = now ? lastReloadOf(now) : undefined;
    if (!last || last.at === before) continue;
    if (last.error) {
      process.stderr.write(`exai-ws: reload failed, the running servers stay as they are: ${last.error}\n`);
      return 1;
    }
    process.stdout.write(
      `exai-ws: config reloaded: added ${listNames(last.added)}; removed ${listNames(last.removed)}; restarted ${listNames(last.restarted)}; unchanged ${listNames(last.unchanged)}\n`,
    );
    return 0;
  }
  process.stderr.write(`exai-ws: the daemon did not report a reload within ${RELOAD_WAIT_MS / 1000} s\n`);
  return 1;
}

interface LastReload {
  at: string;
  error?: string;
  added?: string[];
  removed?: string[];
  restarted?: string[];
  unchanged?: string[];
  /** False when the reload found no file (it was deleted): no hosted servers. */
  file?: boolean;
}

function lastReloadOf(health: HealthReport): LastReload | undefined {
  const config = health.config as { last_reload?: LastReload | null } | undefined;
  return config?.last_reload ?? undefined;
}

interface ServerLine {
  name?: unknown;
  scope?: unknown;
  scope_key?: unknown;
  state?: unknown;
  pid?: unknown;
  restarts?: unknown;
  retries?: unknown;
  sessions?: unknown;
  inflight?: unknown;
  last_error?: unknown;
  asks_client?: unknown;
}

/** The log and metrics files, when they lost lines: a full disk must not go unnoticed. */
function fileLines(h: HealthReport): string[] {
  const lines: string[] = [];
  for (const [label, file] of [
    ['log', h.log],
    ['metrics', h.metrics_file],
  ] as const) {
    if (!file || (file.dropped_lines === 0 && !file.failing)) continue;
    const error = file.last_error ? ` (last error ${file.last_error.code} at ${file.last_error.at})` : '';
    const state = file.failing ? 'not writable, retried every second' : 'writable again';
    lines.push(`  ${label.padEnd(9)} ${state}: ${file.dropped_lines} lines dropped${error}`);
  }
  return lines;
}

/**
 * The config file (or where it is awaited) and the outcome of the last live reload: a broken
 * edit leaves the running servers alone, and nothing else would tell the user so.
 */
function configLines(h: HealthReport): string[] {
  const config = (h.config ?? {}) as { path?: unknown; exists?: unknown; watching?: unknown };
  if (typeof config.path !== 'string') return [];
  let where = config.path;
  if (config.exists === false) {
    const watching = typeof config.watching === 'string' ? `; watching ${config.watching} for it` : '';
    where += ` (not there: no hosted servers${watching})`;
  } else if (config.watching === null) {
    where += ' (not watched: use exai-ws reload after an edit)';
  }
  const lines = [`  config    ${where}`];
  const last = lastReloadOf(h);
  if (last) {
    const ageMs = Date.now() - Date.parse(last.at);
    const when = Number.isFinite(ageMs) ? `${last.at} (${formatUptime(Math.max(0, Math.round(ageMs / 1000)))} ago)` : last.at;
    const outcome = last.error
      ? `failed: ${last.error}; the running servers stay as they were`
      : `ok: added ${listNames(last.added)}; removed ${listNames(last.removed)}; restarted ${listNames(last.restarted)}${last.file === false ? ' (the file was removed)' : ''}`;
    lines.push(`            last reload ${when} ${outcome}`);
  }
  return lines;
}

/** The hosted servers and the config entries the daemon refused, as `status` lines. */
function hostedLines(h: HealthReport): string[] {
  const servers = Array.isArray(h.servers) ? (h.servers as ServerLine[]) : [];
  const config = (h.config ?? {}) as { path?: unknown; problems?: unknown };
  const problems = Array.isArray(config.problems) ? (config.problems as { server?: unknown; key?: unknown; reason?: unknown }[]) : [];
  const lines: string[] = [];
  if (servers.length > 0) {
    lines.push('  servers');
    const width = Math.max(...servers.map((s) => String(s.name).length));
    for (const s of servers) {
      const parts = [String(s.name).padEnd(width), String(s.state).padEnd(10)];
      if (typeof s.scope === 'string' && s.scope !== 'shared') parts.push(`${s.scope} ${String(s.scope_key)}`);
      if (typeof s.pid === 'number') parts.push(`pid ${s.pid}`);
      parts.push(`restarts ${String(s.restarts)}`, `sessions ${String(s.sessions)}`, `in flight ${String(s.inflight)}`);
      if (typeof s.retries === 'number' && s.retries > 0) parts.push(`start retries ${s.retries}`);
      if (Array.isArray(s.asks_client) && s.asks_client.length > 0) {
        parts.push(`one window at a time: ${s.asks_client.map(String).join(', ')}`);
      }
      if (typeof s.last_error === 'string') parts.push(`last error: ${s.last_error}`);
      lines.push(`    ${parts.join('  ')}`);
    }
  }
  if (problems.length > 0) {
    lines.push(`  config problems${typeof config.path === 'string' ? ` (${config.path})` : ''}`);
    for (const p of problems) {
      const key = typeof p.key === 'string' && p.key.length > 0 ? `${p.key}: ` : '';
      lines.push(`    ${String(p.server)}: ${key}${String(p.reason)}`);
    }
  }
  return lines;
}

function formatUptime(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return h > 0 ? `${h}h ${m}m ${s}s` : m > 0 ? `${m}m ${s}s` : `${s}s`;
}
