"""Checks that can fail before a job waits hours in a queue.

Each check returns :class:`Problem` objects whose message names the fix. Errors
stop ``submit``; warnings are printed and the job goes ahead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpclaunch.plan import Plan

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Problem:
    level: str
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


def check_gpu_count(plan: Plan) -> list[Problem]:
    if plan.simulate:
        return []
    have = plan.gpus_per_node_available
    if have is None:
        return [Problem(ERROR, "gpu-count",
                        f"cluster {plan.cluster.name!r} does not say how many GPUs a node has; "
                        "set gpus_per_node in clusters.yaml or pass --gpus-per-node N "
                        "(or --simulate to run the stand-in)")]
    if plan.gpus_per_node > have:
        return [Problem(ERROR, "gpu-count",
                        f"layout dp={plan.dp} x tp={plan.tp} x pp={plan.pp} needs "
                        f"{plan.gpus_per_node} GPUs per node but {plan.cluster.name!r} has {have}; "
                        "pick a smaller preset or --set dp=/tp= to fit")]
    return []


def check_flags(plan: Plan) -> list[Problem]:
    from hpclaunch.vllm_flags import check_args

    return [Problem(ERROR, "vllm-flag", _flag_message(p))
            for p in check_args(list(plan.vllm_flags), plan.cluster.vllm_version)]


def _flag_message(problem: object) -> str:
    message = str(getattr(problem, "message", problem))
    suggestion = getattr(problem, "suggestion", "")
    if suggestion and suggestion not in message:
        message = f"{message} ({suggestion})"
    return message


CHECKS = [check_gpu_count, check_flags]


def check(plan: Plan) -> list[Problem]:
    """Every check, in order; callers decide what errors mean."""
    problems: list[Problem] = []
    for fn in CHECKS:
        problems.extend(fn(plan))
    return problems
