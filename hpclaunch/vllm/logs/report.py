"""What reading a log produces: startup facts, per-engine stats, a failure, the report.

Plain dataclasses with no parsing in them, so that callers (``status``, ``stats``,
``advise``) depend on the shape of the result and not on how a line is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["EngineStats", "Failure", "LogReport", "StartupFacts", "StatsTotals"]

@dataclass
class StartupFacts:
    """What vLLM printed while starting: memory, KV cache capacity, timings, two notices.

    The lists hold one value per printing process, in log order: ``kv_cache_tokens`` and
    ``max_concurrency`` are printed once per engine (a DP=4 server prints four), and
    ``kv_cache_gib`` once per worker (TP workers each print theirs).  Scalars are the first value
    seen.  ``stats_disabled``: vLLM said it will not log stats (more than one API server);
    ``simulated``: the log comes from hpclaunch's vLLM stand-in, not a real server.
    """

    model_load_gib: float | None = None
    model_load_seconds: float | None = None
    kv_cache_gib: list[float] = field(default_factory=list)
    kv_cache_tokens: list[int] = field(default_factory=list)
    max_concurrency: list[float] = field(default_factory=list)
    for_tokens: int | None = None
    gpu_blocks: list[int] = field(default_factory=list)
    graph_capture_seconds: float | None = None
    graph_capture_gib: float | None = None
    init_engine_seconds: float | None = None
    stats_disabled: bool = False
    simulated: bool = False

    @property
    def engines(self) -> int:
        """Engines that reported their KV cache (0 when none did yet)."""
        return max(len(self.max_concurrency), len(self.kv_cache_tokens), len(self.gpu_blocks))

    @property
    def total_concurrency(self) -> float | None:
        """Sum over engines of "Maximum concurrency for L tokens per request"."""
        return sum(self.max_concurrency) if self.max_concurrency else None


@dataclass(frozen=True)
class EngineStats:
    """The last periodic stats line of one engine.

    ``engine`` is ``"000"``, ``"001"``, ... (V1), ``"aggregated"`` for ``N Engines Aggregated``
    (``n_engines`` = N), or ``"0"`` for the V0 engine.  ``timestamp`` is local time on the node
    that wrote the log; the year is inferred (see :func:`~hpclaunch.vllm.logs.parse.parse`).
    """

    engine: str
    prompt_tps: float
    gen_tps: float
    running: int
    waiting: int
    kv_usage_pct: float
    prefix_hit_pct: float | None = None
    preemptions: int | None = None
    swapped: int | None = None
    deferred: int | None = None
    cpu_kv_usage_pct: float | None = None
    external_prefix_hit_pct: float | None = None
    mm_hit_pct: float | None = None
    n_engines: int = 1
    timestamp: datetime | None = None
    line: str = ""


@dataclass(frozen=True)
class StatsTotals:
    """Stats summed over engines (throughput, requests) with the KV usage averaged."""

    engines: int
    prompt_tps: float
    gen_tps: float
    running: int
    waiting: int
    kv_usage_pct: float
    preemptions: int | None
    newest: datetime | None
    oldest: datetime | None


@dataclass(frozen=True)
class Failure:
    """Why a server did not come up or died, and what to change.

    ``code`` is stable (tests and the CLI key on it); ``reason`` and ``fix`` are one line each
    and quote the numbers from the log; ``line`` is the log message that proved it.
    """

    code: str
    reason: str
    fix: str
    line: str


@dataclass
class LogReport:
    """Everything :func:`~hpclaunch.vllm.logs.parse.parse` learnt from one log chunk.

    ``started``: any vLLM log line was seen.  ``ready_line``: uvicorn's "Application startup
    complete." was seen (the port accepts connections from then on; callers still probe
    /health).  ``listen_url``, ``version`` and ``served_model`` are None until printed.
    ``stats`` maps an engine to its last stats line.  ``failure`` is the most root cause found,
    or None.  ``tail_text`` is the text :meth:`last_lines` reads.
    """

    exists: bool = False
    size: int = 0
    mtime: float | None = None
    started: bool = False
    ready_line: bool = False
    listen_url: str | None = None
    version: str | None = None
    served_model: str | None = None
    startup: StartupFacts = field(default_factory=StartupFacts)
    stats: dict[str, EngineStats] = field(default_factory=dict)
    failure: Failure | None = None
    tail_text: str = field(default="", repr=False)

    def totals(self) -> StatsTotals | None:
        """Sum the last stats of every engine; None when no stats line was seen.

        An ``N Engines Aggregated`` line is already a total, so when one is present it is used
        alone.  Engines that went idle stop logging; their last line stays in the sum (it
        normally shows 0 running), and ``oldest`` tells how stale the stalest one is.
        """
        if not self.stats:
            return None
        rows = (
            [self.stats["aggregated"]] if "aggregated" in self.stats else list(self.stats.values())
        )
        stamps = [r.timestamp for r in rows if r.timestamp is not None]
        preempt = [r.preemptions for r in rows if r.preemptions is not None]
        return StatsTotals(
            engines=sum(r.n_engines for r in rows),
            prompt_tps=sum(r.prompt_tps for r in rows),
            gen_tps=sum(r.gen_tps for r in rows),
            running=sum(r.running for r in rows),
            waiting=sum(r.waiting for r in rows),
            kv_usage_pct=sum(r.kv_usage_pct for r in rows) / len(rows),
            preemptions=sum(preempt) if preempt else None,
            newest=max(stamps) if stamps else None,
            oldest=min(stamps) if stamps else None,
        )

    def last_lines(self, n: int = 20) -> list[str]:
        """The last ``n`` lines of the log, as a terminal would show them.

        Progress bars redraw with a bare ``\\r``; only the text after the last one is kept.  The
        final line may be incomplete (the file is still being written); it is shown anyway.
        """
        if n <= 0 or not self.tail_text:
            return []
        text = self.tail_text.rstrip("\r\n")
        # Look back only as far as needed: ~n lines of a few hundred characters.
        window = max(4096, n * 400)
        piece = text[-window:]
        lines = piece.split("\n")
        if len(lines) <= n and len(piece) < len(text):
            lines = text.split("\n")
        return [ln.rstrip("\r").rsplit("\r", 1)[-1] for ln in lines[-n:]]

