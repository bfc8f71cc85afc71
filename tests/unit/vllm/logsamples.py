"""Shared helpers for the specifications of hpclaunch.vllm.logs: sample logs and parsing them.

The samples in tests/data/logs are real log excerpts (or faithful reconstructions of real
formats); each file's leading ``#`` lines name its sources and are not part of the log.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from hpclaunch.vllm.logs.parse import parse
from hpclaunch.vllm.logs.read import LogChunk
from hpclaunch.vllm.logs.report import LogReport

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
