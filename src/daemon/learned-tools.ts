/**
 * The tools of hosted servers the daemon learned ask the client back, kept in
 * `asks-client.json` in the home so a restarted daemon serialises them from the first call:
 * `{"servers": {"<entry name>": ["<tool>", ...]}}`. Written whole on each new tool (a reader or
 * a crash never sees half a file). A file that cannot be read or written costs only what it
 * would have kept: the daemon learns again, in memory, and says so once in the log.
 */
import { readFileSync } from 'node:fs';
import { isObject } from '../protocol/jsonrpc.js';
import type { LearnedTools } from '../core/server-requests.js';
import { replaceWhole } from './whole-file.js';

/** Bounds on what is kept, so a server naming endless tools cannot grow the file for ever. */
const MAX_SERVERS = 1_024;
const MAX_TOOLS_PER_SERVER = 256;
const MAX_NAME_CHARS = 256;

export class FileLearnedTools implements LearnedTools {
  private readonly byServer = new Map<string, Set<string>>();
  private readonly path: string;
  private readonly warn: (message: string, details: Record<string, unknown>) => void;
  private failing = false;

  /** Reads what earlier daemons learned; a missing or broken file is an empty start. */
  constructor(path: string, warn: (message: string, details: Record<string, unknown>) => void) {
    this.path = path;
    this.warn = warn;
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(path, 'utf8'));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        warn('learned tools file ignored: it cannot be read', { path, err: (error as Error).message });
      }
      return;
    }
    const servers = isObject(json) && isObject(json.servers) ? json.servers : {};
    for (const [server, tools] of Object.entries(servers).slice(0, MAX_SERVERS)) {
      if (!Array.isArray(tools)) continue;
      const kept = (tools as unknown[]).filter((t): t is string => typeof t === 'string' && t.length > 0 && t.length <= MAX_NAME_CHARS);
      if (kept.length > 0) this.byServer.set(server, new Set(kept.slice(0, MAX_TOOLS_PER_SERVER)));
    }
  }

  tools(server: string): ReadonlySet<string> {
    return this.byServer.get(server) ?? NONE;
  }

  learn(server: string, tool: string): void {
    let tools = this.byServer.get(server);
    if (!tools) {
      if (this.byServer.size >= MAX_SERVERS) return;
      this.byServer.set(server, (tools = new Set()));
    }
    if (tools.has(tool) || tools.size >= MAX_TOOLS_PER_SERVER || tool.length > MAX_NAME_CHARS) return;
    tools.add(tool);
    this.save();
  }

  private save(): void {
    const servers = Object.fromEntries([...this.byServer].map(([server, tools]) => [server, [...tools].sort()]));
    try {
      replaceWhole(this.path, `${JSON.stringify({ servers }, null, 2)}\n`, 0o600);
      if (this.failing) this.warn('learned tools file written again', { path: this.path });
      this.failing = false;
    } catch (error) {
      if (!this.failing)
        this.warn('learned tools file cannot be written: kept in memory only', { path: this.path, err: (error as Error).message });
      this.failing = true;
    }
  }
}

const NONE: ReadonlySet<string> = new Set();
