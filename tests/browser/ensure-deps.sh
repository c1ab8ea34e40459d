#!/usr/bin/env bash
# Installs what the browser tests need, only what is missing:
#   - Debian's Chromium at /usr/bin/chromium (apt-get; needs root),
#   - playwright-core, pinned in package.json / package-lock.json, into
#     tests/browser/node_modules (npm ci).
# Idempotent and quiet when everything is there; on failure it prints the
# failing step's output and exits non-zero. Safe to run concurrently (flock).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
chromium_bin=/usr/bin/chromium
log="$(mktemp "${TMPDIR:-/tmp}/pelago-browser-deps.XXXXXX")"
trap 'rm -f "$log"' EXIT

fail() {
    echo "ensure-deps: $*" >&2
    if [[ -s "$log" ]]; then
        echo "---- output of the failed step ----" >&2
        tail -n 60 "$log" >&2
    fi
    exit 1
}

# Runs a step with a time bound; its output goes to the log, shown on failure.
step() {
    local what="$1" limit="$2"
    shift 2
    : >"$log"
    if ! timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1; then
        fail "$what failed (or took longer than ${limit}s): $*"
    fi
}

exec 9>"$here/.ensure-deps.lock"
flock --timeout 1200 9 || fail "timed out waiting for another ensure-deps.sh run"

for tool in node npm; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (the browser tests need Node.js >= 20 and npm)"
done

if [[ ! -x "$chromium_bin" ]]; then
    [[ "$(id -u)" == 0 ]] || fail "$chromium_bin is missing and installing it needs root: apt-get install chromium"
    export DEBIAN_FRONTEND=noninteractive
    step "apt-get update" 600 apt-get update
    step "apt-get install chromium" 1200 apt-get install -y --no-install-recommends chromium
    [[ -x "$chromium_bin" ]] || fail "apt-get installed chromium but $chromium_bin is still missing"
fi
step "chromium --version" 60 "$chromium_bin" --version

pinned="$(node -p 'require(process.argv[1]).dependencies["playwright-core"]' "$here/package.json")"
installed="$(node -p 'try { require(process.argv[1]).version } catch { "" }' \
    "$here/node_modules/playwright-core/package.json")"
if [[ "$installed" != "$pinned" ]]; then
    step "npm ci" 600 npm ci --prefix "$here" --no-audit --no-fund --loglevel=error
    installed="$(node -p 'try { require(process.argv[1]).version } catch { "" }' \
        "$here/node_modules/playwright-core/package.json")"
    [[ "$installed" == "$pinned" ]] || fail "npm ci ran but playwright-core $pinned is not in $here/node_modules"
fi
