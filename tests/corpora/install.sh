#!/bin/sh
# Fetches the pinned, MIT-licensed packages whose migration histories the corpus test replays
# (nothing of theirs is committed here): procrastinate (PyPI), graphile-worker (npm).
# Usage: tests/corpora/install.sh [TOOLS_DIR]   (default: <repo>/.test-tools). Idempotent.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tools=${1:-$repo/.test-tools}
dest="$tools/corpora"
python=${PYTHON:-$repo/.venv/bin/python}
mkdir -p "$dest"
if [ ! -f "$dest/procrastinate/LICENSE.md" ]; then
    tmp=$(mktemp -d)
    "$python" -m pip download --quiet --no-deps --dest "$tmp" procrastinate==3.10.0
    "$python" - "$tmp"/procrastinate-3.10.0-py3-none-any.whl "$dest/procrastinate" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("procrastinate/sql/migrations/") or name.endswith("licenses/LICENSE.md"):
            target = name.split("/")[-1] if name.endswith("LICENSE.md") else name[len("procrastinate/sql/"):]
            import os
            path = os.path.join(out, target)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(z.read(name))
PY
    rm -rf "$tmp"
fi
if [ ! -f "$dest/graphile-worker/LICENSE.md" ]; then
    command -v npm >/dev/null || { echo "npm not found: apt-get install npm" >&2; exit 1; }
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent graphile-worker@0.18.0 >/dev/null && tar xzf graphile-worker-0.18.0.tgz)
    mkdir -p "$dest/graphile-worker"
    cp -r "$tmp/package/sql" "$tmp/package/LICENSE.md" "$dest/graphile-worker/"
    rm -rf "$tmp"
fi
echo "corpora in $dest: $(ls "$dest" | tr '\n' ' ')"
