/** Placeholder until the logs slice lands (issue 13). */
export interface LogsOptions {
  follow: boolean;
  session?: string;
  level?: string;
  lines?: number;
  json?: boolean;
}

export function runLogsCommand(_options: LogsOptions): Promise<number> {
  process.stderr.write('exai-ws logs: not built yet\n');
  return Promise.resolve(1);
}
