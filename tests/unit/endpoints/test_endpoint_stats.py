"""Specification of hpclaunch.endpoints.stats: one snapshot agrees with ``status``."""

from __future__ import annotations

from hpclaunch.endpoints.stats import _log_rates_for_first_sample as first_sample_rates
from hpclaunch.endpoints.stats import from_metrics
from hpclaunch.vllm.logs.parse import parse
from hpclaunch.vllm.logs.read import LogChunk
from hpclaunch.vllm.metrics import parse_metrics

STATS_LINE = (
    "(APIServer pid=1) INFO 11-25 12:02:15 [loggers.py:330] Engine 000: Avg prompt throughput: "
    "1.0 tokens/s, Avg generation throughput: 2.5 tokens/s, Running: 1 reqs, Waiting: 0 "
    "reqs, GPU KV cache usage: 0.5%, Prefix cache hit rate: 0.0%"
)
METRICS = """\
vllm:num_requests_running{engine="0",model_name="q"} 1.0
vllm:num_requests_waiting{engine="0",model_name="q"} 0.0
vllm:prompt_tokens_total{engine="0",model_name="q"} 40.0
vllm:generation_tokens_total{engine="0",model_name="q"} 90.0
"""


def report(text: str):  # noqa: ANN201 - LogReport
    data = text.encode() + b"\n"
    return parse(LogChunk.from_bytes(data, b"", len(data)))


def test_a_single_snapshot_shows_the_logs_throughput_not_zero() -> None:
    rows = from_metrics(parse_metrics(METRICS), None)
    assert (rows[0].prompt_tps, rows[0].gen_tps) == (0.0, 0.0)  # one sample has no rate
    note = first_sample_rates(rows, report(STATS_LINE))
    assert (rows[0].prompt_tps, rows[0].gen_tps) == (1.0, 2.5)  # what `status` quotes
    assert rows[0].running == 1 and "from the log's last stats line" in note


def test_without_a_stats_line_the_first_snapshot_says_why_it_shows_zero() -> None:
    rows = from_metrics(parse_metrics(METRICS), None)
    note = first_sample_rates(rows, report("(APIServer pid=1) INFO 11-25 12:02:15 [x.py:1] hi"))
    assert rows[0].prompt_tps == 0.0 and "needs two /metrics samples" in note
