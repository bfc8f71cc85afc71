"""``hpclaunch cluster add|list|show|check``: set up and verify cluster profiles."""

from __future__ import annotations

from typing import Any

import click

from hpclaunch.cli.main import cli
from hpclaunch.errors import UserError

STATUS_WIDTH = 8
ITEM_WIDTH = 12


@cli.group()
def cluster() -> None:
    """Cluster profiles (clusters.yaml): add one, list them, show one, check one."""


# (option name, prompt, default, who is asked) for the few questions of `cluster add`.
QUESTIONS: list[tuple[str, str, Any, str]] = [
    ("scheduler", "Scheduler (slurm, pbs, local)", "slurm", "all"),
    ("host", "Login node (host or ~/.ssh/config alias; empty: this machine)", "", "all"),
    ("transport", "SSH transport (paramiko; openssh for MFA sites)", "paramiko", "remote"),
    ("partition", "Slurm partition (empty: the default one)", "", "slurm"),
    ("queue", "PBS queue (empty: the default one)", "", "pbs"),
    ("results_dir", "Results directory (shared with compute nodes)", "", "all"),
    ("gpus_per_node", "GPUs per node (empty: ask the scheduler)", "", "all"),
]


@cluster.command("add")
@click.argument("name")
@click.option("--scheduler", type=click.Choice(["slurm", "pbs", "local"]))
@click.option("--host", help="Login node: host, user@host or a ~/.ssh/config alias.")
@click.option("--user")
@click.option("--port", type=int)
@click.option("--transport", type=click.Choice(["paramiko", "openssh"]))
@click.option("--ssh-key")
@click.option("--known-hosts")
@click.option("--control-persist", help="With --transport openssh: how long an idle "
              "login stays open (ssh's ControlPersist, e.g. 8h).")
@click.option("--partition")
@click.option("--account")
@click.option("--queue")
@click.option("--results-dir")
@click.option("--gpus-per-node", type=int)
@click.option("--gpu-type", help="The scheduler's GPU gres name (a100, h100).")
@click.option("--default", "make_default", is_flag=True, help="Make it the default cluster.")
@click.option("--force", is_flag=True, help="Replace a cluster of the same name.")
@click.option("--no-input", is_flag=True, help="Ask nothing; unset answers keep defaults.")
def add(name: str, make_default: bool, force: bool, no_input: bool, **given: Any) -> None:
    """Add cluster NAME to clusters.yaml, asking for what the options do not say.

    \b
    Examples:
      hpclaunch cluster add polaris                # asks the few questions
      hpclaunch cluster add polaris --scheduler pbs --host polaris --transport openssh \\
          --queue debug --results-dir /eagle/myproj/hpclaunch --no-input
    """
    from hpclaunch.config import save_cluster

    answers = {k: v for k, v in given.items() if v is not None}
    for key, text, default, who in QUESTIONS:
        if key in answers or no_input:
            continue
        scheduler, remote = answers.get("scheduler", "slurm"), bool(answers.get("host"))
        if who == "remote" and not remote or who in ("slurm", "pbs") and who != scheduler:
            continue
        value = click.prompt(text, default=default, show_default=bool(default))
        value = str(value).strip()
        if key == "gpus_per_node" and value and not value.isdigit():
            raise UserError(f"GPUs per node: {value!r} is not a whole number")
        if value:
            answers[key] = int(value) if key == "gpus_per_node" else value
    answers.setdefault("scheduler", "slurm")
    settings = {k.replace("_", "-"): v for k, v in answers.items()}
    try:
        path = save_cluster(name, settings, make_default=make_default, replace=force)
    except UserError as exc:
        raise UserError(str(exc).replace(f"cluster {name}: ", "")) from exc
    click.echo(f"wrote cluster {name} to {path}")
    if answers.get("transport") == "openssh":
        click.echo(f"  next: hpclaunch login {name}, then hpclaunch cluster check {name}")
    else:
        click.echo(f"  next: hpclaunch cluster check {name}")


@cluster.command("list")
def list_clusters() -> None:
    """The profiles, the default one marked with *."""
    from hpclaunch.config import load_clusters

    profiles, default = load_clusters()
    rows = [("", "NAME", "SCHEDULER", "WHERE")]
    for name, p in profiles.items():
        where = f"{p.host} ({p.transport})" if p.host else "this machine"
        rows.append(("*" if name == default else "", name, p.scheduler, where))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@cluster.command("show")
@click.argument("name")
def show(name: str) -> None:
    """Profile NAME as hpclaunch reads it, and how its login node is reached."""
    from dataclasses import fields

    import yaml

    from hpclaunch.config import ClusterProfile, get_cluster

    profile = get_cluster(name)
    defaults = ClusterProfile()
    data = {f.name.replace("_", "-"): getattr(profile, f.name)
            for f in fields(profile)
            if f.name != "name" and getattr(profile, f.name) != getattr(defaults, f.name)}
    click.echo(f"{name}:")
    click.echo("\n".join(f"  {line}" for line in
                         yaml.safe_dump(data, sort_keys=True).splitlines()))
    if not profile.host:
        click.echo("reached: this machine")
    elif profile.transport == "openssh":
        from hpclaunch.remote.openssh import OpenSSHTarget, master_running

        target = OpenSSHTarget.from_profile(profile)
        state = "open" if master_running(target) else f"closed (hpclaunch login {name})"
        click.echo(f"reached: system ssh to {profile.host}; login connection {state}")
    else:
        from hpclaunch.remote.sshconfig import target_for

        click.echo(f"reached: {target_for(profile).route} (built-in SSH)")


@cluster.command("check")
@click.argument("name", required=False)
def check(name: str | None) -> None:
    """Connect to cluster NAME and report what it offers and what is missing.

    Exits 1 when something the profile needs is missing; each such line says how to
    fix it.
    """
    from hpclaunch.config import get_cluster
    from hpclaunch.endpoints.launch import default_results_dir
    from hpclaunch.remote.connect import transport_for
    from hpclaunch.schedulers.sitecheck import Row, assess, gather

    profile = get_cluster(name)
    where = (f"{profile.host} ({profile.transport})" if profile.host else "this machine")
    click.echo(f"cluster {profile.name}: {profile.scheduler} on {where}")
    transport = transport_for(profile)
    try:
        results_dir = transport.expanduser(default_results_dir(profile))
        facts, seconds = gather(profile, transport, results_dir)
    except UserError as exc:
        _row(Row("missing", "connect", str(exc)))
        raise SystemExit(1) from exc
    finally:
        transport.close()
    _row(Row("ok", "connect", f"{facts.host or '?'} answered in {seconds:.1f} s"))
    rows = assess(profile, facts, results_dir)
    for row in rows:
        _row(row)
    missing = sum(r.status == "missing" for r in rows)
    if missing:
        click.echo(f"{missing} missing: see the fixes above, then run hpclaunch cluster "
                   f"check {profile.name} again")
        raise SystemExit(1)
    click.echo("ready to submit")


def _row(row: Any) -> None:
    label = {"missing": "MISSING"}.get(row.status, row.status)
    click.echo(f"  {label:<{STATUS_WIDTH}} {row.item:<{ITEM_WIDTH}} {row.detail}")
    if row.fix:
        click.echo(f"  {'':<{STATUS_WIDTH}} {'':<{ITEM_WIDTH}} fix: {row.fix}")
