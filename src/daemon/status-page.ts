/** Placeholder until the status page slice lands (issue 13): the interface the server and daemon wire. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HealthReport } from './health-client.js';

export interface StatusPageSources {
  health: () => HealthReport;
}

export class StatusPage {
  private readonly sources: StatusPageSources;

  constructor(sources: StatusPageSources, _options: { intervalMs?: number; maxClients?: number } = {}) {
    this.sources = sources;
  }

  page(_req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    res.end(JSON.stringify(this.sources.health(), null, 2));
  }

  events(_req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    res.end(`data: ${JSON.stringify(this.sources.health())}\n\n`);
  }

  close(): void {}
}
