#!/bin/sh
# Installs the other migration tools that the adopt tests run for real (pinned versions):
# node-pg-migrate, knex + pg, typeorm, dbmate (its npm package carries the Go binary).
# Usage: tests/adopt/install_tools.sh [TOOLS_DIR]   (default: <repo>/.test-tools)
# Idempotent: does nothing when the pinned versions are already installed there.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tools=${1:-$(cd "$here/../.." && pwd)/.test-tools}
PINNED="node-pg-migrate@9.0.0 knex@3.3.0 pg@8.23.1 typeorm@1.1.1 reflect-metadata@0.2.2 dbmate@2.36.0"
installed() {
    for spec in $PINNED; do
        name=${spec%@*}
        version=${spec##*@}
        file="$tools/node_modules/$name/package.json"
        [ -f "$file" ] || return 1
        grep -q "\"version\": *\"$version\"" "$file" || return 1
    done
}
if installed; then
    echo "adopt test tools already installed in $tools"
    exit 0
fi
command -v npm >/dev/null || { echo "npm not found: apt-get install npm (or nodejs)" >&2; exit 1; }
mkdir -p "$tools"
cd "$tools"
[ -f package.json ] || echo '{"name":"migrate-job-test-tools","private":true}' > package.json
# shellcheck disable=SC2086
npm install --no-audit --no-fund --loglevel=error --save-exact $PINNED
installed || { echo "adopt test tools: pinned versions not installed in $tools" >&2; exit 1; }
"$tools/node_modules/.bin/dbmate" --version
echo "installed $PINNED in $tools"
