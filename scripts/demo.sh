#!/usr/bin/env bash
# The main job end to end on this machine: install, submit a (simulated) vLLM
# endpoint on the local scheduler, wait for READY, talk to it by name, list, stop.
# Uses hpclaunch's vLLM stand-in: no GPU, no model download, no network.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/hpclaunch ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check .
fi
HPCLAUNCH="$PWD/.venv/bin/hpclaunch"
# A throw-away home so the demo never touches your real registry.
export HPCLAUNCH_HOME="${HPCLAUNCH_HOME:-$(mktemp -d -t hpclaunch-demo.XXXXXX)}"
export VLLM_LOG_STATS_INTERVAL="${VLLM_LOG_STATS_INTERVAL:-1}"
NAME=demo-qwen-vl
cleanup() { "$HPCLAUNCH" stop "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$HPCLAUNCH" submit Qwen3-VL-2B --preset dp4-throughput --scheduler local --simulate --name "$NAME"
step "$HPCLAUNCH" wait "$NAME" --timeout 60
step "$HPCLAUNCH" chat "$NAME" "Hello from hpclaunch: which model are you?"
step "$HPCLAUNCH" endpoints
step "$HPCLAUNCH" status "$NAME"
step "$HPCLAUNCH" stop "$NAME"
step "$HPCLAUNCH" endpoints --all
echo
echo "demo OK (state was kept in $HPCLAUNCH_HOME)"
