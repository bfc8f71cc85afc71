"""Walltime relay: a successor replica is in Slurm's queue before its predecessor's limit.

What runs where (no daemon anywhere):

- Slurm holds the successor: it is queued with ``--dependency=after:PRED+M``, so it
  becomes eligible M minutes after its predecessor *started* (M = time limit - lead -
  measured startup, in whole minutes, at least 0).
- The successor's own agent joins the router when its server is healthy.
- Slurm signals the predecessor's batch shell ``--signal=B:USR1@LEAD`` seconds before
  its limit; its trap tells its agent, which waits until the router has another
  healthy worker, leaves, drains and stops the server: the job ends before TIMEOUT.
- Each hpclaunch refresh (``endpoints``, ``status``, ``wait``) queues a successor for
  every running replica that has none; ``submit`` queues the first ones, so one
  handover per replica happens even if nobody runs hpclaunch meanwhile.
"""

from __future__ import annotations

import re
import statistics

from hpclaunch.errors import UserError
from hpclaunch.registry import Record

MIN_LEAD_S = 30
DEFAULT_STARTUP_S = 120  # until one replica of the fleet has been measured
_SLURM = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")


def slurm_seconds(text: str) -> int:
    """Slurm's ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S`` -> seconds."""
    match = _SLURM.fullmatch(str(text).strip())
    if not match or not str(text).strip():
        raise UserError(f"time limit {text!r}: a walltime relay needs a time limit "
                        "(--set time-limit=HH:MM:SS or the profile's time-limit)")
    days, first, second, third = match.groups()
    if days is not None:  # D-H[:M[:S]]
        return ((int(days) * 24 + int(first)) * 60 + int(second or 0)) * 60 + int(third or 0)
    if third is not None:  # H:M:S
        return (int(first) * 60 + int(second)) * 60 + int(third)
    if second is not None:  # M:S
        return int(first) * 60 + int(second)
    return int(first) * 60  # M


def startup_s(replicas: list[Record]) -> float:
    """Median time from job start to READY over the fleet's replicas that got there."""
    seen = [r.ready_at - r.started for r in replicas if r.ready_at and r.started
            and r.ready_at > r.started]
    return statistics.median(seen) if seen else DEFAULT_STARTUP_S


def lead_s(limit_s: int, startup: float, wanted: int = 0) -> int:
    """Seconds before the limit at which the predecessor hands over: the user's, or room
    for a drain; never more than half the limit."""
    lead = wanted or max(MIN_LEAD_S, int(startup / 2))
    return max(10, min(lead, limit_s // 2))


def directives(limit_s: int, lead: int, startup: float, predecessor_job: str) -> list[str]:
    """The successor's ``#SBATCH`` lines, and the signal every relayed replica gets."""
    lines = [f"#SBATCH --signal=B:USR1@{int(lead)}"]
    if predecessor_job:
        after_min = max(0, int((limit_s - lead - startup) // 60))
        if not predecessor_job.isdigit():
            raise UserError(f"cannot relay after job {predecessor_job!r}: not a Slurm job id")
        when = f"+{after_min}" if after_min else ""
        lines.append(f"#SBATCH --dependency=after:{predecessor_job}{when}")
    return lines
