"""Submit: plan -> preflight -> render -> queue -> record.

Data flows one way: nothing here is decided twice, and nothing is queued before
preflight has passed.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from typing import Any

from hpclaunch.config import ClusterProfile, get_cluster, state_dir
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


def with_scheduler(profile: ClusterProfile, scheduler: str | None,
                   pbs_dialect: str | None) -> ClusterProfile:
    """The profile with the scheduler a submit (or a stored record) asks for."""
    changes: dict[str, Any] = {}
    if scheduler and scheduler != profile.scheduler:
        changes["scheduler"] = scheduler
    if pbs_dialect and pbs_dialect != profile.pbs_dialect:
        changes["pbs_dialect"] = pbs_dialect
    return replace(profile, **changes) if changes else profile


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
                 simulate=request.simulate, gpus_per_node=gpus_per_node)


def submit(request: SubmitRequest, *, dry_run: bool = False,
           registry: Registry | None = None) -> SubmitResult:
    """Plan, check, render and submit one endpoint; records it as PENDING."""
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
