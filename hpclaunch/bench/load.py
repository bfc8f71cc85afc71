"""The load generator: ``concurrency`` asyncio clients sharing one kept HTTP session.

aiohttp's ``ClientSession`` keeps its connections open across requests (a sweep must measure
the server, not TCP handshakes) and reads streamed replies line by line, so time to first
token and the gaps between chunks are measured where they arrive. It costs about 150 us of
CPU a request on loopback where httpx costs about 1,100 us (docs/bench.md), and the
generator must never be what limits a fast server. Each client sends its next request as
soon as its last one ended (a closed loop, like vLLM's own ``benchmark_serving`` at fixed
concurrency); a level ends when its request count or its time is used up.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from hpclaunch.bench.results import LevelResult, RequestResult, summarise
from hpclaunch.bench.workload import Workload

OnResult = Callable[[int, RequestResult], None]
FAILURES = (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, TypeError)


def _error_kind(exc: BaseException) -> str:
    """A short, countable name for what went wrong with one request."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection refused"
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                        aiohttp.ClientOSError)):
        return "connection dropped"
    if isinstance(exc, (ValueError, KeyError, TypeError)):
        return "bad reply"
    return type(exc).__name__


def _usage(data: dict[str, Any]) -> tuple[int, int] | None:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    return int(usage.get("completion_tokens") or 0), int(usage.get("prompt_tokens") or 0)


async def _plain(session: aiohttp.ClientSession, url: str, body: bytes) -> RequestResult:
    start = time.perf_counter()
    async with session.post(url, data=body) as reply:
        data = await reply.read()
        if reply.status != 200:
            return RequestResult(time.perf_counter() - start, error=f"HTTP {reply.status}")
    usage = _usage(json.loads(data))
    latency = time.perf_counter() - start
    if usage is None:
        return RequestResult(latency, error="no usage in reply")
    return RequestResult(latency, usage[0], usage[1])


def _has_text(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning") \
                or choice.get("text"):
            return True
    return False


async def _streamed(session: aiohttp.ClientSession, url: str, body: bytes) -> RequestResult:
    start = time.perf_counter()
    first: float | None = None
    last = start
    gaps: list[float] = []
    usage = None
    async with session.post(url, data=body) as reply:
        if reply.status != 200:
            await reply.read()
            return RequestResult(time.perf_counter() - start, error=f"HTTP {reply.status}")
        async for raw in reply.content:  # one server-sent event line at a time
            if not raw.startswith(b"data: ") or raw.startswith(b"data: [DONE]"):
                continue
            chunk = json.loads(raw[6:])
            now = time.perf_counter()
            if _has_text(chunk):
                if first is None:
                    first = now
                else:
                    gaps.append(now - last)
                last = now
            usage = _usage(chunk) or usage
    latency = time.perf_counter() - start
    if usage is None:
        return RequestResult(latency, error="no usage in reply")
    return RequestResult(latency, usage[0], usage[1],
                         ttft=None if first is None else first - start, gaps=gaps)


async def run_level(session: aiohttp.ClientSession, url: str, model: str, workload: Workload,
                    concurrency: int, on_result: OnResult | None = None) -> LevelResult:
    """One level: ``concurrency`` clients until the level's requests or seconds are used."""
    limit = workload.level_requests(concurrency)
    numbers = itertools.count() if limit is None else iter(range(limit))
    results: list[RequestResult] = []
    send = _streamed if workload.stream else _plain
    start = time.perf_counter()
    deadline = start + workload.level_seconds()

    async def client_loop() -> None:
        for i in numbers:
            if time.perf_counter() >= deadline:
                return
            body = json.dumps(workload.body(i, model)).encode()
            sent = time.perf_counter()
            try:
                result = await send(session, url, body)
            except FAILURES as exc:
                result = RequestResult(time.perf_counter() - sent, error=_error_kind(exc))
            results.append(result)
            if on_result is not None:
                on_result(concurrency, result)

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return summarise(concurrency, results, time.perf_counter() - start)


async def sweep_levels(base_url: str, api_key: str, model: str, workload: Workload,
                       on_result: OnResult | None = None) -> list[LevelResult]:
    """Every level in order, over one session whose pool fits the largest level."""
    most = max(workload.concurrency)
    connector = aiohttp.TCPConnector(limit=most, limit_per_host=most)
    timeout = aiohttp.ClientTimeout(total=workload.timeout,
                                    sock_connect=min(10.0, workload.timeout))
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     headers=headers) as session:
        url = base_url.rstrip("/") + workload.path()
        levels = []
        for c in workload.concurrency:
            levels.append(await run_level(session, url, model, workload, c, on_result))
            if levels[-1].ok == 0:
                break  # nothing got through: more load would only repeat the errors
        return levels


def run_sweep(base_url: str, api_key: str, model: str, workload: Workload,
              on_result: OnResult | None = None) -> list[LevelResult]:
    """:func:`sweep_levels` on a fresh event loop (uvloop's when installed: less overhead
    per request, so the generator is never what limits a fast server)."""
    coro = sweep_levels(base_url, api_key, model, workload, on_result)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
