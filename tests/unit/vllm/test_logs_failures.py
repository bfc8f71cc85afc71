"""Specification of hpclaunch.vllm.logs.failures: each way vLLM dies, diagnosed with its fix."""

from __future__ import annotations

import pytest

from tests.unit.vllm.logsamples import (
    LOGS,
    parse_sample,
    parse_text,
    sample_bytes,
)

FAILURE_CASES = [
    ("fail_kv_too_small_v033.log", "kv_too_small", ["262144", "24.0 GiB", "3.18 GiB", "≤ 34736"]),
    ("fail_kv_too_small_old.log", "kv_too_small", ["131072", "16.00 GiB", "0.71 GiB", "≤ 5632"]),
    ("fail_kv_too_small_v0.log", "kv_too_small", ["29000", "23648", "≤ 23648"]),
    ("fail_no_kv_memory.log", "no_kv_memory", ["--gpu-memory-utilization"]),
    ("fail_cuda_oom_load.log", "cuda_oom", ["128.00 MiB", "79.33 GiB", "loading", "tensor"]),
    ("fail_cuda_oom_sampler.log", "cuda_oom", ["256", "--max-num-seqs below 256"]),
    ("fail_gpu_busy.log", "cuda_oom", ["12.18", "23.56", "0.92", "below 0.52"]),
    ("fail_unknown_flag.log", "unknown_flag", ["--swap-space 4", "--help=all"]),
    ("fail_port_in_use.log", "port_in_use", ["already in use", "--port"]),
    ("fail_port_in_use_uvicorn.log", "port_in_use", ["port 8000"]),
    (
        "fail_model_not_found.log",
        "model_not_found",
        ["Qwen/Qwen3-8b-Instruct", "HF_HUB_OFFLINE", "--download-dir"],
    ),
    ("fail_bad_reasoning_parser.log", "bad_reasoning_parser", ["deepseek-r1", "deepseek_r1"]),
    (
        "fail_max_model_len.log",
        "max_model_len_too_long",
        ["65536", "≤ 32768", "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1"],
    ),
    ("fail_flashinfer_broadcast.log", "flashinfer_broadcast", ["is 8", "≥ 9", "FlashInfer"]),
    ("fail_engine_dead.log", "engine_dead", ["illegal memory access"]),
    ("fail_engine_start_generic.log", "engine_start_failed", ["Failed to find C compiler"]),
    ("fail_traceback_unknown.log", "traceback", ["divisible by tensor parallel size (4)"]),
    ("fail_no_gpu.log", "no_gpu", ["No GPU", "CUDA_VISIBLE_DEVICES"]),
    ("fail_slurm_time_limit.log", "killed_by_scheduler", ["job 7", "time limit", "--time"]),
    ("fail_slurm_oom_kill.log", "killed_by_scheduler", ["host memory", "--mem"]),
    ("fail_pbs_walltime.log", "killed_by_scheduler", ["3630", "3600", "walltime"]),
    ("fail_container_image_podman.log", "container_image", ["localhost/nope:latest", "image"]),
    ("fail_container_image_apptainer.log", "container_image", ["vllm-openai_v0.11.sif"]),
    ("fail_container_gpu_podman_cdi.log", "container_gpu", ["nvidia-ctk cdi generate"]),
    ("fail_offline_cache_miss.log", "offline_cache_miss", ["hpclaunch prefetch", "offline"]),
]


@pytest.mark.parametrize(
    ("name", "code", "words"), FAILURE_CASES, ids=[c[0] for c in FAILURE_CASES]
)
def test_each_failure_is_diagnosed_with_its_numbers(name: str, code: str, words: list[str]) -> None:
    r = parse_sample(name)
    assert r.failure is not None
    assert r.failure.code == code, r.failure
    text = f"{r.failure.reason} | {r.failure.fix}"
    for word in words:
        assert word.lower() in text.lower(), (word, text)
    assert r.failure.line  # the evidence is quoted
    assert "\n" not in r.failure.reason + r.failure.fix


def test_every_failure_sample_is_covered_by_the_table() -> None:
    listed = {c[0] for c in FAILURE_CASES}
    assert {p.name for p in LOGS.glob("fail_*.log")} == listed


@pytest.mark.parametrize("name", sorted(p.name for p in LOGS.glob("ok_*.log")))
def test_healthy_samples_report_no_failure(name: str) -> None:
    assert parse_sample(name).failure is None


def test_root_cause_beats_the_generic_engine_start_error() -> None:
    # Both samples also print "EngineCore failed to start" and "Engine core initialization failed".
    assert parse_sample("fail_cuda_oom_load.log").failure.code == "cuda_oom"  # type: ignore[union-attr]
    assert parse_sample("fail_kv_too_small_v033.log").failure.code == "kv_too_small"  # type: ignore[union-attr]


def test_time_limit_beats_the_plain_step_cancel_printed_before_it() -> None:
    f = parse_sample("fail_slurm_time_limit.log").failure
    assert f is not None and "time limit" in f.reason


