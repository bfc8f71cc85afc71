"""Specification of hpclaunch.vllm.logwatch: bounded reads of vLLM logs and what is read from them.

The samples in tests/data/logs are real log excerpts (or faithful reconstructions of real
formats); each file's leading ``#`` lines name its sources and are not part of the log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from hpclaunch.vllm.logwatch import (
    HEAD_BYTES,
    TAIL_BYTES,
    LogChunk,
    LogReport,
    parse,
    read_head_tail,
    strip_prefix,
)

LOGS = Path(__file__).resolve().parents[2] / "data" / "logs"
NOW = datetime(2026, 11, 25, 23, 0, 0)


def sample_bytes(name: str) -> bytes:
    """A sample log without its leading ``#`` source header."""
    lines = (LOGS / name).read_bytes().split(b"\n")
    start = next(i for i, line in enumerate(lines) if not line.startswith(b"#"))
    return b"\n".join(lines[start:])


def parse_bytes(data: bytes, now: datetime = NOW) -> LogReport:
    return parse(LogChunk.from_bytes(data, b"", len(data)), now=now)


def parse_sample(name: str) -> LogReport:
    return parse_bytes(sample_bytes(name))


def parse_text(text: str) -> LogReport:
    return parse_bytes(text.encode())


STATS_033 = (
    "(APIServer pid=1) INFO 11-25 12:02:15 [loggers.py:330] Engine 000: Avg prompt throughput: "
    "1234.5 tokens/s, Avg generation throughput: 567.8 tokens/s, Running: 12 reqs, Waiting: 0 "
    "reqs, GPU KV cache usage: 45.6%, Prefix cache hit rate: 12.3%"
)


# --------------------------------------------------------------------------------------------
# Line prefixes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "(APIServer pid=12) INFO 11-25 12:00:00 [loggers.py:330] Engine 000: x",
            ("APIServer", "INFO", "Engine 000: x"),
        ),
        (
            "(EngineCore_DP1 pid=5302) WARNING 11-25 09:30:58 [gpu_worker.py:359] msg",
            ("EngineCore_DP1", "WARNING", "msg"),
        ),
        (
            "(Worker_DP0_PP1_TP0_EP0 pid=9) ERROR 01-11 03:46:48 "
            "[entrypoints/.../chat_completion/serving.py:1267] boom",
            ("Worker_DP0_PP1_TP0_EP0", "ERROR", "boom"),
        ),
        (
            "(RayWorkerWrapper pid=164587, ip=128.1.219.180) ERROR 06-21 03:49:38 "
            "worker_base.py:148] HFValidationError: x",
            ("RayWorkerWrapper", "ERROR", "HFValidationError: x"),
        ),
        (
            "INFO 03-21 20:19:24 [launcher.py:34] Route: /v1/models",
            (None, "INFO", "Route: /v1/models"),
        ),
        (
            "INFO 03-18 12:34:52 api_server.py:706] vLLM API server version 0.5.1",
            (None, "INFO", "vLLM API server version 0.5.1"),
        ),
        (
            "INFO:     Application startup complete.",
            (None, "INFO", "Application startup complete."),
        ),
        (
            "(APIServer pid=2817) INFO:     Application startup complete.",
            ("APIServer", "INFO", "Application startup complete."),
        ),
        (
            "ERROR:    [Errno 98] error while binding",
            (None, "ERROR", "[Errno 98] error while binding"),
        ),
        (
            "(APIServer pid=48263) ValueError: Invalid repository ID",
            ("APIServer", None, "ValueError: Invalid repository ID"),
        ),
        ("Traceback (most recent call last):", (None, None, "Traceback (most recent call last):")),
        (
            "\x1b[0;36m(APIServer pid=31)\x1b[0;0m INFO 02-03 19:00:05 [api_server.py:946] hi",
            ("APIServer", "INFO", "hi"),
        ),
        ("(APIServer pid=1) INFO 11-25 12:00:00 [a.py:1] msg\r\n", ("APIServer", "INFO", "msg")),
    ],
)
def test_strip_prefix_handles_every_vllm_and_uvicorn_prefix(
    line: str, expected: tuple[str | None, str | None, str]
) -> None:
    assert strip_prefix(line) == expected


