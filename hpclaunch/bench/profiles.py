"""The guides' load tests as ``bench --profile`` presets, with the targets they set.

Each row says where its numbers come from; a guide that sets no level or size is given a
stated choice, never a silent one.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpclaunch.bench.results import LevelResult, Sweep
from hpclaunch.errors import UserError


@dataclass(frozen=True)
class Target:
    """A guide's goal at one level: ``metric`` (a LevelResult field) ``op`` ``value``."""

    concurrency: int
    metric: str
    op: str  # "<" or ">="
    value: float
    says: str  # the guide's own words


@dataclass(frozen=True)
class Profile:
    name: str
    source: str
    concurrency: tuple[int, ...]
    prompt_tokens: int
    max_tokens: int
    stream: bool = False
    api: str = "chat"
    requests: int | None = None
    prompt_template: str = ""
    targets: tuple[Target, ...] = ()


PROFILES = {p.name: p for p in (
    Profile("guide-001", "guide 001 (RTX 5090, DeepSeek-R1-0528-Qwen3-8B, max-num-seqs 512): "
            "aggregate tokens/s and P50/P95/P99 latency; it names no levels or sizes, so "
            "levels up to its 512 sequences and 512-token prompts / 256-token replies",
            concurrency=(1, 32, 128, 512), prompt_tokens=512, max_tokens=256),
    Profile("guide-002", "guide 002 (RTX 4090, Qwen 1.5B): sequential, 5, 10 and 50 "
            "concurrent with time to first token; short chat prompts (64 words, 128 tokens "
            "out: the guide gives no sizes)",
            concurrency=(1, 5, 10, 50), prompt_tokens=64, max_tokens=128, stream=True,
            targets=(
                Target(5, "latency_p99", "<", 3.0, "Concurrent (5): 7.57s -> <3.0s"),
                Target(50, "latency_p99", "<", 20.0, "Concurrent (50): TBD -> <20s"),
            )),
    Profile("guide-004", "guide 004 (Mistral-7B AWQ): its parallel test, /v1/completions "
            "with 'Test request {i}: ' + 1000 x 'A' and max_tokens 100, at its 2 (baseline) "
            "to 40 parallel requests",
            concurrency=(2, 10, 20, 40), prompt_tokens=1000, max_tokens=100, api="completions",
            prompt_template="Test request {i}: " + "A" * 1000,
            targets=(
                Target(20, "req_per_s", ">=", 10.0, "10 requests/second with 20 parallel"),
                Target(20, "latency_p95", "<", 10.0, "<10 seconds per inference"),
            )),
)}


def profile(name: str) -> Profile:
    if name not in PROFILES:
        raise UserError(f"--profile {name!r} is not known; choose one of "
                        f"{', '.join(sorted(PROFILES))}")
    return PROFILES[name]


def check(p: Profile, sweep: Sweep) -> list[tuple[Target, float | None, bool]]:
    """Each target with the measured value and whether it was met (no value: not met)."""
    by_level: dict[int, LevelResult] = {lv.concurrency: lv for lv in sweep.levels}
    out = []
    for t in p.targets:
        level = by_level.get(t.concurrency)
        value = getattr(level, t.metric) if level is not None else None
        met = value is not None and (value < t.value if t.op == "<" else value >= t.value)
        out.append((t, value, met))
    return out
