"""Loading progress from vLLM's start-up output: which phase, how far, how long it has left.

vLLM prints where it is while it loads: the checkpoint-shard bar, the weights' time,
torch.compile, the KV cache size, the CUDA graph capture bars, the engine's total. A user
watching ``hpclaunch wait`` sees "STARTING 300s"; this turns those lines into "loading
weights 45% (5/11 shards), ETA 0:12". Phase rules are rows (a cheap substring, a pattern,
the phase it means), so a line vLLM renames costs one row.

Parsing is incremental: :class:`LogFollower` reads only the bytes appended since the last
poll (never more than :data:`MAX_READ`), so a poll costs the same on a 10 MB log as on a
10 kB one. tqdm bars end their updates with ``\\r`` rather than a newline; both split lines.
"""

from __future__ import annotations

import codecs
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

WEIGHTS, COMPILE, KV, GRAPHS, SERVER = (
    "loading weights", "torch.compile", "KV cache", "CUDA graphs", "starting API server")
PHASES = (WEIGHTS, COMPILE, KV, GRAPHS, SERVER)
MAX_READ = 256 * 1024  # per poll; a log that grew more than this is read from its tail


@dataclass(frozen=True)
class LoadProgress:
    """Where a loading server is: the phase, how far into it, and its remaining seconds."""

    phase: str = ""
    percent: float | None = None
    detail: str = ""
    eta: float | None = None  # seconds left in this phase, from tqdm's own estimate
    elapsed: float = 0.0  # seconds since this phase was first seen
    done: tuple[tuple[str, float], ...] = ()  # finished phases, with vLLM's reported seconds

    def line(self) -> str:
        """``loading weights 45% (5/11 shards), ETA 0:12`` - empty before the first phase."""
        if not self.phase:
            return ""
        text = self.phase
        if self.percent is not None:
            text += f" {self.percent:.0f}%"
        if self.detail:
            text += f" ({self.detail})"
        if self.eta is not None and self.percent is not None and self.percent < 100:
            text += f", ETA {_clock(self.eta)}"
        elif self.elapsed >= 1:
            text += f", {_clock(self.elapsed)} so far"
        return text


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def _seconds(clock: str) -> float | None:
    """tqdm's ``01:23`` or ``1:02:03`` in seconds; ``?`` (no estimate yet) is None."""
    try:
        value = 0.0
        for part in clock.split(":"):
            value = value * 60 + int(part)
        return value
    except ValueError:
        return None


_BAR_TAIL = r"(?P<n>\d+)/(?P<total>\d+) \[(?P<spent>[\d:]+)<(?P<left>[\d:?]+)"


@dataclass(frozen=True)
class _Rule:
    needle: str  # a substring every matching line has: most lines are rejected by `in`
    pattern: re.Pattern[str]
    phase: str
    finishes: bool = False  # the line reports the phase's total time (group "secs")
    unit: str = ""  # what a bar counts, for the detail text


RULES: tuple[_Rule, ...] = (
    _Rule("Starting to load model", re.compile(r"Starting to load model"), WEIGHTS),
    _Rule("checkpoint shards", re.compile(
        r"Loading (?:\w+ )?checkpoint shards:\s*(?P<pct>\d+)% Completed \| " + _BAR_TAIL),
        WEIGHTS, unit="shards"),
    _Rule("Loading weights took", re.compile(r"Loading weights took (?P<secs>[\d.]+) sec"),
          WEIGHTS, finishes=True),
    _Rule("torch.compile", re.compile(r"for vLLM's torch\.compile"), COMPILE),
    _Rule("Dynamo bytecode", re.compile(r"Dynamo bytecode transform time"), COMPILE),
    _Rule("torch.compile t", re.compile(
        r"torch\.compile (?:took|takes) (?P<secs>[\d.]+) s in total"), COMPILE, finishes=True),
    _Rule("profiling", re.compile(r"(?:Memory profiling takes|profiling/warmup run took)"), KV),
    _Rule("Available KV cache memory", re.compile(
        r"Available KV cache memory: (?P<detail>-?[\d.]+ GiB)"), KV),
    _Rule("KV cache size", re.compile(r"KV cache size: (?P<detail>[\d,]+ tokens)"), KV),
    _Rule("Capturing CUDA graphs", re.compile(
        r"Capturing CUDA graphs \((?P<kind>[^)]*)\):\s*(?P<pct>\d+)%\|[^|]*\| " + _BAR_TAIL),
        GRAPHS, unit="graphs"),
    _Rule("Capturing", re.compile(r"Capturing (?:cudagraphs|the model for CUDA graphs)"),
          GRAPHS),
    _Rule("Graph capturing finished", re.compile(
        r"Graph capturing finished in (?P<secs>[\d.]+) sec"), GRAPHS, finishes=True),
    _Rule("init engine", re.compile(r"init engine \(profile, create kv cache, warmup model\) "
                                    r"took (?P<secs>[\d.]+)"), SERVER),
    _Rule("Starting vLLM", re.compile(r"Starting vLLM (?:API )?server"), SERVER),
)
_NEEDLES = tuple(rule.needle for rule in RULES)
_LINES = re.compile(r"[\r\n]")


