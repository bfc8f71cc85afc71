"""Read the head and tail of a vLLM realtime log and turn them into facts.

hpclaunch decides whether an endpoint is STARTING, READY or FAILED, and what its load looks like,
from the log the job writes (``vllm_<name>_port<port>_realtime.log``).  Those logs can grow to
gigabytes over a long run, and may sit on a remote cluster, so this module never reads a whole
file: startup facts are near the start, the latest stats and the cause of death near the end.
:func:`read_head_tail` reads at most ``head_bytes + tail_bytes`` of a local file, and
:meth:`LogChunk.from_bytes` lets a remote transport (SFTP seek) build the same object from bytes
it read itself.  :func:`parse` is a pure function of a :class:`LogChunk`.

Formats covered (see ``reference/vllm.md``): vLLM 0.33 and 0.10–0.19 (``(Proc pid=N)`` prefix,
``[file.py:123]``), 0.8 (``[file.py:123]``, no process prefix), pre-0.8 (``file.py:706]``), the
V0 engine's stats line, uvicorn's own lines, and Slurm/PBS kill notices.  Wording drifts between
versions, so every pattern anchors on the distinctive part of a message, never on a whole line.

Only the standard library is imported: the CLI calls this for every endpoint on every
``status``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from hpclaunch.vllm import container_faults

__all__ = [
    "HEAD_BYTES",
    "TAIL_BYTES",
    "EngineStats",
    "Failure",
    "LogChunk",
    "LogReport",
    "StartupFacts",
    "StatsTotals",
    "parse",
    "read_head_tail",
    "strip_prefix",
]

HEAD_BYTES = 256 * 1024
TAIL_BYTES = 256 * 1024


# --------------------------------------------------------------------------------------------
# Bounded reads
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogChunk:
    """The part of a log that was read: its start, its end, and what is known of the file.

    Parameters
    ----------
    head
        Text from the start of the file.  When the file is small enough to read whole, the whole
        file is here and ``tail`` is empty, so no line is ever seen twice.
    tail
        Text from the end of the file, starting at a line boundary; empty for a small file.
    size
        File size in bytes when it was read.
    exists
        False when the file is missing (not created yet, or removed).
    mtime
        Modification time (seconds since the epoch) or None.
    skipped
        Bytes between the end of ``head`` and the start of ``tail`` that were not read.
    """

    head: str
    tail: str
    size: int
    exists: bool
    mtime: float | None
    skipped: int = 0

    @classmethod
    def missing(cls) -> LogChunk:
        """A chunk for a log file that does not exist (yet)."""
        return cls(head="", tail="", size=0, exists=False, mtime=None)

    @classmethod
    def from_bytes(
        cls, head: bytes, tail: bytes, size: int, mtime: float | None = None
    ) -> LogChunk:
        """Build a chunk from raw bytes read by any transport.

        ``head`` must be the first ``len(head)`` bytes of the file and ``tail`` its last
        ``len(tail)`` bytes (a file of ``size`` bytes).  Overlap is allowed and removed.  When a gap
        separates them, the line cut at the end of ``head`` and the line cut at the start of
        ``tail`` are dropped, so a half line can never match a pattern; a reader that starts the
        tail one byte early (as :func:`read_head_tail` does) loses no complete line that way.
        Bytes that are not UTF-8 become U+FFFD instead of raising.
        """
        tail_start = size - len(tail)
        if tail_start <= len(head):
            whole = head + tail[len(head) - tail_start :] if tail else head
            return cls(head=_decode(whole), tail="", size=size, exists=True, mtime=mtime)
        cut = head.rfind(b"\n")
        head = head[: cut + 1]  # (cut == -1) -> b"": a head without a newline is one partial line
        nl = tail.find(b"\n")
        tail = tail[nl + 1 :] if nl >= 0 else b""
        skipped = size - len(tail) - len(head)
        return cls(
            head=_decode(head),
            tail=_decode(tail),
            size=size,
            exists=True,
            mtime=mtime,
            skipped=skipped,
        )


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def read_head_tail(
    path: str | os.PathLike[str],
    head_bytes: int = HEAD_BYTES,
    tail_bytes: int = TAIL_BYTES,
) -> LogChunk:
    """Read at most ``head_bytes`` from the start and ``tail_bytes`` (+1) from the end of a file.

    The size is taken once, from the open file, so a log that keeps growing while we read is
    bounded by what it was at that moment; a log that shrank (rotated, truncated, rewritten by a
    restarted job) is simply read as it is now, since nothing here keeps offsets between calls.
    A missing file gives ``LogChunk(exists=False)`` rather than an error: a queued job has no log.
    """
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            size = st.st_size
            if size <= head_bytes + tail_bytes:
                data = f.read(size)
                return LogChunk.from_bytes(data, b"", len(data), st.st_mtime)
            head = f.read(head_bytes)
            # One byte before the tail tells whether the tail starts on a line boundary.
            start = size - tail_bytes - 1
            f.seek(start)
            tail = f.read(tail_bytes + 1)
            return LogChunk.from_bytes(head, tail, start + len(tail), st.st_mtime)
    except FileNotFoundError:
        return LogChunk.missing()


# --------------------------------------------------------------------------------------------
# Line prefixes
# --------------------------------------------------------------------------------------------

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


def _split(line: str) -> tuple[str | None, str | None, str | None, str]:
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
    proc, level, _ts, msg = _split(line)
    return proc, level, msg


# --------------------------------------------------------------------------------------------
# Report types
# --------------------------------------------------------------------------------------------


@dataclass
class StartupFacts:
    """What vLLM printed while starting: memory, KV cache capacity, timings, two notices.

    The lists hold one value per printing process, in log order: ``kv_cache_tokens`` and
    ``max_concurrency`` are printed once per engine (a DP=4 server prints four), and
    ``kv_cache_gib`` once per worker (TP workers each print theirs).  Scalars are the first value
    seen.  ``stats_disabled``: vLLM said it will not log stats (more than one API server);
    ``simulated``: the log comes from hpclaunch's vLLM stand-in, not a real server.
    """

    model_load_gib: float | None = None
    model_load_seconds: float | None = None
    kv_cache_gib: list[float] = field(default_factory=list)
    kv_cache_tokens: list[int] = field(default_factory=list)
    max_concurrency: list[float] = field(default_factory=list)
    for_tokens: int | None = None
    gpu_blocks: list[int] = field(default_factory=list)
    graph_capture_seconds: float | None = None
    graph_capture_gib: float | None = None
    init_engine_seconds: float | None = None
    stats_disabled: bool = False
    simulated: bool = False

    @property
    def engines(self) -> int:
        """Engines that reported their KV cache (0 when none did yet)."""
        return max(len(self.max_concurrency), len(self.kv_cache_tokens), len(self.gpu_blocks))

    @property
    def total_concurrency(self) -> float | None:
        """Sum over engines of "Maximum concurrency for L tokens per request"."""
        return sum(self.max_concurrency) if self.max_concurrency else None


@dataclass(frozen=True)
class EngineStats:
    """The last periodic stats line of one engine.

    ``engine`` is ``"000"``, ``"001"``, ... (V1), ``"aggregated"`` for ``N Engines Aggregated``
    (``n_engines`` = N), or ``"0"`` for the V0 engine.  ``timestamp`` is local time on the node
    that wrote the log; the year is inferred (see :func:`parse`).
    """

    engine: str
    prompt_tps: float
    gen_tps: float
    running: int
    waiting: int
    kv_usage_pct: float
    prefix_hit_pct: float | None = None
    preemptions: int | None = None
    swapped: int | None = None
    deferred: int | None = None
    cpu_kv_usage_pct: float | None = None
    external_prefix_hit_pct: float | None = None
    mm_hit_pct: float | None = None
    n_engines: int = 1
    timestamp: datetime | None = None
    line: str = ""


@dataclass(frozen=True)
class StatsTotals:
    """Stats summed over engines (throughput, requests) with the KV usage averaged."""

    engines: int
    prompt_tps: float
    gen_tps: float
    running: int
    waiting: int
    kv_usage_pct: float
    preemptions: int | None
    newest: datetime | None
    oldest: datetime | None


@dataclass(frozen=True)
class Failure:
    """Why a server did not come up or died, and what to change.

    ``code`` is stable (tests and the CLI key on it); ``reason`` and ``fix`` are one line each
    and quote the numbers from the log; ``line`` is the log message that proved it.
    """

    code: str
    reason: str
    fix: str
    line: str


@dataclass
class LogReport:
    """Everything :func:`parse` learnt from one :class:`LogChunk`.

    ``started``: any vLLM log line was seen.  ``ready_line``: uvicorn's "Application startup
    complete." was seen (the port accepts connections from then on; callers still probe
    /health).  ``listen_url``, ``version`` and ``served_model`` are None until printed.
    ``stats`` maps an engine to its last stats line.  ``failure`` is the most root cause found,
    or None.  ``tail_text`` is the text :meth:`last_lines` reads.
    """

    exists: bool = False
    size: int = 0
    mtime: float | None = None
    started: bool = False
    ready_line: bool = False
    listen_url: str | None = None
    version: str | None = None
    served_model: str | None = None
    startup: StartupFacts = field(default_factory=StartupFacts)
    stats: dict[str, EngineStats] = field(default_factory=dict)
    failure: Failure | None = None
    tail_text: str = field(default="", repr=False)

    def totals(self) -> StatsTotals | None:
        """Sum the last stats of every engine; None when no stats line was seen.

        An ``N Engines Aggregated`` line is already a total, so when one is present it is used
        alone.  Engines that went idle stop logging; their last line stays in the sum (it
        normally shows 0 running), and ``oldest`` tells how stale the stalest one is.
        """
        if not self.stats:
            return None
        rows = (
            [self.stats["aggregated"]] if "aggregated" in self.stats else list(self.stats.values())
        )
        stamps = [r.timestamp for r in rows if r.timestamp is not None]
        preempt = [r.preemptions for r in rows if r.preemptions is not None]
        return StatsTotals(
            engines=sum(r.n_engines for r in rows),
            prompt_tps=sum(r.prompt_tps for r in rows),
            gen_tps=sum(r.gen_tps for r in rows),
            running=sum(r.running for r in rows),
            waiting=sum(r.waiting for r in rows),
            kv_usage_pct=sum(r.kv_usage_pct for r in rows) / len(rows),
            preemptions=sum(preempt) if preempt else None,
            newest=max(stamps) if stamps else None,
            oldest=min(stamps) if stamps else None,
        )

    def last_lines(self, n: int = 20) -> list[str]:
        """The last ``n`` lines of the log, as a terminal would show them.

        Progress bars redraw with a bare ``\\r``; only the text after the last one is kept.  The
        final line may be incomplete (the file is still being written); it is shown anyway.
        """
        if n <= 0 or not self.tail_text:
            return []
        text = self.tail_text.rstrip("\r\n")
        # Look back only as far as needed: ~n lines of a few hundred characters.
        window = max(4096, n * 400)
        piece = text[-window:]
        lines = piece.split("\n")
        if len(lines) <= n and len(piece) < len(text):
            lines = text.split("\n")
        return [ln.rstrip("\r").rsplit("\r", 1)[-1] for ln in lines[-n:]]


# --------------------------------------------------------------------------------------------
# Patterns
# --------------------------------------------------------------------------------------------

_STATS = re.compile(r"(?:Engine (?P<eng>\d+): |(?P<agg>\d+) Engines Aggregated: )?Avg prompt")
_NUM = re.compile(r"-?\d+(?:\.\d+)?")
_V0_PREFIX_HIT = re.compile(r"Prefix cache hit rate: GPU: ([\d.]+)%")

_KV_MEM = re.compile(r"Available KV cache memory: (-?[\d.]+) GiB")
_KV_TOKENS = re.compile(r"KV cache size: ([\d,]+) tokens")
_CONCURRENCY = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x")
# "# GPU blocks" (V0, early V1), "# cuda blocks" (0.8 V0), "# cpu blocks" (CPU backend); the
# capital "# CPU blocks" that follows on the V0 line is swap space, not the cache.
_BLOCKS = re.compile(r"\b(?:GPU|cuda|CUDA|cpu|XPU|xpu|TPU|HPU|hpu|NPU) blocks: ([\d,]+)")
_MODEL_LOAD = re.compile(
    r"(?:Model loading|Loading model weights) took ([\d.]+) (GiB|GB)(?: memory)?"
    r"(?: and ([\d.]+) seconds)?"
)
_GRAPH = re.compile(r"Graph capturing finished in ([\d.]+) secs?, took (-?[\d.]+) GiB")
_INIT_ENGINE = re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+)")
_LISTEN = re.compile(r"(?:Starting vLLM (?:API )?server(?: \d+)? on|Uvicorn running on) (\S+)")
_VERSION_LINE = re.compile(r"vLLM (?:API )?server version (\S+?)(?:, serving model (\S+))?\s*$")
_LOGO = re.compile(r"█\s+(version|model)\s+(\S+)")
_ENGINE_CFG = re.compile(r"LLM engine \(v([^)\s]+)\) with config: model='([^']*)'")
_SERVED_CFG = re.compile(r"served_model_name=([^,\s]+)")
_SERVED_ARGS = re.compile(r"'served_model_name': \[?'([^']+)'")
_MODEL_ARGS = re.compile(r"'model(?:_tag)?': '([^']+)'")

# An exception line, after the prefix: "torch.OutOfMemoryError: CUDA out of memory. ..."
_EXC = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt)(?::|$)")
# Exceptions that wrap a cause printed elsewhere, or only report a shutdown: never a root cause.
_WRAPPERS = (
    "Engine core initialization failed",
    "Engine process failed to start",
    "EngineDeadError",
    "KeyboardInterrupt",
    "SystemExit",
    "CancelledError",
)
_STARTUP_LINE = re.compile(r"^(?:DEBUG|INFO|WARNING|ERROR) \d\d-\d\d |^\([\w.-]+ pid=\d+", re.M)


# --------------------------------------------------------------------------------------------
# Failure rules
# --------------------------------------------------------------------------------------------

_OOM_FIX = (
    "lower --gpu-memory-utilization, --max-num-seqs or --max-model-len, or use tensor parallelism"
)


@dataclass(frozen=True)
class _Rule:
    """One failure pattern.  ``build`` turns a match into ``(reason, fix)``, or None to decline.

    The lowest ``priority`` that matched anywhere wins: it is the most root cause (a bad flag
    stops vLLM before anything else can go wrong; "EngineCore failed to start" only says that
    something else did).  Within one priority the first occurrence wins.
    """

    priority: int
    code: str
    needles: tuple[str, ...]  # one of these literals is in every line the pattern can match
    pattern: re.Pattern[str]
    build: Callable[[re.Match[str], str | None], tuple[str, str] | None]


def _unknown_flag(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    flags = m[1].strip()
    return (
        f"this vLLM does not know {flags}",
        f"remove or rename {flags}: flags differ between vLLM versions, and "
        "`vllm serve --help=all` on the cluster lists the ones it knows",
    )


def _bad_argument(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    return (
        f"vllm serve rejected its arguments: {m[1].strip()}",
        "fix that argument; spell flags out in full (argparse also accepts unambiguous prefixes)",
    )


def _bad_reasoning_parser(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    name = m[1].rstrip("'\"")
    known = [c.strip() for c in (m[2] or "").split(",")]
    hint = f" (did you mean {name.replace('-', '_')}?)" if name.replace("-", "_") in known else ""
    return (
        f"--reasoning-parser {name} is not registered in this vLLM{hint}",
        "use a registered name; they use underscores, e.g. qwen3, deepseek_r1, openai_gptoss",
    )


def _port_in_use(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    line = m.string
    if "EADDRINUSE" in line or "failed to listen" in line:
        return (
            "an internal (torch.distributed) port is already taken on this node",
            "another job on the node uses the same internal ports: set VLLM_PORT (or "
            "MASTER_PORT) to a free range, or run on another node",
        )
    port = re.search(r"\('[^']*', (\d+)\)", line)
    which = f"port {port[1]}" if port else "the HTTP port"
    return (
        f"{which} is already in use on this node",
        "pick another --port (or let hpclaunch choose a free one), or stop the server holding it",
    )


def _model_not_found(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    what = f"model {m[1]!r} was not found" if m[1] else "the model could not be fetched"
    if "GatedRepoError" in m.string:
        what += " (gated repository: it needs an HF token)"
    return (
        what,
        "check the name or path; compute nodes are often offline, so download it first "
        "(huggingface-cli download) into HF_HOME or --download-dir and set HF_HUB_OFFLINE=1",
    )


def _max_model_len(m: re.Match[str], level: str | None) -> tuple[str, str] | None:
    if level == "WARNING":  # VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 turns the error into a warning
        return None
    derived = re.search(r"=(\d+)", m[2] or "")
    if derived is None:
        return (
            f"--max-model-len {m[1]} is longer than the model's context",
            "lower --max-model-len, or set VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 if the model really "
            "supports more (RoPE scaling)",
        )
    return (
        f"--max-model-len {m[1]} is longer than the model's context ({derived[1]})",
        f"set --max-model-len ≤ {derived[1]}, or VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 if the model "
        "really supports more (RoPE scaling)",
    )


def _no_gpu(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    return (
        "no GPU is visible to vLLM",
        "request GPUs from the scheduler (e.g. --gres=gpu:N, -l ngpus=N) and check "
        "CUDA_VISIBLE_DEVICES",
    )


def _kv_too_small(m: re.Match[str], _level: str | None) -> tuple[str, str] | None:
    line = m.string
    if "KV cache" not in line:
        return None
    need = re.search(r"\(([\d.]+) GiB KV cache is needed", line)
    avail = re.search(r"available KV cache memory \((-?[\d.]+) GiB\)", line)
    est = re.search(r"estimated maximum model length is (\d+)", line)
    v0 = re.search(r"maximum number of tokens that can be stored in KV cache \((\d+)\)", line)
    reason = f"the KV cache cannot hold one request of max_model_len {m[1]}"
    if need and avail:
        reason += f": {need[1]} GiB needed, {avail[1]} GiB available"
    elif v0:
        reason += f": it holds only {v0[1]} tokens"
    if est:
        reason += f"; the estimated maximum model length is {est[1]}"
    limit = est[1] if est else v0[1] if v0 else None
    if limit is None:
        return (
            reason,
            "lower --max-model-len, raise --gpu-memory-utilization or use tensor parallelism",
        )
    return (
        reason,
        f"set --max-model-len ≤ {limit}, or raise --gpu-memory-utilization / use tensor "
        "parallelism",
    )


def _no_kv_memory(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    return (
        "no GPU memory is left for the KV cache after loading the model",
        "raise --gpu-memory-utilization, use tensor parallelism or a quantized model, or lower "
        "--max-num-seqs / --max-num-batched-tokens",
    )


def _flashinfer(m: re.Match[str], _level: str | None) -> tuple[str, str] | None:
    if int(m[2]) >= 9:  # (513,) into (512,) etc. are other bugs: leave them to the traceback rule
        return None
    return (
        f"FlashInfer warm-up needs at least 9 sequences but --max-num-seqs is {m[2]} (a FlashInfer "
        "bug seen on Blackwell consumer GPUs such as the RTX 5090)",
        "raise --max-num-seqs to ≥ 9, or use another attention backend",
    )


def _oom_free(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    free, total, util, want = m.groups()
    return (
        f"only {free} of {total} GiB is free on the GPU (another process holds the rest) but "
        f"--gpu-memory-utilization {util} asks for {want} GiB",
        f"free the GPU, or set --gpu-memory-utilization below {float(free) / float(total):.2f}",
    )


def _oom_sampler(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    return (
        f"CUDA out of memory while warming up the sampler with {m[1]} sequences",
        f"lower --max-num-seqs below {m[1]} or lower --gpu-memory-utilization",
    )


def _oom_torch(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    tried, gpu, total, free = m.groups()
    return (
        f"CUDA out of memory: tried to allocate {tried} with {free} free of {total} on GPU {gpu}",
        _OOM_FIX,
    )


def _oom_any(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    return "CUDA out of memory", _OOM_FIX


def _slurm_oom(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    return (
        f"the scheduler killed the job: host memory exhausted ({m[1]} oom_kill event)",
        "request more host memory (--mem / --mem-per-gpu); GPU memory was not the problem",
    )


def _slurm_cancel(
    kind: str, fix: str
) -> Callable[[re.Match[str], str | None], tuple[str, str] | None]:
    """Build the rule for ``*** JOB N ON host CANCELLED AT t DUE TO why ***`` of one ``kind``.

    ``kind`` is "TIME LIMIT", "PREEMPTION" or "OTHER" (node failure, ...); one rule per kind
    gives each its own priority.  A cancel without "DUE TO" matches none of them.
    """
    causes = {"TIME LIMIT": "reached its time limit", "PREEMPTION": "was preempted"}

    def build(m: re.Match[str], _level: str | None) -> tuple[str, str] | None:
        why = m[4]
        if why is None or (why if why in causes else "OTHER") != kind:
            return None
        cause = causes.get(why, f"was cancelled due to {why.lower()}")
        return f"Slurm job {m[1]} on {m[2]} {cause} at {m[3]}", fix

    return build


def _pbs_kill(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    what, used, limit = m.groups()
    if what == "walltime":
        return (
            f"PBS killed the job: walltime {used} s exceeded its limit of {limit} s",
            "ask for a longer -l walltime= or resubmit",
        )
    return (
        f"PBS killed the job: {what} {used} exceeded its limit of {limit}",
        f"request more {what} (-l {what}=...) and resubmit",
    )


def _nodes_missing(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    return (
        f"only {m[1]} of {m[2]} nodes joined the head's torch.distributed store in time",
        "read the other nodes' logs (hpclaunch logs NAME --node N): each must start and reach "
        "the head's IP and master port (firewall; NCCL_SOCKET_IFNAME/GLOO_SOCKET_IFNAME in the "
        "profile's env)",
    )


def _ray_gpus(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    return (
        "Ray does not hold the GPUs the layout needs (a node missing from the Ray cluster?)",
        "read each node's Ray log (hpclaunch logs NAME --node N), or fix the layout's GPU count",
    )


def _engine_dead(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    return (
        "the engine died while serving",
        "read the error above EngineDeadError (hpclaunch shows the last lines), fix it and "
        "resubmit; /health answers 503 until then",
    )


def _engine_start(m: re.Match[str], _level: str | None) -> tuple[str, str]:
    return (
        "the engine failed to start",
        "read the root cause printed around this line (hpclaunch shows the last lines)",
    )


_SLURM_CANCEL = re.compile(
    r"\*\*\* (?:JOB|STEP) (\S+) ON (\S+) CANCELLED AT (\S+)(?: DUE TO ([A-Z][A-Z ]*?))? \*\*\*"
)
_P_TRACEBACK = 90
_DEAD = ("EngineDeadError",)
_START = (
    "EngineCore failed to start",
    "Engine core initialization failed",
    "Engine process failed to start",
)
_MODEL = (
    "Invalid repository ID",
    "RepositoryNotFound",
    "Repository Not Found",
    "GatedRepo",
    "HFValidation",
    "LocalEntryNotFound",
    "not a valid model identifier",
    "Cannot find the requested files",
)
# fmt: off
_RULES: tuple[_Rule, ...] = (
    # First: one line can hold both a container/cache fault and a more generic needle.
    *(_Rule(*row) for row in container_faults.ROWS),
    _Rule(10, "unknown_flag", ("unrecognized arguments",),
          re.compile(r"error: unrecognized arguments: (.+)"), _unknown_flag),
    _Rule(11, "bad_argument", (": error: ",),
          re.compile(r"^(?:vllm(?: serve)?|\S+\.py): error: (.+)"), _bad_argument),
    _Rule(15, "bad_reasoning_parser", ("reasoning parser: ",),
          re.compile(r"[Ii]nvalid reasoning parser: (\S+)(?: \(chose from \{([^}]*)\}\))?"),
          _bad_reasoning_parser),
    _Rule(20, "port_in_use", ("Errno 98", "already in use", "EADDRINUSE"),
          re.compile(r"\[Errno 98\]|address already in use|EADDRINUSE", re.I), _port_in_use),
    _Rule(25, "model_not_found", _MODEL,
          re.compile(r"Invalid repository ID or local directory specified: '([^']*)'|"
                     + "|".join(map(re.escape, _MODEL[1:]))), _model_not_found),
    _Rule(30, "max_model_len_too_long", ("User-specified max_model_len",),
          re.compile(r"User-specified max_model_len \((\d+)\) is greater than the derived "
                     r"max_model_len(?: \(([^)]*)\))?"), _max_model_len),
    _Rule(35, "no_gpu", ("No CUDA GPUs", "Found no NVIDIA driver"),
          re.compile(r"No CUDA GPUs are available|Found no NVIDIA driver"), _no_gpu),
    _Rule(40, "kv_too_small", ("max seq len",),
          re.compile(r"max seq len \((\d+)\)"), _kv_too_small),
    _Rule(45, "no_kv_memory", ("No available memory",),
          re.compile(r"No available memory for the cache blocks"), _no_kv_memory),
    _Rule(50, "flashinfer_broadcast", ("could not broadcast",),
          re.compile(r"could not broadcast input array from shape \((\d+),\) into shape "
                     r"\((\d+),\)"), _flashinfer),
    # CUDA out of memory, most specific wording first.
    _Rule(55, "cuda_oom", ("Free memory on device",),
          re.compile(r"Free memory on device(?: \S+)? \(([\d.]+)/([\d.]+) GiB\) on startup is "
                     r"less than desired GPU memory utilization \(([\d.]+), ([\d.]+) GiB\)"),
          _oom_free),
    _Rule(56, "cuda_oom", ("warming up sampler",),
          re.compile(r"out of memory occurred when warming up sampler with (\d+) dummy"),
          _oom_sampler),
    _Rule(57, "cuda_oom", ("Tried to allocate",),
          re.compile(r"CUDA out of memory\. Tried to allocate ([\d.]+ \w+)\. GPU (\d+) has a "
                     r"total capacity of ([\d.]+ \w+) of which ([\d.]+ \w+) is free"),
          _oom_torch),
    _Rule(58, "cuda_oom", ("out of memory", "OutOfMemory", "not enough GPU memory"),
          re.compile(r"CUDA out of memory|OutOfMemoryError|CUDA (?:driver )?error: out of memory"
                     r"|Failed to load model - not enough GPU memory"), _oom_any),
    # Multi-node: a rank or a Ray node that never arrived.
    _Rule(60, "nodes_missing", ("clients joined",),
          re.compile(r"waiting for clients\. (\d+)/(\d+) clients joined"), _nodes_missing),
    _Rule(61, "ray_gpus_missing", ("exceeds the total number of available GPUs",),
          re.compile(r"exceeds the total number of available GPUs"), _ray_gpus),
    # The scheduler ended the job: a vLLM cause printed before that is the more useful one.
    _Rule(70, "killed_by_scheduler", ("oom_kill", "oom-kill"),
          re.compile(r"Detected (\d+) oom[-_]kill event"), _slurm_oom),
    _Rule(71, "killed_by_scheduler", ("PBS: job killed",),
          re.compile(r"=>> PBS: job killed: (\w+) (\S+) exceeded limit (\S+)"), _pbs_kill),
    _Rule(72, "killed_by_scheduler", ("CANCELLED AT",), _SLURM_CANCEL,
          _slurm_cancel("TIME LIMIT", "ask for a longer --time (walltime) or resubmit")),
    _Rule(73, "killed_by_scheduler", ("CANCELLED AT",), _SLURM_CANCEL,
          _slurm_cancel("PREEMPTION", "resubmit, or use a partition/QOS that is not preemptible")),
    _Rule(74, "killed_by_scheduler", ("CANCELLED AT",), _SLURM_CANCEL,
          _slurm_cancel("OTHER", "resubmit; if it repeats, ask the cluster admins about the node")),
    # A plain "CANCELLED AT t ***" (no DUE TO) is scancel, e.g. `hpclaunch stop`: not a failure.
    _Rule(80, "engine_dead", _DEAD, re.compile("EngineDeadError"), _engine_dead),
    _Rule(85, "engine_start_failed", _START, re.compile("|".join(_START)), _engine_start),
)
# fmt: on

# Lines worth a look.  Each word is found with str.find: one pass per word is several times
# faster than one regex with dozens of alternatives.  Every rule's needles are included, so a
# new rule is always reachable.
_FACT_WORDS = (
    "Avg prompt throughput",
    "Prefix cache hit rate: GPU",
    "Application startup complete",
    "Shutting down",
    "application shutdown",
    "KV cache",
    "blocks: ",
    "Maximum concurrency",
    "took ",
    "Starting vLLM",
    "Uvicorn running",
    "server version",
    "LLM engine (v",
    "non-default args",
    "█",
    "api_server_count",
    "[hpclaunch_standin]",
)
_EXCEPTION_WORDS = ("Traceback (most recent", "Error", "Exception")
_WORDS = set(_FACT_WORDS + _EXCEPTION_WORDS + tuple(n for r in _RULES for n in r.needles))
# A word that contains another one adds nothing ("EngineDeadError" is found through "Error"),
# and each word left costs one scan of the text.
_TRIGGERS = tuple(sorted(w for w in _WORDS if not any(o != w and o in w for o in _WORDS)))


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _year_for(ts: str, now: datetime) -> datetime | None:
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


def _inum(s: str) -> int:
    return int(s.replace(",", ""))


def _parse_stats(msg: str, ts: str | None, now: datetime, line: str) -> EngineStats | None:
    """Parse one periodic stats message; None unless every required field is present.

    Fields are split on ", " and read by name, so optional fields (``Deferred``, ``Preemptions``,
    ``KV fetch``, hit rates, ``Corrupted``) may appear anywhere and unknown ones are ignored.
    Requiring the five core fields keeps a line cut short from producing numbers.
    """
    m = _STATS.match(msg)
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
        num = _NUM.search(raw) if sep else None
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
        timestamp=_year_for(ts, now) if ts else None,
        line=line,
    )


def _trigger_lines(text: str, end: int) -> list[str]:
    """The lines of ``text[:end]`` (``\\n``-separated) that contain a trigger word, in order."""
    starts: set[int] = set()
    find, rfind = text.find, text.rfind
    for word in _TRIGGERS:
        i = find(word, 0, end)
        while i >= 0:
            starts.add(rfind("\n", 0, i) + 1)
            i = find(word, i + len(word), end)
    lines = []
    for start in sorted(starts):
        stop = find("\n", start, end)
        lines.append(text[start : stop if stop >= 0 else end])
    return lines


class _Parser:
    """One pass over the lines of a chunk, holding the state that spans lines."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.ready = False
        self.listen_url: str | None = None
        self.version: str | None = None
        self.names: dict[int, str] = {}  # served model name by source; lowest key is best
        self.facts = StartupFacts()
        # engine -> (message, stamp, line) of its last stats line; a long-running server logs
        # thousands, so only the last ones are parsed, at the end (see stats()).
        self.stats_lines: dict[str, tuple[str, str | None, str]] = {}
        self.v0_prefix_hit: float | None = None  # V0 prints it on the line after its stats
        # priority -> first Failure at that priority.  Cleared by a readiness line: a failure
        # followed by "Application startup complete" did not stop the server.
        self.failures: dict[int, Failure] = {}
        self.in_traceback = False
        self.first_exc: str | None = None  # first root-cause exception since start or readiness
        self.last_exc: str | None = None  # latest root-cause exception
        self.oom_loading = False  # "Failed to load model - not enough GPU memory" was seen
        self.stopping = False  # uvicorn began shutting down (a stop, or the end of a failure)

    def result(self) -> Failure | None:
        """The failure with the lowest priority, its reason completed with the root cause."""
        if not self.failures:
            return None
        prio = min(self.failures)
        f = self.failures[prio]
        if f.code == "engine_start_failed" and self.first_exc:
            f = replace(f, reason=f"{f.reason}: {_short(self.first_exc)}")
        elif f.code == "cuda_oom" and self.oom_loading:
            f = replace(f, reason=f"{f.reason} while loading the model")
        return f

    def add(self, priority: int, failure: Failure) -> None:
        self.failures.setdefault(priority, failure)

    def stats(self) -> dict[str, EngineStats]:
        out: dict[str, EngineStats] = {}
        for msg, ts, raw in self.stats_lines.values():
            if (st := _parse_stats(msg, ts, self.now, raw.strip())) is not None:
                if st.engine == "0" and self.v0_prefix_hit is not None:
                    st = replace(st, prefix_hit_pct=self.v0_prefix_hit)
                out[st.engine] = st
        return out

    def line(self, raw: str) -> None:
        _proc, level, ts, msg = _split(raw)
        if not msg or msg.startswith(("Received request", "Added request")):
            return  # request logs quote user prompts, which may contain any text at all
        if m := _STATS.match(msg):
            key = m["eng"] or ("aggregated" if m["agg"] else "0")
            self.stats_lines[key] = (msg, ts, raw)
            if key == "0":
                self.v0_prefix_hit = None
        elif m := _V0_PREFIX_HIT.match(msg):
            self.v0_prefix_hit = float(m[1])
        elif msg.startswith(("Shutting down", "Waiting for application shutdown")):
            self.stopping = True
        elif msg.startswith("Application startup complete"):
            self.ready = True
            self.stopping = False
            self.failures.clear()
            self.first_exc = None
            self.in_traceback = False
            self.oom_loading = False
        elif self.startup_fact(msg):
            # Startup carried on, so a traceback printed before this line was not fatal.
            self.failures.pop(_P_TRACEBACK, None)
        else:
            self.failure_line(level, msg)

    def startup_fact(self, msg: str) -> bool:
        """Record a startup fact; True if the message was one."""
        f = self.facts
        if "KV cache" in msg or "Maximum concurrency" in msg or "blocks: " in msg:
            # 0.33 prints tokens and concurrency on one line, older versions on two.
            hit = False
            if m := _KV_MEM.search(msg):
                f.kv_cache_gib.append(float(m[1]))
                hit = True
            if m := _KV_TOKENS.search(msg):
                f.kv_cache_tokens.append(_inum(m[1]))
                hit = True
            if m := _BLOCKS.search(msg):
                f.gpu_blocks.append(_inum(m[1]))
                hit = True
            if m := _CONCURRENCY.search(msg):
                f.max_concurrency.append(float(m[2]))
                f.for_tokens = f.for_tokens or _inum(m[1])
                hit = True
            if hit:
                return True
        if "took " in msg:
            if m := _MODEL_LOAD.search(msg):  # (V0 printed GiB values labelled "GB")
                if f.model_load_gib is None:
                    f.model_load_gib = float(m[1])
                    f.model_load_seconds = float(m[3]) if m[3] else None
                return True
            if m := _GRAPH.search(msg):
                if f.graph_capture_seconds is None:
                    f.graph_capture_seconds, f.graph_capture_gib = float(m[1]), float(m[2])
                return True
            if m := _INIT_ENGINE.search(msg):
                f.init_engine_seconds = f.init_engine_seconds or float(m[1])
                return True
        if ("Starting vLLM" in msg or "Uvicorn running" in msg) and (m := _LISTEN.search(msg)):
            # Prefer vLLM's own "Starting vLLM ... on URL" to uvicorn's line.
            if self.listen_url is None or not msg.startswith("Uvicorn"):
                self.listen_url = m[1].rstrip(".,")
            return True
        if "api_server_count more than 1" in msg:
            f.stats_disabled = True
            return True
        if "[hpclaunch_standin] SIMULATED" in msg:
            f.simulated = True
            return True
        return self.identity(msg)

    def identity(self, msg: str) -> bool:
        """vLLM version and served model name, from whichever line this version prints."""
        # (Each regex is guarded by a substring test: error lines pass through here too.)
        if "server version" in msg and (m := _VERSION_LINE.search(msg)):
            self.version = self.version or m[1]
            if m[2]:
                self.names.setdefault(2, m[2])
        elif "LLM engine (v" in msg and (m := _ENGINE_CFG.search(msg)):
            self.version = self.version or m[1]
            self.names.setdefault(3, m[2])
            if (s := _SERVED_CFG.search(msg)) and s[1] != "None":
                self.names.setdefault(1, s[1])
        elif "█" in msg and (m := _LOGO.search(msg)):
            if m[1] == "version":
                self.version = self.version or m[2]
            else:
                self.names.setdefault(2, m[2])
        elif msg.startswith("non-default args"):
            if m := _SERVED_ARGS.search(msg):
                self.names.setdefault(0, m[1])
            if m := _MODEL_ARGS.search(msg):
                self.names.setdefault(3, m[1])
        else:
            return False
        return True

    def failure_line(self, level: str | None, msg: str) -> None:
        if msg.startswith("Traceback (most recent call last)"):
            self.in_traceback = True
            return
        self.oom_loading = self.oom_loading or "Failed to load model - not enough GPU" in msg
        if _EXC.match(msg):
            if not any(w in msg for w in _WRAPPERS):
                self.last_exc = msg
                self.first_exc = self.first_exc or msg
                if self.in_traceback and not self.ready:
                    self.add(
                        _P_TRACEBACK,
                        Failure(
                            "traceback",
                            f"vLLM raised {_short(msg)}",
                            "read the traceback (hpclaunch shows the last log lines) and fix the "
                            "flag, file or environment it names",
                            msg.strip(),
                        ),
                    )
            self.in_traceback = False
        hit = _match_rules(level, msg)
        if hit is None or hit[0] in self.failures:
            return
        if self.stopping and hit[1].code != "killed_by_scheduler":
            # Requests cut off by a stop log errors too; a real death is logged before the
            # shutdown it causes.  The scheduler's notice may race uvicorn's, so it still counts.
            return
        priority, failure = hit
        if failure.code == "engine_dead" and self.last_exc:
            failure = replace(failure, reason=f"{failure.reason}; cause: {_short(self.last_exc)}")
        self.add(priority, failure)


