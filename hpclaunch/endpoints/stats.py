"""Live numbers of one endpoint: per-engine throughput, queue and KV usage.

Two sources: vLLM's ``/metrics`` (preferred: always present, exact gauges) and
the stats lines in the realtime log (10 s averages; absent when vLLM disabled
them). The result says which one it used, so nobody compares apples and pears.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpclaunch.registry import Record
    from hpclaunch.remote.transport import Transport
    from hpclaunch.vllm.logs.report import LogReport
    from hpclaunch.vllm.metrics import MetricsSample


@dataclass
class EngineRow:
    engine: str
    prompt_tps: float
    gen_tps: float
    running: int
    waiting: int
    kv_usage_pct: float
    prefix_hit_pct: float | None = None
    age_s: float | None = None


@dataclass
class EndpointStats:
    name: str
    state: str
    source: str  # "metrics", "log" or "none"
    engines: list[EngineRow] = field(default_factory=list)
    startup: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def total(self) -> EngineRow | None:
        if not self.engines:
            return None
        rows = self.engines
        return EngineRow(
            engine="all", prompt_tps=sum(r.prompt_tps for r in rows),
            gen_tps=sum(r.gen_tps for r in rows), running=sum(r.running for r in rows),
            waiting=sum(r.waiting for r in rows),
            kv_usage_pct=sum(r.kv_usage_pct for r in rows) / len(rows),
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        total = self.total
        data["total"] = asdict(total) if total else None
        return data


def startup_facts(report: LogReport | None) -> dict[str, Any]:
    if report is None:
        return {}
    f = report.startup
    # V0 (and early V1) print "# GPU blocks: N" instead of a token count; at the default
    # block size of 16 that is N x 16 tokens, what newer versions print as "GPU KV cache size".
    tokens = f.kv_cache_tokens or [blocks * 16 for blocks in f.gpu_blocks]
    facts: dict[str, Any] = {
        "kv_cache_tokens_per_engine": tokens or None,
        "max_concurrency_per_engine": f.max_concurrency or None,
        "max_concurrency_for_tokens": f.for_tokens,
        "kv_cache_gib": f.kv_cache_gib or None,
        "model_load_gib": f.model_load_gib,
        "startup_seconds": f.init_engine_seconds,
        "simulated": f.simulated,
    }
    return {k: v for k, v in facts.items() if v is not None}


def from_log(report: LogReport, now: float | None = None) -> list[EngineRow]:
    from datetime import datetime

    current = datetime.fromtimestamp(now or time.time())
    rows = []
    for engine, st in sorted(report.stats.items()):
        age = (current - st.timestamp).total_seconds() if st.timestamp else None
        rows.append(EngineRow(engine=engine, prompt_tps=st.prompt_tps, gen_tps=st.gen_tps,
                              running=st.running, waiting=st.waiting,
                              kv_usage_pct=st.kv_usage_pct, prefix_hit_pct=st.prefix_hit_pct,
                              age_s=age))
    return rows


def from_metrics(current: MetricsSample, previous: MetricsSample | None) -> list[EngineRow]:
    from hpclaunch.vllm.metrics import rates

    speeds = rates(previous, current)
    return [EngineRow(engine=f"{int(e):03d}" if e.isdigit() else e,
                      prompt_tps=speeds[e][0], gen_tps=speeds[e][1], running=int(s.running),
                      waiting=int(s.waiting), kv_usage_pct=s.kv_usage_pct, age_s=0.0)
            for e, s in sorted(current.engines.items())]


def scrape(transport: Transport, rec: Record) -> MetricsSample | None:
    from hpclaunch.vllm.metrics import parse_metrics

    if not rec.host or not rec.port:
        return None
    status, body = transport.http_get(rec.host, rec.port, "/metrics",
                                      headers={"Authorization": f"Bearer {rec.api_key}"},
                                      timeout=3.0)
    if status != 200:
        return None
    sample = parse_metrics(body.decode("utf-8", errors="replace"))
    return sample if sample.engines else None


def collect(rec: Record, report: LogReport | None, transport: Transport,
            previous: MetricsSample | None = None, *, use_metrics: bool = True,
            ) -> tuple[EndpointStats, MetricsSample | None]:
    """Stats for one endpoint; returns the metrics sample for the next call's rates."""
    result = EndpointStats(name=rec.name, state=rec.state, source="none",
                           startup=startup_facts(report))
    sample = scrape(transport, rec) if use_metrics and rec.state == "READY" else None
    if sample is not None:
        result.source = "metrics"
        result.engines = from_metrics(sample, previous)
        if previous is None:
            result.note = _log_rates_for_first_sample(result.engines, report)
        return result, sample
    if report is not None and report.stats:
        result.source = "log"
        result.engines = from_log(report)
    elif report is not None and report.startup.stats_disabled:
        result.note = ("vLLM disabled its stats lines (several API servers); "
                       "/metrics was not reachable either")
    else:
        result.note = "no stats yet (vLLM logs them only while serving requests)"
    return result, sample


def _log_rates_for_first_sample(rows: list[EngineRow], report: LogReport | None) -> str:
    """Throughput for a first /metrics sample (which has none): the log's stats line.

    One sample of counters gives no rate, and showing 0 while ``status`` quotes the
    log's ``Avg prompt throughput: 1.0 tokens/s`` for the same moment is a contradiction;
    the log's average is what both then show.
    """
    logged = report.stats if report is not None else {}

    def key(engine: str) -> str:
        return str(int(engine)) if engine.isdigit() else engine

    by_engine = {key(e): st for e, st in logged.items()}
    matched = 0
    for row in rows:
        st = by_engine.get(key(row.engine))
        if st is None and len(rows) == 1 and "aggregated" in by_engine:
            st = by_engine["aggregated"]
        if st is not None:
            row.prompt_tps, row.gen_tps = st.prompt_tps, st.gen_tps
            matched += 1
    if matched == len(rows) and rows:
        return ("throughput from the log's last stats line (an average over vLLM's stats "
                "interval); gauges from /metrics")
    return "throughput needs two /metrics samples; shown as 0 on the first"
