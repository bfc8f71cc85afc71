"""vLLM's KV-cache sizing, per layer and per pipeline stage, as the version modelled does it.

vLLM (``vllm/v1/core/kv_cache_planning.py`` in 0.33) gives every attention layer a KV spec:
full attention keeps every token, a sliding-window layer keeps its window plus what is in
flight, multi-head latent attention (MLA) keeps one compressed vector per token, and
recurrent layers (Mamba, linear attention) keep a fixed state in a page padded to the
attention page (:mod:`hpclaunch.planning.mamba`). Layers are
put into groups of equal size (``full`` x n and ``sliding`` x m become groups of
``min(n, m)`` layers, padded), one block of the pool holds one page of every layer in the
largest group, and a request at ``max_model_len`` takes, from the one shared pool, the sum
over groups of the pages its spec needs. With pipeline parallelism each stage holds only its
own layers, so its block is smaller; the engine takes the smallest stage's block count.

The functions here reproduce that arithmetic from :class:`~hpclaunch.planning.modelinfo.ModelInfo`
so ``plan`` prints the same "GPU KV cache size" and the same "estimated maximum model length"
vLLM's start-up check does. Where older versions differ, :func:`rules_for` says how.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from hpclaunch.planning.modelinfo import ModelInfo

__all__ = ["KVLayout", "VersionRules", "kv_layout", "pp_partition", "rules_for", "token_bytes"]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class VersionRules:
    """How one vLLM version sizes the cache, where versions disagree.

    Parameters
    ----------
    pp_check_whole_model
        The start-up memory check counts every layer of the model against one stage's
        memory (seen in 0.15 logs); other versions count each stage's own layers.
    null_block
        The check keeps one block back for the block pool's null block (0.33).
    tokens_from_concurrency
        "GPU KV cache size" is ``int(concurrency x max_model_len)`` (0.33); older versions
        print ``num_blocks // groups x block_size``.
    async_scheduling
        Async scheduling is on by default (0.26, 0.33), so a sliding-window layer keeps the
        tokens of PP + 1 batches in flight besides its window (else PP batches).
    chunked_local_hybrid
        Llama 4's chunked local layers get their own KV groups, holding one chunk plus the
        batch in flight (0.10.0; from 0.14 the environment variable
        ``VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE`` defaults to 1). In 0.10.2-0.13
        it defaults to 0: the hybrid manager is off for such models, and every layer is
        sized as full attention (the start-up check still counts each by its own spec).
    report_per_worker
        Every worker prints its ``Available KV cache memory`` and the engine prints one
        ``GPU KV cache size`` per worker, each from that worker's own memory, before the pool
        shrinks to the smallest worker's blocks (0.10, 0.11). From 0.12 one line of each is
        printed: the node's first worker's memory and the pool's (smallest worker's) tokens.
    hybrid_allocator
        Layers of different kinds get KV groups of their own (the hybrid KV cache manager,
        from 0.9). Before, a model with both full and sliding-window layers has every layer
        sized as full attention (0.8.5 ``unify_hybrid_kv_cache_specs``), and "Maximum
        concurrency" is the cache's tokens / ``max_model_len``.
    """

    pp_check_whole_model: bool
    null_block: bool
    tokens_from_concurrency: bool
    async_scheduling: bool
    report_per_worker: bool = False
    chunked_local_hybrid: bool = True
    hybrid_allocator: bool = True


def rules_for(version: str) -> VersionRules:
    """The sizing rules of ``version`` (``"0.33.0"``); unknown or unparsable means 0.33's."""
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        major, minor = 0, 33
    v = (major, minor)
    digits = "".join(c for c in (version.split(".") + ["0", "0"])[2] if c.isdigit()) or "0"
    patch = (major, minor, int(digits))
    # Boundaries from the sources of 0.11.0, 0.13.0, 0.15.1, 0.17.0, 0.20.0, 0.25.0 and 0.33.0:
    # per-stage check in 0.13, whole-model check in 0.15.1, per-stage projection again from
    # 0.17; "GPU KV cache size" from concurrency in 0.25 but not 0.20; the null block held
    # back in 0.33 but not 0.25; async scheduling's second batch in flight in 0.26 (source and
    # a real log) but not 0.25; chunked local attention kept apart in 0.10.0 and from 0.14.0,
    # but sized as full in 0.10.2-0.13.0 (VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE
    # defaulting to 0); the KV lines printed per worker in 0.10.0 and
    # 0.11.0, once after the smallest worker was taken in 0.12.0 and 0.13.0. The hybrid KV
    # cache manager: in 0.9.1 and 0.9.2, not in 0.8.5. Versions in between are assigned to
    # the nearer checked one.
    return VersionRules(
        pp_check_whole_model=(0, 14) <= v < (0, 17),
        null_block=v >= (0, 29),
        tokens_from_concurrency=v >= (0, 23),
        async_scheduling=v >= (0, 26),
        hybrid_allocator=v >= (0, 9),
        report_per_worker=v < (0, 12),
        chunked_local_hybrid=not (0, 10, 2) <= patch < (0, 14),
    )


