"""presets, plan, check and suggest through the real CLI; submit runs the same preflight; the
planner's prediction matches what a (simulated) vLLM prints."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.conftest import HPC, one_line_error


def test_presets_lists_every_preset_with_layout_and_description(hpc: HPC) -> None:
    out = hpc("presets").stdout
    for name, layout in (("dp4-throughput", "dp4"), ("tp2dp2-throughput", "tp2 x dp2"),
                         ("reasoning-dp4", "dp4"), ("rtx5090-fast", "1 GPU"),
                         ("mistral7b-awq-32k", "1 GPU"), ("specdec-dp4", "dp4")):
        row = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert layout in row
    listed = hpc("presets", "--json").json()
    assert all(p["description"] and p["when"] for p in listed)  # type: ignore[union-attr]


def test_presets_show_prints_yaml_and_the_vllm_flags(hpc: HPC) -> None:
    out = hpc("presets", "show", "specdec-dp4").stdout
    assert "speculative-config: {model: auto, num_speculative_tokens: 5}" in out
    assert "# vLLM flags: --data-parallel-size 4 --api-server-count 1" in out
    resolved = hpc("presets", "show", "specdec-dp4", "--model", "Qwen3-8B").stdout
    flags = resolved.split("# vLLM flags for Qwen3-8B: ", 1)[1].splitlines()[0]
    argv = shlex.split(flags)
    assert argv[argv.index("--speculative-config") + 1] == \
        '{"model":"Qwen/Qwen3-0.6B","num_speculative_tokens":5}'
    line = one_line_error(hpc("presets", "show", "dp4-througput", ok=False))
    assert "dp4-throughput" in line


def test_plan_reproduces_the_guides_data_point(hpc: HPC) -> None:
    out = hpc("plan", "Qwen/Qwen3-VL-2B-Thinking", "--preset", "vl-dp4",
              "--kv-cache-gib", "37.15").stdout
    assert "Maximum concurrency for 40,960 tokens per request: 8.49x" in out
    assert "33 recommended" in out and "DP 4 x TP 1 x PP 1 = 4 GPUs" in out
    data = hpc("plan", "Qwen/Qwen3-VL-2B-Thinking", "--preset", "vl-dp4",
               "--kv-cache-gib", "37.15", "--json").json()
    assert data["max_concurrency"] == pytest.approx(8.49, rel=0.01)  # type: ignore[index]
    assert data["recommended_max_num_seqs"] == 33  # type: ignore[index]
    assert data["kv_tokens"] == 347_808  # type: ignore[index]


def test_plan_max_model_len_and_gpu(hpc: HPC) -> None:
    data = hpc("plan", "meta-llama/Llama-3.1-70B-Instruct", "--preset", "tp4-throughput",
               "--gpu", "A100-40GB", "--max-model-len", "16K", "--json").json()
    assert data["max_model_len"] == 16384 and data["gpu"] == "A100-40GB"  # type: ignore[index]
    assert data["kv_cache_source"] == "estimated"  # type: ignore[index]
    line = one_line_error(hpc("plan", "Qwen3-4B", "--preset", "single-gpu", "--gpu", "H1000",
                              ok=False))
    assert "H100-80GB" in line


def test_check_exit_status_and_messages(hpc: HPC) -> None:
    good = hpc("check", "Qwen3-8B", "--preset", "reasoning-dp4", "--gpu", "H100-80GB",
               "--gpus-per-node", "4")
    assert "0 error(s)" in good.stdout and "ok to submit" in good.stdout
    bad = hpc("check", "Qwen/Qwen2.5-7B-Instruct", "--preset", "awq-dp4-memory", "--gpu",
              "H100-80GB", "--gpus-per-node", "4", "--vllm-args", "--swap-space 4", ok=False)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "error: --swap-space" in bad.stdout and "--kv-offloading-size" in bad.stdout
    assert "error: --quantization awq needs an AWQ checkpoint" in bad.stdout
    assert "would be refused" in bad.stdout
    data = hpc("check", "Qwen3-4B", "--preset", "single-gpu", "--simulate", "--set", "tp=3",
               "--json", ok=False).json()
    assert data["ok"] is False and data["simulated"] is True  # type: ignore[index]
    assert [p["check"] for p in data["problems"]] == ["tp-heads"]  # type: ignore[index]


def test_submit_runs_preflight_and_stops_on_errors(hpc: HPC) -> None:
    line = one_line_error(hpc("submit", "Qwen3-8B", "--preset", "single-gpu", "--simulate",
                              "--dry-run", "--vllm-args", "--swap-space 4", ok=False))
    assert "--swap-space" in line and "--kv-offloading-size" in line
    line = one_line_error(hpc("submit", "Qwen/Qwen2.5-7B-Instruct", "--preset", "reasoning-dp4",
                              "--simulate", "--dry-run", ok=False))
    assert "does not think" in line


def test_suggest_explains_and_its_command_submits(hpc: HPC) -> None:
    out = hpc("suggest", "Qwen/Qwen3-VL-2B-Thinking", "--gpus-per-node", "4").stdout
    assert out.startswith("preset: reasoning-dp4")
    assert "< 7 B" in out and "qwen3" in out
    data = hpc("suggest", "Qwen3-8B", "--gpu", "A100-40GB", "--gpus-per-node", "8",
               "--context", "32768", "--json").json()
    assert data["preset"] == "tp2dp2-throughput"  # type: ignore[index]
    assert data["sets"]["dp"] == 4 and data["sets"]["reasoning-parser"] == "qwen3"  # type: ignore[index]
    argv = shlex.split(data["command"])[1:]  # type: ignore[index]
    script = hpc(*argv, "--simulate", "--dry-run").stdout
    assert "--tensor-parallel-size 2" in script and "--data-parallel-size 4" in script
    assert "--max-model-len 32768" in script and "--reasoning-parser qwen3" in script


def test_prediction_matches_the_simulated_vllm_log(hpc: HPC) -> None:
    hpc("submit", "Qwen3-VL-2B", "--preset", "vl-dp4", "--scheduler", "local", "--simulate",
        "--name", "vl")
    hpc("wait", "vl", "--timeout", "60")
    log = hpc("logs", "vl", "-n", "400").stdout
    available = re.search(r"Available KV cache memory: ([\d.]+) GiB", log)
    printed = re.search(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x", log)
    assert available and printed, log[-2000:]
    data = hpc("plan", "Qwen3-VL-2B", "--preset", "vl-dp4", "--kv-cache-gib",
               available.group(1), "--json").json()
    assert data["max_model_len"] == int(printed.group(1).replace(",", ""))  # type: ignore[index]
    assert data["max_concurrency"] == pytest.approx(float(printed.group(2)), rel=0.01)  # type: ignore[index]
    hpc("stop", "vl")


def test_check_uses_the_profiles_gpu_model(hpc: HPC) -> None:
    hpc.config_dir.mkdir(parents=True, exist_ok=True)
    (hpc.config_dir / "clusters.yaml").write_text(
        "default: site\nclusters:\n  site:\n    scheduler: slurm\n    gpus-per-node: 4\n"
        "    gpu-type: a100\n    gpu-model: A100-40GB\n")
    bad = hpc("check", "meta-llama/Llama-3.1-70B-Instruct", "--preset", "tp2-balanced",
              ok=False)
    assert "error: meta-llama/Llama-3.1-70B-Instruct's weights need" in bad.stdout
    assert "A100-40GB" in bad.stdout
    plan = hpc("plan", "Qwen3-4B", "--preset", "dp4-throughput", "--json").json()
    assert plan["gpu"] == "A100-40GB" and plan["kv_cache_source"] == "estimated"  # type: ignore[index]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Presets whose flags go beyond the layout basics (the unit tests check every preset's flags
# against vLLM 0.33's parser; these also start a server with them).
STARTED = ["reasoning-dp4", "specdec-dp4", "mistral7b-awq-32k-offload", "rtx5090-fp8-throughput",
           "rtx5090-extended-awq", "longctx-dp2", "tp4-debug"]


def test_presets_start_on_the_stand_in(hpc: HPC, tmp_path) -> None:
    """The rendered command line is accepted by a vLLM 0.33 argument parser (the stand-in's)
    and comes up READY with the model the preset is meant for."""
    from tests.unit.planning.test_presets import example_model

    # Distinct free ports: jobs started in the same instant could otherwise race for one.
    for i, preset in enumerate(STARTED):
        hpc("submit", example_model(preset, tmp_path), "--preset", preset, "--scheduler",
            "local", "--simulate", "--name", f"p{i}", "--set", f"port={free_port()}")
    try:
        for i, preset in enumerate(STARTED):
            waited = hpc("wait", f"p{i}", "--timeout", "60", ok=None)
            assert waited.returncode == 0, (preset, waited.stderr)
    finally:
        hpc("stop", *[f"p{i}" for i in range(len(STARTED))], ok=None)


def test_data_parallel_preset_keeps_per_engine_stats_in_the_log(hpc: HPC) -> None:
    hpc("submit", "Qwen3-4B", "--preset", "dp4-throughput", "--scheduler", "local",
        "--simulate", "--name", "dp")
    hpc("wait", "dp", "--timeout", "60")
    try:
        import time

        for _ in range(40):
            hpc("chat", "dp", "hello")
            log = hpc("logs", "dp", "-n", "400").stdout
            if "Engine 000:" in log:
                break
            time.sleep(0.25)
        assert "Engine 000: Avg prompt throughput" in log
        assert "disabling stats logging" not in log
    finally:
        hpc("stop", "dp")


def test_plan_below_one_request_exits_non_zero_with_the_longest_length_that_fits(
        hpc: HPC) -> None:
    # vllm-project/vllm#10517's V0 run: 2.89 GiB of KV cache cannot hold 29,000 tokens of
    # Llama-3.1-8B; vLLM stopped and named 23,648. The planner says the same and exits 1.
    args = ("plan", "meta-llama/Llama-3.1-8B-Instruct", "--preset", "single-gpu",
            "--max-model-len", "29000", "--kv-cache-gib", "2.89")
    text = hpc(*args, ok=False)
    assert text.returncode == 1 and "does not fit" in text.stdout
    assert "--max-num-seqs:     0" not in text.stdout
    line = one_line_error(text)
    assert "--max-model-len 236" in line and "does not fit" in line
    data = hpc(*args, "--json", ok=False).json()
    assert data["fits"] is False  # type: ignore[index]
    assert 23_500 < data["max_model_len_that_fits"] < 23_700  # type: ignore[index]
    assert data["recommended_max_num_seqs"] is None  # type: ignore[index]
    assert data["max_concurrency"] == pytest.approx(0.82, abs=0.01)  # type: ignore[index]


def test_plan_json_keeps_its_fields_and_says_it_fits(hpc: HPC) -> None:
    data = hpc("plan", "Qwen3-8B", "--preset", "single-gpu", "--gpu", "H100-80GB",
               "--json").json()
    assert data["fits"] is True and data["max_model_len_that_fits"] == 40960  # type: ignore[index]
    for key in ("kv_tokens", "max_concurrency", "recommended_max_num_seqs", "assumptions",
                "weights_per_gpu_bytes", "kv_bytes_per_token", "concurrency_line"):
        assert key in data  # type: ignore[operator]
