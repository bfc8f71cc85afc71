#!/usr/bin/env bash
# Install test dependencies, start the real services the suite needs (Slurm,
# PBS-style qsub over it, a loopback sshd) when running as root, then run every
# test. In CI (CI=true) a missing service fails its tests instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'

if [ "$(id -u)" = 0 ] && [ -f scripts/services.sh ]; then
    bash scripts/services.sh install
    bash scripts/services.sh start
fi
if [ -f scripts/services.sh ]; then
    eval "$(bash scripts/services.sh env 2>/dev/null || true)"
fi

.venv/bin/ruff check hpclaunch tests scripts
.venv/bin/pytest -q "$@"
