"""Weight bytes as vLLM loads them, per tensor kind, for every quantisation format.

A quantised checkpoint does not quantise everything: embeddings, ``lm_head``, norms and MoE
routers stay 16 bit, gpt-oss keeps attention in bf16 and only its experts in MXFP4, and each
format stores scales beside the values. Charging all parameters one width is what made the
planner refuse gpt-oss-120b on one H100 (2 B/param: ~217 GiB) when vLLM loads it in ~66 GiB.
So the parameters are counted by kind from ``config.json`` and each kind is charged the
bytes its format really costs.

Bytes per quantised parameter (values + scales/zeros):

* fp8 (incl. block-wise 128x128 scales, compressed-tensors float8): 1 B
* mxfp4 (OCP MX: 4-bit values, one 8-bit scale per 32): 4.25 bits; vLLM's Marlin / TRT-LLM
  MoE kernels pad the expert matrices (hidden to a multiple of 256, intermediate to 128)
* nvfp4 (4-bit values, one fp8 scale per 16): 4.5 bits
* awq / gptq / int compressed-tensors: ``bits`` + a 16-bit scale (and a ``bits`` zero point
  when asymmetric) per group of ``group_size`` (128 when unsaid)
* bitsandbytes 4 bit (nf4/fp4): 4 bits + a 32-bit absmax per 64 (double quantisation shrinks
  it to ~8.5 bits per 64); 8 bit: 1 B + a 32-bit scale per row (counted as 1 B)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpclaunch.planning.hybridweights import layer_counts, recurrent_params

if TYPE_CHECKING:
    from hpclaunch.planning.modelinfo import ModelInfo, RecurrentState

__all__ = ["MXFP4_BYTES", "QuantFormat", "mxfp4_expert_bytes", "quant_format", "uses_marlin",
           "vision_params", "weight_bytes", "weights_per_gpu"]

MXFP4_BYTES = 4.25 / 8  # 4-bit values + one 8-bit scale per 32


def _first(mapping: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            return value
    return None


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


@dataclass(frozen=True)
class QuantFormat:
    """How the linear layers of a checkpoint are stored."""

    name: str  # "", fp8, mxfp4, nvfp4, awq, gptq, int, bitsandbytes
    bytes_per_param: float  # for the quantised linear layers
    experts_only: bool = False  # only MoE experts are quantised (gpt-oss MXFP4)

    def describe(self) -> str:
        return f"{self.name} {self.bytes_per_param:.4g} B/param" if self.name else "16 bit"


def _group_cost(bits: int, group: int, symmetric: bool) -> float:
    extra = 16 + (0 if symmetric else bits)
    return (bits + extra / group) / 8


def quant_format(cfg: dict[str, Any]) -> QuantFormat:
    """The checkpoint's weight format, from ``quantization_config`` (or ``compression_config``)."""
    qc = cfg.get("quantization_config") or cfg.get("compression_config")
    if not isinstance(qc, dict):
        return QuantFormat("", 2.0)
    method = str(qc.get("quant_method") or qc.get("format") or "").lower().replace("_", "-")
    algo = str(qc.get("quant_algo") or "").lower()
    if method == "mxfp4":
        return QuantFormat("mxfp4", MXFP4_BYTES, experts_only=True)
    if "nvfp4" in (method, algo) or method == "modelopt-fp4":
        return QuantFormat("nvfp4", 4.5 / 8)
    if method in ("fp8", "fbgemm-fp8") or algo == "fp8" or method == "modelopt":
        return QuantFormat("fp8", 1.0)
    if method in ("awq", "gptq", "awq-marlin", "gptq-marlin"):
        bits = int(qc.get("bits") or qc.get("w_bit") or 4)
        group = int(qc.get("group_size") or qc.get("q_group_size") or 128)
        group = group if group > 0 else 1 << 30  # -1: one scale per column
        symmetric = bool(qc.get("sym", method.startswith("gptq")))
        return QuantFormat(method.split("-")[0], _group_cost(bits, group, symmetric))
    if method == "bitsandbytes":
        if qc.get("load_in_8bit"):
            return QuantFormat("bitsandbytes", 1.0)
        double = bool(qc.get("bnb_4bit_use_double_quant"))
        return QuantFormat("bitsandbytes", (4 + (8.5 if double else 32) / 64) / 8)
    if method == "compressed-tensors":
        for group in (qc.get("config_groups") or {}).values():
            w = (group or {}).get("weights") or {}
            bits = int(w.get("num_bits") or 8)
            if w.get("type") == "float" and bits == 8:
                return QuantFormat("fp8", 1.0)
            if w.get("type") == "float" and bits == 4:
                return QuantFormat("nvfp4", 4.5 / 8)
            size = int(w.get("group_size") or 0) or 1 << 30
            return QuantFormat("int", _group_cost(bits, size, bool(w.get("symmetric", True))))
    raw_bits = qc.get("bits")
    if isinstance(raw_bits, int) and raw_bits < 16:
        return QuantFormat(method or "unknown", _group_cost(raw_bits, 128, True))
    return QuantFormat("", 2.0)


