#!/bin/sh
# Installs Azurite (the Azure Storage emulator) for the Azure Blob backup tests.
# Usage: tests/backup/install_azurite.sh [TOOLS_DIR]   (default: <repo>/.test-tools)
# Idempotent: does nothing when azurite-blob is already installed there.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tools=${1:-$(cd "$here/../.." && pwd)/.test-tools}
if [ -x "$tools/node_modules/.bin/azurite-blob" ]; then
    echo "azurite already installed in $tools"
    exit 0
fi
command -v npm >/dev/null || { echo "npm not found: apt-get install npm (or nodejs)" >&2; exit 1; }
mkdir -p "$tools"
cd "$tools"
[ -f package.json ] || echo '{"name":"migrate-job-test-tools","private":true}' > package.json
npm install --no-audit --no-fund --loglevel=error azurite
echo "installed $("$tools/node_modules/.bin/azurite-blob" --version 2>/dev/null || echo azurite) in $tools"
