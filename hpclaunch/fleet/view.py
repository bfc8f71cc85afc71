"""A fleet as one line: ``READY 2/2``, and GPU-hours per endpoint and per fleet."""

from __future__ import annotations

import time

from hpclaunch.registry import READY, Record


def state_label(fleet: Record, records: dict[str, Record]) -> str:
    """The router's state and READY replicas out of the wanted count (``READY 1/2``)."""
    from hpclaunch.fleet.launch import replicas_of

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
    from hpclaunch.fleet.launch import replicas_of

    return gpu_hours(fleet) + sum(gpu_hours(r) for r in replicas_of(fleet.name, records))
