"""One line of a vLLM log: its prefix, and the facts a startup or stats message carries.

Formats covered (see ``reference/vllm.md`` and ``tests/data/vllm-source/``): vLLM 0.33 and
0.10-0.19 (``(Proc pid=N)`` prefix, ``[file.py:123]``), 0.8 (``[file.py:123]``, no process
prefix), pre-0.8 (``file.py:706]``), the V0 engine's stats line, uvicorn's own lines.
Wording drifts between versions, so every pattern anchors on the distinctive part of a
message, never on a whole line.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from hpclaunch.vllm.logs.report import EngineStats

__all__ = ["parse_stats", "split_line", "strip_prefix"]

# Every vLLM prefix seen in the wild, all optional so that a bare traceback line also matches:
#   (APIServer pid=12) INFO 11-25 12:00:00 [loggers.py:330] msg         0.10 .. 0.33
#   (RayWorkerWrapper pid=5, ip=10.0.0.1) ERROR 06-21 03:49:38 [w.py:1] 0.4 .. with Ray
#   INFO 03-21 20:19:24 [launcher.py:34] msg                            0.8
#   INFO 03-18 12:34:52 api_server.py:706] msg                          before 0.8
#   (APIServer pid=12) INFO:     Application startup complete.          uvicorn
#   (APIServer pid=12) ValueError: ...                                  traceback text
_PREFIX = re.compile(
    r"(?:\((?P<proc>[^()\s]+) pid=\d+[^)]*\)\s?)?"
    r"(?:(?P<level>DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)"
    r"(?: (?P<ts>\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)? (?:\[[^\]]*\] |\S+:\d+\] )|:\s+))?"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def split_line(line: str) -> tuple[str | None, str | None, str | None, str]:
    """(process, level, "MM-DD HH:MM:SS" or None, message) of one log line."""
    if "\x1b" in line:
        line = _ANSI.sub("", line)
    m = _PREFIX.match(line)
    assert m is not None  # every group is optional, so the pattern always matches
    level = m.group("level")
    if level == "WARN":
        level = "WARNING"
    return m.group("proc"), level, m.group("ts"), line[m.end() :].rstrip("\r\n")


def strip_prefix(line: str) -> tuple[str | None, str | None, str]:
    """Split a log line into ``(process, level, message)``.

    ``process`` is the name in ``(Name pid=N)`` (``APIServer``, ``EngineCore_DP1``, ...), and
    ``level`` is ``INFO``/``WARNING``/``ERROR``/... when the line carries one; both are None for a
    bare line such as a traceback printed without a logger.
    """
    proc, level, _ts, msg = split_line(line)
    return proc, level, msg


# Message patterns.  Public because the parser (parse.py) dispatches on them.
STATS = re.compile(r"(?:Engine (?P<eng>\d+): |(?P<agg>\d+) Engines Aggregated: )?Avg prompt")
NUM = re.compile(r"-?\d+(?:\.\d+)?")
V0_PREFIX_HIT = re.compile(r"Prefix cache hit rate: GPU: ([\d.]+)%")

# The memory left for the KV cache, per worker: "Available KV cache memory: X GiB" (V1);
# V0 ends its profiling summary with "the rest of the memory reserved for KV Cache is XGiB."
# (0.7-0.8) or carries "kv_cache_size=XGiB" in it (0.6).
KV_MEM = re.compile(
    r"(?:Available KV cache memory: |memory reserved for KV Cache is |\bkv_cache_size=)"
    r"(-?[\d.]+) ?GiB"
)
KV_TOKENS = re.compile(r"KV cache size: ([\d,]+) tokens")
CONCURRENCY = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x")
# "# GPU blocks" (V0, early V1), "# cuda blocks" (0.8 V0), "# cpu blocks" (CPU backend); the
# capital "# CPU blocks" that follows on the V0 line is swap space, not the cache.
BLOCKS = re.compile(r"\b(?:GPU|cuda|CUDA|cpu|XPU|xpu|TPU|HPU|hpu|NPU) blocks: ([\d,]+)")
MODEL_LOAD = re.compile(
    r"(?:Model loading|Loading model weights) took ([\d.]+) (GiB|GB)(?: memory)?"
    r"(?: and ([\d.]+) seconds)?"
)
GRAPH = re.compile(r"Graph capturing finished in ([\d.]+) secs?, took (-?[\d.]+) GiB")
INIT_ENGINE = re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+)")
LISTEN = re.compile(r"(?:Starting vLLM (?:API )?server(?: \d+)? on|Uvicorn running on) (\S+)")
VERSION_LINE = re.compile(r"vLLM (?:API )?server version (\S+?)(?:, serving model (\S+))?\s*$")
LOGO = re.compile(r"█\s+(version|model)\s+(\S+)")
ENGINE_CFG = re.compile(r"LLM engine \(v([^)\s]+)\) with config: model='([^']*)'")
SERVED_CFG = re.compile(r"served_model_name=([^,\s]+)")
SERVED_ARGS = re.compile(r"'served_model_name': \[?'([^']+)'")
MODEL_ARGS = re.compile(r"'model(?:_tag)?': '([^']+)'")

# An exception line, after the prefix: "torch.OutOfMemoryError: CUDA out of memory. ..."
EXC = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt)(?::|$)")
# Exceptions that wrap a cause printed elsewhere, or only report a shutdown: never a root cause.
WRAPPERS = (
    "Engine core initialization failed",
    "Engine process failed to start",
    "EngineDeadError",
    "KeyboardInterrupt",
    "SystemExit",
    "CancelledError",
)
# Any vLLM logger line.  0.10-0.19 write the process prefix in colour even to a file
# (decorate_logs: f"{CYAN}({worker_name} pid={pid}){RESET} ").
STARTUP_LINE = re.compile(
    r"^(?:DEBUG|INFO|WARNING|ERROR) \d\d-\d\d |^(?:\x1b\[[0-9;]*m)?\([\w.-]+ pid=\d+", re.M
)


def year_for(ts: str, now: datetime) -> datetime | None:
    """vLLM prints "MM-DD HH:MM:SS" without a year: use the latest year that is not in the future.

    A day of slack absorbs clock skew between the compute node and this machine, so a stamp a
    few seconds "ahead" is not pushed back a whole year.
    """
    try:
        mon, day = int(ts[0:2]), int(ts[3:5])
        hh, mm, ss = int(ts[6:8]), int(ts[9:11]), int(ts[12:14])
    except ValueError:
        return None
    limit = now + timedelta(days=1)
    for year in range(now.year, now.year - 5, -1):  # five years always reach a Feb 29
        try:
            stamp = datetime(year, mon, day, hh, mm, ss)
        except ValueError:
            continue
        if stamp <= limit:
            return stamp
    return None


def inum(s: str) -> int:
    return int(s.replace(",", ""))


def parse_stats(msg: str, ts: str | None, now: datetime, line: str) -> EngineStats | None:
    """Parse one periodic stats message; None unless every required field is present.

    Fields are split on ", " and read by name, so optional fields (``Deferred``, ``Preemptions``,
    ``KV fetch``, hit rates, ``Corrupted``) may appear anywhere and unknown ones are ignored.
    Requiring the five core fields keeps a line cut short from producing numbers.
    """
    m = STATS.match(msg)
    if m is None:
        return None
    if m["eng"] is not None:
        engine, n_engines = m["eng"], 1
    elif m["agg"] is not None:
        engine, n_engines = "aggregated", int(m["agg"])
    else:
        engine, n_engines = "0", 1
    values: dict[str, float] = {}
    for part in msg[m.end() - len("Avg prompt") :].split(", "):
        key, sep, raw = part.partition(": ")
        num = NUM.search(raw) if sep else None
        if num is None:
            continue
        key = key.strip().lower()
        if key.endswith("kv cache usage"):
            # V0 prints GPU then CPU usage; V1 prints one (GPU, or CPU/XPU on those platforms).
            key = "cpu_kv" if "kv" in values and key.startswith("cpu") else "kv"
        values.setdefault(key, float(num.group()))
    waiting = values.get("waiting", values.get("pending"))  # V0 says "Pending"
    required = ("avg prompt throughput", "avg generation throughput", "running", "kv")
    if waiting is None or any(k not in values for k in required):
        return None

    def opt_int(key: str) -> int | None:
        return int(values[key]) if key in values else None

    return EngineStats(
        engine=engine,
        prompt_tps=values["avg prompt throughput"],
        gen_tps=values["avg generation throughput"],
        running=int(values["running"]),
        waiting=int(waiting),
        kv_usage_pct=values["kv"],
        prefix_hit_pct=values.get("prefix cache hit rate"),
        preemptions=opt_int("preemptions"),
        swapped=opt_int("swapped"),
        deferred=opt_int("deferred"),
        cpu_kv_usage_pct=values.get("cpu_kv"),
        external_prefix_hit_pct=values.get("external prefix cache hit rate"),
        mm_hit_pct=values.get("mm cache hit rate"),
        n_engines=n_engines,
        timestamp=year_for(ts, now) if ts else None,
        line=line,
    )