def vision_params(vision: dict[str, Any]) -> int:
    """Parameters of a ViT-style vision tower, from ``vision_config`` (biases and norms left out).

    The blocks alone (attention 4 h^2, MLP 2 h x intermediate) are not enough for the Qwen-VL
    family: its patch merger, ``Linear(4h, 4h)`` then ``Linear(4h, out_hidden_size)`` over
    ``spatial_merge_size^2`` patches, is repeated for every DeepStack layer, and Qwen3-VL adds
    a learned position table. Leaving them out undercounts Qwen3-VL-4B by 2.6 % (4.324 B
    instead of 4.437 B; the vision tower is 0.415 B, not 0.302 B)."""
    hidden = int(_first(vision, "hidden_size", "embed_dim", "width") or 0)
    inter = int(_first(vision, "intermediate_size") or 4 * hidden)
    depth = int(_first(vision, "depth", "num_hidden_layers", "layers") or 0)
    total = depth * (4 * hidden * hidden + 2 * hidden * inter)
    merge, out = vision.get("spatial_merge_size"), vision.get("out_hidden_size")
    if isinstance(merge, int) and merge > 0 and isinstance(out, int) and out > 0:
        merged = hidden * merge * merge
        mergers = 1 + len(vision.get("deepstack_visual_indexes") or [])
        total += mergers * (merged * merged + merged * out)
    patch = vision.get("patch_size")
    if isinstance(patch, int) and patch > 0:
        channels = int(_first(vision, "in_channels", "in_chans", "num_channels") or 3)
        frames = int(vision.get("temporal_patch_size") or 1)
        total += channels * frames * patch * patch * hidden
    total += int(vision.get("num_position_embeddings") or 0) * hidden
    return total


# What transformers' config class assumes when config.json leaves a key out (vLLM loads the
# config through it): Gemma ties the output head to the embeddings, Gemma 3's vocabulary is
# 262,208 tokens (released Gemma 3 config.json files omit both), Nemotron-H's 131,072.
_TIED_BY_DEFAULT = frozenset({"gemma", "gemma2", "gemma3", "gemma3_text"})
_VOCAB_BY_DEFAULT = {"gemma3": 262_208, "gemma3_text": 262_208, "nemotron_h": 131_072}


def ties_embeddings(text: dict[str, Any]) -> bool:
    """Whether ``lm_head`` shares the embedding matrix (it is then loaded once)."""
    if text.get("tie_word_embeddings") is not None:
        return bool(text["tie_word_embeddings"])
    return str(text.get("model_type") or "") in _TIED_BY_DEFAULT


def vocab_size(text: dict[str, Any]) -> int:
    return int(text.get("vocab_size") or
               _VOCAB_BY_DEFAULT.get(str(text.get("model_type") or ""), 32000))


