"""Slurm: ``sbatch --parsable``, one ``squeue`` for every job, ``sacct`` for the rest.

``squeue --states=all`` also lists jobs that finished less than ``MinJobAge``
seconds ago (300 s by default), with their final state, reason and exit status, so
most refreshes need nothing else. Jobs older than that are asked of ``sacct`` in
one call; when the site runs no accounting database (``Slurm accounting storage is
disabled``, common on small clusters) the job-completion file (``sacct -c``) is
tried, and a job nobody remembers is MISSING: the job's own exit file and log
then decide ENDED or FAILED (see :mod:`hpclaunch.endpoints.status`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from hpclaunch.errors import UserError
from hpclaunch.schedulers.base import DONE, QUEUED, RUNNING, JobState, Scheduler, directive_value

if TYPE_CHECKING:
    from hpclaunch.planning.plan import Plan
    from hpclaunch.remote.transport import Result

log = logging.getLogger(__name__)

# `squeue -o` has no letter for the exit status, `-O` does. A ':' with no width
# prints each field whole (no 20-column padding or truncation); '|' separates.
SQUEUE_FIELDS = ("JobID", "State", "Reason", "NodeList", "exit_code", "StartTime", "EndTime")
SQUEUE_FORMAT = ",".join(f"{field}:|" for field in SQUEUE_FIELDS)
SACCT_FIELDS = "jobid,state,exitcode,reason,start,end"

QUEUED_STATES = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                 "RESV_DEL_HOLD", "SUSPENDED", "STOPPED"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}
DONE_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
               "PREEMPTED", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"}
GPU_DIRECTIVES = ("gres", "gpus-per-node")
# Words meaning "these ids are gone", not "Slurm is broken".
GONE_WORDS = ("Invalid job id specified", "already completing or completed")


class SlurmScheduler(Scheduler):
    name: ClassVar[str] = "slurm"
    template: ClassVar[str] = "slurm.sh.j2"
    directive_prefix: ClassVar[str] = "#SBATCH"
    # `sbatch --parsable` prints "<id>" or, on multi-cluster sites, "<id>;<cluster>".
    job_id_regexp: ClassVar[str] = r"(?P<job_id>[0-9]+)(?:;[A-Za-z0-9_.-]+)?"
    node_list_command: ClassVar[str] = 'scontrol show hostnames "$SLURM_JOB_NODELIST"'
    # --overlap: the other nodes' long-running steps must not block each other.
    node_launch_command: ClassVar[str] = (
        'srun --nodes=1 --ntasks=1 -w "$1" --overlap --kill-on-bad-exit=0 /bin/bash "$2"')

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._accounting = True  # until sacct says it is disabled


    def directives(self, plan: Plan) -> list[str]:
        """See :meth:`Scheduler.directives`; values are validated, never escaped."""
        cluster, res = self.cluster, plan.resources
        # Checked up front so that an unusable results dir is named as such.
        out = directive_value("results-dir", plan.results_dir.rstrip("/") or ".")
        options: dict[str, Any] = {
            "job-name": f"hpcl-{plan.name}",
            "partition": res.get("partition", cluster.partition),
            "account": res.get("account", cluster.account),
            "qos": res.get("qos", cluster.qos),
            "time": res.get("time-limit") or cluster.time_limit,
            "nodes": plan.nodes,
            "ntasks-per-node": 1,
            "cpus-per-task": res.get("cpus-per-task", cluster.cpus_per_task),
            "mem": res.get("mem", cluster.mem),
            "chdir": out,
            "output": f"{out}/hpclaunch_{plan.name}.%j.out",
            "error": f"{out}/hpclaunch_{plan.name}.%j.err",
        }
        # Rendered with --simulate too: the stand-in job is scheduled on real (fake) GPUs.
        gpus = f"{cluster.gpu_type}:{plan.gpus_per_node}" if cluster.gpu_type \
            else str(plan.gpus_per_node)
        if cluster.gpu_directive == "gres":
            options["gres"] = f"gpu:{gpus}"
        elif cluster.gpu_directive == "gpus-per-node":
            options["gpus-per-node"] = gpus
        else:
            raise UserError(f"cluster {cluster.name!r}: gpu-directive must be one of "
                            f"{', '.join(GPU_DIRECTIVES)}, not {cluster.gpu_directive!r}")
        return [f"#SBATCH --{key}={directive_value(key, value)}"
                for key, value in sorted(options.items()) if value is not None and value != ""]

    def cpu_directives(self, name: str, job_dir: str) -> list[str]:
        """See :meth:`Scheduler.cpu_directives`: the profile's partition and limits, no GPU."""
        cluster, out = self.cluster, directive_value("results-dir", job_dir)
        options = {"job-name": f"hpcl-{name}", "partition": cluster.partition,
                   "account": cluster.account, "qos": cluster.qos, "time": cluster.time_limit,
                   "ntasks": 1, "cpus-per-task": 1, "chdir": out,
                   "output": f"{out}/hpclaunch_{name}.%j.out"}
        return [f"#SBATCH --{key}={directive_value(key, value)}"
                for key, value in sorted(options.items()) if value not in (None, "")]

    def submit_argv(self, script_path: str) -> list[str]:
        return ["sbatch", "--parsable", script_path]

    def cancel_argv(self, job_id: str) -> list[str]:
        return ["scancel", job_id]

    def cancel_error_is_benign(self, result: Result) -> bool:
        return any(words in result.stderr for words in GONE_WORDS)

    def status_argv(self, job_ids: list[str]) -> list[str]:
        return ["squeue", "--noheader", "--states=all", f"--jobs={','.join(job_ids)}",
                f"--Format={SQUEUE_FORMAT}"]

    def parse_status(self, result: Result, job_ids: list[str]) -> dict[str, JobState]:
        """See :meth:`Scheduler.parse_status`.

        squeue exits 1 with ``Invalid job id specified`` when it knows none of the
        ids (for one id; for several it prints nothing): those jobs are gone. Any
        other failure (controller down, timeout) must not look like "all jobs
        ended", so it is an error and no state changes.
        """
        if result.returncode != 0:
            if any(words in result.stderr for words in GONE_WORDS):
                return {}
            words = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
            raise UserError(f"squeue exited {result.returncode}: {words[0].strip()} "
                            "(endpoint states were not updated; is slurmctld reachable?)")
        return parse_squeue(result.stdout, job_ids)

    def finished_states(self, job_ids: list[str]) -> dict[str, JobState]:
        """One ``sacct`` call for jobs squeue forgot; the jobcomp file if accounting is off."""
        ids = ",".join(job_ids)
        if self._accounting:
            result = self.run(["sacct", "-P", "-n", "-X", "-j", ids, "-o",
                                         SACCT_FIELDS], timeout=60)
            if result.returncode == 0:
                return parse_sacct(result.stdout, job_ids)
            if "accounting storage is disabled" not in result.stderr.lower():
                log.warning("sacct exited %s: %s; job states may be inaccurate",
                            result.returncode, result.stderr.strip())
                return {}
            self._accounting = False
        result = self.run(["sacct", "-c", "-P", "-n", "-X", "-j", ids, "-o",
                                     SACCT_FIELDS], timeout=60)
        if result.returncode != 0:
            log.info("sacct -c exited %s: %s", result.returncode, result.stderr.strip())
            return {}
        return parse_sacct(result.stdout, job_ids)



