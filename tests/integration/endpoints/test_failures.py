"""Each way vLLM fails, end to end: the stand-in fails like vLLM, the job ends, and
`wait` / `status` name the cause and the fix in one line."""

from __future__ import annotations

import pytest

from tests.conftest import HPC

CASES = [
    # (stand-in failure mode, extra submit args, words the reason must contain)
    ("oom", [], ["out of memory", "gpu-memory-utilization"]),
    ("kv_too_small", [], ["max-model-len"]),
    ("model_missing", [], ["HF_HUB_OFFLINE"]),
    ("bad_parser", [], ["--reasoning-parser", "deepseek_r1"]),
    ("flashinfer", [], ["max-num-seqs"]),
    ("port_in_use", [], ["port"]),
]


@pytest.mark.parametrize(("mode", "extra", "words"), CASES, ids=[c[0] for c in CASES])
def test_failure_reason_and_fix(hpc: HPC, mode: str, extra: list[str], words: list[str]) -> None:
    hpc("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--simulate", "--name", "f",
        "--env", f"HPCLAUNCH_STANDIN_FAIL={mode}", *extra)
    out = hpc("wait", "f", "--timeout", "90", "-q", ok=False)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "FAILED" in lines[0]
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    status = hpc("status", "f", "--json", ok=None).json()
    assert status["state"] == "FAILED" and status["reason"] in lines[0]


def test_unknown_vllm_flag_is_caught_before_submitting(hpc: HPC) -> None:
    out = hpc("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--simulate", "--name", "g",
              "--vllm-args", "--swap-space 4", ok=False)
    assert "--swap-space" in out.stderr and "Traceback" not in out.stderr
    assert not hpc.registry_path.exists()