def weight_bytes(text: dict[str, Any], fmt: QuantFormat, vision_params: float = 0.0, *,
                 kinds: tuple[str, ...] = (), recurrent: RecurrentState | None = None,
                 ) -> tuple[int, str]:
    """Bytes of a decoder (plus ``vision_params`` 16-bit vision parameters) and how they split.

    ``text`` is the language model's config (``text_config`` merged over the top level);
    ``kinds`` and ``recurrent`` (the planner's layer kinds and recurrent state shape) say
    which layers of a hybrid hold attention, a recurrent mixer or an MLP
    (:mod:`hpclaunch.planning.hybridweights`). Raises ``ValueError`` when the config lacks
    the sizes the count needs.
    """
    hidden = int(_first(text, "hidden_size", "n_embd", "d_model"))
    layers = int(_first(text, "num_hidden_layers", "n_layer", "num_layers"))
    heads = int(_first(text, "num_attention_heads", "n_head"))
    kv_heads = int(_first(text, "num_key_value_heads") or heads)
    head_dim = int(_first(text, "head_dim") or hidden // heads)
    vocab = vocab_size(text)
    inter = int(_first(text, "intermediate_size", "ffn_hidden_size") or 4 * hidden)
    if text.get("kv_lora_rank"):
        rope = int(text.get("qk_rope_head_dim") or 64)
        nope = int(text.get("qk_nope_head_dim") or 128)
        v_dim = int(text.get("v_head_dim") or 128)
        lora = int(text["kv_lora_rank"])
        q_lora = int(text.get("q_lora_rank") or 0)
        q = (hidden * q_lora + q_lora * heads * (nope + rope)) if q_lora else \
            hidden * heads * (nope + rope)
        attn = q + hidden * (lora + rope) + lora * heads * (nope + v_dim) + heads * v_dim * hidden
    else:
        # Qwen3-Next / Qwen3.5 gate attention's output: q_proj is twice as wide
        gate = 2 if str(text.get("model_type", "")).startswith(("qwen3_next", "qwen3_5")) else 1
        attn = hidden * head_dim * ((1 + gate) * heads + 2 * kv_heads)
    experts = int(_first(text, "num_local_experts", "n_routed_experts", "num_experts") or 0)
    moe_inter = int(_first(text, "moe_intermediate_size") or inter)
    counts = layer_counts(text, layers, kinds, layers - int(
        _first(text, "first_k_dense_replace") or 0) if experts else 0)
    mats = counts.mlp_matrices
    expert_params = shared = router = 0
    if experts:
        moe_layers = counts.moe
        e_hidden, e_inter = hidden, moe_inter
        if fmt.name == "mxfp4":  # vLLM's MoE kernels pad the expert matrices
            e_hidden, e_inter = _round_up(hidden, 256), _round_up(moe_inter, 128)
        expert_params = moe_layers * experts * mats * e_hidden * e_inter
        n_shared = int(_first(text, "n_shared_experts", "num_shared_experts") or 0)
        shared_inter = int(_first(text, "shared_expert_intermediate_size",
                                  "moe_shared_expert_intermediate_size") or 0)
        shared = moe_layers * mats * hidden * (shared_inter or n_shared * moe_inter)
        router = moe_layers * hidden * experts
    dense = counts.dense_mlp * mats * hidden * inter
    mixers = counts.recurrent * recurrent_params(hidden, recurrent) if recurrent else 0
    embed = vocab * hidden * (1 if ties_embeddings(text) else 2)
    qb = fmt.bytes_per_param
    linear_q = qb if not fmt.experts_only else 2.0
    linear = counts.attention * attn + mixers + dense + shared
    total = expert_params * qb + linear * linear_q + (router + embed + vision_params) * 2.0
    gib = 1 << 30
    note = (f"{expert_params / 1e9:.2f} B expert params x {qb:.4g} B, "
            f"{linear / 1e9:.2f} B attention/dense/shared x "
            f"{linear_q:.4g} B, {(router + embed + vision_params) / 1e9:.2f} B embeddings/"
            f"lm_head/routers/vision x 2 B = {total / gib:.2f} GiB")
    if not experts:
        note = (f"{linear / 1e9:.2f} B linear params x {linear_q:.4g} B "
                f"({fmt.describe()}), {(embed + vision_params) / 1e9:.2f} B embeddings/"
                f"lm_head/vision x 2 B = {total / gib:.2f} GiB")
    return int(total), note


def mxfp4_expert_bytes(moe_layers: int, experts: int, hidden: int, inter: int, tp: int,
                       marlin: bool = True) -> int:
    """MXFP4 expert bytes on one TP rank, padded as vLLM's MoE kernel needs
    (``mxfp4_round_up_hidden_size_and_intermediate_size``): Marlin and TRT-LLM round the
    hidden size up to 256 and each rank's intermediate share to 128; the OAI Triton kernels
    only round the intermediate share to 64."""
    shard = -(-inter // tp)
    if marlin:
        hidden, shard = _round_up(hidden, 256), _round_up(shard, 128)
    else:
        shard = _round_up(shard, 64)
    return int(moe_layers * experts * 3 * hidden * shard * MXFP4_BYTES)


def uses_marlin(gpu: str | None, version: str) -> bool:
    """Whether vLLM runs MXFP4 experts on Marlin: 0.33 picks the OAI Triton kernels on Hopper
    (H100/H200) and TRT-LLM on Blackwell (same padding as Marlin); the 0.10-0.12 logs this
    was checked on used Marlin on Hopper too. Unknown GPUs are charged Marlin's padding,
    the larger one."""
    try:
        minor = int(version.split(".")[1])
    except (IndexError, ValueError):
        minor = 33
    return not (minor >= 33 and gpu is not None and gpu.startswith(("H100", "H200")))


def weights_per_gpu(info: ModelInfo, tp: int, pp: int, *, gpu: str | None = None,
                    version: str = "0.33.0") -> int:
    """Weight bytes on one GPU: everything split evenly over ``tp x pp``, except padded MXFP4
    experts, whose per-rank padding depends on TP and on the kernel (:func:`uses_marlin`)."""
    total = info.weight_bytes
    if not info.padded_experts:
        return total // (tp * pp)
    layers, experts, hidden, inter = info.padded_experts
    one = mxfp4_expert_bytes(layers, experts, hidden, inter, 1)
    per_rank = mxfp4_expert_bytes(layers, experts, hidden, inter, tp,
                                  marlin=uses_marlin(gpu, version))
    return (total - one) // (tp * pp) + per_rank // pp
