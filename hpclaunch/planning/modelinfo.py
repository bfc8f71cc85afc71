"""What the planner knows about one model, and what its weights cost on the GPUs.

The facts come from :mod:`hpclaunch.planning.catalog` (the bundled catalogue, a local
directory or the Hugging Face cache) and :mod:`hpclaunch.planning.modelconfig` (reading a
``config.json``); this module only holds the record they fill in.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelInfo", "RecurrentState"]

# Bytes per parameter of each checkpoint dtype *as vLLM serves it*. float32 checkpoints are
# cast to 16 bit by vLLM's default ``--dtype auto``, so they cost 2 bytes on the GPU too.
_DTYPE_BYTES: dict[str, float] = {
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "float32": 2,
    "float": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
}

# Quantized checkpoints keep some tensors unquantized (embeddings, lm_head, norms) and store
# per-group scales and zero points. Checked against real files: TheBloke's Mistral-7B AWQ
# (7.24 B params, 4 bit, group 128) is 4.15 GB = 0.5 B/param x 1.15; FP8 checkpoints of
# Llama-3.1-8B / Qwen3-8B are about 1.1-1.2 B/param.
_QUANT_OVERHEAD: dict[int, float] = {4: 1.15, 8: 1.10}
_QUANT_DEFAULT_BITS: dict[str, int] = {"awq": 4, "gptq": 4, "fp8": 8}


@dataclass(frozen=True)
class RecurrentState:
    """The fixed state one recurrent layer (Mamba2, gated delta net) keeps per request.

    vLLM's ``MambaStateShapeCalculator`` gives both kinds the same two tensors: a
    convolution state of ``(heads x head_dim + 2 x groups x state) / TP`` channels by
    ``conv_kernel - 1`` steps, and an SSM state of ``heads / TP x head_dim x state``. For a
    gated delta net (Qwen3-Next, Qwen3.5) groups are the key heads and state the key head
    dim; for Mamba2 (Nemotron-H) vLLM widens the groups to a multiple of TP.
    """

    kind: str  # "gdn" | "mamba2"
    heads: int
    head_dim: int
    groups: int
    state: int
    conv_kernel: int
    conv_bytes: int  # bytes per conv-state element (the model dtype under "auto")
    ssm_bytes: int  # bytes per SSM-state element (float32 where the config asks)
    chunk_size: int = 0  # Mamba2 SSD chunk ("chunk_size" / "mamba_chunk_size"); 0 unknown

    def page_bytes(self, tp: int) -> int:
        """Bytes of one layer's state on one GPU, vLLM's ``MambaSpec.page_size_bytes``."""
        groups = self.groups
        if self.kind == "mamba2" and groups % tp:
            groups += tp - groups  # extra_groups_for_head_shards
        conv_dim = self.heads * self.head_dim + 2 * groups * self.state
        conv = conv_dim // tp * (self.conv_kernel - 1) * self.conv_bytes
        ssm = self.heads // tp * self.head_dim * self.state * self.ssm_bytes
        return conv + ssm


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What hpclaunch knows about one model; attention numbers are the text model's.

    Parameters
    ----------
    model_id
        Hugging Face id (``org/name``) or local path, exactly as vLLM should be given it.
    family
        ``model_type``-like family name (``qwen3``, ``qwen3_vl``, ``llama``, ``mistral``,
        ``deepseek_r1_distill``...), used to pick presets and a reasoning parser.
    params_b
        Parameters in billions, including a vision encoder. For quantized models this still
        counts parameters, not bytes; :attr:`weight_bytes` applies the packing.
    quantization
        ``None``, ``"awq"``, ``"gptq"``, ``"fp8"`` or another ``quant_method`` string.
    torch_dtype
        The checkpoint's dtype (``bfloat16``...), which is also the KV cache dtype under
        ``--kv-cache-dtype auto``.
    num_layers, num_attention_heads, num_kv_heads, head_dim
        Decoder attention shape: the KV cache holds ``2 x num_layers x num_kv_heads x head_dim``
        values per token.
    max_position_embeddings
        The longest context the model was built for; vLLM refuses a larger ``--max-model-len``.
    vision
        Has an image/video encoder. That costs weights and activation memory, not KV cache.
    reasoning
        Thinks before answering (needs a ``--reasoning-parser`` to split the thinking out).
    reasoning_parser
        vLLM's registered parser name for this family when ``reasoning`` is true.
    sliding_window_or_hybrid
        Some layers use a sliding window or non-attention state, so the simple KV arithmetic
        of :mod:`hpclaunch.planning.kv` does not apply.
    quant_bits
        Bits per quantized weight when known (AWQ/GPTQ are usually 4, FP8 is 8).
    layer_types
        Attention kind of every decoder layer: ``full``, ``sliding``, ``chunked`` (Llama 4's
        chunked local attention), ``linear`` (a layer with recurrent state and no paged KV:
        Mamba, linear attention) or ``none`` (an MLP or MoE block with no cache, as in
        Nemotron-H's pattern). Empty means every layer is ``full`` (or ``sliding`` when
        ``sliding_window`` is set and no list is given).
    sliding_window
        Tokens a ``sliding`` layer attends to.
    attention_chunk_size
        Llama 4's chunked local attention: a ``chunked`` layer attends within chunks of this
        many tokens (the other layers, without RoPE, are ``full``).
    kv_lora_rank, qk_rope_head_dim
        Multi-head latent attention (DeepSeek V2/V3, Kimi K2): each layer caches one latent
        vector of ``kv_lora_rank + qk_rope_head_dim`` values per token, shared by all heads
        and not split by tensor parallelism.
    weight_bytes_known
        Bytes of the weights as vLLM loads them when worked out per tensor kind from the
        config (quantized experts, 16-bit attention and embeddings...); see
        :mod:`hpclaunch.planning.weights`. Overrides the ``params_b x bytes_per_param`` guess.
    weight_note
        How ``weight_bytes_known`` was computed, for the plan's assumptions.
    padded_experts
        ``(moe_layers, experts, hidden, intermediate)`` of MXFP4 experts, whose matrices vLLM
        pads per tensor-parallel shard (see :func:`hpclaunch.planning.weights.weights_per_gpu`).
    recurrent
        The state shape of the ``linear`` layers when vLLM's sizing of it is modelled
        (gated delta nets, Nemotron-H's Mamba2); ``None`` otherwise.
    experts_per_token, moe_intermediate_size
        Routed experts per token and their intermediate size (0 for dense models): the MoE
        kernels' buffers in vLLM's profile run grow with them.
    """

    model_id: str
    family: str
    params_b: float
    torch_dtype: str
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    max_position_embeddings: int
    quantization: str | None = None
    vision: bool = False
    reasoning: bool = False
    reasoning_parser: str | None = None
    sliding_window_or_hybrid: bool = False
    quant_bits: int | None = None
    layer_types: tuple[str, ...] = ()
    sliding_window: int | None = None
    attention_chunk_size: int | None = None
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    weight_bytes_known: int | None = None
    weight_note: str = ""
    padded_experts: tuple[int, ...] = ()
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    recurrent: RecurrentState | None = None

    @property
    def kinds(self) -> tuple[str, ...]:
        """The attention kind of each decoder layer (see ``layer_types``)."""
        if self.layer_types:
            return self.layer_types
        return ("sliding" if self.sliding_window else "full",) * self.num_layers

    @property
    def bytes_per_param(self) -> float:
        """GPU bytes per parameter once loaded.

        Unquantized: the dtype's size (float32 counts 2, since vLLM serves it in 16 bit).
        4-bit AWQ/GPTQ: 0.5 byte x 1.15 and 8-bit (FP8, 8-bit GPTQ): 1 byte x 1.10, the
        factor covering group scales/zeros and the embeddings and ``lm_head`` that stay 16 bit.
        A quantization method whose width is unknown is charged the full dtype size, which
        overestimates weights and so errs towards a smaller KV cache.
        """
        bits = self.quant_bits or _QUANT_DEFAULT_BITS.get(self.quantization or "")
        if self.quantization and bits in _QUANT_OVERHEAD:
            return bits / 8 * _QUANT_OVERHEAD[bits]
        return _DTYPE_BYTES.get(self.torch_dtype, 2)

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights on the GPUs (all ranks together): ``weight_bytes_known`` when the
        config gave it, else ``params_b x bytes_per_param``."""
        if self.weight_bytes_known:
            return self.weight_bytes_known
        return int(self.params_b * 1e9 * self.bytes_per_param)
