"""`wait` shows where a loading server is, from the lines vLLM prints while it loads."""

from __future__ import annotations

from tests.conftest import HPC


def test_wait_prints_one_line_per_loading_phase_when_not_on_a_terminal(hpc: HPC) -> None:
    hpc("submit", "Qwen3-8B", "--preset", "single-gpu", "--scheduler", "local", "--simulate",
        "--name", "slow", "--env", "HPCLAUNCH_STANDIN_LOAD_SECONDS=3")
    waited = hpc("wait", "slow", "--timeout", "60")
    assert "slow is READY" in waited.stdout
    phases = [line.split(" - ", 1)[1] for line in waited.stderr.splitlines()
              if line.startswith("slow: STARTING") and " - " in line]
    loading = [p for p in phases if p.startswith(("loading weights", "torch.compile",
                                                  "KV cache", "CUDA graphs"))]
    # A 3 s load polled every 0.5 s: weights (half the time) and the graphs are seen,
    # each on one line, in vLLM's order.
    assert loading[0].startswith("loading weights ") and "/4 shards)" in loading[0]
    assert any(p.startswith("CUDA graphs") for p in loading)
    names = [p.split(" ")[0] for p in loading]
    assert len(names) == len(set(names))
    order = ["loading", "torch.compile", "KV", "CUDA"]
    assert [order.index(n) for n in names] == sorted(order.index(n) for n in names)


def test_wait_quiet_prints_no_loading_lines(hpc: HPC) -> None:
    hpc("submit", "Qwen3-8B", "--preset", "single-gpu", "--scheduler", "local", "--simulate",
        "--name", "slowq", "--env", "HPCLAUNCH_STANDIN_LOAD_SECONDS=1")
    waited = hpc("wait", "slowq", "--timeout", "60", "-q")
    assert "slowq is READY" in waited.stdout and "loading weights" not in waited.stderr