def test_slurm_kills_are_failures_but_a_plain_cancel_is_a_stop() -> None:
    line = "slurmstepd: error: *** JOB 9 ON n1 CANCELLED AT 2026-11-25T10:00:00{} ***\n"
    preempted = parse_text(line.format(" DUE TO PREEMPTION")).failure
    node = parse_text(line.format(" DUE TO NODE FAILURE")).failure
    assert preempted is not None and "preempted" in preempted.reason
    assert node is not None and "due to node failure" in node.reason
    # scancel (as `hpclaunch stop` does) prints no reason: that is the user's stop, not a failure
    assert parse_text(line.format("")).failure is None


def test_a_vllm_cause_beats_the_scheduler_kill_that_followed() -> None:
    text = sample_bytes("fail_cuda_oom_load.log").decode() + (
        "\nslurmstepd: error: *** JOB 7 ON vm CANCELLED AT 2026-11-25T14:00:00 ***\n"
    )
    assert parse_text(text).failure.code == "cuda_oom"  # type: ignore[union-attr]


def test_request_errors_after_readiness_are_not_a_failure() -> None:
    r = parse_sample("ok_request_error_after_ready.log")
    assert r.ready_line and r.failure is None


def test_prompts_in_request_logs_never_match_failure_patterns() -> None:
    # ok_v08.log logs a prompt that contains "CUDA out of memory" and a traceback.
    assert parse_sample("ok_v08.log").failure is None


def test_a_failure_followed_by_readiness_did_not_stop_the_server() -> None:
    text = (
        sample_bytes("fail_port_in_use.log").decode()
        + "\nINFO:     Application startup complete.\n"
    )
    r = parse_text(text)
    assert r.ready_line and r.failure is None


def test_unknown_traceback_is_dropped_when_startup_carries_on() -> None:
    text = sample_bytes("fail_traceback_unknown.log").decode() + (
        "\n(EngineCore_DP0 pid=9) INFO 11-25 21:00:30 [gpu_model_runner.py:2653] "
        "Model loading took 4.00 GiB and 3.000000 seconds\n"
    )
    assert parse_text(text).failure is None


def test_other_broadcast_errors_are_not_blamed_on_flashinfer() -> None:
    r = parse_text(
        "Traceback (most recent call last):\n"
        "ValueError: could not broadcast input array from shape (513,) into shape (512,)\n"
    )
    assert r.failure is not None and r.failure.code == "traceback"


def test_allowed_long_context_warning_is_not_a_failure_but_the_error_is() -> None:
    warn = sample_bytes("ok_warning_max_model_len.log").decode()
    assert parse_text(warn).failure is None
    error = warn.replace(") WARNING ", ") ERROR ", 1)
    assert parse_text(error).failure.code == "max_model_len_too_long"  # type: ignore[union-attr]


def test_errors_after_a_shutdown_began_are_the_stop_not_a_failure() -> None:
    ready = "(APIServer pid=1) INFO:     Application startup complete.\n"
    dead = (
        "(APIServer pid=1) ERROR 10-20 03:20:50 [async_llm.py:485] vllm.v1.engine.exceptions."
        "EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root "
        "cause.\n"
    )
    stop = "(APIServer pid=1) INFO:     Shutting down\n"
    assert parse_text(ready + stop + dead).failure is None
    died = parse_text(ready + dead + stop).failure  # the death came first and caused the stop
    assert died is not None and died.code == "engine_dead"
    late_notice = "slurmstepd: error: *** JOB 7 ON vm CANCELLED AT t DUE TO TIME LIMIT ***\n"
    killed = parse_text(ready + stop + dead + late_notice).failure
    assert killed is not None and killed.code == "killed_by_scheduler"


def test_engine_dead_after_readiness_keeps_the_last_stats() -> None:
    r = parse_sample("fail_engine_dead.log")
    assert r.ready_line
    assert r.stats["000"].waiting == 180
    assert r.failure is not None and r.failure.code == "engine_dead"


def test_last_lines_show_the_end_of_the_log_as_a_terminal_would() -> None:
    r = parse_sample("fail_model_not_found.log")
    prefix = "(APIServer pid=48263)    - For "
    assert r.last_lines(2) == [
        prefix + "Hugging Face models: ensure the presence of a 'config.json'.",
        prefix + "Mistral models: ensure the presence of a 'params.json'.",
    ]
    assert r.last_lines(0) == []
    bar = parse_text("start\nLoading: 10%\rLoading: 50%\rLoading: 100%\nlast line, still being wri")
    assert bar.last_lines(3) == ["start", "Loading: 100%", "last line, still being wri"]
    assert len(parse_sample("ok_v033_single.log").last_lines(1000)) == len(
        sample_bytes("ok_v033_single.log").decode().rstrip("\n").split("\n")
    )


# --------------------------------------------------------------------------------------------
# Awkward bytes: \r\n, non-UTF-8, half-written lines
# --------------------------------------------------------------------------------------------
