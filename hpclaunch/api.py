"""The library behind the CLI: submit, refresh, wait, stop, remove.

The CLI only parses arguments and prints what these return, so scripts and
notebooks get the same behaviour (and errors) as the command line.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from hpclaunch.config import ClusterProfile, get_cluster, state_dir
from hpclaunch.errors import UserError
from hpclaunch.registry import ENDED, FAILED, READY, Record, Registry
from hpclaunch.schedulers.base import JobState


@dataclass
class SubmitResult:
    record: Record | None
    script: str
    plan: Any
    warnings: list[str] = field(default_factory=list)
    script_path: str = ""


STATUS_FAILURE_BUDGET = 3  # consecutive failed status queries before `wait` gives up


class PreflightFailed(UserError):
    """One or more preflight errors; each is one line."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def detect_local_gpus() -> int | None:
    """GPUs on this machine per ``nvidia-smi -L``; None when it cannot tell."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    count = sum(1 for line in out.splitlines() if line.startswith("GPU "))
    return count or None


def default_results_dir(cluster: ClusterProfile) -> str:
    if cluster.results_dir:
        return cluster.results_dir
    if cluster.host is None:
        return str(state_dir() / "results")
    return "~/hpclaunch_results"


def plan_submit(
    model: str,
    *,
    preset: str,
    cluster: str | None = None,
    name: str | None = None,
    overrides: dict[str, Any] | None = None,
    vllm_args: str = "",
    env: dict[str, str] | None = None,
    simulate: bool | None = None,
    gpus_per_node: int | None = None,
    scheduler: str | None = None,
    pbs_dialect: str | None = None,
) -> Any:
    """Build the plan for a submit without touching any machine."""
    from hpclaunch.plan import build
    from hpclaunch.presets import load_preset

    profile = _with_scheduler(get_cluster(cluster), scheduler, pbs_dialect)
    if gpus_per_node is None and profile.gpus_per_node is None and profile.scheduler == "local" \
            and profile.host is None and not (simulate or profile.simulate):
        gpus_per_node = detect_local_gpus()
    return build(model=model, preset=load_preset(preset), cluster=profile, name=name,
                 overrides=overrides, vllm_args=vllm_args, env=env, simulate=simulate,
                 gpus_per_node=gpus_per_node)


def _with_scheduler(profile: ClusterProfile, scheduler: str | None,
                    pbs_dialect: str | None) -> ClusterProfile:
    """The profile with the scheduler a submit (or a stored record) asks for."""
    changes: dict[str, Any] = {}
    if scheduler and scheduler != profile.scheduler:
        changes["scheduler"] = scheduler
    if pbs_dialect and pbs_dialect != profile.pbs_dialect:
        changes["pbs_dialect"] = pbs_dialect
    return replace(profile, **changes) if changes else profile


def submit(
    model: str,
    *,
    preset: str,
    cluster: str | None = None,
    name: str | None = None,
    overrides: dict[str, Any] | None = None,
    vllm_args: str = "",
    env: dict[str, str] | None = None,
    simulate: bool | None = None,
    gpus_per_node: int | None = None,
    dry_run: bool = False,
    scheduler: str | None = None,
    pbs_dialect: str | None = None,
    gpu: str | None = None,
    registry: Registry | None = None,
) -> SubmitResult:
    """Plan, check, render and submit one endpoint; records it as PENDING."""
    from hpclaunch.preflight import ERROR, check
    from hpclaunch.schedulers import scheduler_for
    from hpclaunch.transport import transport_for

    plan = plan_submit(model, preset=preset, cluster=cluster, name=name, overrides=overrides,
                       vllm_args=vllm_args, env=env, simulate=simulate,
                       gpus_per_node=gpus_per_node, scheduler=scheduler,
                       pbs_dialect=pbs_dialect)
    problems = check(plan, gpu=gpu)
    errors = [str(p) for p in problems if p.level == ERROR]
    warnings = [str(p) for p in problems if p.level != ERROR]
    if errors:
        raise PreflightFailed(errors)
    registry = registry or Registry()
    if not dry_run:
        existing = registry.load().get(plan.name)
        if existing is not None and not existing.final:
            raise UserError(
                f"endpoint {plan.name!r} already exists ({existing.state}, job "
                f"{existing.job_id}); stop it first (hpclaunch stop {plan.name}) or pick "
                "another --name"
            )
    transport = transport_for(plan.cluster)
    try:
        backend = scheduler_for(plan.cluster, transport)
        results_dir = default_results_dir(plan.cluster)
        if not dry_run:
            results_dir = transport.expanduser(results_dir)
        script = backend.render(plan, results_dir)
        if dry_run:
            return SubmitResult(None, script, plan, warnings)
        transport.makedirs(results_dir)
        for stale in (f"{plan.name}.endpoint.json", f"{plan.name}.exit"):
            transport.remove(f"{results_dir}/{stale}")
        api_key = secrets.token_urlsafe(24)
        key_path = f"{results_dir}/{plan.name}.key"
        transport.write_file(key_path, api_key.encode(), 0o600)
        script_path = f"{results_dir}/hpclaunch_{plan.name}.sh"
        transport.write_file(script_path, script.encode(), 0o700)
        try:
            job_id = backend.submit(script_path)
        except BaseException:
            transport.remove(key_path)  # no job will read it; the script stays for a look
            raise
        record = Record(
            name=plan.name, model=plan.model, model_id=plan.model_id,
            served_model_name=plan.served_model_name, preset=plan.preset,
            cluster=plan.cluster.name, scheduler=plan.cluster.scheduler,
            pbs_dialect=plan.cluster.pbs_dialect if plan.cluster.scheduler == "pbs" else "",
            job_id=job_id,
            results_dir=results_dir, script_path=script_path, api_key=api_key,
            simulated=plan.simulate, layout={"dp": plan.dp, "tp": plan.tp, "pp": plan.pp},
            vllm_args=list(plan.vllm_flags), reason="submitted",
        )
        try:
            registry.add(record)
        except UserError:
            backend.cancel(job_id)  # lost a race for the name: do not leave an orphan
            raise
        return SubmitResult(record, script, plan, warnings, script_path)
    finally:
        transport.close()


def _profile_of(rec: Record, profiles: dict[str, ClusterProfile]) -> ClusterProfile:
    """The profile a record was submitted with (its scheduler may have been overridden)."""
    if rec.cluster not in profiles:
        raise UserError(
            f"cluster {rec.cluster!r} of endpoint {rec.name!r} is no longer defined in "
            "clusters.yaml; restore it to manage this endpoint"
        )
    return _with_scheduler(profiles[rec.cluster], rec.scheduler, rec.pbs_dialect or None)


def _profiles() -> dict[str, ClusterProfile]:
    from hpclaunch.config import load_clusters

    return load_clusters()[0]


def refresh(
    names: list[str] | None = None,
    *,
    registry: Registry | None = None,
    probe: bool = True,
    observations: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
) -> list[Record]:
    """Bring the named (or all live) endpoints up to date; one status call per cluster.

    With a ``warnings`` list, a cluster that cannot be asked (login node down,
    slurmctld not answering) adds a line there and its endpoints keep their stored
    state, so one bad cluster does not hide the others; without it, the error is
    raised.
    """
    from hpclaunch.schedulers import scheduler_for
    from hpclaunch.status import apply, observe
    from hpclaunch.transport import transport_for

    registry = registry or Registry()
    records = registry.load()
    if names:
        for name in names:
            if name not in records:
                registry.get(name)  # raises the friendly unknown-name error
        chosen = [records[n] for n in names]
    else:
        chosen = list(records.values())
    live = [r for r in chosen if not r.final]
    profiles = _profiles() if live else {}
    groups: dict[tuple[str, str, str], list[Record]] = {}
    for rec in live:
        groups.setdefault((rec.cluster, rec.scheduler, rec.pbs_dialect), []).append(rec)
    for (cluster_name, _, _), recs in groups.items():
        try:
            profile = _profile_of(recs[0], profiles)
            transport = transport_for(profile)
        except UserError as exc:
            if warnings is None:
                raise
            warnings.append(f"{cluster_name}: {exc} (states shown as last known)")
            continue
        try:
            scheduler = scheduler_for(profile, transport)
            try:
                states = scheduler.states([r.job_id for r in recs])
            except UserError as exc:
                if warnings is None:
                    raise
                warnings.append(f"{cluster_name}: {exc} (states shown as last known)")
                continue
            for rec in recs:
                obs = observe(rec, states.get(rec.job_id, JobState("missing")), transport,
                              probe=probe)
                _release_failed_job(rec, obs, scheduler)
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


def _release_failed_job(rec: Record, obs: Any, scheduler: Any) -> None:
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
) -> Record:
    """Poll until READY or a final state.

    The job's files and log are read every ``poll`` seconds (a stat and bounded
    reads, so READY is noticed within a second); the scheduler is asked less
    often, backing off from 1 s to 10 s, so a long wait does not hammer
    slurmctld. One transport (one SSH connection) serves the whole wait.
    """
    from hpclaunch.schedulers import scheduler_for
    from hpclaunch.status import apply, observe
    from hpclaunch.transport import transport_for

    registry = registry or Registry()
    rec = registry.get(name)
    start = time.monotonic()
    if rec.final:
        if on_progress:
            on_progress(rec, 0.0)
        return rec
    profile = _profile_of(rec, _profiles())
    transport = transport_for(profile)
    try:
        scheduler = scheduler_for(profile, transport)
        job: JobState | None = None
        next_query, query_delay, failures = 0.0, 1.0, 0
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
            _release_failed_job(rec, obs, scheduler)
            changes = apply(rec, obs)
            if changes:
                rec = registry.update(name, **changes) or rec
            elapsed = time.monotonic() - start
            if on_progress:
                on_progress(rec, elapsed)
            if rec.state in (READY, FAILED, ENDED):
                return rec
            if elapsed >= timeout:
                raise UserError(
                    f"{name} is still {rec.state} after {timeout:.0f} s ({rec.reason}); "
                    f"keep waiting with hpclaunch wait {name} --timeout N, or check "
                    f"hpclaunch logs {name}"
                )
            time.sleep(min(poll, max(0.0, timeout - elapsed)))
    finally:
        transport.close()


def stop(name: str, *, registry: Registry | None = None) -> Record:
    """Cancel the job; the entry stays, as ENDED, until ``remove``."""
    from hpclaunch.schedulers import scheduler_for
    from hpclaunch.transport import transport_for

    registry = registry or Registry()
    rec = registry.get(name)
    if rec.final:
        return rec
    profile = _profile_of(rec, _profiles())
    transport = transport_for(profile)
    try:
        scheduler_for(profile, transport).cancel(rec.job_id)
    finally:
        transport.close()
    updated = registry.update(name, state=ENDED, reason="stopped by hpclaunch stop",
                              ended=time.time())
    return updated or rec


@contextlib.contextmanager
def connect(rec: Record) -> Iterator[Any]:
    """A transport to where ``rec``'s job runs (closed on exit)."""
    from hpclaunch.transport import transport_for

    transport = transport_for(_profile_of(rec, _profiles()))
    try:
        yield transport
    finally:
        transport.close()


def remove(name: str, *, registry: Registry | None = None) -> Record:
    return (registry or Registry()).remove(name)
