/**
 * The session manager: creates, resumes and takes over sessions by id, keeps detached ones
 * for the resume grace, enforces the session limit, and drains them all at shutdown. It holds
 * the sessions by id and nothing of their state: each runs its own grace timer
 * (Session.awaitResume), released by its own close().
 *
 * A detached session whose client named its process id ends as soon as that process is
 * gone (`client_died`): checked when the connection closes abnormally, then about once a second
 * by one timer for all such sessions, so a client killed with -9 does not leave its calls
 * running at their servers for the whole grace.
 */
import { randomUUID } from 'node:crypto';
import type { Transport, TransportKind } from '../../transport/transport.js';
import { CloseCode } from '../../protocol/codes.js';
import type { Hello } from '../../protocol/hello.js';
import { clip, type RpcNotification } from '../../protocol/jsonrpc.js';
import { ByteBudget } from '../../transport/byte-budget.js';
import { pidGone, pidVisible } from '../../local/client-pid.js';
import type { Hub } from '../../mux/hub.js';
import type { CloseReason } from '../files/metrics.js';
import { Session, type SessionDeps } from './session.js';
import { reportUnserializable } from './unsendable.js';
import { scaledMs } from '../../local/timer-scale.js';

export { HELD_STATES } from './request-state.js';

/** How often detached sessions' client processes are checked for being gone (times `config.timerScale`). */
export const PID_CHECK_MS = 1_000;

export type OpenResult =
  | {
      ok: true;
      session: Session;
      resumed: boolean;
      /** On a resume whose hello gave `received`: pass to `attach`, so the frames after it are written again. */
      received: number | undefined;
      /** How many kept frames that attach writes again (the hello_ack's `replayed`). */
      replayed: number;
    }
  | { ok: false; code: 'session_limit' | 'bad_hello'; message: string };

export type ManagerDeps = Omit<SessionDeps, 'expire' | 'holdBudget' | 'hub'> & { hub: Hub };

export class SessionManager {
  private readonly sessions = new Map<string, Session>();
  /** Detached sessions with a client pid to check. */
  private readonly watched = new Set<Session>();
  private pidTimer: NodeJS.Timeout | undefined;
  private readonly deps: ManagerDeps;
  private readonly sessionDeps: SessionDeps;
  /** Messages held for every detached session together. */
  readonly holdBudget: ByteBudget;
  /**
   * Asked when a new session would be refused for the session limit: ends one session nobody
   * uses (the least recently used idle HTTP session) and returns true, or false when there is
   * none. The limit then holds only for sessions in use. The daemon sets it to the `/mcp`
   * endpoint's {@link McpHttpEndpoint.evictIdle}.
   */
  makeRoom: () => boolean = () => false;

  constructor(deps: ManagerDeps) {
    this.deps = deps;
    this.holdBudget = new ByteBudget(deps.config.holdTotalMaxBytes);
    this.sessionDeps = { ...deps, expire: (session, reason) => this.expire(session, reason), holdBudget: this.holdBudget };
  }

  /**
   * Binds an authenticated connection to a session: a new one, a detached one it resumes, or
   * an attached one it takes over (the old connection is closed with 4010). The caller attaches
   * the new transport once its hello_ack is sent, so held messages follow the ack.
   *
   * A resume whose `received` cannot be honoured exactly (more than was sent, or frames no
   * longer kept) ends the old session (`resume_gap`) and opens a new one under the same id.
   */
  open(hello: Hello): OpenResult {
    const client = { name: hello.client?.name ?? 'unknown', version: hello.client?.version ?? 'unknown' };
    // A pid the daemon cannot see now could never be seen to die either.
    const pid = hello.pid !== undefined && pidVisible(hello.pid) ? hello.pid : undefined;
    const existing = hello.session_id ? this.sessions.get(hello.session_id) : undefined;
    if (existing && hello.received !== undefined && !existing.resumable(hello.received)) {
      this.deps.logger.info(
        { session_id: existing.id, received: hello.received, sent: existing.sentCount },
        'resume refused: the frames after what the client received are no longer all kept; a new session starts',
      );
      this.expire(existing, 'resume_gap');
    } else if (existing) {
      const old = existing.transport;
      this.watched.delete(existing);
      existing.resumedBy(client, pid);
      if (old) {
        existing.detach(old);
        old.close(CloseCode.SUPERSEDED, 'superseded by a newer connection');
      }
      const replayed = hello.received === undefined ? 0 : existing.sentCount - hello.received;
      this.deps.logger.info(
        { session_id: existing.id, client: client.name, client_version: client.version, takeover: old !== null, replayed },
        old ? 'session taken over' : 'session resumed',
      );
      return { ok: true, session: existing, resumed: true, received: hello.received, replayed };
    }
    if (hello.server !== undefined && !this.deps.hub.has(hello.server)) {
      this.deps.metrics.reject('unknown_server');
      const known = this.deps.hub.hostedNames;
      return {
        ok: false,
        code: 'bad_hello',
        message: `no hosted server named '${hello.server}' (configured: ${known.join(', ') || 'none'})`,
      };
    }
    if (hello.server !== undefined && hello.profile !== undefined) {
      return { ok: false, code: 'bad_hello', message: 'choose one server or a profile, not both: a profile is a set of servers' };
    }
    if (hello.profile !== undefined && !this.deps.hub.profiles.has(hello.profile)) {
      this.deps.metrics.reject('unknown_profile');
      const known = this.deps.hub.profiles.names();
      return {
        ok: false,
        code: 'bad_hello',
        message: `no profile named '${hello.profile}' in the config (profiles: ${known.join(', ') || 'none'})`,
      };
    }
    // A session nobody uses gives way first: the least recently used one ends.
    if (this.sessions.size >= this.deps.config.maxSessions) this.makeRoom();
    if (this.sessions.size >= this.deps.config.maxSessions) {
      this.deps.metrics.reject('session_limit');
      return { ok: false, code: 'session_limit', message: `session limit reached (${this.deps.config.maxSessions})` };
    }
    const id = hello.session_id ?? randomUUID();
    const session = new Session(id, client, this.sessionDeps, { server: hello.server, profile: hello.profile, cwd: hello.cwd, pid });
    this.sessions.set(id, session);
    this.deps.metrics.sessionsOpened++;
    this.deps.logger.info(
      { session_id: id, client: client.name, client_version: client.version, cwd: hello.cwd, client_pid: pid },
      'session opened',
    );
    return { ok: true, session, resumed: false, received: undefined, replayed: 0 };
  }

