"""The simulated GPU memory of one engine, so the printed KV numbers are vLLM's arithmetic.

Numbers come from :mod:`hpclaunch.planning.kv` and the model's facts, never from a GPU;
the same budget decides the real failures (weights too large, a context the cache cannot hold).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from hpclaunch.planning import kv
from hpclaunch.planning.catalog import model_info
from hpclaunch.planning.kv import GiB
from hpclaunch.planning.modelinfo import ModelInfo
from hpclaunch.standin.settings import Settings
from hpclaunch.vllm.flags.values import human_readable_int


def _gib(nbytes: float) -> float:
    """GiB the way vLLM prints them: rounded to 2 decimals, no trailing zeros (37.15, 24.0)."""
    return round(nbytes / GiB, 2)


# Shaped like Qwen2.5-0.5B: small enough to fit anywhere, so unknown models start.
_FALLBACK = dict(family="unknown", params_b=0.5, torch_dtype="bfloat16", num_layers=24,
                 num_attention_heads=14, num_kv_heads=2, head_dim=64,
                 max_position_embeddings=32768)


@dataclass
class Memory:
    """The simulated GPU memory budget of one engine, computed the way vLLM would."""

    info: ModelInfo
    known_model: bool
    weight_bytes_per_gpu: int
    activation_bytes: int
    cuda_graph_bytes: int
    kv_bytes: int
    bytes_per_token: int
    tokens: int
    max_model_len: int
    max_len_error: str | None = None


def plan_memory(s: Settings) -> Memory:
    info = model_info(s.model)
    known = info is not None
    if info is None:
        info = ModelInfo(model_id=s.model, **_FALLBACK)  # type: ignore[arg-type]
    # Sliding-window models: vLLM sizes per layer group; the stand-in just uses full attention.
    flat = replace(info, sliding_window_or_hybrid=False)
    weights = info.weight_bytes // (s.tp * s.pp)
    activation = kv.activation_bytes_guess(info, s.max_num_batched_tokens)
    graphs = 0 if s.enforce_eager else kv.DEFAULT_CUDA_GRAPH_BYTES
    non_torch = kv.DEFAULT_NON_TORCH_BYTES + (GiB // 2 if s.tp * s.pp > 1 else 0)
    kv_bytes = kv.estimate_kv_cache_bytes(s.gpu, s.gpu_util, weights, activation, non_torch,
                                          graphs)
    try:
        bpt = kv.kv_bytes_per_token(flat, s.tp, s.kv_cache_dtype, s.pp)
    except ValueError:
        bpt = kv.kv_bytes_per_token(flat, s.tp, "auto", s.pp)
    tokens = kv.kv_tokens(kv_bytes, bpt, s.block_size)
    derived = info.max_position_embeddings
    arg = s.max_model_len_arg
    error = None
    if arg in (None, "", "None"):
        max_len = derived
    elif str(arg).lower() in ("auto", "-1"):
        max_len = max(s.block_size, min(derived, tokens))  # 0.33: fit to what the cache holds
    else:
        max_len = human_readable_int(str(arg))
        if max_len > derived and os.environ.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN") != "1":
            error = (
                f"User-specified max_model_len ({max_len}) is greater than the derived "
                f"max_model_len (max_position_embeddings={derived} or "
                "model_max_length=None in model's config.json). To allow overriding this "
                "maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1. "
                "VLLM_ALLOW_LONG_MAX_MODEL_LEN must be used with extreme caution. If the model "
                "uses relative position encoding (RoPE), positions exceeding "
                "derived_max_model_len lead to nan. If the model uses absolute position "
                "encoding, positions exceeding derived_max_model_len will cause a CUDA array "
                "out-of-bounds error."
            )
    return Memory(info, known, weights, activation, graphs, kv_bytes, bpt, tokens, max_len,
                  error)
