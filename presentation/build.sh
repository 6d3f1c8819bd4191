#!/usr/bin/env bash
# Build presentation/slides.html (one self-contained file) and presentation/slides.pdf
# from presentation/slides.md. Options go to build.mjs (relative paths are relative to
# the current folder):
#   presentation/build.sh [--images DIR] [--out DIR] [--no-pdf] [--keep-png] [--chromium PATH]
# Installs the pinned npm packages first (npm ci) when node_modules is missing or older
# than package-lock.json. The PDF is printed by the system Chromium driven by playwright-core
# (a devDependency, so npm ci includes dev packages); no browser is ever downloaded.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "[slides] error: node (>= 20) and npm are needed (Debian: apt-get install nodejs npm)" >&2
    exit 1
fi
if [ ! -f "$here/node_modules/.package-lock.json" ] ||
    [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
    echo "[slides] npm ci" >&2
    (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --include=dev --no-audit --no-fund --loglevel=error >&2)
fi
exec node "$here/build.mjs" "$@"
