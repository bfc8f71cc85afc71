"""Specification of hpclaunch.vllm.logs.lines (through parse): prefixes, startup facts, stats."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pytest

from hpclaunch.vllm.logs.lines import strip_prefix
from tests.unit.vllm.logsamples import (
    STATS_033,
    parse_bytes,
    parse_sample,
    parse_text,
)


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
        kv_cache_gib=[3.81],  # "kv_cache_size=3.81GiB" in V0's profiling summary
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
