"""Specification of hpclaunch.vllm.advice: the tuning guide's rules, with its own numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpclaunch.vllm.advice import Advice, advise, suggested_batch
from hpclaunch.vllm.logs.parse import parse
from hpclaunch.vllm.logs.read import LogChunk
from hpclaunch.vllm.logs.report import LogReport

LOGS = Path(__file__).resolve().parents[2] / "data" / "logs"


def report_from(text: str) -> LogReport:
    data = text.encode()
    return parse(LogChunk.from_bytes(data, b"", len(data)))


def sample(name: str) -> LogReport:
    lines = (LOGS / name).read_text().split("\n")
    return report_from("\n".join(line for line in lines if not line.startswith("#")))


def stats_line(engine: str, running: int, waiting: int, kv: float, extra: str = "") -> str:
    return (
        f"(APIServer pid=1) INFO 11-25 12:00:00 [loggers.py:330] Engine {engine}: Avg prompt "
        f"throughput: 100.0 tokens/s, Avg generation throughput: 50.0 tokens/s, Running: "
        f"{running} reqs, Waiting: {waiting} reqs, {extra}GPU KV cache usage: {kv}%, Prefix "
        "cache hit rate: 0.0%\n"
    )


def concurrency_line(engine: int, x: float, tokens: str = "40,960") -> str:
    return (
        f"(EngineCore_DP{engine} pid=9) INFO 11-25 11:00:00 [kv_cache_utils.py:1229] GPU KV cache "
        f"size: 347,808 tokens, Maximum concurrency for {tokens} tokens per request: {x}x\n"
    )


def by_code(advice: list[Advice]) -> dict[str, Advice]:
    codes = [a.code for a in advice]
    assert len(codes) == len(set(codes)), codes
    return {a.code: a for a in advice}


def test_guide_example_low_usage_suggests_about_300() -> None:
    # Guide 003, "Calculating Optimal Batch Size": usage 1.6 %, batch 8 -> 8 x 60 / 1.6 = 300,
    # "Try --max-num-seqs 256 or 512".
    r = report_from(stats_line("000", running=8, waiting=0, kv=1.6))
    a = by_code(advise(r, max_num_seqs=None, dp=1, tp=1, params_b=None))["kv_low"]
    assert a.level == "info"
    assert a.numbers["suggested_max_num_seqs"] == 300
    assert (a.numbers["try_low"], a.numbers["try_high"]) == (256, 512)
    assert "1.6%" in a.message and "300" in a.message and "256 or 512" in a.message


def test_suggested_batch_is_running_times_target_over_usage() -> None:
    assert suggested_batch(8, 1.6) == 300
    assert suggested_batch(20, 80.0) == 15
    with pytest.raises(ValueError):
        suggested_batch(8, 0.0)


@pytest.mark.parametrize(
    ("kv", "code", "level"),
    [
        (29.9, "kv_low", "info"),
        (30.0, "kv_optimal", "info"),
        (70.0, "kv_optimal", "info"),
        (75.0, "kv_near_full", "info"),
        (80.1, "kv_high", "warn"),
    ],
)
def test_kv_usage_bands_follow_the_guide(kv: float, code: str, level: str) -> None:
    r = report_from(stats_line("000", running=10, waiting=0, kv=kv))
    got = by_code(advise(r, max_num_seqs=None, dp=1, tp=1, params_b=None))
    assert code in got and got[code].level == level
    assert got[code].numbers["kv_usage_pct"] == kv
    assert not {"kv_low", "kv_optimal", "kv_near_full", "kv_high"} - {code} & set(got)


def test_high_usage_suggests_a_smaller_batch_and_names_preemption() -> None:
    r = report_from(stats_line("000", running=20, waiting=0, kv=96.0))
    a = by_code(advise(r, max_num_seqs=64, dp=1, tp=1, params_b=None))["kv_high"]
    assert a.numbers["suggested_max_num_seqs"] == round(20 * 60 / 96.0)
    assert "preempt" in a.message


def test_waiting_with_free_kv_means_max_num_seqs_is_the_limit() -> None:
    r = report_from(stats_line("000", running=32, waiting=40, kv=12.0))
    a = by_code(advise(r, max_num_seqs=32, dp=1, tp=1, params_b=None))["limited_by_max_num_seqs"]
    assert a.level == "warn"
    assert (a.numbers["waiting"], a.numbers["max_num_seqs"], a.numbers["kv_usage_pct"]) == (
        40,
        32,
        12.0,
    )
    assert "--max-num-seqs" in a.message and "not memory" in a.message


def test_waiting_with_free_slots_is_not_blamed_on_max_num_seqs() -> None:
    r = report_from(stats_line("000", running=10, waiting=3, kv=12.0))
    assert "limited_by_max_num_seqs" not in by_code(
        advise(r, max_num_seqs=32, dp=1, tp=1, params_b=None)
    )


def test_waiting_with_a_full_kv_cache_is_memory_not_max_num_seqs() -> None:
    r = report_from(stats_line("000", running=32, waiting=40, kv=92.0))
    got = by_code(advise(r, max_num_seqs=32, dp=1, tp=1, params_b=None))
    assert "limited_by_max_num_seqs" not in got and "kv_high" in got


def test_capacity_follows_the_guide_rule_8_49_times_4_engines() -> None:
    r = report_from("".join(concurrency_line(i, 8.49) for i in range(4)))
    a = by_code(advise(r, max_num_seqs=None, dp=4, tp=1, params_b=2.0))["capacity"]
    assert a.numbers["total_capacity"] == 33  # floor(8.49 x 4) = floor(33.96)
    assert a.numbers["engines"] == 4 and a.numbers["for_tokens"] == 40960
    # vLLM applies --max-num-seqs to each engine: the guide's total is 8 per engine
    assert a.numbers["max_num_seqs_per_engine"] == 8
    assert "8.49" in a.message and "33" in a.message and "40,960" in a.message


def test_a_cache_below_one_request_never_recommends_zero_sequences() -> None:
    # The real V0 line of vllm-project/vllm#10517: 0.82x of a 29,000-token request.
    r = report_from(concurrency_line(0, 0.82, tokens="29,000"))
    got = by_code(advise(r, max_num_seqs=None, dp=1, tp=1, params_b=8.0))
    a = got["kv_below_one_request"]
    assert "capacity" not in got and "--max-num-seqs 0" not in a.message
    assert a.level == "warn" and a.numbers["max_model_len_that_fits"] == 23780
    assert "--max-model-len 23780" in a.message


def test_max_num_seqs_far_above_capacity_warns_with_the_numbers() -> None:
    # The guide's "If you set 96, you'd be 3x over capacity", before any stats exist.
    r = report_from(concurrency_line(0, 8.49))
    a = by_code(advise(r, max_num_seqs=96, dp=1, tp=1, params_b=None))["max_num_seqs_high"]
    assert a.level == "warn"
    assert a.numbers["ratio"] == pytest.approx(96 / 8.49, abs=0.01)
    assert "96" in a.message and "8.49" in a.message


def test_max_num_seqs_near_capacity_does_not_warn() -> None:
    r = report_from(concurrency_line(0, 8.49))
    assert "max_num_seqs_high" not in by_code(advise(r, max_num_seqs=8, dp=1, tp=1, params_b=None))


def test_capacity_warning_yields_to_measured_usage_that_copes() -> None:
    # Full-length capacity is a worst case; 32 running at 40 % with no preemption shows the real
    # requests are short, and then the usage rules speak instead.
    r = report_from(concurrency_line(0, 8.49) + stats_line("000", running=32, waiting=0, kv=40.0))
    got = by_code(advise(r, max_num_seqs=32, dp=1, tp=1, params_b=None))
    assert "max_num_seqs_high" not in got and "kv_optimal" in got
    strained = report_from(
        concurrency_line(0, 8.49)
        + stats_line("000", running=32, waiting=0, kv=40.0, extra="Preemptions: 3, ")
    )
    got = by_code(advise(strained, max_num_seqs=32, dp=1, tp=1, params_b=None))
    assert "max_num_seqs_high" in got and got["preemptions"].numbers["preemptions"] == 3


def test_small_model_with_tensor_parallelism_is_told_to_use_data_parallelism() -> None:
    r = sample("ok_v033_single.log")
    a = by_code(advise(r, max_num_seqs=32, dp=1, tp=4, params_b=2.0))["use_dp"]
    assert a.numbers["tp"] == 4 and a.numbers["params_b"] == 2.0
    assert a.numbers["gen_tps"] == 567.8
    assert "--data-parallel-size 4" in a.message
    hybrid = by_code(advise(r, max_num_seqs=32, dp=2, tp=2, params_b=2.0))["use_dp"]
    assert "--data-parallel-size 4 with TP=1" in hybrid.message  # all 4 GPUs as copies
    assert "use_dp" not in by_code(advise(r, max_num_seqs=32, dp=1, tp=4, params_b=70.0))
    assert "use_dp" not in by_code(advise(r, max_num_seqs=32, dp=4, tp=1, params_b=2.0))


def test_dp_engines_are_advised_per_engine() -> None:
    r = sample("ok_v033_dp4.log")  # 31 running over 4 engines, mean usage 61 %, 1 preemption
    got = by_code(advise(r, max_num_seqs=32, dp=4, tp=1, params_b=2.0))
    assert got["kv_optimal"].numbers == {"kv_usage_pct": 61.0, "running": 31, "engines": 4}
    assert got["preemptions"].numbers["preemptions"] == 1


def test_stats_turned_off_by_several_api_servers_is_explained() -> None:
    r = sample("ok_v033_dp4_api_servers.log")
    a = by_code(advise(r, max_num_seqs=None, dp=4, tp=1, params_b=None))["stats_disabled"]
    assert "--api-server-count 1" in a.message and "/metrics" in a.message


def test_an_idle_or_silent_server_gets_no_load_advice() -> None:
    idle = report_from(stats_line("000", running=0, waiting=0, kv=0.0))
    assert advise(idle, max_num_seqs=None, dp=1, tp=1, params_b=None) == []
    assert advise(report_from(""), max_num_seqs=256, dp=1, tp=1, params_b=None) == []
