"""Submit: plan -> preflight -> render -> queue -> record.

Data flows one way: nothing here is decided twice, and nothing is queued before
preflight has passed.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hpclaunch.config import ClusterProfile, get_cluster, state_dir, with_scheduler
from hpclaunch.errors import UserError
from hpclaunch.registry import Record, Registry
from hpclaunch.request import SubmitRequest


@dataclass
class SubmitResult:
    record: Record | None
    script: str
    plan: Any
    warnings: list[str] = field(default_factory=list)
    script_path: str = ""


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


def build_plan(request: SubmitRequest) -> Any:
    """The plan for a request, without touching any machine."""
    from hpclaunch.planning.plan import build
    from hpclaunch.planning.presets import load_preset

    profile = with_scheduler(get_cluster(request.cluster), request.scheduler,
                             request.pbs_dialect)
    gpus_per_node = request.gpus_per_node
    if gpus_per_node is None and profile.gpus_per_node is None and profile.scheduler == "local" \
            and profile.host is None and not (request.simulate or profile.simulate):
        gpus_per_node = detect_local_gpus()
    return build(model=request.model, preset=load_preset(request.preset), cluster=profile,
                 name=request.name, overrides=dict(request.overrides),
                 vllm_args=request.vllm_args, env=dict(request.env),
                 simulate=request.simulate, gpus_per_node=gpus_per_node,
                 served_name=request.served_name)


def submit(request: SubmitRequest, *, dry_run: bool = False,
           registry: Registry | None = None, api_key: str | None = None,
           job_extras: dict[str, Any] | None = None,
           record_fields: dict[str, Any] | None = None) -> SubmitResult:
    """Plan, check, render and submit one endpoint; records it as PENDING.

    Reserve first, then act: the name is claimed in the registry (under its lock)
    before any file is written or any job queued, so concurrent submits of one name
    leave one winner and the losers touch nothing. The winner's files carry its
    submission id. A job the registry cannot record is cancelled, and the error says so.
    A fleet passes its shared key, the job script's fleet values (``job_extras``) and
    the replica's record fields.
    """
    from hpclaunch.planning.preflight import ERROR, check
    from hpclaunch.remote.connect import transport_for
    from hpclaunch.schedulers import scheduler_for

    plan = build_plan(request)
    problems = check(plan, gpu=request.gpu)
    errors = [str(p) for p in problems if p.level == ERROR]
    warnings = [str(p) for p in problems if p.level != ERROR]
    if errors:
        raise PreflightFailed(errors)
    registry = registry or Registry()
    transport = transport_for(plan.cluster)
    try:
        backend = scheduler_for(plan.cluster, transport)
        results_dir = default_results_dir(plan.cluster)
        if dry_run:
            return SubmitResult(None, backend.render(plan, results_dir, extra=job_extras), plan,
                                warnings)
        _check_offline_cache(plan, transport, warnings)
        results_dir = transport.expanduser(results_dir)
        submission = secrets.token_hex(4)
        script = backend.render(plan, results_dir, submission=submission, extra=job_extras)
        record = Record(
            name=plan.name, model=plan.model, model_id=plan.model_id,
            served_model_name=plan.served_model_name, preset=plan.preset,
            cluster=plan.cluster.name, scheduler=plan.cluster.scheduler,
            pbs_dialect=plan.cluster.pbs_dialect if plan.cluster.scheduler == "pbs" else "",
            results_dir=results_dir, api_key=api_key or secrets.token_urlsafe(24),
            simulated=plan.simulate, layout=_layout(plan),
            vllm_args=list(plan.vllm_flags), reason="reserved: queueing its job",
            submission=submission,
            script_path=f"{results_dir}/hpclaunch_{plan.name}.{submission}.sh",
            gpus=plan.gpus, **(record_fields or {}),
        )
        previous = registry.reserve(record)
        try:
            record = _queue(record, script, backend, transport, registry)
        except BaseException:
            with contextlib.suppress(Exception):
                if registry.release(record.name, submission, previous):
                    transport.remove(f"{record.files}.key")  # no job will read it
            raise
        return SubmitResult(record, script, plan, warnings, record.script_path)
    finally:
        transport.close()


def _check_offline_cache(plan: Any, transport: Any, warnings: list[str]) -> None:
    """An offline cluster's job needs its weights in the shared cache before it queues;
    a simulated one loads nothing, so it is only told."""
    from hpclaunch.endpoints.prefetch import offline_cache_problem

    problem = offline_cache_problem(plan.model_id, plan.cluster, transport)
    if problem and plan.simulate:
        warnings.append(problem)
    elif problem:
        raise PreflightFailed([problem])


def _queue(record: Record, script: str, backend: Any, transport: Any,
           registry: Registry) -> Record:
    """Write the job's files, queue it and record its id: the steps after the name is ours."""
    transport.makedirs(record.results_dir)
    transport.write_file(f"{record.files}.key", record.api_key.encode(), 0o600)
    transport.write_file(record.script_path, script.encode(), 0o700)
    # From the moment the scheduler has a job until the registry knows its id, a signal
    # (Ctrl-C, a kill from a batch system) waits: it is delivered right after.
    with signals_deferred():
        job_id = backend.submit(record.script_path)
        try:
            done = registry.claimed(record.name, record.submission, job_id=job_id,
                                    reason="submitted")
            if done is None:
                now = registry.load().get(record.name)
                what = ("stopped (hpclaunch stop)" if now is not None and now.final
                        and now.submission == record.submission else "removed from the registry")
                raise UserError(f"endpoint {record.name!r} was {what} while its job was "
                                "being queued")
        except BaseException as exc:
            raise UserError(_orphan_message(job_id, exc, backend)) from exc
    return done


def _orphan_message(job_id: str, exc: BaseException, backend: Any) -> str:
    """Cancel a job nobody recorded, and say what happened either way."""
    why = str(exc) or type(exc).__name__
    try:
        backend.cancel(job_id)
    except Exception as cancel_exc:  # noqa: BLE001 - the user must hear of both failures
        return (f"job {job_id} was queued but could not be recorded ({why}), and cancelling "
                f"it failed too ({cancel_exc}): cancel it by hand")
    return f"job {job_id} was queued but could not be recorded ({why}); it was cancelled"


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP for the block (main thread only), deliver them after."""
    import signal
    import threading

    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _layout(plan: Any) -> dict[str, int]:
    """The record's layout; ``nodes`` only when the plan spans several."""
    layout = {"dp": plan.dp, "tp": plan.tp, "pp": plan.pp}
    if plan.nodes > 1:
        layout["nodes"] = plan.nodes
    return layout
