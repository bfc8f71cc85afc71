"""A vLLM stand-in: ``python -m hpclaunch.standin serve MODEL [vllm serve flags...]``.

It lets the whole submit -> watch -> use path run on machines without a GPU (CI, laptops,
the demo): it parses its arguments with the real flag snapshot (an unknown flag exits 2 with
vLLM's own message), prints vLLM 0.33's startup lines in order with numbers computed by
:mod:`hpclaunch.planning.kv` from the model's facts and a simulated GPU, and serves the endpoints
hpclaunch and its users touch: ``/health``, ``/v1/models``, ``/v1/chat/completions``
(plain and streaming), ``/v1/completions`` and ``/metrics``. Standard library only, so it
starts in a fraction of a second wherever hpclaunch is installed.

The very first line says it is a simulation, and it is still a parseable vLLM log line::

    (APIServer pid=7) WARNING 11-25 12:00:00 [standin.py:1] [hpclaunch_standin] SIMULATED ...

Knobs (environment):

``HPCLAUNCH_STANDIN_GPU``
    GPU to simulate (name from :data:`hpclaunch.planning.kv.GPUS`), default ``H100-80GB``.
``HPCLAUNCH_STANDIN_STARTUP_DELAY``
    Seconds to wait (not listening yet) before "Application startup complete".
``HPCLAUNCH_STANDIN_FAIL``
    Force a failure: ``oom``, ``kv_too_small``, ``no_kv_memory``, ``port_in_use``,
    ``model_missing``, ``bad_parser``, ``flashinfer``, ``exit``, ``crash_after_ready``,
    ``hang_after_ready``. Real conditions fail on their own without it: weights larger than
    the GPU, a ``--max-model-len`` that does not fit the KV cache or exceeds the model's
    context, an unknown ``--reasoning-parser``, a port in use, a missing local model dir.
``HPCLAUNCH_STANDIN_CRASH_AFTER``
    Seconds after readiness for ``crash_after_ready`` / ``hang_after_ready`` (default 2).
``HPCLAUNCH_STANDIN_RECORD``
    Append one JSON line per HTTP request (method, path, model, Authorization) to this file.
``HPCLAUNCH_STANDIN_TOKEN_DELAY``
    Seconds per generated token, so requests stay "Running" for a while (default 0).
``HPCLAUNCH_STANDIN_VLLM_VERSION``
    Flag snapshot to parse arguments with (default 0.33.0); the log format stays 0.33's.
``VLLM_API_KEY``, ``VLLM_LOG_STATS_INTERVAL`` (fractions allowed), ``VLLM_ALLOW_LONG_MAX_MODEL_LEN``
    As in vLLM.
"""

from __future__ import annotations

import errno
import itertools
import json
import math
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from hpclaunch.errors import UserError
from hpclaunch.planning import kv
from hpclaunch.planning.models import ModelInfo, model_info
from hpclaunch.vllm.flags.argparser import build_serve_parser
from hpclaunch.vllm.flags.catalogue import parser_names, serve_defaults
from hpclaunch.vllm.flags.values import human_readable_int

VLLM_VERSION = "0.33.0"
FAIL_MODES = (
    "oom", "kv_too_small", "no_kv_memory", "port_in_use", "model_missing", "bad_parser",
    "flashinfer", "exit", "crash_after_ready", "hang_after_ready",
)
_DOCS = "https://docs.vllm.ai/en/latest/configuration/conserving_memory/"
# vllm/entrypoints/common/startup.py: the logo, monochrome (not a terminal), version and model.
_LOGO = ("\n       █     █     █▄   ▄█\n ▄▄ ▄█ █     █     █ ▀▄▀ █  version %s\n"
         "  █▄█▀ █     █     █     █  model   %s\n   ▀▀  ▀▀▀▀▀ ▀▀▀▀▀ ▀     ▀\n")
_SITE = "/opt/venv/lib/python3.12/site-packages"
GiB = kv.GiB


def _gib(nbytes: float) -> float:
    """GiB the way vLLM prints them: rounded to 2 decimals, no trailing zeros (37.15, 24.0)."""
    return round(nbytes / GiB, 2)


# --------------------------------------------------------------------------- output


class Log:
    """vLLM 0.33 log lines: ``(<process> pid=<pid>) LEVEL MM-DD HH:MM:SS [file:line] msg``.

    Logger lines go to stdout, uvicorn lines and tracebacks to stderr, as in vLLM; every line
    is flushed because the job redirects both into one file that hpclaunch tails. One lock
    keeps lines from different threads whole.
    """

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.pid = os.getpid()
        self._lock = threading.Lock()

    def prefix(self, proc: str) -> str:
        return f"({proc} pid={self.pid}) "

    def write(self, text: str, stream: TextIO | None = None) -> None:
        target = stream or self.out
        with self._lock:
            target.write(text if text.endswith("\n") else text + "\n")
            target.flush()

    def log(self, proc: str, level: str, src: str, msg: str) -> None:
        stamp = time.strftime("%m-%d %H:%M:%S")
        head = f"{self.prefix(proc)}{level} {stamp} [{src}] "
        self.write("\r\n".join(head + line for line in msg.split("\n")))  # NewLineFormatter

    def info(self, proc: str, src: str, msg: str) -> None:
        self.log(proc, "INFO", src, msg)

    def warning(self, proc: str, src: str, msg: str) -> None:
        self.log(proc, "WARNING", src, msg)

    def error(self, proc: str, src: str, msg: str) -> None:
        self.log(proc, "ERROR", src, msg)

    def uvicorn(self, proc: str, msg: str) -> None:
        self.write(f"INFO:     {msg}", self.err)  # 0.33: uvicorn's own format, no prefix

    def traceback(self, proc: str, frames: list[tuple[str, int, str, str]], exc: str) -> None:
        """A Python traceback on stderr, every line carrying the process prefix."""
        lines = ["Traceback (most recent call last):"]
        for path, lineno, func, code in frames:
            lines += [f'  File "{path}", line {lineno}, in {func}', f"    {code}"]
        lines += exc.split("\n")
        self.write("\n".join(lines), self.err)  # plain stderr: no prefix in 0.33


