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
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpclaunch.registry import ENDED, FAILED, PENDING, READY, STARTING, UNHEALTHY, Record
from hpclaunch.schedulers.base import DONE, MISSING, QUEUED, JobState
from hpclaunch.vllm.logs.read import HEAD_BYTES, TAIL_BYTES

if TYPE_CHECKING:
    from hpclaunch.remote.transport import FileStat, Transport
    from hpclaunch.vllm.logs.report import LogReport

# The same bounds as the local log reader's, so local and remote reads agree.
LOG_HEAD_BYTES, LOG_TAIL_BYTES = HEAD_BYTES, TAIL_BYTES
# Exit statuses of a server that was asked to stop (SIGTERM/SIGINT), not a failure.
STOPPED_CODES = {0, 130, 143, -15, 271}


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


def endpoint_file(rec: Record) -> str:
    return f"{rec.results_dir}/{rec.name}.endpoint.json"


def exit_file(rec: Record) -> str:
    return f"{rec.results_dir}/{rec.name}.exit"


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
    job = str(data.get("job_id", ""))
    # A reused name must not pick up a previous job's file (PBS ids carry a suffix).
    if rec.job_id and job and job.split(".")[0] != rec.job_id.split(".")[0]:
        return None
    return data


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

    info = read_endpoint_file(transport, rec) or {}
    host = str(info.get("host") or rec.host)
    port = int(info.get("port") or rec.port or 0)
    log_path = str(info.get("log") or rec.log_path)
    node = str(info.get("node") or job.node or "")
    report = read_log(transport, log_path) if log_path else None
    obs = Observation(STARTING, host=host, port=port, log_path=log_path, node=node,
                      report=report, job=job)
    failure = report.failure if report else None

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
        elif job.state == MISSING:
            obs.state = FAILED
            obs.reason = ("the job is gone and left no exit status (killed hard, or its node "
                          f"failed){_last_lines_hint(report)}")
        else:
            obs.state, obs.reason = ENDED, job.reason or "job finished"
        return obs

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
    return obs


def _scheduler_killed(reason: str) -> bool:
    upper = reason.upper()
    return any(word in upper for word in ("TIMEOUT", "TIME LIMIT", "WALLTIME", "NODE_FAIL",
                                          "OUT_OF_MEMORY", "PREEMPT", "BOOT_FAIL", "JOB_EXEC"))


def _last_lines_hint(report: LogReport | None) -> str:
    if report is None:
        return ""
    lines = [ln.strip() for ln in report.last_lines(3) if ln.strip()]
    return f"; last log lines: {' | '.join(lines)}" if lines else "; the log is empty"


def apply(rec: Record, obs: Observation) -> dict[str, Any]:
    """Registry changes that ``obs`` implies for ``rec`` (empty when nothing changed)."""
    changes: dict[str, Any] = {}
    for key in ("state", "reason", "host", "port", "log_path"):
        value = getattr(obs, key)
        if value != getattr(rec, key) and (value or key in ("reason",)):
            changes[key] = value
    if obs.state in (ENDED, FAILED) and not rec.ended:
        changes["ended"] = time.time()
    return changes
