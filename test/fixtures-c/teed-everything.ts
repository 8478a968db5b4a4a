/**
 * server-everything behind the tee (test/fixtures/hosted-servers.ts `startTeedEverything`), with
 * the daemon's merged lists waiting for servers still starting (EXAI_WS_LIST_WAIT_MS=0) at this
 * daemon and at every later one started with {@link restartOn}: a window's first list then
 * always holds server-everything's resources, however loaded the machine (with the default 2 s,
 * a start slower than that listed none and failed the test).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeHome, startDaemon, type Cleanup, type DaemonHandle, type Message } from '../helpers.js';
import { EVERYTHING_SCRIPT, TEE_SCRIPT } from '../fixtures/hosted-servers.js';

/** Lists wait for starting servers: the tests here are about windows surviving daemons, not about list timing. */
const LISTS_WAIT = { EXAI_WS_LIST_WAIT_MS: '0' };

/** `env`: more settings for this first daemon only (a later one started by {@link restartOn} has the defaults). */
export async function startTeedEverything(
  cleanup: Cleanup,
  env: Record<string, string> = {},
): Promise<{ daemon: DaemonHandle; received: () => Message[] }> {
  const home = makeHome(cleanup);
  const record = join(home, 'everything-stdin.jsonl');
  const everything = { command: process.execPath, args: [TEE_SCRIPT, record, process.execPath, EVERYTHING_SCRIPT, 'stdio'] };
  writeFileSync(join(home, 'config.json'), JSON.stringify({ mcpServers: { everything } }, null, 2));
  const daemon = await startDaemon(cleanup, { home, env: { ...LISTS_WAIT, ...env } });
  const received = () =>
    (existsSync(record) ? readFileSync(record, 'utf8').split('\n').filter(Boolean) : []).map((l) => JSON.parse(l) as Message);
  return { daemon, received };
}

/** A new daemon on the same home (and so the same config), lists waiting as at the first. */
export function restartOn(cleanup: Cleanup, home: string): Promise<DaemonHandle> {
  return startDaemon(cleanup, { home, env: LISTS_WAIT });
}
