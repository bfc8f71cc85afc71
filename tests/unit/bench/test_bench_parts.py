"""The pure parts of bench: percentiles, per-level sums, request bodies, reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpclaunch.bench import report
from hpclaunch.bench.profiles import PROFILES, check, profile
from hpclaunch.bench.results import LevelResult, RequestResult, Sweep, percentile, summarise
from hpclaunch.bench.workload import Workload, load_dataset, parse_levels
from hpclaunch.errors import UserError


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(map(float, range(101))), 95) == pytest.approx(95.0)


def test_a_level_counts_only_successes_and_groups_errors_by_type() -> None:
    results = [RequestResult(0.5, 10, 30, ttft=0.1, gaps=[0.04, 0.05]),
               RequestResult(1.5, 10, 30, ttft=0.3, gaps=[0.06]),
               RequestResult(0.01, error="HTTP 400"), RequestResult(9.0, error="timeout"),
               RequestResult(0.02, error="HTTP 400")]
    lv = summarise(8, results, seconds=2.0)
    assert (lv.requests, lv.ok, lv.output_tokens) == (5, 2, 20)
    assert lv.errors == {"HTTP 400": 2, "timeout": 1}
    assert lv.req_per_s == 1.0 and lv.tok_per_s == 10.0
    assert lv.latency_p50 == 1.0 and lv.ttft_p50 == pytest.approx(0.2)
    assert lv.itl_p50 == 0.05
    assert LevelResult.from_json(json.loads(json.dumps(lv.to_json()))) == lv


def test_synthetic_prompts_are_numbered_and_sized() -> None:
    w = Workload(prompt_tokens=50, max_tokens=7)
    body = w.body(3, "m")
    text = body["messages"][0]["content"]
    assert text.startswith("Request 3: ") and len(text.split()) == 52
    assert body["max_tokens"] == 7 and body["model"] == "m" and "stream" not in body
    assert w.body(4, "m")["messages"][0]["content"] != text  # no shared prefix


def test_streaming_asks_for_usage_and_completions_send_a_prompt() -> None:
    body = Workload(stream=True, api="completions").body(0, "m")
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "prompt" in body and "messages" not in body
    assert Workload(api="completions").path() == "/completions"


def test_a_guide_template_is_sent_as_written() -> None:
    body = Workload(api="completions", prompt_template="Test request {i}: AAA").body(9, "m")
    assert body["prompt"] == "Test request 9: AAA"


def test_levels_bound_requests_and_time() -> None:
    assert Workload().level_requests(64) == 256
    assert Workload().level_requests(1) == 16
    assert Workload(duration=30).level_requests(8) is None
    assert Workload(duration=30, requests=5).level_requests(8) == 5
    with pytest.raises(UserError, match="--requests"):
        Workload(requests=0)
    assert parse_levels("1, 4,16") == (1, 4, 16)
    with pytest.raises(UserError, match="--concurrency"):
        parse_levels("0,4")


def test_a_dataset_cycles_and_its_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "one"}\n\n{"messages": [{"role": "user", "content": "two"}],'
                    ' "max_tokens": 3}\n')
    w = Workload(dataset=load_dataset(path), max_tokens=9)
    assert w.body(0, "m")["messages"] == [{"role": "user", "content": "one"}]
    assert w.body(1, "m")["max_tokens"] == 3
    assert w.body(2, "m")["max_tokens"] == 9
    path.write_text('{"prompt": "ok"}\n{"prompt": 1}\n')
    with pytest.raises(UserError, match=r"line 2: needs \"prompt\""):
        load_dataset(path)
    with pytest.raises(UserError, match="--dataset"):
        load_dataset(tmp_path / "missing.jsonl")


def _sweep(name: str, req_s: list[float]) -> Sweep:
    levels = [LevelResult(concurrency=c, requests=10, ok=10, seconds=10 / r, output_tokens=100,
                          prompt_tokens=0, latency_p95=c * 0.1)
              for c, r in zip((1, 4), req_s, strict=True)]
    return Sweep(endpoint=name, model="Qwen/Qwen3-8B", started=0.0, levels=levels,
                 workload=Workload().describe(), layout="dp1 tp1 pp1")


def test_side_by_side_gives_b_over_a() -> None:
    text = report.side_by_side(_sweep("tp", [2.0, 4.0]), _sweep("dp", [2.0, 10.0]))
    rows = text[text.index("B/A"):].splitlines()
    four = next(r.split() for r in rows if r.split()[:1] == ["4"])
    assert four[1:4] == ["4.00", "10.00", "2.50x"]


def test_the_table_shows_dashes_for_what_was_not_measured() -> None:
    text = report.table(_sweep("tp", [2.0, 4.0]))
    assert text.startswith("tp (dp1 tp1 pp1): Qwen/Qwen3-8B")
    assert text.splitlines()[3].split()[-5:] == ["-", "-", "-", "-", "0"]


def test_guide_profiles_exist_and_targets_are_checked() -> None:
    assert {"guide-001", "guide-002", "guide-004"} <= set(PROFILES)
    with pytest.raises(UserError, match="guide-002"):
        profile("guide-3")
    p = profile("guide-002")
    sweep = _sweep("x", [1.0, 1.0])
    assert [met for _, _, met in check(p, sweep)] == [False, False]  # levels not run