  /**
   * Called when a session's transport closed. A normal close (1000) ends the session, and so
   * does any other once the client's process is gone; otherwise it stays detached for the
   * resume grace, then it ends.
   */
  transportClosed(session: Session, transport: Transport, code: number): void {
    if (!session.detach(transport) || session.state === 'closed') return;
    if (code === CloseCode.NORMAL) {
      // The client said goodbye on purpose (a shim whose stdin ended): nothing to resume.
      this.expire(session, 'client_closed');
      return;
    }
    if (this.clientDied(session, code)) return;
    const grace = this.deps.config.resumeGraceMs;
    this.deps.logger.info({ session_id: session.id, code, resume_grace_ms: grace }, 'session detached');
    if (grace === 0) {
      this.expire(session, 'client_gone');
      return;
    }
    session.awaitResume(grace, () => this.expire(session, 'resume_grace_expired'));
    if (session.pid !== undefined) this.watch(session);
  }

  /** Ends one session for good, closing its transport (if any) with 4009. */
  expire(session: Session, reason: CloseReason): void {
    if (this.sessions.get(session.id) !== session) return;
    this.remove(session, CloseCode.SESSION_CLOSED, reason);
  }

  /** Shutdown step: no new work anywhere; queued requests are answered -32000. */
  drain(reason: string): void {
    for (const session of this.sessions.values()) session.drain(reason);
  }

  /** Shutdown step: requests still running are answered -32000. */
  abortInflight(reason: string): void {
    for (const session of this.sessions.values()) session.abortInflight(reason);
  }

  /** Shutdown step: every session ends and its transport is closed with `code`. */
  closeAll(code: number, reason: CloseReason): void {
    for (const session of [...this.sessions.values()]) this.remove(session, code, reason);
    this.stopWatching();
  }

  get size(): number {
    return this.sessions.size;
  }

  get attachedCount(): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.state === 'attached') n++;
    return n;
  }

  /** Open sessions by how their client is connected. */
  get byTransport(): Record<TransportKind, number> {
    const counts: Record<TransportKind, number> = { ws: 0, http: 0, stdio: 0 };
    for (const s of this.sessions.values()) counts[s.kind]++;
    return counts;
  }

  get inflightCount(): number {
    let n = 0;
    for (const s of this.sessions.values()) n += s.inflightCount;
    return n;
  }

  get(id: string): Session | undefined {
    return this.sessions.get(id);
  }

  /** A server notification that cannot be serialised is dropped once for every session. */
  unsendable(notification: RpcNotification, reason: string): void {
    reportUnserializable(this.deps, { kind: 'notification', method: clip(notification.method, 100), reason });
  }

  list(): Session[] {
    return [...this.sessions.values()];
  }

  /** Ends `session` (`client_died`) when its client's process is gone; true if it did. */
  private clientDied(session: Session, code?: number): boolean {
    const pid = session.pid;
    if (pid === undefined || !pidGone(pid)) return false;
    // `client_pid`, never `pid`: every log line's `pid` is the daemon's own.
    this.deps.logger.info({ session_id: session.id, client_pid: pid, code }, 'client process gone: its session ends now');
    this.expire(session, 'client_died');
    return true;
  }

  private watch(session: Session): void {
    this.watched.add(session);
    if (this.pidTimer) return;
    this.pidTimer = setInterval(() => this.checkWatched(), scaledMs(PID_CHECK_MS, this.deps.config.timerScale));
    this.pidTimer.unref();
  }

  private checkWatched(): void {
    for (const session of [...this.watched]) {
      if (session.state !== 'detached' || this.sessions.get(session.id) !== session) this.watched.delete(session);
      else if (this.clientDied(session)) this.watched.delete(session);
    }
    if (this.watched.size === 0) this.stopWatching();
  }

  private stopWatching(): void {
    this.watched.clear();
    if (this.pidTimer) clearInterval(this.pidTimer);
    this.pidTimer = undefined;
  }

  private remove(session: Session, code: number, reason: CloseReason): void {
    this.watched.delete(session);
    this.sessions.delete(session.id);
    session.close(code, reason);
    this.deps.metrics.sessionClosed(reason);
    this.deps.logger.info(
      {
        session_id: session.id,
        client: session.client.name,
        client_version: session.client.version,
        reason,
        lifetime_ms: Date.now() - session.createdAtMs,
      },
      'session closed',
    );
  }
}
