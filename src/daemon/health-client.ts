/** A small client for the daemon's `GET /health`, used by the pid lock, `status` and `stop`. */
import { request } from 'node:http';

export interface HealthReport {
  status: string;
  name: string;
  version: string;
  pid: number;
  host: string;
  port: number;
  uptime_s: number;
  sessions: { total: number; attached: number; detached: number };
  inflight: number;
  [key: string]: unknown;
}

/** Fetches `/health`; null when nothing answers in time or the answer is not a health report. */
export function fetchHealth(host: string, port: number, timeoutMs: number): Promise<HealthReport | null> {
  return new Promise((resolve) => {
    const req = request({ host, port, path: '/health', method: 'GET', timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as HealthReport;
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
