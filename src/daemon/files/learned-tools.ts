/**
 * The tools of hosted servers the daemon learned ask the client back, kept in
 * `asks-client.json` in the home so a restarted daemon serialises them from the first call:
 * `{"servers": {"<entry name>": ["<tool>", ...]}}`. Written whole on each new tool (a reader or
 * a crash never sees half a file). A file that cannot be read or written costs only what it
 * would have kept: the daemon learns again, in memory, and says so once in the log.
 */
import { readFileSync } from 'node:fs';
import { isObject } from '../../protocol/jsonrpc.js';
import { MemoryLearnedTools } from '../../mux/server-requests.js';
import { replaceWhole } from '../../local/whole-file.js';

export class FileLearnedTools extends MemoryLearnedTools {
  private readonly path: string;
  private readonly warn: (message: string, details: Record<string, unknown>) => void;
  private failing = false;

  /** Reads what earlier daemons learned (within the same bounds); a missing or broken file is an empty start. */
  constructor(path: string, warn: (message: string, details: Record<string, unknown>) => void) {
    super();
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
    for (const [server, tools] of Object.entries(servers)) {
      if (!Array.isArray(tools)) continue;
      for (const tool of tools as unknown[]) if (typeof tool === 'string') super.learn(server, tool);
    }
  }

  override learn(server: string, tool: string): boolean {
    if (!super.learn(server, tool)) return false;
    try {
      replaceWhole(this.path, `${JSON.stringify({ servers: this.entries() }, null, 2)}\n`, 0o600);
      if (this.failing) this.warn('learned tools file written again', { path: this.path });
      this.failing = false;
    } catch (error) {
      if (!this.failing)
        this.warn('learned tools file cannot be written: kept in memory only', { path: this.path, err: (error as Error).message });
      this.failing = true;
    }
    return true;
  }
}