# --------------------------------------------------------------------------- settings


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


def _settings(args: dict[str, Any], defaults: dict[str, Any]) -> Settings:
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
        stats_interval=max(0.05, _env_float("VLLM_LOG_STATS_INTERVAL", 10.0)),
        record_path=os.environ.get("HPCLAUNCH_STANDIN_RECORD") or None,
    )


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


def _plan_memory(s: Settings) -> Memory:
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


# --------------------------------------------------------------------------- engine state


_WORD = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Deterministic stand-in tokenizer: words and punctuation marks."""
    return len(_WORD.findall(text))


@dataclass
class EngineStats:
    """Counters of one DP engine, as its stats logger and /metrics would show them."""

    rank: int
    prompt_tokens: int = 0
    generation_tokens: int = 0
    running: int = 0
    running_tokens: int = 0
    finished: dict[str, int] = field(default_factory=dict)
    interval_prompt: int = 0
    interval_generation: int = 0
    interval_requests: int = 0
    was_active: bool = False


class Engines:
    """Round-robin request placement over the local DP engines, with a lock for counters."""

    def __init__(self, ranks: list[int], total_tokens: int) -> None:
        self.stats = [EngineStats(r) for r in ranks]
        self.total_tokens = max(1, total_tokens)
        self._lock = threading.Lock()
        self._next = itertools.cycle(range(len(self.stats)))

    def start(self, prompt_tokens: int) -> EngineStats:
        with self._lock:
            engine = self.stats[next(self._next)]
            engine.running += 1
            engine.running_tokens += prompt_tokens
            engine.prompt_tokens += prompt_tokens
            engine.interval_prompt += prompt_tokens
            engine.interval_requests += 1
            return engine

    def token(self, engine: EngineStats) -> None:
        with self._lock:
            engine.generation_tokens += 1
            engine.interval_generation += 1
            engine.running_tokens += 1

    def finish(self, engine: EngineStats, prompt_tokens: int, generated: int,
               reason: str) -> None:
        with self._lock:
            engine.running -= 1
            engine.running_tokens -= prompt_tokens + generated
            engine.finished[reason] = engine.finished.get(reason, 0) + 1

    def usage(self, engine: EngineStats) -> float:
        return min(1.0, max(0, engine.running_tokens) / self.total_tokens)

    def snapshot_interval(self) -> list[tuple[EngineStats, int, int, bool]]:
        """(engine, prompt tokens, generated tokens, log it?) since the last call.

        Like vLLM, a line is logged while an engine has work, plus one more after it went
        idle (so the log shows throughput falling to zero), then nothing while idle.
        """
        out = []
        with self._lock:
            for e in self.stats:
                active = e.interval_requests > 0 or e.running > 0 or e.interval_generation > 0
                out.append((e, e.interval_prompt, e.interval_generation, active or e.was_active))
                e.was_active = active
                e.interval_prompt = e.interval_generation = e.interval_requests = 0
        return out


# --------------------------------------------------------------------------- the stand-in


class StandIn:
    """One simulated ``vllm serve`` process."""

    def __init__(self, settings: Settings, log: Log) -> None:
        self.s = settings
        self.log = log
        self.mem = _plan_memory(settings)
        ranks = list(range(settings.dp_start, settings.dp_start + settings.dp_local))
        self.engines = Engines(ranks, self.mem.tokens)
        self.stop = threading.Event()
        self.signalled = False  # set by the SIGTERM/SIGINT handler
        self.dead = threading.Event()
        self.hung = threading.Event()
        self.server: _Server | None = None
        self._record_lock = threading.Lock()
        self.created = int(time.time())

    # ----------------------------------------------------------------- failure output

    def _api_failure(self, frames: list[tuple[str, int, str, str]], exc: str) -> int:
        """An exception in the API server process before the engine starts: exit 1."""
        base = [
            ("/opt/venv/bin/vllm", 10, "<module>", "sys.exit(main())"),
            (f"{_SITE}/vllm/entrypoints/cli/main.py", 73, "main", "args.dispatch_function(args)"),
            (f"{_SITE}/vllm/entrypoints/cli/serve.py", 112, "cmd", "uvloop.run(run_server(args))"),
        ]
        self.log.traceback("APIServer", base + frames, exc)
        return 1

    def _engine_failure(self, rank: int, frames: list[tuple[str, int, str, str]],
                        exc: str) -> int:
        """An exception inside EngineCore during start-up, as vLLM 0.33 reports it: the
        engine logs it, its process dies, and the API server raises RuntimeError. Exit 1."""
        proc = f"EngineCore_DP{rank}"
        core = [(f"{_SITE}/vllm/v1/engine/core.py", 857, "run_engine_core",
                 "engine_core = EngineCoreProc(*args, **kwargs)")]
        lines = ["EngineCore failed to start.", "Traceback (most recent call last):"]
        for path, lineno, func, code in core + frames:
            lines += [f'  File "{path}", line {lineno}, in {func}', f"    {code}"]
        lines += exc.split("\n")
        self.log.error(proc, "core.py:866", "\n".join(lines))
        self.log.write(f"Process {proc}:", self.log.err)
        self.log.traceback(proc, core + frames, exc)
        self.log.traceback("APIServer", [
            (f"{_SITE}/vllm/entrypoints/openai/api_server.py", 1963, "run_server_worker",
             "async with build_async_engine_client("),
            (f"{_SITE}/vllm/v1/engine/utils.py", 1012, "wait_for_engine_startup",
             'raise RuntimeError('),
        ], "RuntimeError: Engine core initialization failed. See root cause above. "
           f"Failed core proc(s): {{'{proc}': 1}}")
        return 1

    def fail_port_in_use(self) -> int:
        return self._api_failure([
            (f"{_SITE}/vllm/entrypoints/openai/api_server.py", 1905, "setup_server",
             "sock = create_server_socket(sock_addr)"),
            (f"{_SITE}/vllm/entrypoints/openai/api_server.py", 1872, "create_server_socket",
             "sock.bind(addr)"),
        ], "OSError: [Errno 98] Address already in use")

    def fail_model_missing(self) -> int:
        return self._api_failure([
            (f"{_SITE}/vllm/transformers_utils/config.py", 633, "get_config",
             "raise ValueError("),
        ], f"ValueError: Invalid repository ID or local directory specified: '{self.s.model}'.\n"
           "Please verify the following requirements:\n"
           "1. Provide a valid Hugging Face repository ID.\n"
           "2. Specify a local directory that contains a recognized configuration file.\n"
           "   - For Hugging Face models: ensure the presence of a 'config.json'.\n"
           "   - For Mistral models: ensure the presence of a 'params.json'.")

    def fail_bad_parser(self) -> int:
        names = (parser_names(VLLM_VERSION) or {}).get("reasoning", ())
        given = self.s.reasoning_parser or "deepseek-r1"
        return self._api_failure([
            (f"{_SITE}/vllm/entrypoints/openai/cli_args.py", 402, "validate_parsed_serve_args",
             "raise KeyError("),
        ], f"KeyError: 'invalid reasoning parser: {given} (chose from {{ {','.join(names)} }})'")

    def fail_max_len(self) -> int:
        return self._api_failure([
            (f"{_SITE}/vllm/engine/arg_utils.py", 1421, "create_model_config",
             "return ModelConfig("),
        ], "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig\n"
           f"  Value error, {self.mem.max_len_error} [type=value_error, "
           "input_value=ArgsKwargs((), {...}), input_type=ArgsKwargs]")

    def fail_oom(self, rank: int) -> int:
        worker = self._workers(rank)[0]
        total = self.s.gpu.memory_gib
        torch_error = ("CUDA out of memory. Tried to allocate 128.00 MiB. GPU 0 "
           f"has a total capacity of {total:.2f} GiB of which 16.00 MiB is free. Including "
           f"non-PyTorch memory, this process has {total - 0.02:.2f} GiB memory in use. Of the "
           f"allocated memory {total - 0.55:.2f} GiB is allocated by PyTorch, and 21.04 MiB is "
           "reserved by PyTorch but unallocated. If reserved but unallocated memory is large try "
           "setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  "
           "See documentation for Memory Management  "
           "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")
        self.log.error(worker, "gpu_model_runner.py:5086",
                       "Failed to load model - not enough GPU memory. Try lowering "
                       "--gpu-memory-utilization to free memory for weights, increasing "
                       "--tensor-parallel-size, or using --quantization. See "
                       f"{_DOCS} for more tips. (original error: {torch_error})")
        return self._engine_failure(rank, [
            (f"{_SITE}/vllm/v1/worker/gpu_model_runner.py", 3431, "load_model",
             "self.model = model_loader.load_model("),
            (f"{_SITE}/torch/nn/modules/module.py", 1355, "convert",
             "return t.to(device, dtype if t.is_floating_point() else None)"),
        ], f"torch.OutOfMemoryError: {torch_error}")

    def fail_kv_too_small(self, rank: int, available: int) -> int:
        m = self.mem
        needed = m.bytes_per_token * math.ceil(m.max_model_len / self.s.block_size) \
            * self.s.block_size
        estimate = kv.kv_tokens(available, m.bytes_per_token, self.s.block_size)
        return self._engine_failure(rank, [
            (f"{_SITE}/vllm/v1/core/kv_cache_utils.py", 719, "check_enough_kv_cache_memory",
             "raise ValueError("),
        ], f"ValueError: To serve at least one request with the model's max seq len "
           f"({m.max_model_len}), ({_gib(needed)} GiB KV cache is needed, which is larger than "
           f"the available KV cache memory ({_gib(available)} GiB). Based on the available "
           f"memory, the estimated maximum model length is {estimate}. Try increasing "
           "`gpu_memory_utilization` (which also controls CPU memory on the CPU backend) or "
           "decreasing `max_model_len` when initializing the "
           f"engine. See {_DOCS} for more details.")

    def fail_no_kv_memory(self, rank: int) -> int:
        return self._engine_failure(rank, [
            (f"{_SITE}/vllm/v1/core/kv_cache_utils.py", 701, "check_enough_kv_cache_memory",
             "raise ValueError("),
        ], "ValueError: No available memory for the cache blocks. Try increasing "
           "`gpu_memory_utilization` when initializing the engine (this flag also controls CPU "
           "memory reservation on the CPU backend, despite its name). See "
           f"{_DOCS} for more details.")

    def fail_flashinfer(self, rank: int) -> int:
        n = self.s.max_num_seqs if self.s.max_num_seqs < 9 else 8
        self.log.info(self._workers(rank)[0], "cuda.py:508", "Using FLASHINFER attention backend "
                      "out of potential backends: ['FLASHINFER', 'TRITON_ATTN'].")
        return self._engine_failure(rank, [
            (f"{_SITE}/vllm/v1/worker/gpu_model_runner.py", 4210, "capture_model",
             "self._capture_cudagraphs("),
            (f"{_SITE}/vllm/v1/attention/backends/flashinfer.py", 712, "build",
             "self.paged_kv_indptr_np[:num_reqs + 1] = paged_kv_indptr"),
        ], f"ValueError: could not broadcast input array from shape (9,) into shape ({n},)")

    # ----------------------------------------------------------------- start-up

    def _workers(self, rank: int) -> list[str]:
        """Process names that load weights for one engine (vLLM names TP/PP workers)."""
        if self.s.tp * self.s.pp == 1:
            return [f"EngineCore_DP{rank}"]
        names = []
        for p in range(self.s.pp):
            for t in range(self.s.tp):
                name = "Worker"
                if self.s.dp > 1:
                    name += f"_DP{rank}"
                if self.s.pp > 1:
                    name += f"_PP{p}"
                names.append(f"{name}_TP{t}" if self.s.tp > 1 else name)
        return names

    def run(self) -> int:
        s, log, mem = self.s, self.log, self.mem
        log.warning("APIServer", "standin.py:1",
                    "[hpclaunch_standin] SIMULATED vLLM stand-in (hpclaunch): no model is "
                    "loaded and no GPU is used; memory and KV numbers below are computed, "
                    f"not measured (simulated GPU: {s.gpu.name})")
        if s.fail == "exit":
            return 1
        if s.fail and s.fail not in FAIL_MODES:
            log.error("APIServer", "standin.py:2", f"HPCLAUNCH_STANDIN_FAIL={s.fail!r} is not "
                      f"one of {', '.join(FAIL_MODES)}")
            return 2
        log.info("APIServer", "startup.py:38", _LOGO % (VLLM_VERSION, s.model))
        log.info("APIServer", "startup.py:96", f"non-default args: {s.shown_args}")
        parsers = (parser_names(VLLM_VERSION) or {}).get("reasoning", ())
        if s.fail == "bad_parser" or (s.reasoning_parser and parsers
                                      and s.reasoning_parser not in parsers):
            return self.fail_bad_parser()
        if not s.headless:
            if s.fail == "port_in_use":
                return self.fail_port_in_use()
            try:
                self.server = _Server(self)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return self.fail_port_in_use()
                raise
        model_path = os.path.expanduser(s.model)
        if s.fail == "model_missing" or (s.model.startswith(("/", "./", "../", "~"))
                                         and not os.path.isdir(model_path)):
            return self.fail_model_missing()
        if not mem.known_model:
            log.warning("APIServer", "standin.py:3",
                        f"[hpclaunch_standin] no facts for {s.model!r} in the catalog, a local "
                        "config.json or the HF cache; simulating a 0.5B model")
        if mem.max_len_error:
            return self.fail_max_len()
        log.info("APIServer", "model.py:1672", f"Using max model len {mem.max_model_len}")
        code = self._start_engines()
        if code is not None:
            return code
        if s.headless:
            log.info("APIServer", "serve.py:210",
                     f"Launching {s.dp_local} data parallel engine(s) in headless mode, with "
                     f"head node address {os.environ.get('VLLM_HOST_IP', '127.0.0.1')}.")
            self.main_wait()
            log.info("APIServer", "serve.py:260", "Shutting down.")
            return 0
        return self._serve()

    def _start_engines(self) -> int | None:
        s, log, mem = self.s, self.log, self.mem
        load_secs = max(0.5, mem.weight_bytes_per_gpu / (2.5 * GiB))
        for r in range(s.dp_start, s.dp_start + s.dp_local):
            proc = f"EngineCore_DP{r}"
            log.info(proc, "core.py:93", (
                f"Initializing a V1 LLM engine (v{VLLM_VERSION}) with config: "
                f"model='{s.model}', speculative_config=None, tokenizer='{s.model}', "
                f"dtype=torch.{mem.info.torch_dtype}, max_seq_len={mem.max_model_len}, "
                f"tensor_parallel_size={s.tp}, pipeline_parallel_size={s.pp}, "
                f"data_parallel_size={s.dp}, quantization={mem.info.quantization}, "
                f"enforce_eager={s.enforce_eager}, kv_cache_dtype={s.kv_cache_dtype}, "
                f"served_model_name={s.served_names[0]}, "
                f"enable_prefix_caching=True, enable_chunked_prefill=True"))
            workers = self._workers(r)
            for w in workers:
                log.info(w, "gpu_model_runner.py:3338", f"Starting to load model {s.model}...")
            if s.fail == "oom" or mem.weight_bytes_per_gpu > s.gpu.memory_bytes - GiB // 2:
                return self.fail_oom(r)
            for w in workers:
                log.info(w, "default_loader.py:308",
                         f"Loading weights took {load_secs:.2f} seconds")
                log.info(w, "gpu_model_runner.py:3420",
                         f"Model loading took {_gib(mem.weight_bytes_per_gpu)} GiB memory and "
                         f"{load_secs + 0.8:.6f} seconds")
            available = mem.kv_bytes
            if s.fail == "no_kv_memory" or available <= 0:
                return self.fail_no_kv_memory(r)
            for w in workers:
                log.info(w, "gpu_worker.py:359",
                         f"Available KV cache memory: {_gib(available)} GiB")
            needed = mem.bytes_per_token * math.ceil(mem.max_model_len / s.block_size) \
                * s.block_size
            if s.fail == "kv_too_small" and needed <= available:
                # As if other processes held memory: keep the numbers consistent with each
                # other, and small enough to trip the check.
                available = needed * 2 // 5
            if needed > available:
                return self.fail_kv_too_small(r, available)
            conc = kv.max_concurrency(mem.tokens, mem.max_model_len, s.block_size)
            log.info(proc, "kv_cache_utils.py:1229",
                     f"GPU KV cache size: {mem.tokens:,} tokens, Maximum concurrency for "
                     f"{mem.max_model_len:,} tokens per request: {conc:.2f}x")
            if s.fail == "flashinfer":
                return self.fail_flashinfer(r)
            if not s.enforce_eager:
                for w in workers:
                    log.info(w, "gpu_model_runner.py:4244",
                             f"Graph capturing finished in 3 secs, took "
                             f"{_gib(mem.cuda_graph_bytes)} GiB")
            log.info(proc, "core.py:250", "init engine (profile, create kv cache, warmup model) "
                     f"took {load_secs + 6.5:.2f} s")
        return None

    def _serve(self) -> int:
        s, log = self.s, self.log
        assert self.server is not None
        if s.dp > 1 and s.api_server_count != 1:
            for i in range(s.api_server_count):
                log.warning(f"ApiServer_{i}", "loggers.py:1386",
                         "AsyncLLM created with api_server_count more than 1; disabling stats "
                         "logging to avoid incomplete stats.")
        host = s.host or "0.0.0.0"
        log.info("APIServer", "entry.py:139",
                 f"Starting vLLM server on http://{host}:{self.server.server_port}")
        log.info("APIServer", "launcher.py:37", "Available routes are:")
        for route, methods in _ROUTES:
            log.info("APIServer", "launcher.py:45", f"Route: {route}, Methods: {methods}")
        if self.main_wait(s.startup_delay):
            return self._shutdown(serving=False)
        self.server.server_activate()  # listen only now: until here connections are refused
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                  name="http", daemon=True)
        thread.start()
        log.uvicorn("APIServer", f"Started server process [{os.getpid()}]")
        log.uvicorn("APIServer", "Waiting for application startup.")
        log.uvicorn("APIServer", "Application startup complete.")
        if s.log_stats and not (s.dp > 1 and s.api_server_count != 1):
            threading.Thread(target=self._stats_loop, name="stats", daemon=True).start()
        if s.fail in ("crash_after_ready", "hang_after_ready"):
            threading.Thread(target=self._break_later, name="break", daemon=True).start()
        self.main_wait()
        return self._shutdown(serving=True)

    def main_wait(self, timeout: float | None = None) -> bool:
        """Wait on the main thread until stopped (True) or ``timeout`` passes (False).

        Polls a flag the signal handler sets, then sets ``stop`` for the other threads.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.signalled:
                self.stop.set()
            if self.stop.is_set():
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _shutdown(self, serving: bool) -> int:
        log = self.log
        log.info("APIServer", "launcher.py:256", "[shutdown] API server: shutdown triggered")
        if self.server is not None:
            if serving:
                self.server.shutdown()
            self.server.server_close()
        log.uvicorn("APIServer", "Shutting down")
        log.uvicorn("APIServer", "Waiting for application shutdown.")
        log.uvicorn("APIServer", "Application shutdown complete.")
        return 0

    def _break_later(self) -> None:
        if self.stop.wait(self.s.crash_after):
            return
        if self.s.fail == "hang_after_ready":
            self.hung.set()
            return
        rank = self.s.dp_start
        self.log.error(f"EngineCore_DP{rank}", "core.py:933",
                       "EngineCore encountered a fatal error.\n"
                       "Traceback (most recent call last):\n"
                       f'  File "{_SITE}/vllm/v1/engine/core.py", line 924, in run_busy_loop\n'
                       "    self._process_engine_step()\n"
                       "RuntimeError: CUDA error: an illegal memory access was encountered")
        self.log.error("APIServer", "async_llm.py:525", "AsyncLLM output_handler failed.\n"
                       "Traceback (most recent call last):\n"
                       f'  File "{_SITE}/vllm/v1/engine/async_llm.py", line 480, in '
                       "output_handler\n"
                       "    outputs = await engine_core.get_output_async()\n"
                       "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an "
                       "issue. See stack trace (above) for the root cause.")
        self.dead.set()

    def _stats_loop(self) -> None:
        s = self.s
        while not self.stop.wait(s.stats_interval):
            snapshot = self.engines.snapshot_interval()
            lines = []
            for engine, prompt, gen, show in snapshot:
                if show:
                    lines.append((engine, prompt, gen))
            if not lines:
                continue
            if s.aggregate_stats and len(snapshot) > 1:
                prompt = sum(p for _, p, _ in lines)
                gen = sum(g for _, _, g in lines)
                running = sum(e.running for e, _, _ in lines)
                usage = sum(self.engines.usage(e) for e, _, _ in lines) / len(lines)
                self.log.info("APIServer", "loggers.py:236", (
                    f"{len(snapshot)} Engines Aggregated: " + self._stats_text(
                        prompt, gen, running, usage)))
                continue
            for engine, prompt, gen in lines:
                self.log.info("APIServer", "loggers.py:236", f"Engine {engine.rank:03d}: "
                              + self._stats_text(prompt, gen, engine.running,
                                                 self.engines.usage(engine)))

    def _stats_text(self, prompt: int, gen: int, running: int, usage: float) -> str:
        interval = self.s.stats_interval
        return (f"Avg prompt throughput: {prompt / interval:.1f} tokens/s, "
                f"Avg generation throughput: {gen / interval:.1f} tokens/s, "
                f"Running: {running} reqs, Waiting: 0 reqs, "
                f"GPU KV cache usage: {usage * 100:.1f}%, Prefix cache hit rate: 0.0%")

    # ----------------------------------------------------------------- requests

    def record(self, handler: BaseHTTPRequestHandler, body: dict[str, Any] | None) -> None:
        path = self.s.record_path
        if not path:
            return
        entry = {
            "time": time.time(),
            "method": handler.command,
            "path": handler.path,
            "model": (body or {}).get("model") if isinstance(body, dict) else None,
            "authorization": handler.headers.get("Authorization"),
        }
        with self._record_lock, open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def authorised(self, handler: BaseHTTPRequestHandler) -> bool:
        if not self.s.api_keys:
            return True
        header = handler.headers.get("Authorization") or ""
        return header in {f"Bearer {k}" for k in self.s.api_keys}

    def metrics(self) -> str:
        name = self.s.served_names[0]
        out: list[str] = []

        def family(metric: str, kind: str, help_text: str, values: list[tuple[str, float]]
                   ) -> None:
            out.append(f"# HELP {metric} {help_text}")
            out.append(f"# TYPE {metric} {kind}")
            for labels, value in values:
                out.append(f"{metric}{{{labels}}} {float(value)}")

        engines = self.engines.stats

        def lab(e: EngineStats, extra: str = "") -> str:
            return f'{extra}engine="{e.rank}",model_name="{name}"'

        family("vllm:num_requests_running", "gauge",
               "Number of requests in model execution batches.",
               [(lab(e), e.running) for e in engines])
        family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
               [(lab(e), 0) for e in engines])
        family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
               [(lab(e), self.engines.usage(e)) for e in engines])
        family("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
               [(lab(e), e.prompt_tokens) for e in engines])
        family("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
               [(lab(e), e.generation_tokens) for e in engines])
        family("vllm:request_success_total", "counter",
               "Count of successfully processed requests.",
               [(lab(e, f'finished_reason="{reason}",'), e.finished.get(reason, 0))
                for e in engines for reason in ("stop", "length")])
        blocks = self.mem.tokens // self.s.block_size
        family("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig",
               [(f'block_size="{self.s.block_size}",cache_dtype="{self.s.kv_cache_dtype}",'
                 f'engine="{e.rank}",gpu_memory_utilization="{self.s.gpu_util}",'
                 f'num_gpu_blocks="{blocks}"', 1) for e in engines])
        return "\n".join(out) + "\n"

    def models_body(self) -> dict[str, Any]:
        return {"object": "list", "data": [{
            "id": served, "object": "model", "created": self.created, "owned_by": "vllm",
            "root": self.s.model, "parent": None, "max_model_len": self.mem.max_model_len,
            "permission": [{
                "id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission",
                "created": self.created, "allow_create_engine": False, "allow_sampling": True,
                "allow_logprobs": True, "allow_search_indices": False, "allow_view": True,
                "allow_fine_tuning": False, "organization": "*", "group": None,
                "is_blocking": False,
            }],
        } for served in self.s.served_names]}

    def generate(self, prompt_tokens: int, last_text: str, max_tokens: int | None
                 ) -> tuple[list[str], list[str], str]:
        """(reasoning pieces, answer pieces, finish reason) for a request.

        The answer echoes the last user message, so tests can check what arrived; pieces are
        "tokens" (a word with its trailing space) and the answer is cut at ``max_tokens``.
        """
        reasoning = []
        if self.s.reasoning_parser:
            reasoning = re.findall(r"\S+\s*", "The user asked me to repeat their message.")
        answer = re.findall(r"\S+\s*", f"You said: {last_text or '(nothing)'}")
        budget = max_tokens if max_tokens is not None else \
            max(1, self.mem.max_model_len - prompt_tokens)
        if len(reasoning) >= budget:
            return reasoning[:budget], [], "length"
        budget -= len(reasoning)
        if len(answer) > budget:
            return reasoning, answer[:budget], "length"
        return reasoning, answer, "stop"