def pp_partition(num_layers: int, pp: int) -> list[int]:
    """Layers per pipeline stage as vLLM's ``get_pp_indices`` splits them: equal shares, the
    remainder going to the stages just before the last (which also holds the final norm)."""
    parts = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        parts[-i] += 1
    return parts


@dataclass(frozen=True)
class _Group:
    kind: str  # full | sliding | chunked | mla | linear
    layers: tuple[int, ...]  # global layer indices in this group


@dataclass(frozen=True)
class KVLayout:
    """One engine's KV cache shape: groups of layers, the page each layer stores per block,
    and which layers each pipeline stage holds."""

    groups: tuple[_Group, ...]
    page_bytes: int  # one layer's page: block_size tokens on one GPU
    block_size: int
    window: int | None
    stages: tuple[range, ...]
    padded_layers: int
    recurrent_layers: int
    chunk: int | None = None
    state_blocks: int = 1  # blocks a request holds per recurrent group; 0: one per block

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted({g.kind for g in self.groups}))

    def stage_block_bytes(self, stage: int) -> int:
        """Bytes one block costs on ``stage``: the fullest group's layers there, one page each."""
        layers = self.stages[stage]
        return self.page_bytes * max(sum(1 for i in g.layers if i in layers)
                                     for g in self.groups)

    def model_block_bytes(self) -> int:
        return self.page_bytes * max(len(g.layers) for g in self.groups)

    def unified(self) -> KVLayout:
        """The layout with every attention layer sized as full attention: what vLLM does
        when the hybrid KV cache manager is off (before 0.9, ``--disable-hybrid-kv-cache-
        manager``, KV connectors). A model whose layers are all of one kind is unchanged."""
        if len({g.kind for g in self.groups}) < 2 or {"mla", "linear"} & set(self.kinds):
            return self  # (recurrent state cannot become attention pages: vLLM keeps groups)
        layers = tuple(sorted(i for g in self.groups for i in g.layers))
        return replace(self, groups=(_Group("full", layers),), padded_layers=0)

    def group_blocks(self, kind: str, max_model_len: int, in_flight: int) -> int:
        """Pages one request at ``max_model_len`` needs in one group of ``kind``."""
        if kind == "linear" and self.state_blocks:
            return self.state_blocks
        if kind == "sliding" and self.window:
            tokens = min(self.window - 1 + in_flight, max_model_len)
            return _cdiv(tokens, self.block_size) + 1
        if kind == "chunked" and self.chunk:
            return _cdiv(min(self.chunk + in_flight, max_model_len), self.block_size)
        return _cdiv(max_model_len, self.block_size)

    def blocks_per_request(self, max_model_len: int, in_flight: int) -> int:
        return sum(self.group_blocks(g.kind, max_model_len, in_flight) for g in self.groups)

    def num_blocks(self, kv_bytes: float) -> int:
        """Blocks of the engine: every stage has ``kv_bytes``; the smallest count wins."""
        return min(int(kv_bytes // self.stage_block_bytes(s)) for s in range(len(self.stages)))

    def needed_bytes(self, max_model_len: int, in_flight: int, *, whole_model: bool,
                     stage: int) -> int:
        """What vLLM's start-up check says one request needs on ``stage``: the sum over the
        real layers (no padding layers: ``check_enough_kv_cache_memory`` adds up each
        layer's ``max_memory_usage_bytes``, 0.11 and 0.33)."""
        layers = range(self.num_layers) if whole_model else self.stages[stage]
        return self.page_bytes * sum(
            self.group_blocks(g.kind, max_model_len, in_flight)
            * sum(1 for i in g.layers if i in layers) for g in self.groups)

    @property
    def num_layers(self) -> int:
        return self.stages[-1].stop

    def max_len_that_fits(self, kv_bytes: float, limit: int, in_flight: int, *,
                          whole_model: bool, null_block: bool) -> int:
        """The longest ``--max-model-len`` the check accepts (vLLM's binary search), 0 if none."""
        fits = []
        for s in range(len(self.stages)):
            avail = kv_bytes - (self.stage_block_bytes(s) if null_block else 0)
            lo, hi, found = 1, limit, 0
            while lo <= hi:
                mid = (lo + hi) // 2
                if self.needed_bytes(mid, in_flight, whole_model=whole_model,
                                     stage=s) <= avail:
                    found, lo = mid, mid + 1
                else:
                    hi = mid - 1
            fits.append(found)
        return min(fits)


def _page(info: ModelInfo, tp: int, dtype_bytes: int, block_size: int) -> int:
    if info.kv_lora_rank:
        # MLA: one latent "head" of kv_lora_rank + rope dims, no separate V, on every rank.
        return block_size * (info.kv_lora_rank + (info.qk_rope_head_dim or 0)) * dtype_bytes
    heads = max(1, math.ceil(info.num_kv_heads / tp))
    return block_size * heads * 2 * info.head_dim * dtype_bytes


def token_bytes(info: ModelInfo, tp: int, dtype_bytes: int) -> int:
    """One attention layer's cache for one token on one GPU."""
    return _page(info, tp, dtype_bytes, 1)


def kv_layout(info: ModelInfo, *, tp: int, pp: int, dtype_bytes: int,
              block_size: int, state_blocks: int | None = None) -> KVLayout:
    """Group the model's layers as vLLM 0.33 does (``_get_kv_cache_groups_uniform_page_size``).

    ``state_blocks`` (blocks per request in a recurrent group, from
    :func:`hpclaunch.planning.mamba.hybrid_blocks`) makes the recurrent layers part of the
    pool; ``block_size`` must then be the raised one, so their padded state fills one page.
    Without it recurrent layers are left out, and ``none`` layers (MLP blocks) never count.

    Raises
    ------
    ValueError
        When no layer has a paged KV cache (a pure state-space model).
    """
    kinds = ["mla" if (k == "full" and info.kv_lora_rank) else k for k in info.kinds]
    buckets: dict[str, list[int]] = {}
    for i, kind in enumerate(kinds):
        if kind == "none" or (kind == "linear" and state_blocks is None):
            continue
        buckets.setdefault(kind, []).append(i)
    if not [k for k in buckets if k != "linear"]:
        raise ValueError(f"{info.model_id} has no attention layer with a KV cache")
    sizes = [len(v) for v in buckets.values()]
    group_size = min(sizes)
    if max(sizes) < group_size * 1.5:
        group_size = max(sizes)
    groups: list[_Group] = []
    padded = 0
    for kind, layers in buckets.items():
        if len(buckets) == 1:
            groups.append(_Group(kind, tuple(layers)))
            continue
        n = _cdiv(len(layers), group_size)
        padded += n * group_size - len(layers)
        groups += [_Group(kind, tuple(layers[i::n])) for i in range(n)]
    parts = pp_partition(info.num_layers, pp)
    starts = [sum(parts[:i]) for i in range(pp)]
    stages = tuple(range(a, a + n) for a, n in zip(starts, parts, strict=True))
    return KVLayout(groups=tuple(groups), page_bytes=_page(info, tp, dtype_bytes, block_size),
                    block_size=block_size, window=info.sliding_window, stages=stages,
                    padded_layers=padded, recurrent_layers=kinds.count("linear"),
                    chunk=info.attention_chunk_size if "chunked" in kinds else None,
                    state_blocks=1 if state_blocks is None else state_blocks)