class LoadTracker:
    """Loading state built from log text fed in order; the phase only moves forward.

    With data parallel, engines interleave their lines: the furthest phase any engine
    reached is shown (a later engine's shard bar does not send the display back).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._rank = -1
        self._phase = ""
        self._since = 0.0
        self._percent: float | None = None
        self._detail = ""
        self._eta: float | None = None
        self._done: dict[str, float] = {}
        self._pending = ""  # an unterminated last line (tqdm's latest \r update)

    def feed(self, text: str) -> None:
        parts = _LINES.split(self._pending + text)
        self._pending = parts.pop()
        for line in parts:
            self._line(line)

    def drop_partial(self) -> None:
        """Forget an unterminated line (the bytes after it were skipped)."""
        self._pending = ""

    def progress(self) -> LoadProgress:
        if self._pending:  # tqdm's newest update has no terminator until the next one
            self._line(self._pending)
        return LoadProgress(
            phase=self._phase, percent=self._percent, detail=self._detail, eta=self._eta,
            elapsed=self.clock() - self._since if self._phase else 0.0,
            done=tuple(self._done.items()))

    def _line(self, line: str) -> None:
        if not any(needle in line for needle in _NEEDLES):
            return
        for rule in RULES:
            if rule.needle not in line:
                continue
            m = rule.pattern.search(line)
            if m is not None:
                self._apply(rule, m)
                return

    def _apply(self, rule: _Rule, m: re.Match[str]) -> None:
        rank = PHASES.index(rule.phase)
        if rank < self._rank:
            return
        if rank > self._rank:
            self._rank, self._phase, self._since = rank, rule.phase, self.clock()
            self._percent, self._detail, self._eta = None, "", None
        groups = m.groupdict()
        if groups.get("pct") is not None:
            self._percent = float(groups["pct"])
            kind = f"{groups['kind']} " if groups.get("kind") else ""
            self._detail = f"{kind}{groups['n']}/{groups['total']} {rule.unit}".strip()
            self._eta = _seconds(groups["left"])
        elif groups.get("detail"):
            self._detail = groups["detail"]
        if rule.finishes:
            self._done[rule.phase] = float(groups["secs"])
            self._percent, self._eta = 100.0, None


class _Stat(Protocol):
    @property
    def size(self) -> int: ...


class _Reader(Protocol):
    """What :class:`LogFollower` needs of a transport (local files or SFTP)."""

    def stat(self, path: str) -> _Stat | None: ...

    def read_range(self, path: str, offset: int, length: int) -> bytes: ...


class LogFollower:
    """Feeds a :class:`LoadTracker` what was appended to one log since the last poll."""

    def __init__(self, tracker: LoadTracker | None = None) -> None:
        self.tracker = tracker or LoadTracker()
        self.offset = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def poll(self, reader: _Reader, path: str) -> LoadProgress:
        st = reader.stat(path) if path else None
        if st is not None:
            if st.size < self.offset:  # a new log under the same name
                self.tracker, self.offset = LoadTracker(self.tracker.clock), 0
            start = max(self.offset, st.size - MAX_READ)
            if start > self.offset:
                self.tracker.drop_partial()
                self._decoder.reset()
            if st.size > start:
                data = reader.read_range(path, start, st.size - start)
                self.offset = start + len(data)
                self.tracker.feed(self._decoder.decode(data))
        return self.tracker.progress()
