"""One pass over a log chunk: readiness, identity, startup facts, stats, and the failure.

:func:`parse` is a pure function of a :class:`~hpclaunch.vllm.logs.read.LogChunk`.  It only
looks at lines that contain a trigger word (found with ``str.find``, several times faster
than one regex with dozens of alternatives), then dispatches each to the line patterns
(:mod:`.lines`) or the failure rows (:mod:`.failures`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from hpclaunch.vllm.logs import lines as L
from hpclaunch.vllm.logs.failures import RULES, TRACEBACK_PRIORITY, match_rules
from hpclaunch.vllm.logs.read import LogChunk
from hpclaunch.vllm.logs.report import EngineStats, Failure, LogReport, StartupFacts

__all__ = ["parse"]

# Lines worth a look.  Every rule's needles are included, so a new rule is always reachable.
_FACT_WORDS = (
    "Avg prompt throughput",
    "Prefix cache hit rate: GPU",
    "Application startup complete",
    "Shutting down",
    "application shutdown",
    "[shutdown] API server",
    "KV cache",
    "KV Cache is",  # V0 profiling summary, 0.7-0.8
    "kv_cache_size=",  # V0 profiling summary, 0.6
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
# A stop begins: 0.33 logs "[shutdown] API server: shutdown triggered", then uvicorn's lines.
_STOPPING = ("Shutting down", "Waiting for application shutdown", "[shutdown] API server")
_EXCEPTION_WORDS = ("Traceback (most recent", "Error", "Exception")
_WORDS = set(_FACT_WORDS + _EXCEPTION_WORDS + tuple(n for r in RULES for n in r.needles))
# A word that contains another one adds nothing ("EngineDeadError" is found through "Error"),
# and each word left costs one scan of the text.
_TRIGGERS = tuple(sorted(w for w in _WORDS if not any(o != w and o in w for o in _WORDS)))


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
            if (st := L.parse_stats(msg, ts, self.now, raw.strip())) is not None:
                if st.engine == "0" and self.v0_prefix_hit is not None:
                    st = replace(st, prefix_hit_pct=self.v0_prefix_hit)
                out[st.engine] = st
        return out

    def line(self, raw: str) -> None:
        _proc, level, ts, msg = L.split_line(raw)
        if not msg or msg.startswith(("Received request", "Added request")):
            return  # request logs quote user prompts, which may contain any text at all
        if m := L.STATS.match(msg):
            key = m["eng"] or ("aggregated" if m["agg"] else "0")
            self.stats_lines[key] = (msg, ts, raw)
            if key == "0":
                self.v0_prefix_hit = None
        elif m := L.V0_PREFIX_HIT.match(msg):
            self.v0_prefix_hit = float(m[1])
        elif msg.startswith(_STOPPING):
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
            self.failures.pop(TRACEBACK_PRIORITY, None)
        else:
            self.failure_line(level, msg)

    def startup_fact(self, msg: str) -> bool:
        """Record a startup fact; True if the message was one."""
        f = self.facts
        if ("KV cache" in msg or "Maximum concurrency" in msg or "blocks: " in msg
                or "KV Cache is" in msg or "kv_cache_size=" in msg):
            # 0.33 prints tokens and concurrency on one line, older versions on two.
            hit = False
            if m := L.KV_MEM.search(msg):
                f.kv_cache_gib.append(float(m[1]))
                hit = True
            if m := L.KV_TOKENS.search(msg):
                f.kv_cache_tokens.append(L.inum(m[1]))
                hit = True
            if m := L.BLOCKS.search(msg):
                f.gpu_blocks.append(L.inum(m[1]))
                hit = True
            if m := L.CONCURRENCY.search(msg):
                f.max_concurrency.append(float(m[2]))
                f.for_tokens = f.for_tokens or L.inum(m[1])
                hit = True
            if hit:
                return True
        if "took " in msg:
            if m := L.MODEL_LOAD.search(msg):  # (V0 printed GiB values labelled "GB")
                if f.model_load_gib is None:
                    f.model_load_gib = float(m[1])
                    f.model_load_seconds = float(m[3]) if m[3] else None
                return True
            if m := L.GRAPH.search(msg):
                if f.graph_capture_seconds is None:
                    f.graph_capture_seconds, f.graph_capture_gib = float(m[1]), float(m[2])
                return True
            if m := L.INIT_ENGINE.search(msg):
                f.init_engine_seconds = f.init_engine_seconds or float(m[1])
                return True
        if ("Starting vLLM" in msg or "Uvicorn running" in msg) and (m := L.LISTEN.search(msg)):
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
        if "server version" in msg and (m := L.VERSION_LINE.search(msg)):
            self.version = self.version or m[1]
            if m[2]:
                self.names.setdefault(2, m[2])
        elif "LLM engine (v" in msg and (m := L.ENGINE_CFG.search(msg)):
            self.version = self.version or m[1]
            self.names.setdefault(3, m[2])
            if (s := L.SERVED_CFG.search(msg)) and s[1] != "None":
                self.names.setdefault(1, s[1])
        elif "█" in msg and (m := L.LOGO.search(msg)):
            if m[1] == "version":
                self.version = self.version or m[2]
            else:
                self.names.setdefault(2, m[2])
        elif msg.startswith("non-default args"):
            if m := L.SERVED_ARGS.search(msg):
                self.names.setdefault(0, m[1])
            if m := L.MODEL_ARGS.search(msg):
                self.names.setdefault(3, m[1])
        else:
            return False
        return True

    def failure_line(self, level: str | None, msg: str) -> None:
        if msg.startswith("Traceback (most recent call last)"):
            self.in_traceback = True
            return
        self.oom_loading = self.oom_loading or "Failed to load model - not enough GPU" in msg
        if L.EXC.match(msg):
            if not any(w in msg for w in L.WRAPPERS):
                self.last_exc = msg
                self.first_exc = self.first_exc or msg
                if self.in_traceback and not self.ready:
                    self.add(
                        TRACEBACK_PRIORITY,
                        Failure(
                            "traceback",
                            f"vLLM raised {_short(msg)}",
                            "read the traceback (hpclaunch shows the last log lines) and fix the "
                            "flag, file or environment it names",
                            msg.strip(),
                        ),
                    )
            self.in_traceback = False
        hit = match_rules(level, msg)
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
        or L.STARTUP_LINE.search(chunk.head)
        or L.STARTUP_LINE.search(chunk.tail)
    )
    report.ready_line = p.ready
    report.listen_url = p.listen_url
    report.version = p.version
    report.served_model = p.names[min(p.names)] if p.names else None
    report.startup = p.facts
    report.failure = p.result()
    report.tail_text = chunk.tail or chunk.head
    return report
