/**
 * Where the hosted servers' config file lives (DESIGN.md, "Files and configuration"). Shared by
 * the daemon, which reads it, and `exai-ws import`, which writes it. No heavy imports.
 */
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/** The file name inside the per-user config directory. */
export const CONFIG_FILE_NAME = 'config.json';
/** The daemon's settings file beside it (see settings.ts). */
export const SETTINGS_FILE_NAME = 'daemon.env';

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
 * The absolute path of the daemon's settings file: `EXAI_WS_SETTINGS` if set (relative paths
 * resolve against the current directory), else `daemon.env` in the same folder as the default
 * config file (`$XDG_CONFIG_HOME/exai-ws/`, else the platform's per-user config directory).
 * `EXAI_WS_CONFIG` does not move it: the servers file may live anywhere, the settings are the
 * user's. Never touches the file system.
 */
export function settingsPath(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  if (env.EXAI_WS_SETTINGS && env.EXAI_WS_SETTINGS.length > 0) return resolve(env.EXAI_WS_SETTINGS);
  if (env.XDG_CONFIG_HOME && env.XDG_CONFIG_HOME.length > 0) return join(env.XDG_CONFIG_HOME, 'exai-ws', SETTINGS_FILE_NAME);
  return join(userConfigDir(env, platform), 'exai-ws', SETTINGS_FILE_NAME);
}

/**
 * Where `exai-ws service install` of earlier versions told users to put provider keys (a file
 * the systemd unit read): beside the servers file. Its settings now belong in the settings
 * file; `service install` moves them there, and the daemon warns while the file is left.
 */
export function legacyServiceEnvPath(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  return join(dirname(configPath(env, platform)), 'service.env');
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
