"""The ``vllm serve`` settings that change capacity, read from an argument list.

The planner needs only a dozen of vLLM's flags (lengths, batch limits, memory share, KV
dtype, block size...). They are read with the cluster's vLLM version's real parser, so
aliases and prefixes mean what vLLM makes of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.planning import kv

__all__ = ["ServeSettings", "settings_from_flags"]


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    """The ``vllm serve`` settings that change capacity, as the flags give them.

    ``None`` means "vLLM's default", which may depend on the GPU.
    """

    max_model_len: int | None = None
    max_model_len_auto: bool = False
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    kv_cache_dtype: str = "auto"
    block_size: int = kv.DEFAULT_BLOCK_SIZE
    enforce_eager: bool = False
    quantization: str | None = None
    attention_backend: str | None = None
    reasoning_parser: str | None = None
    kv_offloading_size: float | None = None
    # --disable-hybrid-kv-cache-manager, or a KV connector (0.9-0.11 turn the hybrid manager
    # off for every connector; 0.33 only for those without HMA support, which is not told
    # apart here): sliding-window layers are then sized as full attention.
    hybrid_kv_cache_manager_off: bool = False
    enable_prefix_caching: bool | None = None
    mamba_cache_dtype: str = "auto"
    mamba_ssm_cache_dtype: str = "auto"


def _to_int(value: Any) -> int | None:
    from hpclaunch.vllm.flags.values import human_readable_int

    if value in (None, "", "None"):
        return None
    try:
        return human_readable_int(str(value))
    except ValueError:
        return None


def _to_float(value: Any) -> float | None:
    if value in (None, "", "None"):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def settings_from_flags(argv: list[str] | tuple[str, ...], version: str) -> ServeSettings:
    """Read the capacity-relevant settings from a ``vllm serve`` argument list.

    Uses the version's real parser (aliases such as ``-q``, ``--max_model_len``, prefixes);
    an argument list it rejects is read leniently instead, since preflight reports the bad
    flag itself and the planner should still say what it can.
    """
    from hpclaunch.vllm.flags.argparser import parse_serve_args

    try:
        args = parse_serve_args(list(argv), version)
    except UserError:
        args = _lenient_args(list(argv))
    mml = args.get("max_model_len")
    auto = str(mml).strip().lower() in ("auto", "-1")
    return ServeSettings(
        max_model_len=None if auto else _to_int(mml),
        max_model_len_auto=auto,
        max_num_seqs=_to_int(args.get("max_num_seqs")),
        max_num_batched_tokens=_to_int(args.get("max_num_batched_tokens")),
        gpu_memory_utilization=_to_float(args.get("gpu_memory_utilization")),
        kv_cache_dtype=str(args.get("kv_cache_dtype") or "auto"),
        block_size=_to_int(args.get("block_size")) or kv.DEFAULT_BLOCK_SIZE,
        enforce_eager=bool(args.get("enforce_eager")),
        quantization=(str(args["quantization"]).lower()
                      if args.get("quantization") not in (None, "", "None") else None),
        attention_backend=(str(args["attention_backend"])
                           if args.get("attention_backend") not in (None, "") else None),
        reasoning_parser=(str(args["reasoning_parser"])
                          if args.get("reasoning_parser") not in (None, "") else None),
        kv_offloading_size=_to_float(args.get("kv_offloading_size")),
        hybrid_kv_cache_manager_off=any(
            args.get(k) not in (None, "", "None", False)
            for k in ("disable_hybrid_kv_cache_manager", "kv_transfer_config")),
        enable_prefix_caching=_prefix_caching(args),
        mamba_cache_dtype=str(args.get("mamba_cache_dtype") or "auto"),
        mamba_ssm_cache_dtype=str(args.get("mamba_ssm_cache_dtype") or "auto"),
    )


def _prefix_caching(args: dict[str, Any]) -> bool | None:
    """``--[no-]enable-prefix-caching`` as given (the lenient reader keeps the ``no_`` key)."""
    if args.get("no_enable_prefix_caching") is not None:
        return False
    value = args.get("enable_prefix_caching")
    if value is None:
        return None
    return str(value).lower() not in ("false", "0", "no")


def _lenient_args(argv: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if not token.startswith("--"):
            continue
        name, eq, value = token[2:].partition("=")
        dest = name.replace("-", "_")
        if eq:
            out[dest] = value
        elif i < len(argv) and not argv[i].startswith("-"):
            out[dest] = argv[i]
            i += 1
        else:
            out[dest] = True
    return out
