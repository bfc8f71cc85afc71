"""Fleets: K replica jobs behind one router, one served-model-name and one key.

The registry holds the fleet as one record (``role="fleet"``: the router's job,
URL and the fleet key, so ``resolve``, ``chat``, ``env`` and ``export`` use it
unchanged) and each replica as its own record (``role="replica"``,
``fleet=<name>``, named ``<name>.r<i>``). Replicas are ordinary submits with the
fleet's key and served name and the join/leave agent in their job script.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import replace
from typing import Any

from hpclaunch.config import with_scheduler
from hpclaunch.endpoints.launch import build_plan, default_results_dir, signals_deferred
from hpclaunch.endpoints.launch import submit as submit_one
from hpclaunch.endpoints.lifecycle import load_profiles, profile_of
from hpclaunch.endpoints.lifecycle import stop as stop_one
from hpclaunch.errors import UserError
from hpclaunch.fleet import router
from hpclaunch.fleet.view import index_of as _index
from hpclaunch.fleet.view import replicas_of
from hpclaunch.registry import FAILED, READY, STARTING, Record, Registry
from hpclaunch.request import SubmitRequest

DRAIN_S = 30  # how long a leaving replica waits for its in-flight requests
SPEC_KEYS = ("model", "preset", "cluster", "overrides", "vllm_args", "env", "simulate",
             "gpus_per_node", "scheduler", "pbs_dialect", "gpu")


def agent_source() -> str:
    from importlib.resources import files

    return files("hpclaunch.fleet").joinpath("agent.py").read_text()


def submit_fleet(request: SubmitRequest, replicas: int, *, restart: bool = False,
                 idle_stop_s: int = 0, relay: bool = False,
                 registry: Registry | None = None) -> Record:
    """Queue the router job, then ``replicas`` replica jobs; the fleet record is returned.

    Reserve first, as a single submit does: the fleet name is claimed before any
    file or job exists, and a router job the registry cannot record is cancelled.
    """
    from hpclaunch.config import get_cluster
    from hpclaunch.remote.connect import transport_for
    from hpclaunch.schedulers import scheduler_for

    if replicas < 1:
        raise UserError(f"--replicas {replicas}: a fleet needs at least 1 replica")
    plan = build_plan(request)  # bad input fails here, before anything is reserved
    registry = registry or Registry()
    profile = with_scheduler(get_cluster(request.cluster), request.scheduler,
                             request.pbs_dialect)
    router.directives(profile, plan.name, "/")  # an unsupported scheduler fails here
    spec = {key: getattr(request, key) for key in SPEC_KEYS}
    spec.update(cluster=profile.name, restart=restart, idle_stop_s=idle_stop_s, relay=relay)
    if relay:
        from hpclaunch.fleet.relay import slurm_seconds

        if profile.scheduler != "slurm":
            raise UserError(f"--relay hands over before a Slurm time limit; cluster "
                            f"{profile.name!r} uses {profile.scheduler}")
        spec["time_limit_s"] = slurm_seconds(plan.resources.get("time-limit")
                                             or profile.time_limit)
    transport = transport_for(profile)
    try:
        results_dir = transport.expanduser(default_results_dir(profile))
        submission = secrets.token_hex(4)
        fleet = Record(
            name=plan.name, model=plan.model, model_id=plan.model_id,
            served_model_name=plan.name, preset=plan.preset, cluster=profile.name,
            scheduler=profile.scheduler, results_dir=results_dir,
            api_key=secrets.token_urlsafe(24), simulated=plan.simulate, role="fleet",
            replicas=replicas, spec=spec, submission=submission,
            reason="reserved: queueing its router",
            script_path=f"{results_dir}/hpclaunch_{plan.name}-router.{submission}.sh")
        previous = registry.reserve(fleet)
        try:
            transport.makedirs(results_dir)
            transport.write_file(f"{fleet.files}.key", fleet.api_key.encode(), 0o600)
            script = router.render(profile, fleet.name, f"{fleet.name}.{submission}",
                                   results_dir)
            transport.write_file(fleet.script_path, script.encode(), 0o700)
            backend = scheduler_for(profile, transport)
            with signals_deferred():
                job_id = backend.submit(fleet.script_path)
                done = registry.claimed(fleet.name, submission, job_id=job_id,
                                        reason="router submitted")
                if done is None:
                    backend.cancel(job_id)
                    raise UserError(f"fleet {fleet.name!r} was stopped while its router "
                                    "was being queued; its router job was cancelled")
        except BaseException:
            with contextlib.suppress(Exception):
                registry.release(fleet.name, submission, previous)
            raise
    finally:
        transport.close()
    first = add_replicas(done, replicas, registry=registry)
    if relay:  # the first handovers are in Slurm's queue before anyone looks again
        for replica in first:
            add_replicas(done, 1, registry=registry, predecessor=replica)
    return registry.get(fleet.name)


def preview(request: SubmitRequest, replicas: int, *, idle_stop_s: int = 0,
            relay: bool = False) -> str:
    """``submit --replicas K --dry-run``: the router's job script and the first replica's,
    rendered as they would be queued (file names show a placeholder submission id)."""
    from hpclaunch.config import get_cluster

    plan = build_plan(request)
    profile = with_scheduler(get_cluster(request.cluster), request.scheduler,
                             request.pbs_dialect)
    results_dir = default_results_dir(profile)
    fleet = Record(name=plan.name, model=plan.model, model_id=plan.model_id,
                   served_model_name=plan.name, preset=plan.preset, cluster=profile.name,
                   scheduler=profile.scheduler, results_dir=results_dir, role="fleet",
                   replicas=replicas, submission="SUBMISSION",
                   spec={"idle_stop_s": idle_stop_s, "relay": relay})
    env: list[tuple[str, Any]] = [("HPC_ROUTER_FILE", f"{fleet.files}.endpoint.json"),
                                  ("HPC_IDLE_STOP_S", idle_stop_s), ("HPC_DRAIN_S", DRAIN_S)]
    extras: dict[str, Any] = {"agent": agent_source(), "agent_env": env}
    if relay:
        from hpclaunch.fleet import relay as relays

        limit = relays.slurm_seconds(plan.resources.get("time-limit") or profile.time_limit)
        lead = relays.lead_s(limit, relays.DEFAULT_STARTUP_S)
        extras["more_directives"] = relays.directives(limit, lead, relays.DEFAULT_STARTUP_S, "")
    router_script = router.render(profile, fleet.name, f"{fleet.name}.SUBMISSION",
                                  results_dir)
    one = replace(request, name=f"{fleet.name}.r0", served_name=fleet.name)
    replica = submit_one(one, dry_run=True, job_extras=extras).script
    return (f"# ---- the router job ----\n{router_script}\n"
            f"# ---- replica 1 of {replicas} (each the same but its name) ----\n{replica}")


def add_replicas(fleet: Record, count: int, *, registry: Registry,
                 predecessor: Record | None = None) -> list[Record]:
    """Queue ``count`` more replicas of ``fleet``; each joins the router when READY.

    With ``predecessor``, the one new replica is its walltime-relay successor.
    """
    spec = dict(fleet.spec)
    request = SubmitRequest(**{key: spec[key] for key in SPEC_KEYS if key in spec})
    env: list[tuple[str, Any]] = [("HPC_ROUTER_FILE", f"{fleet.files}.endpoint.json"),
                                  ("HPC_IDLE_STOP_S", int(spec.get("idle_stop_s") or 0))]
    extras: dict[str, Any] = {"agent": agent_source(), "agent_env": env}
    reps = replicas_of(fleet.name, registry.load())
    if spec.get("relay"):
        from hpclaunch.fleet import relay

        limit, startup = int(spec["time_limit_s"]), relay.startup_s(reps)
        lead = relay.lead_s(limit, startup)
        extras["more_directives"] = relay.directives(
            limit, lead, startup, predecessor.job_id if predecessor else "")
        env += [("HPC_RELAY_WAIT_S", lead // 2), ("HPC_DRAIN_S", max(5, lead // 3))]
    else:
        env.append(("HPC_DRAIN_S", DRAIN_S))
    start = 1 + max((_index(r.name) for r in reps), default=-1)
    queued = []
    for i in range(start, start + count):
        one = replace(request, name=f"{fleet.name}.r{i}", served_name=fleet.name)
        result = submit_one(one, registry=registry, api_key=fleet.api_key, job_extras=extras,
                            record_fields={"role": "replica", "fleet": fleet.name})
        assert result.record is not None
        queued.append(result.record)
        if predecessor is not None:
            registry.update(predecessor.name, successor=result.record.name)
    return queued


def leave_and_stop(replica: Record, fleet: Record, *, registry: Registry,
                   drain_s: float = DRAIN_S) -> Record:
    """Take a replica out of the router, let its in-flight requests finish, stop its job.

    Done from here rather than trusting the job's own trap alone: ``scancel`` signals
    every process of a job at once, vLLM included, so the router must forget the
    replica before the job is told to stop.
    """
    from hpclaunch.fleet.agent import load_counters
    from hpclaunch.remote.connect import transport_for

    if replica.final:
        return replica
    if fleet.host and fleet.port and replica.host and replica.port:
        profile = profile_of(fleet, load_profiles())
        transport = transport_for(profile)
        try:
            base = f"http://{fleet.host}:{fleet.port}"
            router.admin(transport, profile.python, base, "remove_worker",
                         f"http://{replica.host}:{replica.port}")
            deadline = time.monotonic() + drain_s
            while time.monotonic() < deadline:
                status, body = transport.http_get(replica.host, replica.port, "/metrics")
                if status != 200 or load_counters(body.decode(errors="replace"))[1] == 0:
                    break
                time.sleep(0.2)
        finally:
            transport.close()
    return stop_one(replica.name, registry=registry)


def stop_fleet(name: str, *, registry: Registry | None = None) -> list[Record]:
    """Every live replica leaves and stops, then the router; returns what was stopped."""
    registry = registry or Registry()
    fleet = registry.get(name)
    if fleet.role != "fleet":
        raise UserError(f"{name!r} is not a fleet")
    stopped = [leave_and_stop(r, fleet, registry=registry)
               for r in replicas_of(name, registry.load()) if not r.final]
    stopped.append(stop_one(name, registry=registry))
    return stopped


def scale(name: str, replicas: int, *, registry: Registry | None = None) -> dict[str, Any]:
    """Queue or retire replicas until ``replicas`` are live; the newest go first."""
    registry = registry or Registry()
    fleet = registry.get(name)
    if fleet.role != "fleet":
        raise UserError(f"{name!r} is not a fleet (submit it with --replicas K)")
    if fleet.final:
        raise UserError(f"fleet {name!r} is {fleet.state}; submit it again")
    if replicas < 1:
        raise UserError(f"scale {name} {replicas}: keep at least 1 replica, or "
                        f"hpclaunch stop {name}")
    live = [r for r in replicas_of(name, registry.load()) if not r.final]
    registry.update(name, replicas=replicas)
    added = add_replicas(fleet, replicas - len(live), registry=registry) \
        if replicas > len(live) else []
    retired = [leave_and_stop(r, fleet, registry=registry)
               for r in reversed(live[replicas:])]
    return {"added": added, "retired": retired}


def _url(rec: Record) -> str:
    return f"http://{rec.host}:{rec.port}" if rec.host and rec.port else ""


def forget_dead(fleet: Record, live: list[Record], ended: list[Record]) -> list[str]:
    """Take ended replicas that are still on the router's list off it.

    A replica that leaves normally removes itself; one killed hard (``kill -9``, a node
    failure) stays listed as unhealthy and would be health-checked forever. Only URLs of
    this fleet's ended replicas are removed, never one a live replica uses.
    """
    import json

    from hpclaunch.remote.connect import transport_for

    dead = {_url(r) for r in ended} - {_url(r) for r in live} - {""}
    if not dead:
        return []
    profile = profile_of(fleet, load_profiles())
    transport = transport_for(profile)
    try:
        status, body = transport.http_get(fleet.host, fleet.port, "/list_workers")
        try:
            listed = set(json.loads(body).get("urls") or []) if status == 200 else set()
        except (ValueError, AttributeError):
            listed = set()
        base = f"http://{fleet.host}:{fleet.port}"
        gone = sorted(listed & dead)
        for url in gone:
            router.admin(transport, profile.python, base, "remove_worker", url)
    finally:
        transport.close()
    return [f"{fleet.name}: removed ended replica {url} from the router" for url in gone]


def reconcile(registry: Registry) -> list[str]:
    """What a fleet needs after a refresh: replacements, or its end. Returns notes.

    Runs in whichever hpclaunch call refreshed (endpoints, status, wait): no
    daemon. A fleet whose replicas all ended stops its router: ENDED with the
    replicas' idle-stop reason, else FAILED. With ``restart``, replicas that ended
    without an idle stop are replaced. One call at a time (a lock file next to the
    registry), so two terminals refreshing at once do not both queue a replacement;
    the other one skips, and the records are read after the lock is held.
    """
    import fcntl

    registry.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(registry.path.with_name("fleets.lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []
        return _reconcile(registry.load(), registry)


def _reconcile(records: dict[str, Record], registry: Registry) -> list[str]:
    notes = []
    for fleet in [r for r in records.values() if r.role == "fleet" and not r.final]:
        reps = replicas_of(fleet.name, records)
        live = [r for r in reps if not r.final]
        ended = [r for r in reps if r.final]
        idle = [r for r in ended if r.reason.startswith("idle stop")]
        missing = fleet.replicas - len(live)
        if ended and fleet.host and fleet.port:
            notes += forget_dead(fleet, live, ended)
        if fleet.spec.get("relay"):
            for rep in live:
                nxt = records.get(rep.successor) if rep.successor else None
                if rep.state in (READY, STARTING) and (nxt is None or nxt.final):
                    added = add_replicas(fleet, 1, registry=registry, predecessor=rep)
                    notes.append(f"{fleet.name}: relay successor {added[0].name} of "
                                 f"{rep.name} queued")
        if fleet.spec.get("restart") and missing > 0 and len(idle) < len(ended):
            added = add_replicas(fleet, missing, registry=registry)
            notes.append(f"{fleet.name}: queued {len(added)} replacement replica(s) "
                         f"({', '.join(r.name for r in added)})")
        elif reps and not live:
            why = idle[-1].reason if idle else "all replicas ended"
            stop_one(fleet.name, registry=registry)
            state = "ENDED" if idle else FAILED
            registry.update(fleet.name, state=state, reason=why)
            notes.append(f"{fleet.name}: {state} ({why}); its router was stopped")
    return notes
