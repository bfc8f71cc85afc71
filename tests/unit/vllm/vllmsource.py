"""vLLM's own format strings (tests/data/vllm-source/), rendered the way vLLM renders them.

The JSON files are written by ``scripts/refresh_vllm_facts.py`` from vLLM's source; every
entry names its file and line.  This module turns an entry back into the text vLLM prints:
``%``-style messages with realistic arguments, f-strings with realistic values for their
expressions, and the log prefix built from that version's own logging format.
"""

from __future__ import annotations

import json
import re
import time
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

SOURCE = Path(__file__).resolve().parents[2] / "data" / "vllm-source"
VERSIONS = ("0.33.0", "0.11.0", "0.8.5")
UVICORN = "uvicorn-0.54.0"
VERSION = "<version>"  # stands for the version under test in argument tables
MODEL = "Qwen/Qwen3-8B"
STAMP = time.struct_time((2026, 11, 25, 12, 0, 5, 2, 329, -1))

# Arguments for %-style messages, by fact; the tuple whose length matches the format's
# conversions is used (versions differ in how many they take).
PERCENT_ARGS: dict[str, list[tuple[Any, ...]]] = {
    "server_version": [(VERSION,), (VERSION, MODEL)],
    "logo": [(VERSION, MODEL)],
    "non_default_args": [(f"{{'model_tag': '{MODEL}', 'served_model_name': ['qwen3'], "
                          "'max_model_len': 32768}",)],
    "engine_config": [(VERSION, f"model='{MODEL}', speculative_config=None, tokenizer='{MODEL}',"
                       " dtype=torch.bfloat16, max_seq_len=32768, served_model_name=qwen3, "
                       "enable_prefix_caching=True"),
                      (VERSION, f"model='{MODEL}', served_model_name=qwen3", True)],
    "max_model_len_used": [(32768,)],
    "start_loading": [(MODEL,)],
    "weights_took": [(3.21,)],
    "model_loading": [(4.27, 12.345678)],
    "kv_memory": [(37.15,)],
    "kv_cache_size": [("347,808",), ("GPU", "347,808", "40,960", 8.49)],
    "max_concurrency": [("40,960", 8.49), ("GPU", "347,808", "40,960", 8.49)],
    "gpu_blocks": [("cuda", 21738, 2048)],
    "graph_capture": [(9, 0.52)],
    "init_engine": [(45.67,), (45.67, 20.1), (45.67, 20.1, 15.0, 5.1)],
    "server_start": [("http://0.0.0.0:8000",), (0, "http://0.0.0.0:8000"),
                     ("", "0.0.0.0", 8000)],
    "route": [("/health", "GET")],
    "stats_prefix_engine": [(0, 1234.5, 567.8, 12, 0, 45.6, 12.3)],
    "v0_prefix_hit": [(12.3, 0.0)],
    "headless": [(2, "10.0.0.1")],
}
FORMAT_ARGS: dict[str, tuple[Any, ...]] = {"stats_prefix_engine": (0,),
                                           "stats_prefix_aggregated": (4,)}
# Values of f-string expressions, by the expression as written in vLLM's source.
FSTRING_VALUES: dict[str, str] = {
    "max_model_len": "262144",
    "format_gib(needed_memory)": "24.0",
    "format_gib(available_memory)": "3.18",
    "needed_memory / GiB_bytes:.2f": "24.00",
    "available_memory / GiB_bytes:.2f": "3.18",
    "estimated_max_len": "34736",
    "self.model_config.max_model_len": "29000",
    "max_seq_len": "23648",
    "max_len_key": "max_position_embeddings",
    "derived_max_model_len": "32768",
    "model_max_length": "None",
    "reasoning_parser": "deepseek-r1",
    "args.reasoning_parser": "deepseek-r1",
    "','.join(valid_reasoning_parsers)": "deepseek_r1,qwen3",
    "','.join(valid_reasoning_parses)": "deepseek_r1,qwen3",
    "num_reqs": "256",
    "init_snapshot.device_": "cuda:0",
    "format_gib(init_snapshot.free_memory)": "12.18",
    "format_gib(init_snapshot.total_memory)": "23.56",
    "GiB(self.init_snapshot.free_memory)": "12.18",
    "GiB(self.init_snapshot.total_memory)": "23.56",
    "cache_config.gpu_memory_utilization": "0.92",
    "self.cache_config.gpu_memory_utilization": "0.92",
    "format_gib(requested_memory)": "21.68",
    "GiB(self.requested_memory)": "21.68",
    "finished": "{'EngineCore_DP0': 1}",
    "f', failed frontend proc(s): {failed_frontend_procs}' if failed_frontend_procs else ''": "",
    # V0's profiling summary (0.8.5 worker.py): an 8B model on one H100 at 0.90.
    "result.profile_time:.2f": "5.27",
    "total_gpu_memory / GiB_bytes:.2f": "79.19",
    "self.cache_config.gpu_memory_utilization:.2f": "0.90",
    "memory_for_current_instance / GiB_bytes:.2f": "71.27",
    "result.weights_memory / GiB_bytes:.2f": "14.99",
    "result.non_torch_increase / GiB_bytes:.2f": "0.12",
    "result.torch_peak_increase / GiB_bytes:.2f": "1.19",
    "available_kv_cache_memory / GiB_bytes:.2f": "54.97",
    "model": "Qwen/Qwen3-8b-Instruct",
    "VLLM_LOGGING_PREFIX": "",
    "envs.VLLM_LOGGING_PREFIX": "",
    "CYAN": "\x1b[1;36m",
    "RESET": "\x1b[0;0m",
}
_CONVERSION = re.compile(r"%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[sdfrx%]")