def decode_wait_status(raw: str) -> int | None:
    """squeue's ``exit_code`` is a wait status (768 = exit 3; 15 = killed by signal 15).

    Returned as a shell would report it: the exit code, or 128 + signal.
    """
    try:
        status = int(raw)
    except ValueError:
        return None
    signal = status & 0x7F
    return 128 + signal if signal else (status >> 8) & 0xFF


def decode_exit_pair(raw: str) -> int | None:
    """sacct's ``ExitCode`` is ``code:signal`` (``3:0``, ``0:15``); same convention as above."""
    code, _, signal = raw.partition(":")
    try:
        sig = int(signal or 0)
        return 128 + sig if sig else int(code)
    except ValueError:
        return None


def job_state(native: str, reason: str = "", exit_code: int | None = None,
              node: str = "") -> JobState:
    """Map one Slurm state (``CANCELLED by 1000`` keeps its ``by``) to a coarse JobState."""
    words = native.strip()
    base = words.split()[0].rstrip("+") if words else ""
    reason = "" if reason in ("None", "(null)") else reason.strip()
    node = "" if node in ("(null)", "None assigned") else node.strip()
    if base in QUEUED_STATES:
        why = reason if base == "PENDING" else f"{base}{f', {reason}' if reason else ''}"
        return JobState(QUEUED, reason=why, native_state=words)
    if base in RUNNING_STATES:
        return JobState(RUNNING, node=node, native_state=words)
    if base in DONE_STATES:
        details = [reason] if reason and reason not in words else []
        if base == "FAILED" and exit_code:
            details.append(f"exit code {exit_code}")
        why = f"{words} ({', '.join(details)})" if details else words
        return JobState(DONE, reason=why, exit_code=exit_code, node=node, native_state=words)
    # A state this code has not met (newer Slurm, site plugin): the job is still
    # listed, so let its log decide; it leaves squeue eventually and becomes final.
    log.warning("unknown Slurm job state %r; treating it as running", native)
    return JobState(RUNNING, reason=f"Slurm state {words}", node=node, native_state=words)


def _job_id(field: str) -> str:
    """``123``, ``123;cluster`` -> ``123``; steps (``123.batch``) and array tasks are kept apart."""
    return field.strip().split(";")[0]


def parse_squeue(text: str, job_ids: list[str]) -> dict[str, JobState]:
    """Lines of ``id|state|reason|nodes|wait status|`` for the ids asked about."""
    wanted, states = set(job_ids), {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 5 or _job_id(parts[0]) not in wanted:
            continue  # a banner, a blank line or another job
        job_id, native, reason, node, raw_exit = (p.strip() for p in parts[:5])
        state = job_state(native, reason, decode_wait_status(raw_exit), node)
        states[_job_id(job_id)] = with_times(state, *parts[5:7])
    return states


def slurm_time(text: str) -> float:
    """``2026-11-27T09:50:25`` (the controller's local time) -> epoch; 0 for N/A, Unknown."""
    import datetime

    try:
        return datetime.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return 0.0


def with_times(state: JobState, start: str = "", end: str = "") -> JobState:
    """The state with Slurm's StartTime, and its EndTime once the job has left the queue
    (while it runs, EndTime is only the time limit's end)."""
    from dataclasses import replace

    if state.state == QUEUED:
        return state
    return replace(state, start=slurm_time(start),
                   end=slurm_time(end) if state.state == DONE else 0.0)


def parse_sacct(text: str, job_ids: list[str]) -> dict[str, JobState]:
    """``sacct -P -n -X -o jobid,state,exitcode,reason`` rows; the last row of an id wins
    (a requeued job, or the jobcomp file of a cluster whose job ids started over)."""
    wanted, states = set(job_ids), {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 3 or _job_id(parts[0]) not in wanted:
            continue  # steps (123.batch), headers, other jobs
        reason = parts[3].strip() if len(parts) > 3 else ""
        state = job_state(parts[1], reason, decode_exit_pair(parts[2]))
        states[_job_id(parts[0])] = with_times(state, *parts[4:6])
    return states