_ROUTES = [
    ("/openapi.json", "HEAD, GET"), ("/docs", "HEAD, GET"), ("/health", "GET"),
    ("/load", "GET"), ("/ping", "POST"), ("/ping", "GET"), ("/version", "GET"),
    ("/v1/models", "GET"), ("/v1/chat/completions", "POST"), ("/v1/completions", "POST"),
    ("/metrics", "GET"),
]


def _error_body(message: str, kind: str, code: int, param: str | None = None
                ) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _content_text(content: Any) -> str:
    """Text of an OpenAI message content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content
                        if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _prompt_tokens(messages: list[Any]) -> int:
    """Tokens of the rendered chat: content tokens plus 4 per message for the template."""
    total = 2
    for message in messages:
        if isinstance(message, dict):
            total += 4 + count_tokens(_content_text(message.get("content")))
            parts = message.get("content")
            if isinstance(parts, list):
                total += 256 * sum(1 for p in parts if isinstance(p, dict)
                                   and p.get("type") in ("image_url", "input_image"))
    return total


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    # --------------------------------------------------------------- plumbing

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - argparse name
        pass

    def _access(self, status: int) -> None:
        standin = self.server.standin
        if standin.s.access_log:
            phrase = HTTPStatus(status).phrase
            standin.log.write(
                f'INFO:     {self.client_address[0]}:'
                f'{self.client_address[1]} - "{self.command} {self.path} '
                f'{self.request_version}" {status} {phrase}')

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("server", "uvicorn")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._access(status)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode())

    def _body(self) -> tuple[dict[str, Any] | None, str | None]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None, None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            return None, f"Invalid JSON body: {exc}"
        if not isinstance(data, dict):
            return None, "The request body must be a JSON object"
        return data, None

    def _wait_if_hung(self) -> bool:
        standin = self.server.standin
        if standin.hung.is_set():
            standin.stop.wait()  # never answer; the connection dies with the process
            return True
        return False

    # --------------------------------------------------------------- routes

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        standin = self.server.standin
        standin.record(self, None)
        path = self.path.split("?", 1)[0]
        if self._wait_if_hung():
            return
        if path in ("/health", "/ping"):
            self._send(503 if standin.dead.is_set() else 200, b"")
        elif path == "/metrics":
            self._send(200, standin.metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/version":
            self._json(200, {"version": VLLM_VERSION})
        elif path == "/load":
            self._json(200, {"server_load": sum(e.running for e in standin.engines.stats)})
        elif path.startswith("/v1/") and not standin.authorised(self):
            self._json(401, {"error": "Unauthorized"})
        elif path == "/v1/models":
            self._json(200, standin.models_body())
        else:
            self._json(404, {"detail": "Not Found"})

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_POST(self) -> None:  # noqa: N802
        standin = self.server.standin
        path = self.path.split("?", 1)[0]
        body, problem = self._body()
        standin.record(self, body)
        if self._wait_if_hung():
            return
        if path == "/ping":
            self._send(503 if standin.dead.is_set() else 200, b"")
            return
        if path.startswith("/v1/") and not standin.authorised(self):
            self._json(401, {"error": "Unauthorized"})
            return
        if path not in ("/v1/chat/completions", "/v1/completions"):
            self._json(404, {"detail": "Not Found"})
            return
        if problem or body is None:
            self._json(400, _error_body(problem or "Request body is required",
                                        "BadRequestError", 400))
            return
        model = body.get("model")
        if model is not None and model not in standin.s.served_names:
            self._json(404, _error_body(f"The model `{model}` does not exist.", "NotFoundError",
                                        404, "model"))
            return
        if standin.dead.is_set():
            self._json(500, _error_body("EngineCore encountered an issue. See stack trace (above)"
                                        " for the root cause.", "InternalServerError", 500))
            return
        self._complete(path == "/v1/chat/completions", body)

    def _complete(self, chat: bool, body: dict[str, Any]) -> None:
        standin = self.server.standin
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                self._json(400, _error_body("messages: Field required", "BadRequestError", 400,
                                            "messages"))
                return
            prompt_tokens = _prompt_tokens(messages)
            users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
            last = _content_text(users[-1].get("content")) if users else ""
        else:
            prompt = body.get("prompt")
            last = prompt if isinstance(prompt, str) else json.dumps(prompt)
            prompt_tokens = count_tokens(last) + 1
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        limit = standin.mem.max_model_len
        if prompt_tokens > limit:
            self._json(400, _error_body(
                f"This model's maximum context length is {limit} tokens. However, your request "
                f"has {prompt_tokens} input tokens. Please reduce the length of the input "
                "messages.", "BadRequestError", 400))
            return
        if max_tokens is not None:
            if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
                self._json(400, _error_body("max_tokens must be at least 1, got "
                                            f"{max_tokens!r}.", "BadRequestError", 400))
                return
            if max_tokens > limit - prompt_tokens:
                self._json(400, _error_body(
                    f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This "
                    f"model's maximum context length is {limit} tokens and your request has "
                    f"{prompt_tokens} input tokens ({max_tokens} > {limit} - {prompt_tokens}).",
                    "BadRequestError", 400))
                return
        n = body.get("n") or 1
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            self._json(400, _error_body(f"n must be at least 1, got {n!r}.", "BadRequestError",
                                        400, "n"))
            return
        reasoning, answer, reason = standin.generate(prompt_tokens, last, max_tokens)
        model = body.get("model") or standin.s.served_names[0]
        request_id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        engine = standin.engines.start(prompt_tokens)
        generated = 0
        finished = False

        def finish() -> None:
            # Before the last byte goes out, so a client that reads /metrics right after its
            # reply sees the request finished, as with vLLM.
            nonlocal finished
            if not finished:
                finished = True
                standin.engines.finish(engine, prompt_tokens, generated, reason)

        try:
            if body.get("stream"):
                options = body.get("stream_options") or {}

                def count(produced: int) -> None:
                    nonlocal generated
                    generated = produced
                    finish()

                self._stream(chat, request_id, model, n, reasoning, answer, reason,
                             prompt_tokens, bool(options.get("include_usage")), engine, count)
            else:
                for _ in range(n * (len(reasoning) + len(answer))):
                    self._tick(engine)
                    generated += 1
                usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + generated,
                         "completion_tokens": generated, "prompt_tokens_details": None}
                choices = [self._choice(chat, i, reasoning, answer, reason) for i in range(n)]
                finish()
                self._json(200, {
                    "id": request_id, "object": "chat.completion" if chat else "text_completion",
                    "created": int(time.time()), "model": model, "choices": choices,
                    "usage": usage, "prompt_logprobs": None, "kv_transfer_params": None,
                })
        finally:
            finish()

    def _tick(self, engine: EngineStats) -> None:
        standin = self.server.standin
        if standin.s.token_delay:
            time.sleep(standin.s.token_delay)
        standin.engines.token(engine)

    def _choice(self, chat: bool, index: int, reasoning: list[str], answer: list[str],
                reason: str) -> dict[str, Any]:
        text = "".join(answer)
        if not chat:
            return {"index": index, "text": text, "logprobs": None, "finish_reason": reason,
                    "stop_reason": None, "prompt_logprobs": None}
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None,
                                   "annotations": None, "audio": None, "function_call": None,
                                   "tool_calls": []}
        if reasoning:
            # 0.33 names the field "reasoning"; older clients read "reasoning_content".
            message["reasoning_content"] = message["reasoning"] = "".join(reasoning).strip()
        return {"index": index, "message": message, "logprobs": None, "finish_reason": reason,
                "stop_reason": None, "token_ids": None}

    def _stream(self, chat: bool, request_id: str, model: str, n: int, reasoning: list[str],
                answer: list[str], reason: str, prompt_tokens: int, include_usage: bool,
                engine: EngineStats, done: Callable[[int], None]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.send_header("server", "uvicorn")
        self.end_headers()
        self.close_connection = True
        created = int(time.time())
        kind = "chat.completion.chunk" if chat else "text_completion"
        generated = 0

        def event(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> None:
            payload: dict[str, Any] = {"id": request_id, "object": kind, "created": created,
                                       "model": model, "choices": choices}
            if usage is not None:
                payload["usage"] = usage
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()

        def piece(index: int, delta: dict[str, Any], finish: str | None = None
                  ) -> dict[str, Any]:
            if chat:
                return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {"index": index, "text": delta.get("content", ""), "logprobs": None,
                    "finish_reason": finish, "stop_reason": None}

        try:
            for i in range(n):
                if chat:
                    event([piece(i, {"role": "assistant", "content": ""})])
                for kind_key, pieces in (("reasoning_content", reasoning), ("content", answer)):
                    for token in pieces:
                        self._tick(engine)
                        generated += 1
                        delta = {kind_key: token}
                        if kind_key == "reasoning_content":
                            delta["reasoning"] = token
                        event([piece(i, delta if chat else {"content": token})])
                event([piece(i, {}, reason)])
            done(generated)
            if include_usage:
                event([], {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens
                           + generated, "completion_tokens": generated})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            done(generated)
        self._access(200)


class _Server(ThreadingHTTPServer):
    """Bound at construction (so a taken port fails before the model "loads", like vLLM)
    but listening only after :meth:`server_activate`, so early connections are refused."""

    daemon_threads = True

    def __init__(self, standin: StandIn) -> None:
        host = standin.s.host or ""
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.standin = standin
        super().__init__((host, standin.s.port), _Handler, bind_and_activate=False)
        try:
            self.server_bind()
        except OSError:
            self.server_close()
            raise

    def server_activate(self) -> None:
        self.socket.listen(128)


# --------------------------------------------------------------------------- entry point


def _usage_error(message: str) -> int:
    sys.stderr.write("usage: python -m hpclaunch.standin serve [model_tag] [options]\n"
                     f"vllm: error: {message}\n")
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in; returns the process exit code (2 for bad arguments, as vLLM)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "serve":
        return _usage_error("the stand-in only implements `serve` (python -m "
                            "hpclaunch.standin serve MODEL [flags])")
    version = os.environ.get("HPCLAUNCH_STANDIN_VLLM_VERSION") or VLLM_VERSION
    parser = build_serve_parser(version)
    namespace = parser.parse_args(args[1:])  # exits 2 with vLLM's message on a bad flag
    log = Log()
    try:
        settings = _settings(vars(namespace), serve_defaults(version))
    except (UserError, ValueError) as exc:
        log.error("APIServer", "standin.py:2", f"[hpclaunch_standin] {exc}")
        return 1
    standin = StandIn(settings, log)

    def on_signal(signum: int, _frame: Any) -> None:
        # Only a flag: Event.set() here can deadlock on the lock the interrupted
        # main thread holds inside Event.wait(); the main thread sets the event.
        standin.signalled = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return standin.run()


if __name__ == "__main__":
    sys.exit(main())
