"""``hpclaunch tunnel``: reach an endpoint on a compute node from a laptop."""

from __future__ import annotations

import signal
from typing import Any

import click

from hpclaunch.cli.main import cli


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@cli.command()
@click.argument("name")
@click.option("--local-port", type=int, default=None,
              help="Port to listen on at 127.0.0.1 (default: the endpoint's port if free, "
                   "else any free one).")
def tunnel(name: str, local_port: int | None) -> None:
    """Forward a local port to endpoint NAME through its login node; Ctrl-C stops.

    Prints the local base URL (with /v1) on stdout. While the tunnel runs, the
    URL is also kept in $XDG_STATE_HOME/hpclaunch/tunnels/NAME.json.

    \b
    Example:
      hpclaunch tunnel qwen-vl --local-port 8000 &
      curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8000/v1/models
    """
    from hpclaunch.endpoints.tunnels import open_tunnel

    def warn(message: str) -> None:
        click.echo(f"hpclaunch tunnel: {message}", err=True)

    tun = open_tunnel(name, local_port=local_port, on_error=warn)
    # A terminal closing or `kill` should clean up like Ctrl-C does; and Ctrl-C works even
    # when a non-interactive shell started us in the background with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        click.echo(tun.url)
        click.echo(f"forwarding 127.0.0.1:{tun.local_port} -> {tun.remote_host}:"
                   f"{tun.remote_port} via {tun.via}; Ctrl-C stops",
                   err=True)
        tun.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        tun.close()
    click.echo(f"tunnel to {name} closed", err=True)
