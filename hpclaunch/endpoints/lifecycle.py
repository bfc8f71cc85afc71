"""An endpoint after submit: refresh its state, wait for READY, stop, forget.

Every refresh asks each cluster's scheduler once for all its jobs, then reads each
job's files and log tail; one transport (one SSH connection) serves a whole call.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from hpclaunch.config import ClusterProfile, with_scheduler
from hpclaunch.errors import EndpointStateError, UserError
from hpclaunch.registry import ENDED, FAILED, READY, STARTING, Record, Registry

if TYPE_CHECKING:
    from hpclaunch.schedulers.base import JobState
    from hpclaunch.vllm.progress import LoadProgress

STATUS_FAILURE_BUDGET = 3  # consecutive failed status queries before `wait` gives up
# A name reserved by a submit that never recorded a job id (the submit was killed -9,
# or its machine died) is given up after this long; sbatch/qsub time out after 120 s.
RESERVATION_TIMEOUT_S = 180.0


def _expired_reservations(recs: list[Record], registry: Registry,
                          records: dict[str, Record]) -> list[Record]:
    """Reservations still waiting for their job id: no scheduler can be asked about them.

    Returns the records that do have a job; those whose submit died are marked FAILED.
    """
    with_job = []
    for rec in recs:
        if rec.job_id:
            with_job.append(rec)
        elif time.time() - rec.created > RESERVATION_TIMEOUT_S:
            updated = registry.claimed(
                rec.name, rec.submission, state=FAILED, ended=time.time(),
                reason="its submit stopped before recording a job id; if a job named "
                       f"hpcl-{rec.name} is in the queue, cancel it by hand")
            if updated is not None:
                records[rec.name] = updated
    return with_job


def profile_of(rec: Record, profiles: dict[str, ClusterProfile]) -> ClusterProfile:
    """The profile a record was submitted with (its scheduler may have been overridden)."""
    if rec.cluster not in profiles:
        raise UserError(
            f"cluster {rec.cluster!r} of endpoint {rec.name!r} is no longer defined in "
            "clusters.yaml; restore it to manage this endpoint"
        )
    return with_scheduler(profiles[rec.cluster], rec.scheduler, rec.pbs_dialect or None)


def load_profiles() -> dict[str, ClusterProfile]:
    from hpclaunch.config import load_clusters

    return load_clusters()[0]


def refresh(
    names: list[str] | None = None,
    *,
    registry: Registry | None = None,
    probe: bool = True,
    observations: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
    stale: set[str] | None = None,
) -> list[Record]:
    """Bring the named (or all live) endpoints up to date; one status call per cluster.

    With a ``warnings`` list, a cluster that cannot be asked (login node down,
    slurmctld not answering) adds a line there and its endpoints keep their stored
    state, so one bad cluster does not hide the others; without it, the error is
    raised. ``stale`` collects the names whose state is such a last-known one.
    """
    registry = registry or Registry()
    records = registry.load()
    if names:
        for name in names:
            if name not in records:
                registry.get(name)  # raises the friendly unknown-name error
        chosen = [records[n] for n in names]
    else:
        chosen = list(records.values())
    live = _expired_reservations([r for r in chosen if not r.final], registry, records)
    if not live:  # final states are cached: nothing to ask, nothing more to import
        return [records[r.name] for r in chosen]
    from hpclaunch.endpoints.status import apply, observe
    from hpclaunch.remote.connect import transport_for
    from hpclaunch.schedulers import scheduler_for
    from hpclaunch.schedulers.base import JobState

    profiles = load_profiles()
    groups: dict[tuple[str, str, str], list[Record]] = {}
    for rec in live:
        groups.setdefault((rec.cluster, rec.scheduler, rec.pbs_dialect), []).append(rec)
    def unreachable(cluster_name: str, recs: list[Record], exc: UserError) -> None:
        """One cluster that cannot be asked: its endpoints keep their last known states."""
        if warnings is None:
            raise exc
        warnings.append(f"{cluster_name}: {exc} (states shown as last known)")
        if stale is not None:
            stale.update(r.name for r in recs)

    for (cluster_name, _, _), recs in groups.items():
        try:
            profile = profile_of(recs[0], profiles)
            transport = transport_for(profile)
        except UserError as exc:
            unreachable(cluster_name, recs, exc)
            continue
        try:
            scheduler = scheduler_for(profile, transport)
            try:
                states = scheduler.states([r.job_id for r in recs])
            except UserError as exc:
                unreachable(cluster_name, recs, exc)
                continue
            for rec in recs:
                obs = observe(rec, states.get(rec.job_id, JobState("missing")), transport,
                              probe=probe)
                release_failed_job(rec, obs, scheduler)
                if observations is not None:
                    observations[rec.name] = obs
                changes = apply(rec, obs)
                if changes:
                    updated = registry.update(rec.name, **changes)
                    if updated is not None:
                        records[rec.name] = updated
        finally:
            transport.close()
    return [records[r.name] for r in chosen]


def release_failed_job(rec: Record, obs: Any, scheduler: Any) -> None:
    """A server that failed while its job still runs (engine dead, fatal error in the
    log) would hold its GPUs until the time limit: cancel the job, and say so."""
    if obs.state != FAILED or obs.job is None or obs.job.left_queue or rec.final:
        return
    try:
        scheduler.cancel(rec.job_id)
    except UserError as exc:
        obs.reason += f" (its job {rec.job_id} is still running and could not be cancelled: {exc})"
        return
    obs.reason += f" (job {rec.job_id} cancelled to free its GPUs)"


def wait(
    name: str,
    *,
    timeout: float = 1800.0,
    registry: Registry | None = None,
    on_progress: Callable[[Record, float], None] | None = None,
    poll: float = 0.5,
    on_loading: Callable[[LoadProgress], None] | None = None,
) -> Record:
    """Poll until READY or a final state.

    The job's files and log are read every ``poll`` seconds (a stat and bounded
    reads, so READY is noticed within a second); the scheduler is asked less
    often, backing off from 1 s to 10 s, so a long wait does not hammer
    slurmctld. One transport (one SSH connection) serves the whole wait.
    With ``on_loading``, each poll while STARTING also reads what the log gained and
    passes the loading phase (weights %, torch.compile, CUDA graphs, ...) before
    ``on_progress`` is called.
    """
    from hpclaunch.endpoints.status import apply, observe
    from hpclaunch.remote.connect import transport_for
    from hpclaunch.schedulers import scheduler_for
    from hpclaunch.vllm.progress import LogFollower

    registry = registry or Registry()
    rec = registry.get(name)
    start = time.monotonic()
    if rec.final:
        if on_progress:
            on_progress(rec, 0.0)
        return rec
    while not rec.job_id and not rec.final:  # its submit is still queueing the job
        if time.monotonic() - start >= min(timeout, RESERVATION_TIMEOUT_S):
            raise UserError(f"{name} is still being submitted (no job id yet); "
                            f"hpclaunch status {name} tells when it is queued")
        time.sleep(min(poll, 0.2))
        rec = registry.get(name)
    if rec.final:
        if on_progress:
            on_progress(rec, time.monotonic() - start)
        return rec
    profile = profile_of(rec, load_profiles())
    transport = transport_for(profile)
    try:
        scheduler = scheduler_for(profile, transport)
        job: JobState | None = None
        next_query, query_delay, failures = 0.0, 1.0, 0
        follower = LogFollower()
        while True:
            now = time.monotonic()
            if job is None or now >= next_query or job.left_queue:
                try:
                    job = scheduler.states([rec.job_id])[rec.job_id]
                    failures = 0
                except UserError:
                    # A scheduler hiccup is common on busy clusters: keep the last
                    # state for a few polls before giving up (psij tolerates 2).
                    failures += 1
                    if job is None or failures >= STATUS_FAILURE_BUDGET:
                        raise
                next_query, query_delay = now + query_delay, min(query_delay * 2, 10.0)
            obs = observe(rec, job, transport)
            release_failed_job(rec, obs, scheduler)
            changes = apply(rec, obs)
            if changes:
                rec = registry.update(name, **changes) or rec
            elapsed = time.monotonic() - start
            if on_loading and rec.state == STARTING and (rec.log_path or obs.log_path):
                on_loading(follower.poll(transport, rec.log_path or obs.log_path))
            if on_progress:
                on_progress(rec, elapsed)
            if rec.state in (READY, FAILED, ENDED):
                return rec
            if elapsed >= timeout:
                raise EndpointStateError(
                    f"{name} is still {rec.state} after {timeout:.0f} s ({rec.reason}); "
                    f"keep waiting with hpclaunch wait {name} --timeout N, or check "
                    f"hpclaunch logs {name}", state=rec.state)
            time.sleep(min(poll, max(0.0, timeout - elapsed)))
    finally:
        transport.close()


def stop(name: str, *, registry: Registry | None = None) -> Record:
    """Cancel the job; the entry stays, as ENDED, until ``remove``."""
    from hpclaunch.remote.connect import transport_for
    from hpclaunch.schedulers import scheduler_for

    registry = registry or Registry()
    rec = registry.get(name)
    if rec.final:
        return rec
    reason = "stopped by hpclaunch stop"
    if not rec.job_id:
        # Its submit is still running: ENDED makes that submit cancel the job it queues
        # (Registry.claimed refuses a final entry) - unless the job id landed meanwhile.
        ended = registry.end_unqueued(name, reason)
        if ended is not None:
            return ended
        rec = registry.get(name)
        if rec.final:
            return rec
    profile = profile_of(rec, load_profiles())
    transport = transport_for(profile)
    try:
        scheduler_for(profile, transport).cancel(rec.job_id)
    finally:
        transport.close()
    updated = registry.update(name, state=ENDED, reason=reason, ended=time.time())
    return updated or rec


@contextlib.contextmanager
def connect(rec: Record) -> Iterator[Any]:
    """A transport to where ``rec``'s job runs (closed on exit)."""
    from hpclaunch.remote.connect import transport_for

    transport = transport_for(profile_of(rec, load_profiles()))
    try:
        yield transport
    finally:
        transport.close()


def remove(name: str, *, registry: Registry | None = None) -> Record:
    return (registry or Registry()).remove(name)
