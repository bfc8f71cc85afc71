#!/usr/bin/env bash
# Smoke check of hpclaunch against REAL vLLM on this machine (a site, or the day a GPU is at
# hand). Outside pytest on purpose: CI has no GPU and must never skip it silently.
#
#   scripts/smoke_real_vllm.sh [MODEL]          # default Qwen/Qwen3-0.6B (about 1.5 GB)
#   scripts/smoke_real_vllm.sh --simulate       # the same steps on hpclaunch's stand-in: checks
#                                               # this script only, NOT real vLLM
#
# Steps, on the local scheduler, in a throw-away HPCLAUNCH_HOME:
#   1. submit MODEL (preset single-gpu), wait for READY: readiness is read from vLLM's real log;
#   2. one chat request, then `stats --json` (from /metrics) and `stats --source log --json`
#      (from the log's stats lines): the KV cache size and concurrency printed at startup and
#      at least one engine's numbers must be read;
#   3. a forced failure (--gpu-memory-utilization 0.02: the weights leave no room for a KV
#      cache) must end FAILED with hpclaunch's diagnosis (no KV memory, CUDA OOM, or KV cache
#      too small), not an unexplained traceback.
# Exits 0 when all pass; 1 on a failed check; 2 when it cannot run here (no vllm, no GPU).
# The vLLM version seen is printed: if tests/data/vllm-source/ has no snapshot of it, refresh
# the facts (docs/vllm-fidelity.md) and run the fidelity tests.
set -euo pipefail
cd "$(dirname "$0")/.."

SIMULATE=""
MODEL="${HPCLAUNCH_SMOKE_MODEL:-Qwen/Qwen3-0.6B}"
for arg in "$@"; do
    case "$arg" in
        --simulate) SIMULATE=1 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) MODEL="$arg" ;;
    esac
done

cannot() { echo "smoke_real_vllm: cannot run here: $*" >&2; exit 2; }
fail() { echo "smoke_real_vllm: FAIL: $*" >&2; exit 1; }
pass() { echo "smoke_real_vllm: ok: $*"; }

if [ -n "$SIMULATE" ]; then
    SIM_FLAG=--simulate
    echo "smoke_real_vllm: SIMULATED run on hpclaunch's stand-in: this checks the script, not vLLM"
else
    SIM_FLAG=--no-simulate
    command -v vllm >/dev/null 2>&1 || cannot "no 'vllm' on PATH (pip install vllm in this environment)"
    command -v nvidia-smi >/dev/null 2>&1 || cannot "no nvidia-smi: no NVIDIA driver on this machine"
    nvidia-smi -L 2>/dev/null | grep -q '^GPU ' || cannot "nvidia-smi lists no GPU"
    VLLM_VERSION=$(vllm --version 2>/dev/null | tail -n 1) || cannot "'vllm --version' failed"
    echo "smoke_real_vllm: vLLM $VLLM_VERSION on $(nvidia-smi -L | head -n 1)"
    if [ ! -f "tests/data/vllm-source/vllm-${VLLM_VERSION}.json" ]; then
        echo "smoke_real_vllm: note: no facts snapshot for vLLM $VLLM_VERSION in" \
             "tests/data/vllm-source/ (see docs/vllm-fidelity.md to add one)"
    fi
fi

if [ -n "${HPCLAUNCH:-}" ]; then
    read -r -a HPC <<<"$HPCLAUNCH"
elif [ -x .venv/bin/hpclaunch ]; then
    HPC=(.venv/bin/hpclaunch)
elif command -v hpclaunch >/dev/null 2>&1; then
    HPC=(hpclaunch)
else
    HPC=(python3 -m hpclaunch.cli)
fi
HOME_DIR=$(mktemp -d -t hpclaunch-smoke.XXXXXX)
export HPCLAUNCH_HOME="$HOME_DIR" VLLM_LOG_STATS_INTERVAL="${VLLM_LOG_STATS_INTERVAL:-2}"
OK=smoke-ok
BAD=smoke-fail
cleanup() { "${HPC[@]}" stop "$OK" "$BAD" >/dev/null 2>&1 || true; }
trap cleanup EXIT
field() {  # field JSON_FILE EXPRESSION: a value from the JSON hpclaunch printed
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"
}

# 1. READY
"${HPC[@]}" submit "$MODEL" --preset single-gpu --scheduler local "$SIM_FLAG" --name "$OK" \
    --wait --timeout "${HPCLAUNCH_SMOKE_TIMEOUT:-1200}" \
    || fail "$MODEL did not become READY (logs: ${HPC[*]} logs $OK)"
"${HPC[@]}" status "$OK" --json >"$HOME_DIR/ok.json"
[ "$(field "$HOME_DIR/ok.json" 'd["state"]')" = READY ] || fail "state is not READY"
pass "READY (from the log's readiness line and /health)"

# 2. stats, from /metrics and from the log
"${HPC[@]}" chat "$OK" "Say hello in five words." >/dev/null || fail "chat request failed"
sleep $(( ${VLLM_LOG_STATS_INTERVAL%.*} + 2 ))
"${HPC[@]}" stats "$OK" --json >"$HOME_DIR/stats.json" || fail "stats failed"
[ "$(field "$HOME_DIR/stats.json" 'd["source"]')" = metrics ] || fail "stats did not read /metrics"
[ "$(field "$HOME_DIR/stats.json" 'len(d["engines"])')" -ge 1 ] || fail "no engine in /metrics"
[ "$(field "$HOME_DIR/stats.json" 'len(d["startup"]["kv_cache_tokens_per_engine"])')" -ge 1 ] \
    || fail "the log's 'KV cache size: N tokens' line was not read"
[ "$(field "$HOME_DIR/stats.json" 'len(d["startup"]["max_concurrency_per_engine"])')" -ge 1 ] \
    || fail "the log's 'Maximum concurrency' line was not read"
pass "stats from /metrics; KV cache $(field "$HOME_DIR/stats.json" \
    'd["startup"]["kv_cache_tokens_per_engine"]') tokens per engine from the log"
"${HPC[@]}" stats "$OK" --source log --json >"$HOME_DIR/logstats.json" || fail "stats --source log"
[ "$(field "$HOME_DIR/logstats.json" 'len(d["engines"])')" -ge 1 ] \
    || fail "no periodic stats line was read from the log"
pass "stats from the log's periodic stats lines"
"${HPC[@]}" stop "$OK" >/dev/null

# 3. a forced failure and its diagnosis
if "${HPC[@]}" submit "$MODEL" --preset single-gpu --scheduler local "$SIM_FLAG" --name "$BAD" \
        --set gpu-memory-utilization=0.02 --wait --timeout 900 >/dev/null 2>&1; then
    fail "--gpu-memory-utilization 0.02 came up READY; expected a failure"
fi
"${HPC[@]}" status "$BAD" --json >"$HOME_DIR/bad.json"
STATE=$(field "$HOME_DIR/bad.json" 'd["state"]')
REASON=$(field "$HOME_DIR/bad.json" 'd["reason"]')
[ "$STATE" = FAILED ] || fail "forced failure ended $STATE, not FAILED ($REASON)"
case "$REASON" in
    *"no GPU memory is left for the KV cache"*|*"CUDA out of memory"*|*"KV cache cannot hold"*)
        pass "forced failure diagnosed: $REASON" ;;
    *) fail "forced failure not diagnosed by a rule: $REASON" ;;
esac
[ -n "$SIMULATE" ] && echo "smoke_real_vllm: SIMULATED run passed (real vLLM NOT checked)" \
    || echo "smoke_real_vllm: PASS with vLLM $VLLM_VERSION"
