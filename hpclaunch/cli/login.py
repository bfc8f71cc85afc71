"""``hpclaunch login`` / ``logout``: the one interactive SSH login of ``transport: openssh``."""

from __future__ import annotations

from typing import Any

import click

from hpclaunch.cli.main import cli
from hpclaunch.errors import UserError


def _openssh_profile(name: str) -> Any:
    from hpclaunch.config import get_cluster

    profile = get_cluster(name)
    if not profile.host:
        raise UserError(f"cluster {name} runs commands on this machine; there is nothing to "
                        "log in to")
    if profile.transport != "openssh":
        raise UserError(f"cluster {name} uses the built-in SSH (transport: {profile.transport})"
                        ", which logs in by itself on every call; set transport: openssh for "
                        f"it in clusters.yaml to log in once (sites with MFA need that)")
    return profile


@cli.command()
@click.argument("cluster")
def login(cluster: str) -> None:
    """Open the SSH connection to CLUSTER that later commands reuse.

    Asks for your password or one-time code if the site wants one; afterwards every
    hpclaunch call goes through this connection without asking, until it has been
    idle for the profile's control-persist (default 8h) or you run hpclaunch logout.
    """
    from hpclaunch.remote.openssh import OpenSSHTarget
    from hpclaunch.remote.openssh import login as open_master

    target = OpenSSHTarget.from_profile(_openssh_profile(cluster))
    if open_master(target):
        click.echo(f"logged in to {cluster} ({target.destination}); the connection stays "
                   f"open for {target.persist} after its last use (hpclaunch logout "
                   f"{cluster} closes it)")
    else:
        click.echo(f"already logged in to {cluster}")


@cli.command()
@click.argument("cluster")
def logout(cluster: str) -> None:
    """Close the SSH connection to CLUSTER that hpclaunch login opened."""
    from hpclaunch.remote.openssh import OpenSSHTarget
    from hpclaunch.remote.openssh import logout as close_master

    target = OpenSSHTarget.from_profile(_openssh_profile(cluster))
    if close_master(target):
        click.echo(f"logged out of {cluster}")
    else:
        click.echo(f"no open connection to {cluster}")
