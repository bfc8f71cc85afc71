"""Which decoder layers hold which weights, for hybrid models.

A plain decoder layer is attention + MLP. Hybrids break that: Nemotron-H's layers are one
block each (``M`` a Mamba2 mixer, ``*`` attention, ``-`` a squared-ReLU MLP, ``E`` a MoE),
and Qwen3-Next / Qwen3.5 replace the attention of three layers in four with a gated delta
net. Counting every layer as attention + MLP made Nemotron-3-Nano-30B-A3B a 101 B model
(it has 31.6 B parameters), which ``check`` would refuse on any single GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpclaunch.planning.modelinfo import RecurrentState

__all__ = ["LayerCounts", "layer_counts", "recurrent_params"]


@dataclass(frozen=True)
class LayerCounts:
    attention: int  # layers with an attention block
    recurrent: int  # layers with a Mamba2 / gated-delta-net mixer
    dense_mlp: int  # layers with a dense MLP
    moe: int  # layers with a MoE block (the model's experts)
    mlp_matrices: int  # 3 for gated (SwiGLU) MLPs and experts, 2 for squared ReLU


def layer_counts(text: dict[str, Any], layers: int, kinds: tuple[str, ...],
                 moe_layers: int) -> LayerCounts:
    """``kinds`` are the planner's per-layer kinds (``none``: a block with no cache);
    ``moe_layers`` is how many layers a plain decoder of this config would give experts."""
    blocks = text.get("hybrid_override_pattern") or text.get("layers_block_type")
    if str(text.get("model_type")) == "nemotron_h" and blocks and len(blocks) == layers:
        names = [str(b) for b in blocks]
        moe = sum(b in ("E", "moe") for b in names)
        return LayerCounts(attention=sum(b in ("*", "attention") for b in names),
                           recurrent=sum(b in ("M", "mamba") for b in names),
                           dense_mlp=sum(b in ("-", "mlp") for b in names), moe=moe,
                           mlp_matrices=2)
    recurrent = kinds.count("linear") if kinds else 0
    return LayerCounts(attention=layers - recurrent, recurrent=recurrent,
                       dense_mlp=layers - moe_layers, moe=moe_layers, mlp_matrices=3)


def recurrent_params(hidden: int, state: RecurrentState) -> int:
    """One mixer's parameters, as vLLM's layers hold them.

    Mamba2 (``MambaMixer2``): ``in_proj`` to z, x, B, C and dt; a depthwise conv over x, B
    and C; ``out_proj``; A, D, dt_bias per head and a gated norm. Gated delta net
    (``Qwen3NextGatedDeltaNet``): ``in_proj_qkvz`` and ``in_proj_ba``, a conv over q, k and
    v, ``out_proj``; A and dt_bias per value head and a norm of one value head.
    """
    value = state.heads * state.head_dim
    if state.kind == "mamba2":
        bc = 2 * state.groups * state.state
        return (hidden * (2 * value + bc + state.heads) + (value + bc) * state.conv_kernel
                + value * hidden + 3 * state.heads + value)
    key = state.groups * state.state
    return (hidden * (2 * key + 2 * value) + hidden * 2 * state.heads
            + (2 * key + value) * state.conv_kernel + value * hidden + 2 * state.heads
            + state.head_dim)
