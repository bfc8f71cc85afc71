"""The stand-in's command line: ``vllm serve`` arguments, their defaults and the environment.

Parsed once at start-up into :class:`Settings`; every other module trusts its fields.
The knobs are listed in :mod:`hpclaunch.standin`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from hpclaunch.planning import kv
from hpclaunch.planning.kv import GiB
from hpclaunch.vllm.flags.values import human_readable_int

VLLM_VERSION = "0.33.0"
FAIL_MODES = (
    "oom", "kv_too_small", "no_kv_memory", "port_in_use", "model_missing", "bad_parser",
    "flashinfer", "exit", "crash_after_ready", "hang_after_ready",
)


@dataclass
class Settings:
    """Everything the stand-in decided at startup from argv, defaults and the environment."""

    model: str
    served_names: list[str]
    host: str | None
    port: int
    api_keys: list[str]
    tp: int
    pp: int
    dp: int
    dp_local: int
    dp_start: int
    api_server_count: int
    headless: bool
    gpu: kv.GPU
    gpu_util: float
    block_size: int
    kv_cache_dtype: str
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len_arg: str | None
    reasoning_parser: str
    enforce_eager: bool
    log_stats: bool
    aggregate_stats: bool
    access_log: bool
    shown_args: dict[str, Any]
    fail: str = ""
    startup_delay: float = 0.0
    crash_after: float = 2.0
    token_delay: float = 0.0
    batch_saturation: float = 16.0
    prefill_delay: float = 0.0
    load_seconds: float = 0.0
    stats_interval: float = 10.0
    record_path: str | None = None


def _env_float(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        return default


def parse_settings(args: dict[str, Any], defaults: dict[str, Any]) -> Settings:
    def get(dest: str) -> Any:
        return args.get(dest, defaults.get(dest))

    def as_int(dest: str, fallback: int) -> int:
        value = get(dest)
        return fallback if value in (None, "", "None") else int(value)

    model = args.get("model_tag") or args.get("model") or str(defaults.get("model"))
    served = get("served_model_name") or [model]
    if isinstance(served, str):
        served = [served]
    keys = get("api_key") or []
    if isinstance(keys, str):
        keys = [keys]
    if not keys and os.environ.get("VLLM_API_KEY"):
        keys = [os.environ["VLLM_API_KEY"]]
    dp = as_int("data_parallel_size", 1)
    gpu = kv.gpu_named(os.environ.get("HPCLAUNCH_STANDIN_GPU") or "H100-80GB")
    big_gpu = gpu.memory_bytes >= 70 * GiB and not gpu.name.startswith("A100")
    shown = {k: ("<redacted>" if k in ("api_key", "hf_token") else v) for k, v in args.items()}
    api_servers = get("api_server_count")
    return Settings(
        model=model,
        served_names=list(served),
        host=get("host") or None,
        port=as_int("port", 8000),
        api_keys=list(keys),
        tp=as_int("tensor_parallel_size", 1),
        pp=as_int("pipeline_parallel_size", 1),
        dp=dp,
        dp_local=as_int("data_parallel_size_local", dp),
        dp_start=as_int("data_parallel_start_rank", 0),
        api_server_count=dp if api_servers in (None, "", "None") else int(api_servers),
        headless=bool(get("headless")),
        gpu=gpu,
        gpu_util=float(get("gpu_memory_utilization") or 0.92),
        block_size=as_int("block_size", kv.DEFAULT_BLOCK_SIZE),
        kv_cache_dtype=str(get("kv_cache_dtype") or "auto"),
        max_num_seqs=as_int("max_num_seqs", 1024 if big_gpu else 256),
        max_num_batched_tokens=human_readable_int(
            str(get("max_num_batched_tokens") or (8192 if big_gpu else 2048))),
        max_model_len_arg=get("max_model_len"),
        reasoning_parser=str(get("reasoning_parser") or ""),
        enforce_eager=bool(get("enforce_eager")),
        log_stats=not get("disable_log_stats"),
        aggregate_stats=bool(get("aggregate_engine_logging")),
        access_log=not get("disable_uvicorn_access_log"),
        shown_args=shown,
        fail=os.environ.get("HPCLAUNCH_STANDIN_FAIL", "").strip().lower(),
        startup_delay=_env_float("HPCLAUNCH_STANDIN_STARTUP_DELAY", 0.0),
        crash_after=_env_float("HPCLAUNCH_STANDIN_CRASH_AFTER", 2.0),
        token_delay=_env_float("HPCLAUNCH_STANDIN_TOKEN_DELAY", 0.0),
        batch_saturation=max(0.1, _env_float("HPCLAUNCH_STANDIN_BATCH_SATURATION", 16.0)),
        prefill_delay=_env_float("HPCLAUNCH_STANDIN_PREFILL_DELAY", 0.0),
        load_seconds=max(0.0, _env_float("HPCLAUNCH_STANDIN_LOAD_SECONDS", 0.0)),
        stats_interval=max(0.05, _env_float("VLLM_LOG_STATS_INTERVAL", 10.0)),
        record_path=os.environ.get("HPCLAUNCH_STANDIN_RECORD") or None,
    )
