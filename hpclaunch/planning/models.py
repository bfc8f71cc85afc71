"""Model facts without the network: layers, KV heads, dtype, context length, reasoning parser.

The planner needs a handful of numbers from a model's ``config.json`` to size the KV cache,
pick a reasoning parser and refuse impossible layouts before anything is queued. Login
nodes often have no internet, so the facts come from three offline places, in order:

1. the bundled catalog (``hpclaunch/planning/data/model_catalog.json``), which also defines short
   aliases such as ``Qwen3-VL-2B``;
2. a local model directory that holds a ``config.json``;
3. the Hugging Face cache, ``$HF_HUB_CACHE`` or ``$HF_HOME/hub`` (``~/.cache/huggingface/hub``),
   where ``models--org--name/snapshots/<rev>/config.json`` lives after any earlier download.

Nothing here downloads: an id that is in none of them gives ``None`` and the caller decides.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.validate import units

__all__ = [
    "ModelInfo",
    "catalog_names",
    "hf_hub_cache",
    "info_from_config",
    "model_info",
    "resolve_model_id",
]

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

# model_type values whose attention is not "every layer keeps every token": sliding windows
# on some layers, or linear-attention / state-space layers mixed in. vLLM sizes their KV
# cache per layer group, so tokens = concurrency x length does not hold for them.
_HYBRID_MODEL_TYPES = frozenset({
    "gemma2", "gemma3", "gemma3_text", "gemma3n", "gpt_oss", "cohere2", "jamba", "bamba",
    "falcon_h1", "granitemoehybrid", "nemotron_h", "qwen3_next", "minimax", "minimax_m1",
    "mamba", "mamba2", "zamba2", "lfm2", "plamo2", "phi4flash", "hunyuan_v1_dense",
})

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
        """Approximate bytes of weights on the GPUs (all ranks together), see bytes_per_param."""
        return int(self.params_b * 1e9 * self.bytes_per_param)


# --------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class _Catalog:
    models: tuple[ModelInfo, ...]
    by_key: dict[str, ModelInfo]  # lower-cased id, id tail and alias -> info
    names: tuple[str, ...]  # canonical short names (id tails + explicit aliases)


def _data_text(name: str) -> str:
    """A bundled data file, through importlib.resources so zipped installs work too; falls
    back to the file beside this module while ``hpclaunch`` is an implicit namespace package
    (3.11's resources cannot read those when sys.path holds a relative entry)."""
    try:
        data = resources.files("hpclaunch.planning").joinpath("data")
        return data.joinpath(name).read_text("utf-8")
    except (NotADirectoryError, FileNotFoundError, TypeError):
        return (Path(__file__).resolve().parent / "data" / name).read_text("utf-8")


@lru_cache(maxsize=1)
def _catalog() -> _Catalog:
    raw = json.loads(_data_text("model_catalog.json"))
    models: list[ModelInfo] = []
    by_key: dict[str, ModelInfo] = {}
    names: list[str] = []
    for entry in raw["models"]:
        fields = dict(entry)
        aliases = fields.pop("aliases", [])
        info = ModelInfo(**fields)
        models.append(info)
        tail = info.model_id.rsplit("/", 1)[-1]
        for key in (info.model_id, tail, *aliases):
            existing = by_key.get(key.lower())
            if existing is not None and existing is not info:
                raise ValueError(f"model_catalog.json: {key!r} names two models")
            by_key[key.lower()] = info
        names.extend([tail, *aliases])
    return _Catalog(tuple(models), by_key, tuple(names))


def catalog_names() -> list[str]:
    """Short names the bundled catalog accepts (id tails and aliases), sorted case-insensitively."""
    return sorted(set(_catalog().names), key=str.lower)


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name in (".", "..")


def resolve_model_id(name: str) -> str:
    """Turn what a user typed into the id vLLM should be given.

    A catalog alias (``Qwen3-VL-2B``, any case) becomes its full id
    (``Qwen/Qwen3-VL-2B-Instruct``). An existing local path or an ``org/name`` id is returned
    unchanged: vLLM accepts any Hub id and we must not second-guess private models.

    Raises
    ------
    UserError
        For an unknown bare name (with the closest catalog names), a path that does not exist,
        or something that is neither a path nor ``org/name``.
    """
    text = name.strip()
    if not text:
        raise UserError("model name is empty: give a Hugging Face id (org/name), a local "
                        "directory or a catalog name such as Qwen3-8B")
    units.check(text, units.model_name, "model")
    if os.path.exists(os.path.expanduser(text)):
        return text
    if _looks_like_path(text):
        raise UserError(f"model directory {text!r} does not exist: check the path, or give a "
                        "Hugging Face id (org/name)")
    hit = _catalog().by_key.get(text.lower())
    if hit is not None and "/" not in text:
        return hit.model_id
    if "/" in text:
        org, _, rest = text.partition("/")
        if org and rest and "/" not in rest:
            return text
        raise UserError(f"model {text!r} is neither an existing directory nor a Hugging Face "
                        "id of the form org/name")
    names = catalog_names()
    lowered = {n.lower(): n for n in names}
    near = [lowered[n] for n in difflib.get_close_matches(text.lower(), list(lowered), n=4,
                                                           cutoff=0.5)]
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    raise UserError(f"unknown model {text!r}{hint} Give a full Hugging Face id (org/name), a "
                    "local directory, or one of hpclaunch's catalog names")


# --------------------------------------------------------------------------- config.json


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache directory, following ``HF_HUB_CACHE`` and ``HF_HOME``."""
    explicit = os.environ.get("HF_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join("~", ".cache", "huggingface")
    return Path(home).expanduser() / "hub"


def _cached_snapshot(model_id: str) -> Path | None:
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


def _estimate_params(text: dict[str, Any], cfg: dict[str, Any], hidden: int, heads: int,
                     kv_heads: int, head_dim: int, layers: int) -> float:
    """Parameter count from the architecture when no weight files tell us (gated MLP, GQA,
    optional MoE experts, plus a ViT-style vision tower). Good to a few percent for dense
    decoder-only models; it is only used to estimate weight memory."""
    inter = int(_first(text, "intermediate_size", "ffn_hidden_size") or 4 * hidden)
    attn = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    experts = int(_first(text, "num_experts", "n_routed_experts", "num_local_experts") or 0)
    if experts:
        moe_inter = int(_first(text, "moe_intermediate_size") or inter)
        shared = int(_first(text, "n_shared_experts", "num_shared_experts") or 0)
        mlp = 3 * hidden * moe_inter * (experts + shared) + hidden * experts
    else:
        mlp = 3 * hidden * inter
    vocab = int(_first(text, "vocab_size") or cfg.get("vocab_size") or 32000)
    tied = bool(_first(text, "tie_word_embeddings") or cfg.get("tie_word_embeddings"))
    total = layers * (attn + mlp) + vocab * hidden * (1 if tied else 2)
    vision = cfg.get("vision_config")
    if isinstance(vision, dict):
        v_hidden = int(_first(vision, "hidden_size", "embed_dim", "width") or 0)
        v_inter = int(_first(vision, "intermediate_size") or 4 * v_hidden)
        v_layers = int(_first(vision, "depth", "num_hidden_layers", "layers") or 0)
        total += v_layers * (4 * v_hidden * v_hidden + 2 * v_hidden * v_inter)
    return total / 1e9


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
    if weights_bytes:
        params_b = weights_bytes / info.bytes_per_param / 1e9
    else:
        params_b = _estimate_params(text, cfg, hidden, heads, kv_heads, head_dim, layers)
    return replace(info, params_b=round(params_b, 3), reasoning=reasoning,
                   reasoning_parser=_PARSERS.get(family) if reasoning else None)


def _info_from_dir(directory: Path, model_id: str) -> ModelInfo | None:
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


def model_info(name_or_id: str) -> ModelInfo | None:
    """Facts about a model from the catalog, a local directory or the HF cache; never the network.

    Returns ``None`` when the model is in none of them (or its config.json is unreadable), so
    callers can say "estimate unavailable" instead of guessing.
    """
    text = name_or_id.strip()
    hit = _catalog().by_key.get(text.lower())
    if hit is not None:
        return hit
    local = Path(text).expanduser()
    if (local / "config.json").is_file():
        return _info_from_dir(local, text)
    if text.count("/") == 1 and not _looks_like_path(text):
        snapshot = _cached_snapshot(text)
        if snapshot is not None:
            return _info_from_dir(snapshot, text)
    return None

