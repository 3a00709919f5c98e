#!/usr/bin/env bash
# Install what the browser conformance cases and the bunny, pubsub-rpc and ticker examples need:
# Debian's chromium (apt, only if /usr/bin/chromium is missing), the npm
# packages pinned by the package-lock.json files, and rhea's browser bundles.
# Never downloads a browser of its own (playwright-core uses Debian's).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq chromium >/dev/null
fi
"${CHROMIUM:-/usr/bin/chromium}" --version 2>/dev/null

command -v node >/dev/null || { echo "setup.sh: node (with npm) is required" >&2; exit 1; }
npm_install() {
    # `npm ci` when the lock matches and node_modules is stale or missing.
    (cd "$1" && if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
        npm ci --no-audit --no-fund --loglevel=error && touch node_modules
    fi)
}
npm_install "$here"
(cd "$here" && node bundle.mjs build/rhea.js)

npm_install "$root/examples/bunny"
(cd "$root/examples/bunny" && node build.mjs)

npm_install "$root/examples/pubsub-rpc"
(cd "$root/examples/pubsub-rpc" && node build.mjs)

npm_install "$root/examples/ticker"
(cd "$root/examples/ticker" && node build.mjs)