@cache
def facts(name: str) -> dict[str, Any]:
    """``vllm-<version>`` or ``uvicorn-<version>``."""
    data: dict[str, Any] = json.loads((SOURCE / f"{name}.json").read_text(encoding="utf-8"))
    return data


def sites(version: str, fact: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = facts(f"vllm-{version}")["logs"].get(fact, [])
    return found


def pieces(text: str) -> list[tuple[bool, str]]:
    """An f-string template as (is_placeholder, text) pieces; placeholders may nest braces."""
    out: list[tuple[bool, str]] = []
    i = 0
    while i < len(text):
        if text.startswith(("{{", "}}"), i):
            out.append((False, text[i]))
            i += 2
        elif text[i] == "{":
            depth, j = 1, i + 1
            while depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            out.append((True, text[i + 1 : j - 1]))
            i = j
        else:
            out.append((False, text[i]))
            i += 1
    return out


def fill(text: str, values: dict[str, str]) -> str:
    """An f-string template: ``{expression}`` from ``values``."""
    missing = [key for is_key, key in pieces(text) if is_key and key not in values]
    if missing:
        raise KeyError(f"no realistic value for the f-string expressions {missing}")
    return "".join(values[t] if is_key else t for is_key, t in pieces(text))


def render(site: dict[str, Any], version: str, fact: str, **extra: str) -> str:
    """The message vLLM prints for one source site, with realistic arguments."""
    fmt, style = site["format"], site["style"]
    if fact == "logo":  # a string.Template, colours off when writing to a file
        fmt = Template(fmt).substitute(w="", o="", b="", r="")
    if style == "literal":
        return str(fmt)
    if style == "percent":
        wanted = len([c for c in _CONVERSION.findall(fmt) if c != "%%"])
        for args in PERCENT_ARGS.get(fact, []):
            if len(args) == wanted:
                return str(fmt % tuple(version if a == VERSION else a for a in args))
        raise KeyError(f"{fact}: no {wanted}-argument tuple in PERCENT_ARGS for {fmt!r}")
    if style == "format":  # str.format: positional for the stats prefixes, else by name
        if "{}" in fmt or "{:" in fmt:
            return str(fmt.format(*FORMAT_ARGS[fact]))
        return str(fmt.format(**FSTRING_VALUES))
    return fill(fmt, {**FSTRING_VALUES, **extra})


def level_of(call: str) -> str | None:
    """The level a logger method writes at (None when the text is not logged directly)."""
    method = call.rsplit(".", 1)[-1].removesuffix("_once")
    return {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "error": "ERROR",
            "exception": "ERROR"}.get(method) if "log" in call or "lgr" in call else None


def log_line(version: str, level: str, message: str, proc: str = "APIServer") -> str:
    """A logger line as that version writes it: its format, date format and process prefix.

    Multi-line messages repeat the prefix after ``\\r\\n`` (vLLM's NewLineFormatter).
    """
    fmt = fill(sites(version, "line_format")[0]["format"], FSTRING_VALUES)
    datefmt = sites(version, "date_format")[0]["format"]
    record = {"vllm_process_name": proc, "process": 4242, "levelname": level,
              "asctime": time.strftime(datefmt, STAMP), "fileinfo": "x.py", "filename": "x.py",
              "lineno": 12, "message": "\x00"}
    head = fmt % record
    prefix = head.split("\x00")[0]
    if "%(vllm_process_name)s" not in sites(version, "line_format")[0]["format"] and \
            version != "0.8.5":
        # 0.10-0.19: decorate_logs() puts the process in front of every line it prints.
        prefix = fill(sites(version, "process_prefix")[0]["format"],
                      {**FSTRING_VALUES, "worker_name": proc, "pid": "4242"}) + prefix
    return prefix + message.replace("\n", "\r\n" + prefix)


def template_regex(fmt: str, style: str) -> re.Pattern[str]:
    """A regex matching any rendering of a format string (for lines we did not render)."""
    if style == "literal":
        return re.compile(re.escape(fmt))
    out: list[str] = []
    if style == "percent":
        pos = 0
        for m in _CONVERSION.finditer(fmt):
            out.append(re.escape(fmt[pos : m.start()]))
            conv = m.group()
            out.append("%" if conv == "%%" else r"-?[\d.]+" if conv[-1] in "df" else ".*?")
            pos = m.end()
        out.append(re.escape(fmt[pos:]))
    else:
        out.extend(".*?" if is_key else re.escape(t) for is_key, t in pieces(fmt))
    return re.compile("".join(out) + r"\Z")
