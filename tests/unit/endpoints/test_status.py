"""Specification of the reasons hpclaunch.endpoints.status gives for a dead server."""

from __future__ import annotations

from hpclaunch.endpoints.status import _last_lines_hint
from hpclaunch.vllm.logs.parse import parse
from hpclaunch.vllm.logs.read import LogChunk

PREFIX = "(APIServer pid=7) INFO 11-27 09:00:0{i} [api_server.py:1] "
HEALTH = PREFIX + 'INFO:     127.0.0.1:4{i}000 - "GET /health HTTP/1.1" 200 OK'
METRICS = PREFIX + 'INFO:     127.0.0.1:4{i}001 - "GET /metrics HTTP/1.1" 200 OK'


def hint(*lines: str) -> str:
    data = "\n".join(lines).encode() + b"\n"
    return _last_lines_hint(parse(LogChunk.from_bytes(data, b"", len(data))))


def test_a_killed_server_reason_does_not_quote_its_health_probes() -> None:
    startup = PREFIX.format(i=0) + "Application startup complete."
    probes = [line.format(i=i) for i in range(5) for line in (HEALTH, METRICS)]
    reason = hint(startup, *probes)
    assert "/health" not in reason and "200 OK" not in reason
    assert "Application startup complete." in reason


def test_only_successful_requests_in_the_tail_is_said_as_such() -> None:
    reason = hint(*[HEALTH.format(i=i) for i in range(5)])
    assert reason == "; the log ends with requests that succeeded, no error (killed from outside?)"


def test_failed_requests_and_errors_are_kept() -> None:
    failed = PREFIX.format(i=1) + 'INFO:     127.0.0.1:1 - "POST /v1/chat/completions HTTP/1.1" 500'
    error = PREFIX.format(i=2).replace("INFO", "ERROR") + "EngineCore died unexpectedly"
    reason = hint(HEALTH.format(i=0), failed, error, HEALTH.format(i=3))
    assert "500" in reason and "EngineCore died" in reason and "/health" not in reason
