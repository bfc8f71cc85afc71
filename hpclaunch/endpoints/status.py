"""Decide each endpoint's state from three witnesses, cheapest first.

1. The scheduler, asked once for all jobs of a cluster (queued? running? gone?).
2. The job's own files in the results dir: ``<name>.endpoint.json`` (where the
   server listens) and ``<name>.exit`` (how it ended; PBS shows one letter for
   every finished job) plus the head and tail of the realtime log.
3. ``/health`` on the node, only when the log says the server is up.

PENDING -> STARTING -> READY, or FAILED with a reason and a fix, or ENDED.
Final states are stored and never re-queried.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpclaunch.registry import (
    ENDED,
    FAILED,
    PENDING,
    READY,
    RUNNING,
    STARTING,
    UNHEALTHY,
    UNKNOWN,
    Record,
)
from hpclaunch.schedulers.base import DONE, MISSING, QUEUED, JobState
from hpclaunch.schedulers.base import UNKNOWN as JOB_UNKNOWN
from hpclaunch.vllm.logs.read import HEAD_BYTES, TAIL_BYTES

if TYPE_CHECKING:
    from hpclaunch.remote.transport import FileStat, Transport
    from hpclaunch.vllm.logs.report import LogReport

# The same bounds as the local log reader's, so local and remote reads agree.
LOG_HEAD_BYTES, LOG_TAIL_BYTES = HEAD_BYTES, TAIL_BYTES
# Exit statuses of a server that was asked to stop (SIGTERM/SIGINT), not a failure.
STOPPED_CODES = {0, 130, 143, -15, 271}
# A remote job the scheduler stopped listing, with no exit file (yet): one flaky qstat or
# squeue, history lag, or a shared filesystem's attribute cache can each cause one miss.
# It is UNKNOWN until it has stayed so this long; only then FAILED, for good.
MISSING_GRACE_S = 120.0
MISSING_WORDS = "the scheduler no longer lists the job and it left no exit status"


@dataclass
class Observation:
    """What one refresh learned about one endpoint."""

    state: str
    reason: str = ""
    host: str = ""
    port: int = 0
    log_path: str = ""
    node: str = ""
    report: LogReport | None = None
    job: JobState | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0


def endpoint_file(rec: Record) -> str:
    return f"{rec.files}.endpoint.json"


def exit_file(rec: Record) -> str:
    return f"{rec.files}.exit"


def read_endpoint_file(transport: Transport, rec: Record) -> dict[str, Any] | None:
    """The job's own report of host/port, if it belongs to this record's job."""
    text = transport.read_text(endpoint_file(rec))
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    port, host = data.get("port"), data.get("host")
    if not isinstance(host, str) or not host or isinstance(port, bool) \
            or not isinstance(port, int) or not 0 < port < 65536:
        return None  # not (yet) a whole report from the job: read it again next time
    job = str(data.get("job_id", ""))
    # A reused name must not pick up a previous job's file (PBS ids carry a suffix).
    if rec.job_id and job and job.split(".")[0] != rec.job_id.split(".")[0]:
        return None
    return data


# A multi-node job writes <files>.nodefail when a node's process ended early or Ray never held
# every node: that, not the head's "engine died" that follows, is the cause.
NODE_SYMPTOMS = ("engine_dead", "engine_start_failed")
NODE_FIX = ("read that node's log (hpclaunch logs NAME --node N); resubmit once the node or "
            "network problem is fixed")


def read_node_failure(transport: Transport, rec: Record) -> str:
    text = transport.read_text(f"{rec.files}.nodefail") or ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0].removeprefix("hpclaunch: multi-node: ") if lines else ""


def read_exit_code(transport: Transport, rec: Record) -> int | None:
    text = transport.read_text(exit_file(rec))
    if text is None:
        return None
    try:
        return int(text.strip().splitlines()[0])
    except (ValueError, IndexError):
        return None


# path -> (size, mtime, report): `wait` polls twice a second, and an unchanged
# log need not be read or parsed again.
_LOG_CACHE: dict[str, tuple[int, float, LogReport]] = {}


def read_log(transport: Transport, path: str) -> LogReport:
    """Parse the head and tail of a log, whatever its size (two bounded reads)."""
    from hpclaunch.vllm.logs.parse import parse
    from hpclaunch.vllm.logs.read import LogChunk

    st = transport.stat(path) if path else None
    if st is None:
        return parse(LogChunk.missing())
    cached = _LOG_CACHE.get(path)
    if cached is not None and cached[0] == st.size and cached[1] == st.mtime:
        return cached[2]
    report = _read_and_parse(transport, path, st)
    if len(_LOG_CACHE) > 256:  # a long `watch` must not grow without bound
        _LOG_CACHE.clear()
    _LOG_CACHE[path] = (st.size, st.mtime, report)
    return report


def _read_and_parse(transport: Transport, path: str, st: FileStat) -> LogReport:
    from hpclaunch.vllm.logs.parse import parse
    from hpclaunch.vllm.logs.read import LogChunk

    if st.size <= LOG_HEAD_BYTES + LOG_TAIL_BYTES:
        data = transport.read_range(path, 0, st.size)
        return parse(LogChunk.from_bytes(data, b"", len(data), st.mtime))
    head = transport.read_range(path, 0, LOG_HEAD_BYTES)
    # One byte early, so that a line starting exactly at the cut is kept whole.
    tail = transport.read_range(path, st.size - LOG_TAIL_BYTES - 1, LOG_TAIL_BYTES + 1)
    return parse(LogChunk.from_bytes(head, tail, st.size, st.mtime))


def probe_health(transport: Transport, host: str, port: int) -> bool:
    status, _ = transport.http_get(host, port, "/health", timeout=2.0)
    return status == 200


def observe(rec: Record, job: JobState, transport: Transport, *, probe: bool = True) -> Observation:
    """One endpoint's state from its job state, its files and (maybe) /health."""
    if job.state == QUEUED:
        reason = f"queued ({job.reason})" if job.reason else "queued"
        return Observation(PENDING, reason=reason, job=job)
    if job.state == JOB_UNKNOWN:  # kept as it was; asked again on the next refresh
        return Observation(UNKNOWN, reason=job.reason, job=job)
    if rec.kind == "eval":
        return observe_eval_job(rec, job, transport)

    info = read_endpoint_file(transport, rec) or {}
    host = str(info.get("host") or rec.host)
    port = int(info.get("port") or rec.port or 0)
    log_path = str(info.get("log") or rec.log_path)
    node = str(info.get("node") or job.node or "")
    # A fleet's router writes no vLLM log: its own API says whether it serves.
    report = read_log(transport, log_path) if log_path and rec.role != "fleet" else None
    obs = Observation(STARTING, host=host, port=port, log_path=log_path, node=node,
                      report=report, job=job)
    # GPU-hours: the scheduler's clock (the local scheduler's is ps on this machine).
    obs.started = job.start
    failure = report.failure if report else None
    if failure is not None and failure.code == "offline_cache_miss":
        # The log rarely names the model; the record does, and the command is exact.
        from dataclasses import replace

        failure = replace(failure, fix=f"run hpclaunch prefetch {rec.model_id} --cluster "
                                       f"{rec.cluster}, then resubmit")
    if job.left_queue or failure is not None:
        node_failure = read_node_failure(transport, rec)
        if node_failure and (failure is None or failure.code in NODE_SYMPTOMS):
            obs.state, obs.reason = FAILED, f"{node_failure} -> {NODE_FIX}"
            return obs

    if job.left_queue:
        code = read_exit_code(transport, rec)
        if code is None:
            code = job.exit_code
        if failure is not None:
            obs.state, obs.reason = FAILED, f"{failure.reason} -> {failure.fix}"
        elif job.reason and job.state == DONE and _scheduler_killed(job.reason):
            obs.state, obs.reason = FAILED, f"the scheduler ended the job: {job.reason}"
        elif code in STOPPED_CODES or (code is None and "CANCEL" in job.reason.upper()):
            obs.state = ENDED
            # The scheduler's word wins: vLLM exits 0 on the SIGTERM that scancel sends.
            cancelled = code != 0 or "CANCEL" in job.reason.upper()
            obs.reason = "cancelled" if cancelled else "vLLM exited normally"
            if job.reason:
                obs.reason += f" ({job.reason})"
        elif code is not None:
            obs.state = FAILED
            obs.reason = f"vLLM exited with status {code}{_last_lines_hint(report)}"
        elif job.state == MISSING and rec.scheduler != "local" and not (
                rec.state == UNKNOWN and rec.reason.startswith(MISSING_WORDS)
                and time.time() - rec.updated >= MISSING_GRACE_S):
            obs.state = UNKNOWN
            obs.reason = (f"{MISSING_WORDS} yet; asking again (FAILED if still so after "
                          f"{MISSING_GRACE_S:.0f} s)")
        elif job.state == MISSING:
            obs.state = FAILED
            obs.reason = ("the job is gone and left no exit status (killed hard, or its node "
                          f"failed){_last_lines_hint(report)}")
        else:
            obs.state, obs.reason = ENDED, job.reason or "job finished"
        obs.finished = job.end
        if not obs.finished and obs.started:
            st = transport.stat(exit_file(rec))
            obs.finished = st.mtime if st is not None else 0.0
        said = transport.read_text(f"{rec.files}.reason") if obs.state == ENDED else None
        if said and said.strip():  # the job's own word on why it stopped (idle stop)
            obs.reason = said.strip().splitlines()[0][:200]
        return obs
    if rec.role == "fleet":
        return _observe_router(obs, transport, rec)

    if failure is not None and failure.code == "port_in_use":
        # The job retries on the next port by itself; only final once the job ends.
        obs.reason = "port taken on the node; the job retries on the next port"
        return obs
    if failure is not None:
        obs.state, obs.reason = FAILED, f"{failure.reason} -> {failure.fix}"
        return obs
    if report is not None and report.ready_line and host and port:
        if not probe or probe_health(transport, host, port):
            obs.state = READY
        elif rec.state in (READY, UNHEALTHY):
            obs.state = UNHEALTHY
            obs.reason = (f"was READY, /health on {host}:{port} no longer answers (hung or "
                          "overloaded?); check hpclaunch logs, or stop and resubmit")
        else:
            obs.reason = "log says ready but /health does not answer yet"
        return obs
    obs.reason = "vLLM is starting" if report and report.started else "job running, no log yet"
    if not log_path:  # a multi-node job says what it waits for before the head starts
        launch = (transport.read_text(f"{rec.files}.launch") or "").strip()
        if launch:
            obs.reason = f"multi-node: {launch.splitlines()[0]}"
    return obs


