"""Numbers of a sweep: one :class:`RequestResult` per request, summed up per concurrency level.

Tokens come from the server's ``usage`` (never guessed from text), so a sweep of a reasoning
model counts its thinking too. Percentiles interpolate linearly between ranks (numpy's
default), which keeps P99 meaningful for small samples.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RequestResult:
    """One request: when it ended, how long it took, what it produced, or why it failed."""

    latency: float
    output_tokens: int = 0
    prompt_tokens: int = 0
    ttft: float | None = None
    gaps: list[float] = field(default_factory=list)  # between streamed chunks
    error: str = ""


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of ``values``, linear between ranks; None if empty."""
    if not values:
        return None
    data = sorted(values)
    rank = (len(data) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


@dataclass
class LevelResult:
    """One concurrency level of a sweep."""

    concurrency: int
    requests: int
    ok: int
    seconds: float
    output_tokens: int
    prompt_tokens: int
    errors: dict[str, int] = field(default_factory=dict)
    latency_p50: float | None = None
    latency_p95: float | None = None
    latency_p99: float | None = None
    ttft_p50: float | None = None
    ttft_p95: float | None = None
    itl_p50: float | None = None
    itl_p95: float | None = None

    @property
    def req_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def tok_per_s(self) -> float:
        return self.output_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["req_per_s"] = round(self.req_per_s, 3)
        data["tok_per_s"] = round(self.tok_per_s, 3)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LevelResult:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def summarise(concurrency: int, results: list[RequestResult], seconds: float) -> LevelResult:
    ok = [r for r in results if not r.error]
    errors: dict[str, int] = {}
    for r in results:
        if r.error:
            errors[r.error] = errors.get(r.error, 0) + 1
    latencies = [r.latency for r in ok]
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    gaps = [g for r in ok for g in r.gaps]
    return LevelResult(
        concurrency=concurrency, requests=len(results), ok=len(ok), seconds=seconds,
        output_tokens=sum(r.output_tokens for r in ok),
        prompt_tokens=sum(r.prompt_tokens for r in ok), errors=errors,
        latency_p50=percentile(latencies, 50), latency_p95=percentile(latencies, 95),
        latency_p99=percentile(latencies, 99),
        ttft_p50=percentile(ttfts, 50), ttft_p95=percentile(ttfts, 95),
        itl_p50=percentile(gaps, 50), itl_p95=percentile(gaps, 95))


@dataclass
class Sweep:
    """One endpoint's sweep: what was sent, to what, and each level's numbers."""

    endpoint: str
    model: str
    started: float
    workload: dict[str, Any]
    levels: list[LevelResult]
    preset: str = ""
    layout: str = ""
    flags: str = ""
    simulated: bool = False

    @property
    def label(self) -> str:
        return f"{self.endpoint} ({self.layout})" if self.layout else self.endpoint

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["levels"] = [level.to_json() for level in self.levels]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sweep:
        known = set(cls.__dataclass_fields__)
        fields = {k: v for k, v in data.items() if k in known}
        fields["levels"] = [LevelResult.from_json(x) for x in data.get("levels", [])]
        return cls(**fields)
