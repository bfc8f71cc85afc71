"""A fleet as one line: ``READY 2/2``, and GPU-hours per endpoint and per fleet."""

from __future__ import annotations

import time

from hpclaunch.errors import UserError
from hpclaunch.registry import READY, Record, Registry


def replicas_of(name: str, records: dict[str, Record]) -> list[Record]:
    """A fleet's replicas, oldest first (ended ones too)."""
    found = [r for r in records.values() if r.role == "replica" and r.fleet == name]
    return sorted(found, key=lambda r: (index_of(r.name), r.created))


def index_of(replica: str) -> int:
    """``qwen.r12`` -> 12: replicas are numbered in the order they were queued."""
    tail = replica.rsplit(".r", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def state_label(fleet: Record, records: dict[str, Record]) -> str:
    """The router's state and READY replicas out of the wanted count (``READY 1/2``)."""
    ready = sum(1 for r in replicas_of(fleet.name, records) if r.state == READY)
    return f"{fleet.state} {ready}/{fleet.replicas}"


def gpu_hours(rec: Record, now: float | None = None) -> float:
    """GPUs x wall time, from the scheduler's start and end (the local clock for local jobs).

    Zero until the job has started; a running job counts up to now.
    """
    if not rec.gpus or not rec.started:
        return 0.0
    end = rec.finished or (rec.ended if rec.final else 0.0) or (now or time.time())
    return rec.gpus * max(0.0, end - rec.started) / 3600.0


def fleet_gpu_hours(fleet: Record, records: dict[str, Record]) -> float:
    return gpu_hours(fleet) + sum(gpu_hours(r) for r in replicas_of(fleet.name, records))


def backfill_finished(registry: Registry, records: dict[str, Record] | None = None) -> bool:
    """Ask the scheduler when stopped jobs really ended (one call per cluster).

    ``hpclaunch stop`` records an endpoint ENDED the moment it cancels the job, before
    the scheduler has an end time; final records are never refreshed, so GPU-hours
    would count to the local clock's stop time. Slurm's squeue (or sacct, or its
    job-completion file) then knows the real EndTime.
    """
    todo: dict[str, list[Record]] = {}
    changed = False
    for rec in (registry.load() if records is None else records).values():
        if rec.final and rec.started and not rec.finished and rec.job_id \
                and rec.scheduler == "slurm":
            todo.setdefault(rec.cluster, []).append(rec)
    if not todo:
        return False
    from hpclaunch.endpoints.lifecycle import load_profiles, profile_of
    from hpclaunch.remote.connect import transport_for
    from hpclaunch.schedulers import scheduler_for
    from hpclaunch.schedulers.base import DONE

    profiles = load_profiles()
    for recs in todo.values():
        try:
            profile = profile_of(recs[0], profiles)
            transport = transport_for(profile)
        except UserError:
            continue  # shown with the local clock's end; asked again next time
        try:
            states = scheduler_for(profile, transport).states([r.job_id for r in recs])
        except UserError:
            continue
        finally:
            transport.close()
        for rec in recs:
            job = states.get(rec.job_id)
            if job is not None and job.state == DONE and job.end:
                registry.update(rec.name, finished=job.end)
                changed = True
    return changed