def observe_eval_job(rec: Record, job: JobState, transport: Transport) -> Observation:
    """An ``hpclaunch eval --submit`` job: RUNNING, then ENDED (vf-eval exited 0) or FAILED.

    Its script writes ``eval.exit`` beside its log; the reason is the log's last line
    (what the job is waiting for, or how vf-eval ended).
    """
    obs = Observation(RUNNING, log_path=rec.log_path, node=job.node or "", job=job)
    last = _last_line(transport, rec.log_path)
    if not job.left_queue:
        obs.reason = last or "starting"
        return obs
    code = read_exit_code_at(transport, f"{rec.results_dir}/eval.exit")
    if code is None and job.state == MISSING and time.time() - rec.updated < 60:
        # squeue can miss a job for a moment between states: not gone until it stays so.
        obs.reason = "the scheduler does not list the job right now; asking again"
        return obs
    if code == 0:
        obs.state, obs.reason = ENDED, f"vf-eval finished; results in {rec.results_dir}/results"
    elif code is None and "CANCEL" in job.reason.upper():
        obs.state, obs.reason = ENDED, f"cancelled ({job.reason})"
    else:
        obs.state = FAILED
        obs.reason = (f"exited {code}: {last}" if code is not None
                      else f"the job is gone and left no exit status: {last}")
    return obs


