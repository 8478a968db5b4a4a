/**
 * Where the hosted servers' config file lives (DESIGN.md, "Files and configuration"). Shared by
 * the daemon, which reads it, and `exai-ws import`, which writes it. No heavy imports.
 */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** The file name inside the per-user config directory. */
export const CONFIG_FILE_NAME = 'config.json';

/**
 * The absolute path of the config file: `EXAI_WS_CONFIG` if set (relative paths resolve
 * against the current directory), else `$XDG_CONFIG_HOME/exai-ws/config.json`, else the
 * platform's per-user config directory: `~/.config` on Linux, `~/Library/Application Support`
 * on macOS, `%APPDATA%` on Windows. Never touches the file system.
 */
export function configPath(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  if (env.EXAI_WS_CONFIG && env.EXAI_WS_CONFIG.length > 0) return resolve(env.EXAI_WS_CONFIG);
  if (env.XDG_CONFIG_HOME && env.XDG_CONFIG_HOME.length > 0) return join(env.XDG_CONFIG_HOME, 'exai-ws', CONFIG_FILE_NAME);
  return join(userConfigDir(env, platform), 'exai-ws', CONFIG_FILE_NAME);
}

/**
 * The platform's per-user config directory without `XDG_CONFIG_HOME`: where Electron apps
 * (VS Code, Claude Desktop) keep their settings too.
 */
export function userConfigDir(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  if (platform === 'win32') return env.APPDATA && env.APPDATA.length > 0 ? env.APPDATA : join(homedir(), 'AppData', 'Roaming');
  if (platform === 'darwin') return join(homedir(), 'Library', 'Application Support');
  return join(homedir(), '.config');
}
