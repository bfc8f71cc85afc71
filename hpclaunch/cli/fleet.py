"""``scale``, and the fleet parts of ``submit``, ``endpoints``, ``status`` and ``stop``."""

from __future__ import annotations

import json
import re
from typing import Any

import click

from hpclaunch.cli.common import complete_names, table
from hpclaunch.cli.main import cli
from hpclaunch.errors import UserError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)?")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, what: str) -> int:
    """``30m``, ``2h``, ``90s``, ``45`` (seconds) -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"{what} {text!r}: write a duration like 30m, 2h or 90s")
    return max(1, int(float(match.group(1)) * _UNIT_S[match.group(2) or "s"]))


def submit_extras(request: Any, replicas: int | None, restart: bool,
                  idle_stop: str | None, relay: bool = False, dry_run: bool = False) -> Any:
    """Submit a fleet (``--replicas``), or one endpoint with an idle stop; None otherwise
    (a dry run of those: the scripts, as text).

    ``--relay`` without ``--replicas`` is a fleet of one: the relay needs the router so
    that the name stays while jobs change underneath it.
    """
    idle_s = parse_duration(idle_stop, "--idle-stop") if idle_stop else 0
    if relay and replicas is None:
        replicas = 1
    if replicas is None:
        if restart:
            raise UserError("--replicas-restart needs --replicas K")
        if not idle_s:
            return None
        from hpclaunch.endpoints.launch import submit
        from hpclaunch.fleet.launch import agent_source

        result = submit(request, dry_run=dry_run, job_extras={
            "agent": agent_source(), "agent_env": [("HPC_ROUTER_FILE", ""),
                                                   ("HPC_IDLE_STOP_S", idle_s)]})
        return result.script if dry_run else result.record
    if request.name is None:
        raise UserError("--replicas needs --name: the fleet's name is what clients ask for")
    from hpclaunch.fleet.launch import preview, submit_fleet

    if dry_run:
        return preview(request, replicas, idle_stop_s=idle_s, relay=relay)

    return submit_fleet(request, replicas, restart=restart, idle_stop_s=idle_s, relay=relay)


def refresh_fleets(records: dict[str, Any] | None = None) -> dict[str, Any]:
    """The registry after what a refresh implies: real end times of stopped Slurm jobs,
    replacement replicas, fleets whose replicas all ended (fleet.launch.reconcile).

    ``records`` is the registry as a refresh just left it: read again only if this changes it.
    """
    from hpclaunch.fleet.view import backfill_finished
    from hpclaunch.registry import Registry

    registry = Registry()
    records = registry.load() if records is None else records
    if backfill_finished(registry, records):
        records = registry.load()
    if any(r.role == "fleet" and not r.final for r in records.values()):
        from hpclaunch.fleet.launch import reconcile  # only with a live fleet: it costs ~5 ms

        for note in reconcile(registry):
            click.echo(f"hpclaunch: {note}", err=True)
        return registry.load()
    return records


def fleet_rows(records: dict[str, Any]) -> dict[str, str]:
    """name -> ``READY 2/2`` for every fleet."""
    from hpclaunch.fleet.view import state_label

    return {r.name: state_label(r, records) for r in records.values() if r.role == "fleet"}


def stop_any(name: str) -> list[Any]:
    """``stop NAME``: a fleet's replicas leave the router and drain, then everything stops."""
    from hpclaunch.registry import Registry

    if Registry().get(name).role == "fleet":
        from hpclaunch.fleet.launch import stop_fleet

        return stop_fleet(name)
    from hpclaunch import api

    return [api.stop(name)]


def remove_any(name: str) -> list[str]:
    """``rm NAME``: an ended endpoint, or an ended fleet with its ended replicas."""
    from hpclaunch import api
    from hpclaunch.fleet.view import replicas_of
    from hpclaunch.registry import Registry

    registry = Registry()
    rec = api.remove(name, registry=registry)
    gone = [rec.name]
    if rec.role == "fleet":
        for replica in replicas_of(name, registry.load()):
            if replica.final:
                api.remove(replica.name, registry=registry)
                gone.append(replica.name)
    return gone


def gpus_held(name: str) -> int:
    """GPUs an endpoint holds now: its own, or a fleet's live replicas' (the router none)."""
    from hpclaunch.fleet.view import replicas_of
    from hpclaunch.registry import Registry

    records = Registry().load()
    rec = records.get(name)
    if rec is None:
        return 0
    if rec.role == "fleet":
        return sum(r.gpus for r in replicas_of(name, records) if not r.final)
    return rec.gpus


def print_fleet_status(name: str) -> None:
    """The lines ``status NAME`` adds: GPU-hours, and a fleet's replicas."""
    from hpclaunch.fleet.view import fleet_gpu_hours, gpu_hours, replicas_of
    records = refresh_fleets()
    rec = records[name]
    if rec.role != "fleet":
        click.echo(f"{'GPU-hours:':<12} {gpu_hours(rec):.3f}")
        return

    click.echo(f"{'replicas:':<12} {fleet_rows(records)[rec.name]} (wanted {rec.replicas}; "
               f"restart {'on' if rec.spec.get('restart') else 'off'}; idle stop "
               f"{rec.spec.get('idle_stop_s') or 'off'})")
    click.echo(f"{'GPU-hours:':<12} {fleet_gpu_hours(rec, records):.3f} (all replicas)")
    reps = replicas_of(rec.name, records)
    if reps:
        rows = [[r.name, r.state, r.url or "-", r.job_id or "-", f"{gpu_hours(r):.3f}",
                 r.reason or "-"] for r in reps]
        click.echo(table(rows, ["REPLICA", "STATE", "URL", "JOB", "GPU-H", "REASON"]))


def usage_rows(records: dict[str, Any]) -> list[list[str]]:
    from hpclaunch.fleet.view import fleet_gpu_hours, gpu_hours

    rows = []
    for rec in sorted(records.values(), key=lambda r: r.created):
        if rec.role == "replica":
            continue
        hours = fleet_gpu_hours(rec, records) if rec.role == "fleet" else gpu_hours(rec)
        rows.append([rec.name, "fleet" if rec.role == "fleet" else "endpoint", rec.state,
                     str(rec.gpus or "-"), f"{hours:.3f}"])
    return rows


@cli.command()
@click.argument("name", shell_complete=complete_names)
@click.argument("replicas", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print what changed as JSON.")
def scale(name: str, replicas: int, as_json: bool) -> None:
    """Change fleet NAME to REPLICAS replicas (new ones join when READY; the newest
    leave the router, drain and stop first).

    \b
    Example:
      hpclaunch scale qwen 4
    """
    from hpclaunch.fleet.launch import scale as do_scale

    changed = do_scale(name, replicas)
    if as_json:
        click.echo(json.dumps({k: [r.name for r in v] for k, v in changed.items()}))
        return
    for rec in changed["added"]:
        click.echo(f"queued {rec.name}: job {rec.job_id}")
    for rec in changed["retired"]:
        click.echo(f"retired {rec.name}: {rec.state} ({rec.reason})")
    if not changed["added"] and not changed["retired"]:
        click.echo(f"{name} already has {replicas} live replica(s)")
