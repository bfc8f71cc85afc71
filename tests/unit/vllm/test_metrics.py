"""Parsing vLLM's Prometheus /metrics into per-engine numbers."""

from __future__ import annotations

import pytest

from hpclaunch.vllm.metrics import parse_metrics, rates

# Shape of vLLM 0.33's exposition (HELP/TYPE lines, model_name and engine labels,
# counters with _total and _created series); numbers are made up.
SAMPLE = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen-vl"} 12.0
vllm:num_requests_running{engine="1",model_name="qwen-vl"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="qwen-vl"} 2.0
vllm:num_requests_waiting{engine="1",model_name="qwen-vl"} 0.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="qwen-vl"} 0.456
vllm:kv_cache_usage_perc{engine="1",model_name="qwen-vl"} 0.1
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="qwen-vl"} 1000.0
vllm:prompt_tokens_created{engine="0",model_name="qwen-vl"} 1.7e+09
vllm:prompt_tokens_total{engine="1",model_name="qwen-vl"} 500.0
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="qwen-vl"} 4000.0
vllm:generation_tokens_total{engine="1",model_name="qwen-vl"} 100.0
vllm:cache_config_info{block_size="16",cache_dtype="auto",engine="0",num_gpu_blocks="21738"} 1.0
"""


def test_gauges_per_engine() -> None:
    sample = parse_metrics(SAMPLE, taken=100.0)
    assert set(sample.engines) == {"0", "1"}
    e0 = sample.engines["0"]
    assert (e0.running, e0.waiting) == (12.0, 2.0)
    assert e0.kv_usage_pct == pytest.approx(45.6)
    assert sample.num_gpu_blocks == 21738 and sample.block_size == 16


def test_rates_come_from_two_samples() -> None:
    first = parse_metrics(SAMPLE, taken=100.0)
    later = parse_metrics(SAMPLE.replace("4000.0", "4400.0").replace("1000.0", "1200.0"),
                          taken=102.0)
    speeds = rates(first, later)
    assert speeds["0"] == pytest.approx((100.0, 200.0))
    assert speeds["1"] == (0.0, 0.0)
    assert rates(None, later)["0"] == (0.0, 0.0)


def test_v0_gauge_name_and_garbage_lines() -> None:
    text = 'vllm:gpu_cache_usage_perc{model_name="m"} 0.5\nnot a metric line\n'
    sample = parse_metrics(text)
    assert sample.engines["0"].kv_usage_pct == pytest.approx(50.0)
