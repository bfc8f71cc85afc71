"""The progress lines vLLM 0.33 prints while an engine loads, spread over real time on demand.

Checkpoint shards (a tqdm bar whose updates end in a newline, vLLM's own bar format),
torch.compile (four logger lines), CUDA graph capture (tqdm's default bar, updates joined by
``\\r``). With ``HPCLAUNCH_STANDIN_LOAD_SECONDS`` the phases take about half, a quarter and a
fifth of that time, so ``hpclaunch wait`` has something to show; without it the bars print
their first and last update at once.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

from hpclaunch.standin.logwriter import Log
from hpclaunch.standin.memory import Memory
from hpclaunch.standin.settings import Settings

SHARD_BYTES = 5 * 10**9  # Hugging Face's default max_shard_size
WEIGHTS_SHARE, COMPILE_SHARE, GRAPHS_SHARE = 0.5, 0.25, 0.2


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def _rate(n: int, elapsed: float) -> str:
    """tqdm's rate field: ``1.30it/s``, or ``2.87s/it`` when slower than one a second."""
    if n == 0 or elapsed <= 0:
        return "?it/s"
    rate = n / elapsed
    return f"{rate:5.2f}it/s" if rate >= 1 else f"{1 / rate:5.2f}s/it"


def _times(n: int, total: int, seconds: float) -> tuple[float, float | None]:
    elapsed = seconds * n / total
    return elapsed, (seconds - elapsed if n else None)


def shard_line(n: int, total: int, seconds: float) -> str:
    elapsed, remaining = _times(n, total, seconds)
    return (f"Loading safetensors checkpoint shards: {100 * n / total:3.0f}% Completed | "
            f"{n}/{total} [{_clock(elapsed)}<{_clock(remaining)}, {_rate(n, elapsed)}]\n")


def capture_line(kind: str, n: int, total: int, seconds: float) -> str:
    elapsed, remaining = _times(n, total, seconds)
    eighths = 80 * n // total
    bar = ("█" * (eighths // 8) + (" ▏▎▍▌▋▊▉"[eighths % 8] if eighths % 8 else "")).ljust(10)
    return (f"Capturing CUDA graphs ({kind}): {100 * n / total:3.0f}%|{bar}| {n}/{total} "
            f"[{_clock(elapsed)}<{_clock(remaining)}, {_rate(n, elapsed)}]")


def capture_sizes(max_num_seqs: int) -> list[int]:
    """vLLM's default CUDA graph batch sizes: 1, 2, 4, then every 8 up to 2x max_num_seqs
    (at most 512)."""
    cap = min(512, 2 * max_num_seqs)
    return [s for s in (1, 2, 4) if s <= cap] + list(range(8, cap + 1, 8))


class LoadingLines:
    """Prints one engine's loading progress; each method returns True if asked to stop."""

    def __init__(self, s: Settings, mem: Memory, log: Log,
                 pause: Callable[[float], bool]) -> None:
        self.s, self.mem, self.log, self.pause = s, mem, log, pause
        self.total = s.load_seconds

    def _steps(self, count: int) -> list[int]:
        """Which updates to print: all of them when loading slowly, else first and last."""
        if self.total > 0:
            return list(range(count + 1))
        return [0, count]

    def shards(self) -> bool:
        count = max(1, math.ceil(self.mem.info.weight_bytes / SHARD_BYTES))
        seconds = self.total * WEIGHTS_SHARE or 0.5 * count
        for n in self._steps(count):
            if n and self.total > 0 and self.pause(seconds / count):
                return True
            self.log.progress(shard_line(n, count, seconds))
        return False

    def torch_compile(self, worker: str) -> bool:
        seconds = self.total * COMPILE_SHARE
        digest = hashlib.sha256(self.s.model.encode()).hexdigest()[:10]
        self.log.info(worker, "backends.py:1069", "Using cache directory: /root/.cache/vllm/"
                      f"torch_compile_cache/{digest}/rank_0_0/backbone for vLLM's torch.compile")
        if self.pause(seconds * 0.3):
            return True
        self.log.info(worker, "backends.py:1128",
                      f"Dynamo bytecode transform time: {max(seconds * 0.3, 2.1):.2f} s")
        if self.pause(seconds * 0.7):
            return True
        self.log.info(worker, "backends.py:391", "Compiling a graph for compile range "
                      f"(1, {self.s.max_num_batched_tokens}) takes {max(seconds * 0.7, 4.9):.2f} s")
        self.log.info(worker, "monitor.py:53",
                      f"torch.compile took {max(seconds, 7.0):.2f} s in total")
        return False

    def capture(self) -> bool:
        sizes = capture_sizes(self.s.max_num_seqs)
        full = [x for x in sizes if x <= self.s.max_num_seqs]
        seconds = self.total * GRAPHS_SHARE
        for kind, count, share in (("mixed prefill-decode, PIECEWISE", len(sizes), 0.6),
                                   ("decode, FULL", len(full), 0.4)):
            steps = self._steps(count)
            if self.total > 0:  # about ten updates a bar, as tqdm's mininterval gives
                steps = sorted({0, count, *range(0, count, max(1, count // 10))})
            for i, n in enumerate(steps):
                if i and self.total > 0 and self.pause(
                        seconds * share * (n - steps[i - 1]) / count):
                    return True
                end = "\n" if n == count else "\r"
                self.log.progress(capture_line(kind, n, count, seconds * share or 1.0) + end)
        return False
