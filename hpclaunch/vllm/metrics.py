"""vLLM's Prometheus ``/metrics``: the live numbers, when the node's port is reachable.

The log's stats lines are averages over the last interval and vanish when vLLM
runs several API servers (0.33's default with data parallelism); ``/metrics``
has per-engine gauges always. Throughput needs two samples (the token counters
are totals since start), so :func:`rates` takes a previous sample.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

_LINE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+'
                   r'(?P<value>[-+0-9.eEinfNa]+)(?:\s+\d+)?$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

# The series read, and the EngineSample field each feeds (traced to vLLM's source by
# tests/unit/vllm/test_vllm_source.py).  Counters carry prometheus_client's "_total".
SERIES: dict[str, str] = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_usage_pct",
    "vllm:gpu_cache_usage_perc": "kv_usage_pct",  # V0 name
    "vllm:prompt_tokens_total": "prompt_tokens",
    "vllm:generation_tokens_total": "generation_tokens",
    "vllm:request_success_total": "requests",
}
ENGINE_LABEL = "engine"  # absent before V1: everything is engine "0"
CACHE_INFO = "vllm:cache_config_info"
CACHE_INFO_LABELS = ("num_gpu_blocks", "block_size")


@dataclass
class EngineSample:
    running: float = 0.0
    waiting: float = 0.0
    kv_usage_pct: float = 0.0
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    requests: float = 0.0


@dataclass
class MetricsSample:
    """One scrape: per-engine gauges and counters, keyed by the ``engine`` label."""

    taken: float
    engines: dict[str, EngineSample] = field(default_factory=dict)
    num_gpu_blocks: int | None = None
    block_size: int | None = None

    def totals(self) -> dict[str, float]:
        """Sums over engines: what an A/B comparison of two servers needs."""
        engines = self.engines.values()
        return {"requests": sum(e.requests for e in engines),
                "gen_tokens": sum(e.generation_tokens for e in engines),
                "prompt_tokens": sum(e.prompt_tokens for e in engines),
                "running": sum(e.running for e in engines)}


def parse_metrics(text: str, taken: float | None = None) -> MetricsSample:
    """Parse Prometheus text exposition; unknown series are ignored."""
    sample = MetricsSample(taken=time.time() if taken is None else taken)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line.strip())
        if not match:
            continue
        name = match["name"]
        labels = dict(_LABEL.findall(match["labels"] or ""))
        try:
            value = float(match["value"])
        except ValueError:
            continue
        engine = labels.get(ENGINE_LABEL, "0")
        if name == CACHE_INFO:
            blocks, size = (labels.get(key) for key in CACHE_INFO_LABELS)
            sample.num_gpu_blocks = int(blocks) if blocks and blocks.isdigit() else None
            sample.block_size = int(size) if size and size.isdigit() else None
            continue
        target = SERIES.get(name)
        if target is None:
            continue
        eng = sample.engines.setdefault(engine, EngineSample())
        if target == "kv_usage_pct":
            value *= 100.0  # exported as a 0-1 fraction
        # Counters may come in several series (finished_reason=stop|length|...): add up.
        is_counter = target.endswith("tokens") or target == "requests"
        setattr(eng, target, getattr(eng, target) + value if is_counter else value)
    return sample


def rates(previous: MetricsSample | None, current: MetricsSample) -> dict[str, tuple[float, float]]:
    """Prompt and generation tokens/s per engine between two scrapes (0 without a previous)."""
    out: dict[str, tuple[float, float]] = {}
    for engine, now in current.engines.items():
        before = previous.engines.get(engine) if previous else None
        dt = current.taken - previous.taken if previous else 0.0
        if before is None or dt <= 0:
            out[engine] = (0.0, 0.0)
            continue
        out[engine] = (max(0.0, now.prompt_tokens - before.prompt_tokens) / dt,
                       max(0.0, now.generation_tokens - before.generation_tokens) / dt)
    return out
