"""KV-cache arithmetic the way vLLM does it, and what memory is left for the cache.

vLLM prints two numbers researchers size their jobs by::

    Available KV cache memory: 37.15 GiB
    GPU KV cache size: 347,808 tokens, Maximum concurrency for 40,960 tokens per request: 8.49x

The second follows exactly from the first and the model's attention shape (checked against
printed logs): per token each layer stores one K and one V vector per KV head, tokens are
handed out in whole blocks of 16, and concurrency is blocks over blocks-per-request. So
Qwen3-VL-2B (28 layers, 8 KV heads, head_dim 128, bf16) needs 2 x 28 x 8 x 128 x 2 =
114,688 B per token whatever its vision encoder does, and 37.15 GiB holds 8.49 requests of
40,960 tokens. The first number (the memory left for the cache) is what vLLM measures by
profiling a forward pass; :func:`estimate_kv_cache_bytes` approximates it.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

from hpclaunch.errors import UserError
from hpclaunch.planning.modelinfo import ModelInfo

__all__ = [
    "DEFAULT_ACTIVATION_BYTES",
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_CUDA_GRAPH_BYTES",
    "DEFAULT_NON_TORCH_BYTES",
    "GPU",
    "GPUS",
    "GiB",
    "activation_bytes_guess",
    "estimate_kv_cache_bytes",
    "gpu_named",
    "kv_bytes_per_token",
    "kv_dtype_bytes",
    "kv_tokens",
    "max_concurrency",
]

GiB = 1 << 30
DEFAULT_BLOCK_SIZE = 16

# What a vLLM profile run typically reports besides weights (vLLM's own "Memory profiling"
# log line: "non_torch_memory takes 0.12GiB; PyTorch activation peak memory takes 1.19GiB"
# for an 8B model with 8192 batched tokens on one H100). NCCL buffers make non-torch memory
# grow to ~0.5-1 GiB with tensor parallelism.
DEFAULT_ACTIVATION_BYTES = int(1.5 * GiB)
DEFAULT_NON_TORCH_BYTES = int(0.3 * GiB)
DEFAULT_CUDA_GRAPH_BYTES = int(0.5 * GiB)


@dataclass(frozen=True)
class GPU:
    """One GPU model.

    ``memory_bytes`` is the total capacity CUDA reports (``torch.cuda.mem_get_info`` and the
    "GPU 0 has a total capacity of X GiB" in OOM messages), a little below the marketing
    size; it varies by ~0.2 GiB with driver and ECC settings, so treat it as approximate.
    """

    name: str
    memory_bytes: int

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GiB


def _gpu(name: str, gib: float) -> GPU:
    return GPU(name, int(gib * GiB))


GPUS: dict[str, GPU] = {
    g.name: g
    for g in (
        _gpu("H100-80GB", 79.18),
        _gpu("H100-94GB", 93.10),  # H100 NVL
        _gpu("H200", 139.80),
        _gpu("A100-40GB", 39.39),
        _gpu("A100-80GB", 79.15),
        _gpu("L40S", 44.39),
        _gpu("A10G", 22.19),
        _gpu("RTX4090", 23.64),
        _gpu("RTX5090", 31.36),
        _gpu("RTX3090", 23.69),
        _gpu("V100-32GB", 31.73),
        _gpu("RTX-A6000", 47.53),
    )
}


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def gpu_named(name: str) -> GPU:
    """Look a GPU up by name, forgiving case and punctuation (``h100_80gb``, ``rtx 4090``).

    A unique partial name also works (``h200``, ``4090``); an ambiguous one (``a100``) or an
    unknown one raises :class:`UserError` listing the candidates, since a wrong GPU silently
    changes every memory estimate.
    """
    key = _squash(name)
    squashed = {_squash(n): n for n in GPUS}
    if key in squashed:
        return GPUS[squashed[key]]
    partial = [n for s, n in squashed.items() if key and key in s]
    if len(partial) == 1:
        return GPUS[partial[0]]
    if len(partial) > 1:
        raise UserError(f"GPU {name!r} is ambiguous: say which of {', '.join(partial)}")
    near = [squashed[s] for s in difflib.get_close_matches(key, list(squashed), n=3, cutoff=0.5)]
    hint = f"did you mean {', '.join(near)}? " if near else ""
    raise UserError(f"unknown GPU {name!r}: {hint}known GPUs: {', '.join(GPUS)}")


def kv_dtype_bytes(info: ModelInfo, kv_cache_dtype: str = "auto") -> int:
    """Bytes per stored K or V element.

    ``auto`` follows the model dtype (float32 checkpoints are served in 16 bit, so 2);
    ``fp8*`` and ``int8*`` variants take 1 byte. Sub-byte KV formats (nvfp4, int4, ...) pack
    scales alongside the values and are not modelled: they raise ``ValueError``.
    """
    dtype = kv_cache_dtype.lower()
    if dtype == "auto":
        dtype = info.torch_dtype.lower()
        if dtype.startswith(("float8", "fp8")):
            return 1
        return 2
    if dtype in ("bfloat16", "float16", "half", "float32", "float"):
        return 2 if dtype != "float32" else 4
    if dtype.startswith(("fp8", "int8")):
        return 1
    raise ValueError(f"--kv-cache-dtype {kv_cache_dtype}: no byte size known for this format; "
                     "the KV estimate covers auto, bfloat16, float16 and fp8 variants")


def kv_bytes_per_token(info: ModelInfo, tp: int = 1, kv_cache_dtype: str = "auto",
                       pp: int = 1) -> int:
    """KV-cache bytes one token occupies on one GPU.

    ``2 (K and V) x layers x ceil(kv_heads / tp) x head_dim x dtype bytes``: tensor
    parallelism splits the KV heads across ranks, and when there are fewer KV heads than
    ranks vLLM replicates them, hence the ceiling (1 head per rank at least). Pipeline
    parallelism splits the layers (``ceil(layers / pp)`` on the fullest stage).

    Raises
    ------
    ValueError
        For models with sliding-window or hybrid layers, where this arithmetic would
        overstate what each token costs (vLLM sizes those per layer group).
    """
    if tp < 1 or pp < 1:
        raise ValueError(f"tp and pp must be >= 1, got tp={tp} pp={pp}")
    if info.sliding_window_or_hybrid:
        raise ValueError(f"{info.model_id} has sliding-window or hybrid layers: the per-token "
                         "KV arithmetic does not apply, read vLLM's printed KV cache size")
    heads_per_rank = math.ceil(info.num_kv_heads / tp)
    layers = math.ceil(info.num_layers / pp)
    return 2 * layers * heads_per_rank * info.head_dim * kv_dtype_bytes(info, kv_cache_dtype)


def kv_tokens(kv_cache_bytes: int | float, bytes_per_token: int,
              block_size: int = DEFAULT_BLOCK_SIZE) -> int:
    """Tokens the cache holds: whole blocks only, as vLLM allocates ``block_size``-token pages."""
    if bytes_per_token <= 0 or block_size <= 0:
        raise ValueError("bytes_per_token and block_size must be positive")
    if kv_cache_bytes <= 0:
        return 0
    blocks = int(kv_cache_bytes // (bytes_per_token * block_size))
    return blocks * block_size


def max_concurrency(tokens: int, max_model_len: int,
                    block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    """How many requests of ``max_model_len`` tokens fit at once (vLLM's "Maximum concurrency").

    vLLM divides blocks by blocks-per-request, so a length that is not a multiple of the
    block size costs a whole extra block.
    """
    if max_model_len <= 0:
        raise ValueError("max_model_len must be positive")
    blocks_per_request = math.ceil(max_model_len / block_size)
    return (tokens // block_size) / blocks_per_request


def activation_bytes_guess(info: ModelInfo | None, max_num_batched_tokens: int = 8192,
                           tp: int = 1) -> int:
    """Rough peak activation memory of vLLM's profile run, for :func:`estimate_kv_cache_bytes`.

    A forward pass over ``max_num_batched_tokens`` holds about 24 bytes per token per unit of
    hidden size (hidden states, the gated-MLP intermediates, attention workspace, in 16 bit),
    plus ~0.25 GiB for the sampler's logits. That gives ~1.2 GiB for an 8B model at 8192
    tokens, what vLLM reports. Vision models also profile their encoder with the largest
    image batch: ~2 GiB more for Qwen3-VL-2B, which is what its 37.15 GiB data point implies.
    MoE models add the fused-MoE kernels' three intermediate buffers, one row per routed
    (token, expert) pair: ``tokens x experts_per_token x (3 x intermediate / TP + hidden)``
    in 16 bit. Real MoE logs still show 5-6.5 GiB more than this (see
    docs/planner-accuracy.md), so estimates for MoE models are optimistic.
    """
    if info is None:
        return DEFAULT_ACTIVATION_BYTES
    hidden = info.num_attention_heads * info.head_dim
    total = max_num_batched_tokens * hidden * 24 + GiB // 4
    if info.vision:
        total += 2 * GiB
    if info.experts_per_token and info.moe_intermediate_size:
        per_pair = 3 * -(-info.moe_intermediate_size // tp) + hidden
        total += max_num_batched_tokens * info.experts_per_token * per_pair * 2
    return int(total)


def estimate_kv_cache_bytes(
    gpu: GPU,
    gpu_memory_utilization: float,
    weight_bytes_per_gpu: int,
    activation_bytes: int = DEFAULT_ACTIVATION_BYTES,
    non_torch_bytes: int = DEFAULT_NON_TORCH_BYTES,
    cuda_graph_bytes: int = DEFAULT_CUDA_GRAPH_BYTES,
) -> int:
    """KV-cache memory vLLM will find on one GPU, before it has run. Never negative.

    vLLM's rule: it may use ``total x gpu_memory_utilization`` (the cap covers everything
    the process allocates, not just the cache); it loads the weights, profiles one forward
    pass at ``max_num_batched_tokens`` to find the activation peak, measures memory other
    libraries took (NCCL, cuBLAS workspaces: "non-torch"), and gives the rest to the KV
    cache. We also subtract the CUDA-graph pool (~0.5 GiB; pass 0 for ``--enforce-eager``),
    which recent vLLM estimates during profiling.

    How close: weights are known to ~2 %, but activation and non-torch memory are estimates
    (:func:`activation_bytes_guess`), typically within 1-3 GiB of vLLM's profile, worse for
    vision models whose encoder profile depends on ``--limit-mm-per-prompt``. The printed
    ``Available KV cache memory`` is the truth; use this to plan, then trust the log.
    Memory held by other processes on the GPU is not counted here; vLLM fails at start
    if the requested amount is not free.
    """
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    requested = gpu.memory_bytes * gpu_memory_utilization
    left = requested - weight_bytes_per_gpu - activation_bytes - non_torch_bytes - cuda_graph_bytes
    return max(0, int(left))
