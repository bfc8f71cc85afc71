"""Batch systems hpclaunch submits to; :func:`scheduler_for` picks one by profile."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hpclaunch.errors import UserError

if TYPE_CHECKING:
    from hpclaunch.config import ClusterProfile
    from hpclaunch.remote.transport import Transport
    from hpclaunch.schedulers.base import Scheduler


def scheduler_for(cluster: ClusterProfile, transport: Transport) -> Scheduler:
    """The scheduler class named by the profile, bound to a transport."""
    name = cluster.scheduler
    if name == "local":
        from hpclaunch.schedulers.local import LocalScheduler

        return LocalScheduler(cluster, transport)
    if name == "slurm":
        from hpclaunch.schedulers.slurm import SlurmScheduler

        return SlurmScheduler(cluster, transport)
    if name == "pbs":
        from hpclaunch.schedulers.pbs import PBSScheduler

        return PBSScheduler(cluster, transport)
    raise UserError(f"unknown scheduler {name!r}; use local, slurm or pbs")
