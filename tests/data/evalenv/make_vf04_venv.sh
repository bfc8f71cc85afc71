#!/usr/bin/env bash
# Build (once) a separate venv with verifiers 0.4.x for the 0.4 config-file test.
# verifiers 0.3.x and 0.4.x cannot share a venv; this one lives in the checkout (.venv-vf04, git-ignored) and
# is reused while it exists (a .complete marker says the install finished).
# Usage: bash tests/data/evalenv/make_vf04_venv.sh [DIR]   -> prints DIR
set -euo pipefail
dir="${1:-$(cd "$(dirname "$0")/../../.." && pwd)/.venv-vf04}"
if [[ -f "$dir/.complete" ]]; then
    echo "$dir"
    exit 0
fi
start=$(date +%s)
rm -rf "$dir"
python3 -m venv "$dir"
"$dir/bin/pip" install --quiet 'verifiers==0.4.*' >&2
touch "$dir/.complete"
echo "built $dir in $(( $(date +%s) - start )) s" >&2
echo "$dir"
