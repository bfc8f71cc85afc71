"""From KV memory to vLLM's start-up numbers: cache size, concurrency, the admission check.

:mod:`hpclaunch.planning.kvspec` says how vLLM lays the cache out; this module applies it to
one plan (its memory, ``--max-model-len``, batch size and version) and names every step, so
the report can list them as assumptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hpclaunch.planning import kv
from hpclaunch.planning.kvspec import KVLayout, kv_layout, rules_for, token_bytes
from hpclaunch.planning.mamba import hybrid_blocks, with_state_dtypes
from hpclaunch.planning.modelinfo import ModelInfo

__all__ = ["KVNumbers", "kv_numbers", "layout_for"]


@dataclass
class KVNumbers:
    """What vLLM would print for one engine, and whether it would start."""

    kv_tokens: int
    max_concurrency: float
    needed_bytes: int
    fits: bool
    max_model_len_that_fits: int
    num_blocks: int = 0
    assumptions: list[str] = field(default_factory=list)


def layout_for(info: ModelInfo, *, tp: int, pp: int, kv_cache_dtype: str,
               block_size: int, version: str = "0.33.0", prefix_caching: bool | None = None,
               hopper: bool = False,
               mamba_dtypes: tuple[str, str] = ("auto", "auto")
               ) -> tuple[KVLayout | None, str, list[str]]:
    """The model's KV layout, or ``(None, why)`` when it cannot be modelled.

    Recurrent layers are modelled when the config gave their state shape
    (:attr:`ModelInfo.recurrent`); ``prefix_caching`` (``None``: the version's default) and
    ``hopper`` (an SM90 GPU) decide how many blocks a request holds in their groups;
    ``mamba_dtypes`` are ``--mamba-cache-dtype`` and ``--mamba-ssm-cache-dtype``.
    """
    if info.sliding_window_or_hybrid and not info.layer_types and not info.sliding_window:
        return None, (f"{info.model_id} mixes attention with layers whose kind the config does "
                      "not list (layer_types); its KV cache is not modelled"), []
    if "linear" in info.kinds and info.recurrent is None:
        # vLLM pads the state pages to the attention page and draws them from the same
        # pool; without the state shape no number is better than a wrong one.
        return None, (f"{info.model_id} has recurrent layers, and the state of "
                      f"'{info.family}' is not modelled (gated delta nets of Qwen3-Next / "
                      "Qwen3.5 and Nemotron-H's Mamba2 are): its KV cache is not sized"), []
    steps: list[str] = []
    state_blocks = None
    try:
        dtype_bytes = kv.kv_dtype_bytes(info, kv_cache_dtype)
        if info.recurrent is not None and "linear" in info.kinds:
            per_token = token_bytes(info, tp, dtype_bytes)
            state, note = with_state_dtypes(info.recurrent, *mamba_dtypes)
            steps.extend([note] if note else [])
            hb = hybrid_blocks(state, tp=tp, token_bytes=per_token,
                               block_size=block_size, version=version,
                               prefix_caching=prefix_caching, hopper=hopper)
            block_size, state_blocks = hb.block_size, hb.state_blocks
            steps.extend(hb.steps)
        layout = kv_layout(info, tp=tp, pp=pp, dtype_bytes=dtype_bytes, block_size=block_size,
                           state_blocks=state_blocks)
    except ValueError as exc:
        return None, str(exc), []
    if info.kv_lora_rank:
        steps.append(
            f"MLA: each layer caches one latent of kv_lora_rank {info.kv_lora_rank} + "
            f"qk_rope_head_dim {info.qk_rope_head_dim} values x {dtype_bytes} B per token, "
            "the same on every TP rank (not split by heads)")
    else:
        heads = max(1, -(-info.num_kv_heads // tp))
        steps.append(
            f"page per layer = {block_size} tokens x 2 (K, V) x {heads} KV heads "
            f"({info.num_kv_heads} / TP {tp}, at least 1) x head_dim {info.head_dim} x "
            f"{dtype_bytes} B (kv-cache-dtype {kv_cache_dtype}) = {layout.page_bytes:,} B")
    counts = {k: sum(len(g.layers) for g in layout.groups if g.kind == k) for k in layout.kinds}
    sizes = sorted({len(g.layers) for g in layout.groups})
    steps.append(
        "layers by KV kind: " + ", ".join(f"{n} {k}" for k, n in counts.items())
        + f"; {len(layout.groups)} KV group(s) of {'/'.join(map(str, sizes))} layers"
        + (f" ({layout.padded_layers} padding layers)" if layout.padded_layers else "")
        + (f"; sliding window {layout.window} tokens" if "sliding" in counts else "")
        + (f"; chunked local attention, chunks of {layout.chunk} tokens" if layout.chunk
           else "")
        + ("; recurrent layers are grouped like attention layers, one padded page each"
           if "linear" in counts else ""))
    if layout.chunk and not rules_for(version).chunked_local_hybrid:
        steps.append(f"vLLM {version} turns the hybrid KV manager off for chunked local "
                     "attention (VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE defaults to "
                     "0 in 0.10.2-0.13): its layers keep every token, like full attention")
    if pp > 1:
        steps.append(f"pipeline stages hold {[len(r) for r in layout.stages]} layers "
                     "(vLLM's get_pp_indices); one block costs the fullest group's layers of "
                     "a stage, and the engine takes the stage with the fewest blocks")
    return layout, "", steps


def kv_numbers(layout: KVLayout, *, kv_bytes: float, max_model_len: int,
               max_num_batched_tokens: int, pp: int, version: str,
               hybrid_manager_off: bool = False) -> KVNumbers:
    """vLLM's figures for ``max_model_len`` given ``kv_bytes`` of KV memory per GPU.

    ``hybrid_manager_off``: the serve flags turn vLLM's hybrid KV cache manager off
    (``--disable-hybrid-kv-cache-manager``, a KV connector), so sliding-window layers are
    sized as full attention, as every version before 0.9 does anyway. The start-up check
    still counts each layer by its own spec: vLLM runs it before unifying the specs.
    """
    rules = rules_for(version)
    in_flight = ((pp + 1) if rules.async_scheduling else pp) * max_num_batched_tokens
    if layout.chunk and not rules.async_scheduling:
        in_flight = max_num_batched_tokens  # 0.14-0.25: one chunk + max-num-batched-tokens
    check_layout = layout
    unify = (hybrid_manager_off or not rules.hybrid_allocator
             or (layout.chunk is not None and not rules.chunked_local_hybrid))
    if unify and layout.unified() is not layout:
        layout = layout.unified()
    num_blocks = max(0, layout.num_blocks(kv_bytes))
    per_request = layout.blocks_per_request(max_model_len, in_flight)
    concurrency = num_blocks / per_request
    if rules.tokens_from_concurrency:
        tokens = int(concurrency * max_model_len)
        how = "int(concurrency x max-model-len)"
    else:
        tokens = num_blocks // len(layout.groups) * layout.block_size
        how = "blocks // groups x block size"
    if not rules.hybrid_allocator:
        concurrency = tokens / max_model_len
        how += "; concurrency = tokens / max-model-len"
    stages = range(len(layout.stages))
    whole = rules.pp_check_whole_model and pp > 1
    needed = max(check_layout.needed_bytes(max_model_len, in_flight, whole_model=whole,
                                           stage=s) for s in stages)
    null = max(layout.stage_block_bytes(s) for s in stages) if rules.null_block else 0
    fits = needed <= kv_bytes - null and kv_bytes > 0
    best = check_layout.max_len_that_fits(kv_bytes, max_model_len, in_flight,
                                          whole_model=whole, null_block=rules.null_block)
    steps = []
    if layout is not check_layout:
        steps.append(
            "hybrid KV cache manager off ("
            + ("vLLM before 0.9 has none" if not rules.hybrid_allocator else
               "--disable-hybrid-kv-cache-manager, or a KV connector: 0.9-0.11 turn it off "
               "for all, 0.33 only for connectors without hybrid support")
            + "): every sliding-window layer is sized as full attention, one KV group of "
            f"{len(layout.groups[0].layers)} layers; the start-up check still counts each "
            "layer by its window")
    steps += [
        f"blocks = KV memory // block bytes ({max(layout.stage_block_bytes(s) for s in stages):,}"
        f" B on the fullest stage) = {num_blocks:,}; a request of {max_model_len:,} tokens "
        f"takes {per_request:,} blocks (sum over groups"
        + (f"; sliding groups keep window-1 + {in_flight:,} in-flight tokens + 1 block"
           if "sliding" in layout.kinds else "")
        + (f"; chunked groups keep one chunk + {in_flight:,} in-flight tokens"
           if layout.chunk else "")
        + (f"; each recurrent group takes {layout.state_blocks} block(s) whatever the length"
           if "linear" in layout.kinds and layout.state_blocks else "") + ")",
        f"vLLM {version}: 'GPU KV cache size' = {how}; concurrency = blocks / blocks per request",
        f"start-up check: one request needs {needed / kv.GiB:.2f} GiB"
        + (" (every layer of the model against one stage's memory, as this version does)"
           if whole else "")
        + (", one block held back for the null block" if rules.null_block else "")
        + f"; longest --max-model-len that passes: {best:,} (vLLM's binary search)",
    ]
    return KVNumbers(kv_tokens=tokens, max_concurrency=concurrency, needed_bytes=needed,
                     fits=fits, max_model_len_that_fits=best, num_blocks=num_blocks,
                     assumptions=steps)
