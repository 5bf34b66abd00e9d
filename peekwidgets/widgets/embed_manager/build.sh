#!/usr/bin/env bash
# Build ../static/embed-manager.js and .css from manager.js with the versions pinned in
# package.json (needs node and the npm registry; the package itself never does).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/manager.js" "$here/package.json" "$work/"
cd "$work"
npm install --no-audit --no-fund --ignore-scripts >/dev/null
node_modules/.bin/esbuild manager.js --bundle --minify --format=iife \
    --target=es2020 --legal-comments=eof --loader:.svg=dataurl \
    --outfile="$here/../static/embed-manager.js"