def _last_line(transport: Transport, path: str) -> str:
    st = transport.stat(path) if path else None
    if st is None or not st.size:
        return ""
    start = max(0, st.size - 2000)
    text = transport.read_range(path, start, st.size - start).decode("utf-8", "replace")
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def read_exit_code_at(transport: Transport, path: str) -> int | None:
    text = transport.read_text(path)
    try:
        return int(text.strip().splitlines()[0]) if text else None
    except (ValueError, IndexError):
        return None


def _observe_router(obs: Observation, transport: Transport, rec: Record) -> Observation:
    """A fleet is READY while its router answers and routes to at least one healthy replica."""
    if not (obs.host and obs.port):
        obs.reason = "router job running, no endpoint file yet"
        return obs
    status, body = transport.http_get(obs.host, obs.port, "/workers", timeout=2.0)
    if status != 200:
        obs.reason = f"router on {obs.host}:{obs.port} does not answer yet"
        if rec.state == READY:
            obs.state = UNHEALTHY
        return obs
    try:
        workers = json.loads(body).get("workers") or []
        healthy = sum(1 for w in workers if isinstance(w, dict) and w.get("is_healthy"))
    except (ValueError, AttributeError):
        workers, healthy = [], 0
    obs.extra["workers"] = workers
    if healthy:
        obs.state, obs.reason = READY, f"router routes to {healthy} healthy replica(s)"
    else:
        obs.reason = "router up; no healthy replica has joined yet"
    return obs