# --------------------------------------------------------------------------------------------
# Successful startups, all formats
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What a healthy sample must yield."""

    version: str
    served_model: str | None
    listen_url: str
    model_load_gib: float
    model_load_seconds: float | None
    kv_cache_gib: list[float]
    kv_cache_tokens: list[int]
    max_concurrency: list[float]
    for_tokens: int
    graph: tuple[float, float]
    init_engine_seconds: float | None
    engines: list[str]


STARTUP_CASES: dict[str, Expected] = {
    "ok_v033_single.log": Expected(
        version="0.33.0",
        served_model="qwen3-vl",
        listen_url="http://0.0.0.0:8011",
        model_load_gib=4.27,
        model_load_seconds=12.345678,
        kv_cache_gib=[37.15],
        kv_cache_tokens=[347808],
        max_concurrency=[8.49],
        for_tokens=40960,
        graph=(9.0, 0.52),
        init_engine_seconds=45.67,
        engines=["000"],
    ),
    "ok_v033_dp4.log": Expected(
        version="0.33.0",
        served_model="Qwen/Qwen3-VL-2B-Thinking",
        listen_url="http://0.0.0.0:8011",
        model_load_gib=4.27,
        model_load_seconds=14.102311,
        kv_cache_gib=[37.15] * 4,
        kv_cache_tokens=[347808] * 4,
        max_concurrency=[8.49] * 4,
        for_tokens=40960,
        graph=(9.0, 0.52),
        init_engine_seconds=37.90,
        engines=["000", "001", "002", "003"],
    ),
    "ok_v011.log": Expected(
        version="0.11.0",
        served_model="zai-org/GLM-4.1V-9B-Thinking",
        listen_url="http://0.0.0.0:8000",
        model_load_gib=19.2402,
        model_load_seconds=8.113501,
        kv_cache_gib=[16.23],
        kv_cache_tokens=[425424],
        max_concurrency=[6.49],
        for_tokens=65536,
        graph=(7.0, 0.95),
        init_engine_seconds=25.99,
        engines=["000"],
    ),
    "ok_v08.log": Expected(
        version="0.8.3",
        served_model="qwen2.5-7b",
        listen_url="http://0.0.0.0:8000",
        model_load_gib=14.2487,
        model_load_seconds=4.479916,
        kv_cache_gib=[],
        kv_cache_tokens=[825584],
        max_concurrency=[25.19],
        for_tokens=32768,
        graph=(18.0, 0.49),
        init_engine_seconds=40.12,
        engines=["0"],
    ),
    "ok_v07_v1.log": Expected(
        version="0.7.4.dev390+gdebd6bbf",
        served_model=None,
        listen_url="http://0.0.0.0:8000",
        model_load_gib=8.4932,
        model_load_seconds=None,
        kv_cache_gib=[],
        kv_cache_tokens=[95936],
        max_concurrency=[1.46],
        for_tokens=65536,
        graph=(17.0, 2.02),
        init_engine_seconds=41.34,
        engines=[],
    ),
    "ok_v0.log": Expected(
        version="0.6.4.post1",
        served_model="meta-llama/Llama-3.1-8B-Instruct",
        listen_url="http://0.0.0.0:8000",
        model_load_gib=14.9888,
        model_load_seconds=None,
        kv_cache_gib=[],
        kv_cache_tokens=[],
        max_concurrency=[1.56],
        for_tokens=20000,
        graph=(17.0, 0.35),
        init_engine_seconds=None,
        engines=["0"],
    ),
}


@pytest.mark.parametrize("name", sorted(STARTUP_CASES))
def test_startup_facts_are_read_from_every_log_format(name: str) -> None:
    want = STARTUP_CASES[name]
    r = parse_sample(name)
    s = r.startup
    assert r.exists and r.started and r.ready_line
    assert r.failure is None
    assert (r.version, r.served_model, r.listen_url) == (
        want.version,
        want.served_model,
        want.listen_url,
    )
    assert (s.model_load_gib, s.model_load_seconds) == (
        want.model_load_gib,
        want.model_load_seconds,
    )
    assert s.kv_cache_gib == want.kv_cache_gib
    assert s.kv_cache_tokens == want.kv_cache_tokens
    assert s.max_concurrency == want.max_concurrency
    assert s.for_tokens == want.for_tokens
    assert (s.graph_capture_seconds, s.graph_capture_gib) == want.graph
    assert s.init_engine_seconds == want.init_engine_seconds
    assert sorted(r.stats) == want.engines
    assert not s.stats_disabled and not s.simulated


def test_v0_reports_gpu_blocks_not_tokens() -> None:
    s = parse_sample("ok_v0.log").startup
    assert s.gpu_blocks == [1952]  # "# CPU blocks: 2048" is swap space, not the cache
    assert s.engines == 1


def test_data_parallel_startup_prints_one_kv_report_per_engine() -> None:
    s = parse_sample("ok_v033_dp4.log").startup
    assert s.engines == 4
    assert s.total_concurrency == pytest.approx(33.96)


def test_dp_with_several_api_servers_has_no_stats_and_says_why() -> None:
    r = parse_sample("ok_v033_dp4_api_servers.log")
    assert r.ready_line
    assert r.startup.stats_disabled
    assert r.stats == {}
    assert r.totals() is None


def test_hpclaunch_stand_in_is_flagged_as_simulated() -> None:
    r = parse_text(
        "[hpclaunch_standin] SIMULATED vLLM: no model is loaded\n"
        "INFO:     Application startup complete.\n"
    )
    assert r.startup.simulated and r.ready_line


def test_0_33_logo_gives_version_and_model() -> None:
    prefix = "(APIServer pid=1) INFO 11-25 12:00:00 [api_utils.py:345] "
    r = parse_text(
        f"{prefix}\r\n"
        f"{prefix}       █     █     █▄   ▄█\r\n"
        f"{prefix} ▄▄ ▄█ █     █     █ ▀▄▀ █  version 0.33.0\r\n"
        f"{prefix}  █▄█▀ █     █     █     █  model   Qwen/Qwen3-8B\r\n"
        f"{prefix}   ▀▀  ▀▀▀▀▀ ▀▀▀▀▀ ▀     ▀\n"
    )
    assert (r.version, r.served_model) == ("0.33.0", "Qwen/Qwen3-8B")


def test_a_log_that_only_started_is_not_ready() -> None:
    r = parse_sample("ok_warning_max_model_len.log")
    assert r.started and not r.ready_line
    assert r.failure is None  # the over-long context is only a warning when allowed


def test_argparse_output_alone_is_not_a_started_server() -> None:
    r = parse_text("usage: vllm serve [model_tag] [options]\n")
    assert not r.started and not r.ready_line


# --------------------------------------------------------------------------------------------
# Periodic stats
# --------------------------------------------------------------------------------------------


def test_last_stats_line_per_engine_wins_with_its_timestamp() -> None:
    r = parse_sample("ok_v033_single.log")
    st = r.stats["000"]
    assert (st.prompt_tps, st.gen_tps, st.running, st.waiting) == (1234.5, 567.8, 8, 0)
    assert (st.kv_usage_pct, st.prefix_hit_pct, st.preemptions) == (1.6, 12.3, None)
    assert st.timestamp == datetime(2026, 11, 25, 12, 2, 15)


def test_dp4_stats_are_kept_per_engine_and_totalled() -> None:
    r = parse_sample("ok_v033_dp4.log")
    assert r.stats["001"].preemptions == 1
    assert r.stats["000"].running == 8  # the 09:45 line, not the earlier 09:40 one
    t = r.totals()
    assert t is not None
    assert t.engines == 4
    assert t.prompt_tps == pytest.approx(820.4 + 790.0 + 805.5 + 760.1)
    assert t.gen_tps == pytest.approx(310.5 + 305.0 + 298.1 + 301.4)
    assert (t.running, t.waiting, t.preemptions) == (31, 6, 1)
    assert t.kv_usage_pct == pytest.approx((61.2 + 64.8 + 58.0 + 60.0) / 4)
    assert t.newest == t.oldest == datetime(2026, 11, 25, 9, 45, 2)


def test_aggregated_engines_line_is_already_a_total() -> None:
    r = parse_text(
        "(APIServer pid=1) INFO 11-25 12:00:00 [loggers.py:330] 4 Engines Aggregated: Avg prompt "
        "throughput: 3176.0 tokens/s, Avg generation throughput: 1215.0 tokens/s, Running: 31 "
        "reqs, Waiting: 6 reqs, GPU KV cache usage: 61.0%, Prefix cache hit rate: 39.9%\n"
    )
    assert list(r.stats) == ["aggregated"]
    t = r.totals()
    assert t is not None
    assert (t.engines, t.running, t.waiting, t.kv_usage_pct) == (4, 31, 6, 61.0)


@pytest.mark.parametrize(
    ("fields", "check"),
    [
        (
            "Running: 3 reqs, Waiting: 1 reqs, Deferred: 2 reqs, Preemptions: 4, "
            "GPU KV cache usage: 9.5%, Prefix cache hit rate: 1.0%",
            dict(deferred=2, preemptions=4, kv_usage_pct=9.5, prefix_hit_pct=1.0),
        ),
        (
            # reference/vllm.md lists "KV fetch" without its format: unknown fields are skipped
            "Running: 3 reqs, Waiting: 1 reqs, KV fetch: 7 reqs, XPU KV cache usage: 9.5%, "
            "Prefix cache hit rate: 1.0%, External prefix cache hit rate: 20.0%, "
            "MM cache hit rate: 50.0%",
            dict(kv_usage_pct=9.5, external_prefix_hit_pct=20.0, mm_hit_pct=50.0),
        ),
        (
            "Running: 3 reqs, Waiting: 1 reqs, CPU KV cache usage: 9.5%, Prefix cache hit rate: "
            "1.0%, Corrupted: 0 reqs",
            dict(kv_usage_pct=9.5, cpu_kv_usage_pct=None),
        ),
        (
            # the prefix-cache field is absent until it has data
            "Running: 3 reqs, Waiting: 1 reqs, GPU KV cache usage: 9.5%",
            dict(kv_usage_pct=9.5, prefix_hit_pct=None),
        ),
    ],
)
def test_optional_stats_fields_parse_wherever_they_appear(
    fields: str, check: dict[str, float | None]
) -> None:
    r = parse_text(
        "(APIServer pid=1) INFO 11-25 12:00:00 [loggers.py:330] Engine 002: Avg prompt "
        f"throughput: 10.0 tokens/s, Avg generation throughput: 20.0 tokens/s, {fields}\n"
    )
    st = r.stats["002"]
    assert (st.running, st.waiting) == (3, 1)
    for key, value in check.items():
        assert getattr(st, key) == value, key


def test_v0_stats_use_pending_swapped_and_the_separate_prefix_line() -> None:
    st = parse_sample("ok_v0.log").stats["0"]
    assert (st.running, st.waiting, st.swapped) == (2, 3, 1)
    assert (st.kv_usage_pct, st.cpu_kv_usage_pct) == (82.1, 0.1)
    assert st.prefix_hit_pct == 45.0
    assert st.timestamp == datetime(2025, 12, 2, 10, 5, 25)  # December is last year in November


@pytest.mark.parametrize(
    ("now", "stamp", "expected"),
    [
        (datetime(2026, 11, 25, 23, 0), "11-25 12:02:15", datetime(2026, 11, 25, 12, 2, 15)),
        (datetime(2026, 1, 2, 0, 5), "12-31 23:59:00", datetime(2025, 12, 31, 23, 59)),
        # the compute node's clock runs a little ahead: same year, not last year
        (datetime(2026, 11, 25, 12, 0), "11-25 12:03:00", datetime(2026, 11, 25, 12, 3)),
        (datetime(2027, 3, 1, 8, 0), "02-29 10:00:00", datetime(2024, 2, 29, 10, 0)),
    ],
)
def test_year_less_stamps_get_the_latest_year_not_in_the_future(
    now: datetime, stamp: str, expected: datetime
) -> None:
    r = parse_bytes(STATS_033.replace("11-25 12:02:15", stamp).encode() + b"\n", now=now)
    assert r.stats["000"].timestamp == expected


# --------------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------------

# (sample, code, words that must appear in reason + fix)
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


def test_crlf_and_bare_cr_line_endings_parse_like_lf() -> None:
    lf = sample_bytes("ok_v033_single.log")
    crlf = lf.replace(b"\n", b"\r\n")
    # 0.33 multi-line messages repeat the prefix after \r\n; progress bars redraw with \r.
    crlf = crlf.replace(
        b"Capturing CUDA graphs (decode, FULL): 100%",
        b"Capturing CUDA graphs (decode, FULL): 10%\rCapturing CUDA graphs (decode, FULL): 100%",
    )
    a, b = parse_bytes(lf), parse_bytes(crlf)
    assert b.ready_line and b.failure is None
    assert b.startup == a.startup
    assert b.stats == a.stats
    assert all("\r" not in line for line in b.last_lines(50))


def test_non_utf8_bytes_do_not_break_parsing() -> None:
    data = (
        sample_bytes("ok_v033_single.log").replace(
            b"Loading weights took", b"\xff\xfe\xc3 Loading weights took"
        )
        + b"\n(APIServer pid=1) INFO 11-25 12:03:00 [x.py:1] caf\xe9 \x80\n"
    )
    r = parse_bytes(data)
    assert r.ready_line and r.stats["000"].running == 8
    assert "\ufffd" in r.last_lines(1)[0]


@pytest.mark.parametrize(
    "cut", ["Running: 1", "Running: 12 reqs, Waiting: 0 reqs, GPU KV cache usage: 4", "Engine 0"]
)
def test_a_half_written_last_line_never_produces_numbers(cut: str) -> None:
    complete = STATS_033.replace("12:02:15", "12:02:05").replace("Running: 12", "Running: 3")
    partial = STATS_033[: STATS_033.index(cut) + len(cut)]
    r = parse_text(complete + "\n" + partial)  # no newline: still being written
    assert r.stats["000"].running == 3
    assert r.stats["000"].timestamp == datetime(2026, 11, 25, 12, 2, 5)
    # once the line is finished it counts
    assert parse_text(complete + "\n" + STATS_033 + "\n").stats["000"].running == 12


def test_a_half_written_readiness_line_is_not_readiness() -> None:
    assert not parse_text(
        "INFO:     Waiting for application startup.\nINFO:     Application startup complete"
    ).ready_line
    assert parse_text("INFO:     Application startup complete.\n").ready_line


# --------------------------------------------------------------------------------------------
# Bounded reads
# --------------------------------------------------------------------------------------------


def test_missing_file_is_an_empty_chunk_not_an_error(tmp_path: Path) -> None:
    chunk = read_head_tail(tmp_path / "vllm_x_port8000_realtime.log")
    assert chunk == LogChunk(head="", tail="", size=0, exists=False, mtime=None)
    r = parse(chunk)
    assert not r.exists and not r.started and r.failure is None and r.stats == {}


def test_small_file_is_read_whole_into_head_only(tmp_path: Path) -> None:
    path = tmp_path / "small.log"
    data = sample_bytes("ok_v033_single.log")
    path.write_bytes(data)
    chunk = read_head_tail(path, head_bytes=len(data) // 2, tail_bytes=len(data) - len(data) // 2)
    assert chunk.head == data.decode() and chunk.tail == "" and chunk.skipped == 0
    assert chunk.size == len(data) and chunk.exists
    assert chunk.mtime == pytest.approx(os.path.getmtime(path))


def test_large_file_keeps_whole_lines_on_both_sides_of_the_gap(tmp_path: Path) -> None:
    lines = [f"line {i:06d} " + "x" * (i % 50) for i in range(20000)]
    path = tmp_path / "big.log"
    path.write_text("\n".join(lines) + "\n")
    chunk = read_head_tail(path, head_bytes=4096, tail_bytes=4096)
    head, tail = chunk.head.split("\n"), chunk.tail.split("\n")
    assert head[-1] == "" and tail[-1] == ""  # both end on a line boundary
    assert head[:-1] == lines[: len(head) - 1]
    assert tail[:-1] == lines[-(len(tail) - 1) :]
    assert len(chunk.head.encode()) <= 4096 and len(chunk.tail.encode()) <= 4097
    assert chunk.skipped == chunk.size - len(chunk.head.encode()) - len(chunk.tail.encode())


def test_a_tail_that_starts_exactly_on_a_line_keeps_that_line(tmp_path: Path) -> None:
    head_part = b"a" * 99 + b"\n"  # 100 bytes
    tail_part = b"first whole line\nsecond\n"
    path = tmp_path / "edge.log"
    path.write_bytes(head_part + b"b" * 999 + b"\n" + tail_part)
    chunk = read_head_tail(path, head_bytes=100, tail_bytes=len(tail_part))
    assert chunk.tail == tail_part.decode()


def test_from_bytes_drops_the_cut_lines_and_removes_overlap() -> None:
    data = b"one\ntwo\nthree\nfour\n"
    # overlapping head and tail: same as the whole file
    assert LogChunk.from_bytes(data[:12], data[6:], len(data)).head == data.decode()
    # a gap: the head's cut last line and the tail's cut first line are dropped
    c = LogChunk.from_bytes(data[:6], data[-7:], len(data))
    assert (c.head, c.tail) == ("one\n", "four\n")
    assert c.skipped == len(data) - len("one\n") - len("four\n")


def test_a_shrunken_log_is_simply_read_again(tmp_path: Path) -> None:
    path = tmp_path / "rotated.log"
    path.write_bytes(sample_bytes("ok_v033_single.log") * 40)
    assert read_head_tail(path, 8192, 8192).skipped > 0
    path.write_bytes(sample_bytes("fail_port_in_use.log"))  # the job restarted and rewrote it
    r = parse(read_head_tail(path, 8192, 8192))
    assert r.failure is not None and r.failure.code == "port_in_use" and not r.ready_line


def test_50_mb_log_reads_only_head_and_tail_and_finds_both_ends(tmp_path: Path) -> None:
    path = tmp_path / "vllm_big_port8000_realtime.log"
    startup = sample_bytes("ok_v033_single.log")
    filler = (STATS_033.replace("Running: 12", "Running: 1") + "\n").encode()
    final = STATS_033.replace("12:02:15", "22:59:50").replace("Running: 12", "Running: 77") + "\n"
    with open(path, "wb") as f:
        f.write(startup)
        f.write(filler * (50 * 1024 * 1024 // len(filler)))
        f.write(final.encode())
    size = path.stat().st_size
    assert size > 50 * 1024 * 1024

    chunk = read_head_tail(path)
    assert chunk.size == size
    assert len(chunk.head.encode()) <= HEAD_BYTES
    assert len(chunk.tail.encode()) <= TAIL_BYTES + 1
    assert chunk.skipped >= size - HEAD_BYTES - TAIL_BYTES - 1

    r = parse(chunk, now=NOW)
    assert r.ready_line and r.failure is None
    assert r.startup.max_concurrency == [8.49]
    assert r.stats["000"].running == 77
    assert r.stats["000"].timestamp == datetime(2026, 11, 25, 22, 59, 50)
