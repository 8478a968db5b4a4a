/**
 * The `Origin` check every request and upgrade passes (server.ts, ws-upgrade.ts): no `Origin`
 * (editors, CLI clients) or a loopback one, any scheme port: a web page elsewhere must not reach
 * the daemon through the user's browser.
 */
export function originAllowed(origin: string | undefined): boolean {
  if (origin === undefined) return true;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  return url.hostname === '127.0.0.1' || url.hostname === 'localhost' || url.hostname === '[::1]';
}
