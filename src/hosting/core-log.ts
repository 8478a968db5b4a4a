/** How the core reports lifecycle events for the daemon's log; `level` when it is not `info`. */
export type CoreLog = (event: string, details: Record<string, unknown>, level?: 'debug' | 'warn') => void;

/** What the core counts for the metrics: refusals it sees (each is a metrics rejection reason). */
export type CoreCountReason = 'stray_answer' | 'origin_unknown';
