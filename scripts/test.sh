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
# verifiers 0.4 cannot share a venv with 0.3 (the guides' version): a second one.
export HPCLAUNCH_VF04_VENV="$PWD/.venv-vf04"
bash tests/data/evalenv/make_vf04_venv.sh "$HPCLAUNCH_VF04_VENV" >/dev/null

if [ "$(id -u)" = 0 ]; then
    bash scripts/services.sh start   # installs the packages first when missing
fi
# Tells the tests where Slurm, qsub and sshd are; with none up, CI tests fail loudly.
eval "$(bash scripts/services.sh env 2>/dev/null || true)"

.venv/bin/ruff check hpclaunch tests scripts
.venv/bin/mypy hpclaunch
.venv/bin/lint-imports --no-cache
# Docs: a broken link, anchor or page fails. Not -q: it hides --strict's warnings (mkdocs#4126).
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir "$(mktemp -d)"
.venv/bin/pytest -q "$@"