def _scheduler_killed(reason: str) -> bool:
    upper = reason.upper()
    return any(word in upper for word in ("TIMEOUT", "TIME LIMIT", "WALLTIME", "NODE_FAIL",
                                          "OUT_OF_MEMORY", "PREEMPT", "BOOT_FAIL", "JOB_EXEC"))


# A successful request in uvicorn's access log ("GET /health HTTP/1.1" 200 OK): hpclaunch's own
# probes write one every few seconds, so after a hard kill they are all the tail holds.
_ACCESS_OK = re.compile(r'"[A-Z]+ \S+ HTTP/[0-9.]+" [23][0-9][0-9]\b')


def _last_lines_hint(report: LogReport | None) -> str:
    """The last few log lines that say something: successful requests are skipped."""
    if report is None:
        return ""
    tail = [ln.strip() for ln in report.last_lines(60) if ln.strip()]
    lines = [ln for ln in tail if not _ACCESS_OK.search(ln)][-3:]
    if lines:
        return f"; last log lines: {' | '.join(lines)}"
    if tail:
        return "; the log ends with requests that succeeded, no error (killed from outside?)"
    return "; the log is empty"


def apply(rec: Record, obs: Observation) -> dict[str, Any]:
    """Registry changes that ``obs`` implies for ``rec`` (empty when nothing changed)."""
    changes: dict[str, Any] = {}
    for key in ("state", "reason", "host", "port", "log_path"):
        value = getattr(obs, key)
        if value != getattr(rec, key) and (value or key in ("reason",)):
            changes[key] = value
    if obs.state in (ENDED, FAILED) and not rec.ended:
        changes["ended"] = time.time()
    if obs.state == READY and not rec.ready_at:
        changes["ready_at"] = time.time()
    if obs.started and not rec.started:
        changes["started"] = obs.started
    if obs.finished and not rec.finished:
        changes["finished"] = obs.finished
    return changes
