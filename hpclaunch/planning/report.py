"""The capacity report: what one layout of one model holds, as numbers and as text.

:func:`hpclaunch.planning.capacity.capacity` fills it in; ``plan`` prints :meth:`lines` or
:meth:`to_dict` (``--json``), and preflight reads its figures.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from hpclaunch.planning import kv

__all__ = ["CapacityReport"]


@dataclass(frozen=True, kw_only=True)
class CapacityReport:
    """What one layout of one model holds. Memory numbers are per GPU; tokens per engine.

    An engine is one data-parallel replica (its ``tp x pp`` GPUs share one KV cache, each
    holding its share of the KV heads or layers), which is what vLLM prints one line for.
    """

    model_id: str
    preset: str
    dp: int
    tp: int
    pp: int
    nodes: int = 1
    gpus_per_node: int = 1
    gpu: str | None = None
    gpu_memory_bytes: int | None = None
    gpu_memory_utilization: float | None = None
    weights_bytes: int | None = None
    weights_per_gpu_bytes: int | None = None
    kv_bytes_per_token: int | None = None
    kv_cache_bytes: int | None = None
    kv_cache_source: str = ""  # "reported" (--kv-cache-gib), "estimated", "" (unknown)
    kv_tokens: int | None = None
    max_model_len: int | None = None
    max_model_len_source: str = ""
    max_concurrency: float | None = None
    max_num_seqs: int | None = None
    max_num_seqs_default: bool = False
    block_size: int = kv.DEFAULT_BLOCK_SIZE
    fits: bool | None = None
    max_model_len_that_fits: int | None = None
    kv_needed_bytes: int | None = None
    assumptions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def gpus(self) -> int:
        return self.dp * self.tp * self.pp

    @property
    def capacity(self) -> float | None:
        """Full-length requests the whole server holds at once (all engines)."""
        return None if self.max_concurrency is None else self.max_concurrency * self.dp

    @property
    def recommended_max_num_seqs(self) -> int | None:
        """The guide's rule: capacity x DP, rounded down; ``None`` (never 0) when one engine
        cannot hold one full-length request, since vLLM does not start then."""
        cap = self.capacity
        if cap is None or not self.fits_one_request:
            return None
        return max(1, math.floor(cap + 1e-9))

    @property
    def per_engine_max_num_seqs(self) -> int | None:
        """vLLM applies ``--max-num-seqs`` per engine: the value that gives the guide's total."""
        if self.max_concurrency is None or not self.fits_one_request:
            return None
        return max(1, math.floor(self.max_concurrency + 1e-9))

    @property
    def fits_one_request(self) -> bool | None:
        """Whether vLLM's start-up check passes (one request of max-model-len fits)."""
        if self.fits is not None:
            return self.fits
        return None if self.max_concurrency is None else self.max_concurrency >= 1

    @property
    def kv_cache_size_line(self) -> str | None:
        """vLLM's own line, as it would print it."""
        if self.kv_tokens is None or self.max_concurrency is None or not self.max_model_len:
            return None
        return (f"GPU KV cache size: {self.kv_tokens:,} tokens, Maximum concurrency for "
                f"{self.max_model_len:,} tokens per request: {self.max_concurrency:.2f}x")

    @property
    def concurrency_line(self) -> str | None:
        if self.max_concurrency is None or not self.max_model_len:
            return None
        return (f"Maximum concurrency for {self.max_model_len:,} tokens per request: "
                f"{self.max_concurrency:.2f}x")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(gpus=self.gpus, capacity=self.capacity,
                    recommended_max_num_seqs=self.recommended_max_num_seqs,
                    per_engine_max_num_seqs=self.per_engine_max_num_seqs,
                    concurrency_line=self.concurrency_line)
        return data

    def lines(self) -> list[str]:
        """The human-readable report, one fact per line."""
        gib = kv.GiB
        out = [
            f"model:              {self.model_id}",
            f"preset:             {self.preset}",
            f"layout:             DP {self.dp} x TP {self.tp} x PP {self.pp} = {self.gpus} GPU"
            f"{'s' if self.gpus != 1 else ''} ({self.gpus_per_node} per node, "
            f"{self.nodes} node{'s' if self.nodes != 1 else ''})",
            "GPU:                " + (f"{self.gpu} ({self.gpu_memory_bytes / gib:.2f} GiB)"
                                       if self.gpu and self.gpu_memory_bytes else "unknown"),
        ]
        if self.weights_per_gpu_bytes is not None and self.weights_bytes is not None:
            out.append(f"weights per GPU:    {self.weights_per_gpu_bytes / gib:.2f} GiB "
                       f"(of {self.weights_bytes / gib:.2f} GiB)")
        if self.kv_bytes_per_token is not None:
            out.append(f"KV per token:       {self.kv_bytes_per_token:,} B per GPU")
        if self.kv_cache_bytes is not None:
            out.append(f"KV cache per GPU:   {self.kv_cache_bytes / gib:.2f} GiB "
                       f"({self.kv_cache_source})")
        if self.kv_tokens is not None:
            out.append(f"KV tokens/engine:   {self.kv_tokens:,}")
        if self.max_model_len:
            out.append(f"max-model-len:      {self.max_model_len:,} ({self.max_model_len_source})")
        if self.concurrency_line:
            out.append(f"predicted vLLM:     {self.concurrency_line}  (per engine)")
            out.append(f"server capacity:    {self.capacity:.2f} full-length requests "
                       f"({self.dp} engine{'s' if self.dp != 1 else ''})")
            if self.fits_one_request:
                out.append(f"--max-num-seqs:     {self.recommended_max_num_seqs} recommended "
                           f"(capacity x DP, rounded down); per engine: "
                           f"{self.per_engine_max_num_seqs}")
            else:
                out.append(f"does not fit:       vLLM would refuse to start: one request of "
                           f"{self.max_model_len:,} tokens needs "
                           f"{(self.kv_needed_bytes or 0) / gib:.2f} GiB of KV cache; the "
                           f"largest --max-model-len that fits is "
                           f"{self.max_model_len_that_fits or 0:,}")
            if self.max_num_seqs is not None:
                origin = "vLLM default" if self.max_num_seqs_default else "configured"
                label = " " * 20 if self.fits_one_request else "--max-num-seqs:     "
                out.append(f"{label}{self.max_num_seqs} {origin}")
        if self.assumptions:
            out.append("assumptions:")
            out += [f"  - {a}" for a in self.assumptions]
        if self.notes:
            out.append("notes:")
            out += [f"  - {n}" for n in self.notes]
        return out
