"""Model facts from a Hugging Face ``config.json``: a local directory or the HF cache.

Login nodes often have no internet, so this reads only what is already on disk: a model
directory that holds a ``config.json``, or the Hugging Face cache, ``$HF_HUB_CACHE`` or
``$HF_HOME/hub`` (``~/.cache/huggingface/hub``), where
``models--org--name/snapshots/<rev>/config.json`` lives after any earlier download.
Nothing here downloads.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from hpclaunch.planning.modelinfo import ModelInfo, RecurrentState
from hpclaunch.planning.weights import (
    quant_format,
    vision_params,
    weight_bytes,
)

__all__ = ["cached_snapshot", "hf_hub_cache", "info_from_config", "info_from_dir", "layer_kinds"]

# model_type values whose attention is not "every layer keeps every token": sliding windows
# on some layers, or linear-attention / state-space layers mixed in. vLLM sizes their KV
# cache per layer group, so tokens = concurrency x length does not hold for them.
_HYBRID_MODEL_TYPES = frozenset({
    "gemma2", "gemma3", "gemma3_text", "gemma3n", "gpt_oss", "cohere2", "jamba", "bamba",
    "falcon_h1", "granitemoehybrid", "nemotron_h", "qwen3_next", "minimax", "minimax_m1",
    "mamba", "mamba2", "zamba2", "lfm2", "plamo2", "phi4flash", "hunyuan_v1_dense",
})

# transformers' Gemma3TextConfig.sliding_window_pattern default: every 6th layer is global.
_GEMMA3_PATTERN = 6

# model_type -> (family, reasoning parser registered in vLLM for thinking variants)
_PARSERS: dict[str, str] = {
    "qwen3": "qwen3",
    "qwen3_moe": "qwen3",
    "qwen3_vl": "qwen3",
    "qwen3_vl_moe": "qwen3",
    "deepseek_r1_distill": "deepseek_r1",
    "deepseek_v3": "deepseek_r1",
    "glm4_moe": "glm45",
    "gpt_oss": "openai_gptoss",
}

# Keys vLLM looks at, in order, to derive a model's maximum context length.
_MAX_LEN_KEYS = (
    "max_position_embeddings", "n_positions", "max_seq_len", "seq_length",
    "max_sequence_length", "max_seq_length", "seq_len",
)


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache directory, following ``HF_HUB_CACHE`` and ``HF_HOME``."""
    explicit = os.environ.get("HF_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join("~", ".cache", "huggingface")
    return Path(home).expanduser() / "hub"


def cached_snapshot(model_id: str) -> Path | None:
    """Directory of the cached snapshot of ``org/name``: the one ``refs/main`` names, else the
    most recently modified one that holds a config.json."""
    repo = hf_hub_cache() / ("models--" + model_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        pinned = snapshots / ref.read_text().strip()
        if (pinned / "config.json").is_file():
            return pinned
    candidates = [d for d in snapshots.iterdir() if (d / "config.json").is_file()]
    if not candidates:
        return None
    return max(candidates, key=lambda d: (d / "config.json").stat().st_mtime)


def _first(mapping: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            return value
    return None


def _quantization(cfg: dict[str, Any]) -> tuple[str | None, int | None]:
    qc = cfg.get("quantization_config") or cfg.get("compression_config")
    if not isinstance(qc, dict):
        return None, None
    method = str(qc.get("quant_method") or qc.get("format") or "unknown").lower()
    bits = qc.get("bits") or qc.get("w_bit") or qc.get("weight_bits")
    if qc.get("load_in_4bit"):  # bitsandbytes
        bits = 4
    elif qc.get("load_in_8bit"):
        bits = 8
    if method in ("compressed-tensors", "compressed_tensors"):
        # Read the first weight scheme: 8-bit float weights are FP8, else keep the method.
        for group in (qc.get("config_groups") or {}).values():
            weights = (group or {}).get("weights") or {}
            bits = weights.get("num_bits", bits)
            if weights.get("type") == "float" and bits == 8:
                return "fp8", 8
            break
    if method == "fp8":
        bits = 8
    return method, int(bits) if isinstance(bits, (int, float)) else None


def _estimate_params(text: dict[str, Any], cfg: dict[str, Any], kinds: tuple[str, ...],
                     recurrent: RecurrentState | None) -> float:
    """Parameters in billions when no weight files tell us: the same count by tensor kind as
    the weight bytes (:func:`~hpclaunch.planning.weights.weight_bytes`), at 2 B each."""
    vision = cfg.get("vision_config")
    v_params = float(vision_params(vision)) if isinstance(vision, dict) else 0.0
    count, _ = weight_bytes(text, quant_format({}), v_params, kinds=kinds, recurrent=recurrent)
    return count / 2 / 1e9


def _weights_size(directory: Path) -> int | None:
    """Bytes of the weight files, from the safetensors index or the files themselves."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            size = json.loads(index.read_text()).get("metadata", {}).get("total_size")
        except (OSError, ValueError):
            size = None
        if isinstance(size, (int, float)) and size > 0:
            return int(size)
    files = list(directory.glob("*.safetensors"))
    total = sum(f.stat().st_size for f in files if f.exists())
    return total or None


def _family(model_type: str, model_id: str) -> str:
    name = model_id.lower()
    if "deepseek-r1-distill" in name:
        return "deepseek_r1_distill"
    return model_type or "unknown"


def _is_reasoning(family: str, model_id: str) -> bool:
    name = model_id.rsplit("/", 1)[-1].lower()
    if family == "gpt_oss":  # always reasons (harmony analysis channel)
        return True
    if "thinking" in name or family == "deepseek_r1_distill" or "qwq" in name:
        return True
    if "-r1" in name and family in ("deepseek_v3", "qwen2", "llama"):
        return True
    # Qwen3 text models are hybrid thinkers that think by default; the 2507 "Instruct" and
    # the VL "Instruct" releases do not think at all.
    return family in ("qwen3", "qwen3_moe") and "instruct" not in name


def _is_hybrid(model_type: str, text: dict[str, Any]) -> bool:
    if model_type in _HYBRID_MODEL_TYPES:
        return True
    layer_types = text.get("layer_types")
    if isinstance(layer_types, list) and len(set(layer_types)) > 1:
        return True
    window = text.get("sliding_window")
    if not window:
        return False
    # Qwen2-family configs carry a sliding_window that is off unless use_sliding_window.
    if "use_sliding_window" in text:
        return bool(text["use_sliding_window"])
    return True


def info_from_config(cfg: dict[str, Any], model_id: str,
                     weights_bytes: int | None = None) -> ModelInfo:
    """Build a :class:`ModelInfo` from a parsed Hugging Face ``config.json``.

    VL models keep the language model's numbers in ``text_config`` (``llm_config`` for
    InternVL-style configs); top-level values fill what the nested one lacks. Defaults follow
    transformers: ``num_key_value_heads`` = attention heads (no GQA), ``head_dim`` =
    ``hidden_size / num_attention_heads``.

    Parameters
    ----------
    cfg
        The decoded config.json.
    model_id
        Id or path to record, and the name used to recognise thinking variants.
    weights_bytes
        Size of the weight files when known; it gives a better parameter count than the
        architecture estimate.

    Raises
    ------
    ValueError
        When the config lacks the layer or head counts the KV arithmetic needs.
    """
    nested = _first(cfg, "text_config", "llm_config", "language_config")
    text = {**cfg, **nested} if isinstance(nested, dict) else dict(cfg)
    model_type = str(cfg.get("model_type") or text.get("model_type") or "")
    layers = _first(text, "num_hidden_layers", "n_layer", "num_layers", "n_layers")
    heads = _first(text, "num_attention_heads", "n_head", "num_heads")
    hidden = _first(text, "hidden_size", "n_embd", "d_model")
    if not layers or not heads or not hidden:
        raise ValueError(f"{model_id}: config.json lacks num_hidden_layers, num_attention_heads "
                         "or hidden_size")
    layers, heads, hidden = int(layers), int(heads), int(hidden)
    kv_heads = int(_first(text, "num_key_value_heads", "num_kv_heads", "multi_query_group_num")
                   or heads)
    head_dim = int(_first(text, "head_dim") or hidden // heads)
    max_len = _first(text, *_MAX_LEN_KEYS) or 2048
    dtype = str(_first(text, "torch_dtype", "dtype") or "bfloat16").replace("torch.", "")
    quant, bits = _quantization(cfg)
    if quant is None and isinstance(nested, dict):
        quant, bits = _quantization(nested)
    family = _family(model_type, model_id)
    info = ModelInfo(
        model_id=model_id, family=family, params_b=0.0, torch_dtype=dtype, num_layers=layers,
        num_attention_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim,
        max_position_embeddings=int(max_len), quantization=quant, quant_bits=bits,
        vision=any(k in cfg for k in ("vision_config", "image_token_id", "image_token_index")),
        sliding_window_or_hybrid=_is_hybrid(model_type, text),
    )
    reasoning = _is_reasoning(family, model_id)
    kinds, window = layer_kinds(model_type, text, layers)
    recurrent = recurrent_state(model_type, text, dtype)
    if weights_bytes:
        params_b = weights_bytes / info.bytes_per_param / 1e9
    else:
        params_b = _estimate_params(text, cfg, kinds, recurrent)
    known, note = _known_weights(text, cfg, weights_bytes, kinds, recurrent)
    experts = int(_first(text, "num_local_experts", "n_routed_experts", "num_experts") or 0)
    padded: tuple[int, ...] = ()
    if quant == "mxfp4" and experts:
        moe_inter = int(_first(text, "moe_intermediate_size", "intermediate_size") or 0)
        padded = (layers - int(text.get("first_k_dense_replace") or 0), experts, hidden,
                  moe_inter)
    mla = text.get("kv_lora_rank")
    return replace(info, params_b=round(params_b, 3), reasoning=reasoning,
                   recurrent=recurrent,
                   reasoning_parser=_PARSERS.get(family) if reasoning else None,
                   layer_types=kinds, sliding_window=window,
                   attention_chunk_size=(int(text["attention_chunk_size"])
                                         if "chunked" in kinds else None),
                   kv_lora_rank=int(mla) if mla else None,
                   qk_rope_head_dim=int(text.get("qk_rope_head_dim") or 0) if mla else None,
                   weight_bytes_known=known, weight_note=note, padded_experts=padded,
                   experts_per_token=int(_first(text, "num_experts_per_tok", "experts_per_token")
                                         or 0) if experts else 0,
                   moe_intermediate_size=int(_first(text, "moe_intermediate_size",
                                                    "intermediate_size") or 0) if experts else 0)


def _known_weights(text: dict[str, Any], cfg: dict[str, Any], on_disk: int | None,
                   kinds: tuple[str, ...] = (), recurrent: RecurrentState | None = None,
                   ) -> tuple[int | None, str]:
    """Weight bytes per tensor kind (:mod:`hpclaunch.planning.weights`); the files' own size
    when the config cannot be counted."""
    vision = cfg.get("vision_config")
    v_params = float(vision_params(vision)) if isinstance(vision, dict) else 0.0
    fmt = quant_format(cfg)
    if on_disk and fmt.name != "mxfp4":  # MXFP4 experts are padded on load; the files are not
        return on_disk, f"{on_disk / (1 << 30):.2f} GiB, the size of the weight files"
    try:
        return weight_bytes(text, fmt, v_params, kinds=kinds, recurrent=recurrent)
    except (TypeError, ValueError):
        return (on_disk, "size of the weight files") if on_disk else (None, "")


_GDN_MODEL_TYPES = frozenset({"qwen3_next", "qwen3_5", "qwen3_5_text", "qwen3_5_moe",
                               "qwen3_5_moe_text"})
_DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}


def recurrent_state(model_type: str, text: dict[str, Any], dtype: str) -> RecurrentState | None:
    """The recurrent layers' state shape as vLLM 0.33's model files read it, or ``None``.

    Gated delta nets (``qwen3_next``, ``qwen3_5*``: ``get_mamba_state_shape_from_config``
    reads ``linear_num_key_heads`` / ``linear_num_value_heads`` / ``linear_*_head_dim`` /
    ``linear_conv_kernel_dim``) and Nemotron-H's Mamba2 (``mamba_num_heads``,
    ``mamba_head_dim``, ``n_groups``, ``ssm_state_size``, ``conv_kernel``). The conv state
    is in the model dtype; the SSM state follows the config's ``mamba_ssm_dtype`` (Qwen3.5)
    or ``mamba_ssm_cache_dtype`` (Nemotron-H, float32 when absent), else the model dtype.
    Other recurrent families (Jamba, Granite-4.0-H, Falcon-H1, MiniMax...) give ``None``.
    """
    conv = _DTYPE_BYTES.get(dtype, 2)
    try:
        if model_type in _GDN_MODEL_TYPES:
            ssm = _DTYPE_BYTES.get(str(text.get("mamba_ssm_dtype") or dtype), conv)
            return RecurrentState(
                kind="gdn", heads=int(text["linear_num_value_heads"]),
                head_dim=int(text["linear_value_head_dim"]),
                groups=int(text["linear_num_key_heads"]), state=int(text["linear_key_head_dim"]),
                conv_kernel=int(text["linear_conv_kernel_dim"]), conv_bytes=conv, ssm_bytes=ssm)
        if model_type == "nemotron_h":
            ssm = _DTYPE_BYTES.get(str(text.get("mamba_ssm_cache_dtype") or "float32"), 4)
            return RecurrentState(
                kind="mamba2", heads=int(text["mamba_num_heads"]),
                head_dim=int(text["mamba_head_dim"]), groups=int(text["n_groups"]),
                state=int(text["ssm_state_size"]), conv_kernel=int(text["conv_kernel"]),
                conv_bytes=conv, ssm_bytes=ssm,
                chunk_size=int(_first(text, "chunk_size", "mamba_chunk_size") or 0))
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _kind(name: str) -> str:
    name = name.lower()
    if "sliding" in name or "local" in name:
        return "sliding"
    if any(k in name for k in ("linear", "mamba", "conv", "recurrent", "deltanet")):
        return "linear"
    return "full"


def layer_kinds(model_type: str, text: dict[str, Any],
                layers: int) -> tuple[tuple[str, ...], int | None]:
    """Per-layer attention kinds and the sliding window, as vLLM reads them: ``layer_types``
    when the config lists it; Gemma 2's alternation and Gemma 3's ``sliding_window_pattern``;
    otherwise one window on every layer (Mistral v0.1) unless ``use_sliding_window`` is off
    (Qwen2). ``()`` means plain full attention everywhere."""
    chunk = text.get("attention_chunk_size")
    if isinstance(chunk, int) and chunk > 0:
        return _chunked_kinds(text, layers), None
    window = text.get("sliding_window")
    if "use_sliding_window" in text and not text["use_sliding_window"]:
        window = None
    window = int(window) if isinstance(window, (int, float)) and window > 0 else None
    listed = text.get("layer_types")
    blocks = text.get("hybrid_override_pattern") or text.get("layers_block_type")
    if model_type == "nemotron_h" and blocks and len(blocks) == layers:
        # Nemotron-H: M / "mamba" = Mamba2, * / "attention" = attention; MLP and MoE blocks
        # (-, E, "mlp", "moe") keep no cache
        kind = {"M": "linear", "mamba": "linear", "*": "full", "attention": "full"}
        return tuple(kind.get(str(c), "none") for c in blocks), None
    interval = text.get("full_attention_interval")
    if (model_type in _GDN_MODEL_TYPES and not isinstance(listed, list)
            and isinstance(interval, int) and interval > 0):
        return tuple("full" if (i + 1) % interval == 0 else "linear"
                     for i in range(layers)), None
    if isinstance(listed, list) and len(listed) == layers:
        kinds = tuple(_kind(str(t)) for t in listed)
        if set(kinds) == {"full"}:
            return (), None
        return kinds, window if "sliding" in kinds else None
    if window is None:
        return (), None
    # Gemma 3's released config.json files omit sliding_window_pattern: transformers'
    # Gemma3TextConfig defaults it to 6 (five local layers, then one global).
    pattern = text.get("sliding_window_pattern")
    if model_type in ("gemma3", "gemma3_text") and pattern is None:
        pattern = _GEMMA3_PATTERN
    if model_type.startswith("gemma3") and isinstance(pattern, int) and pattern > 0:
        return tuple("full" if (i + 1) % pattern == 0 else "sliding"
                     for i in range(layers)), window
    if model_type == "gemma2":
        return tuple("sliding" if i % 2 == 0 else "full" for i in range(layers)), window
    return ("sliding",) * layers, window


def _chunked_kinds(text: dict[str, Any], layers: int) -> tuple[str, ...]:
    """Llama 4: layers with RoPE use chunked local attention, the NoPE layers full attention
    (vLLM's llama4.py: ``nope = no_rope_layers[i] == 0``). An empty ``no_rope_layers``
    means transformers' default, NoPE on every ``no_rope_layer_interval``-th layer (4)."""
    listed = text.get("no_rope_layers")
    if not (isinstance(listed, list) and len(listed) == layers):
        every = int(text.get("no_rope_layer_interval") or 4)
        listed = [int((i + 1) % every != 0) for i in range(layers)]
    return tuple("full" if flag == 0 else "chunked" for flag in listed)


def info_from_dir(directory: Path, model_id: str) -> ModelInfo | None:
    config = directory / "config.json"
    try:
        cfg = json.loads(config.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None
    try:
        return info_from_config(cfg, model_id, _weights_size(directory))
    except (ValueError, TypeError):
        return None