@functools.lru_cache(maxsize=1024)
def _match_rules(level: str | None, msg: str) -> tuple[int, Failure] | None:
    """The first rule that matches a message.  Cached: a crash loop repeats the same lines."""
    for rule in _RULES:
        if not any(n in msg for n in rule.needles):
            continue
        m = rule.pattern.search(msg)
        built = rule.build(m, level) if m is not None else None
        if built is not None:
            return rule.priority, Failure(rule.code, built[0], built[1], msg.strip())
    return None


def _short(msg: str | None, limit: int = 160) -> str:
    text = (msg or "").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse(chunk: LogChunk, now: datetime | None = None) -> LogReport:
    """Read a :class:`LogChunk` in one pass and report what the server is doing.

    Parameters
    ----------
    chunk
        From :func:`read_head_tail` or :meth:`LogChunk.from_bytes`.
    now
        Local time that year-less log stamps are placed before (default ``datetime.now()``); a
        stamp more than a day ahead of it belongs to the previous year.

    Notes
    -----
    * The readiness line is uvicorn's ``Application startup complete.``.  A failure seen before
      a later readiness line is dropped, since the server came up anyway.
    * ``failure`` is the most root cause among everything that matched: an OOM beats "EngineCore
      failed to start", which only counts when nothing more specific was printed.  A traceback
      of unknown kind counts only before readiness and only if startup did not carry on after
      it: once serving, vLLM logs request errors with tracebacks and keeps going.
    * The last line is not matched while it has no line break: it may be half written (a stats
      line cut at ``Running: 1`` of ``Running: 12``).  :meth:`LogReport.last_lines` shows it.
    """
    report = LogReport(exists=chunk.exists, size=chunk.size, mtime=chunk.mtime)
    if not chunk.exists:
        return report
    p = _Parser(now or datetime.now())
    # from_bytes cut a head that has a tail at a line boundary: only the text that ends at the
    # end of the file can hold a half-written line.
    for text, at_end in ((chunk.head, not chunk.tail), (chunk.tail, True)):
        partial = at_end and bool(text) and text[-1] not in "\r\n"
        if "\r" in text:  # \r\n endings, and progress bars that redraw with a bare \r
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        end = text.rfind("\n") + 1 if partial else len(text)
        for line in _trigger_lines(text, end):
            p.line(line)

    report.stats = p.stats()
    report.started = bool(
        p.ready
        or report.stats
        or _STARTUP_LINE.search(chunk.head)
        or _STARTUP_LINE.search(chunk.tail)
    )
    report.ready_line = p.ready
    report.listen_url = p.listen_url
    report.version = p.version
    report.served_model = p.names[min(p.names)] if p.names else None
    report.startup = p.facts
    report.failure = p.result()
    report.tail_text = chunk.tail or chunk.head
    return report
