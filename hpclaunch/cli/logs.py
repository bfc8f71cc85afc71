"""``logs NAME [-f] [--node N]``: the realtime vLLM log, a tail read whatever its size."""

from __future__ import annotations

import time

import click

from hpclaunch.cli.common import complete_names
from hpclaunch.cli.main import cli
from hpclaunch.errors import UserError


def node_log_path(realtime_log: str, node: int) -> str:
    """``vllm_<files>_port<P>_realtime.log`` -> ``vllm_<files>_node<N>.log`` beside it."""
    import re

    return re.sub(r"_(?:port\d+_realtime|head)\.log$", f"_node{node}.log", realtime_log)


@cli.command()
@click.argument("name", shell_complete=complete_names)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("--lines", "-n", default=50, show_default=True, help="Lines from the end to show.")
@click.option("--node", type=click.IntRange(min=0), default=None,
              help="Multi-node: node N's own log (0 is the head: its Ray log, or the API "
                   "server's); without it, the API server's realtime log.")
def logs(name: str, follow: bool, lines: int, node: int | None) -> None:
    """Print the realtime vLLM log of NAME (a tail read, whatever its size)."""
    from hpclaunch import api
    from hpclaunch.config import get_cluster
    from hpclaunch.registry import Registry
    from hpclaunch.remote.connect import transport_for

    registry = Registry()
    rec = registry.get(name)
    if not rec.final:
        rec = api.refresh([name], registry=registry, probe=False)[0]
    if not rec.log_path:
        raise UserError(f"{name} has no log yet ({rec.state}: {rec.reason}); "
                        f"try again once the job runs")
    transport = transport_for(get_cluster(rec.cluster))
    path = rec.log_path if node is None else node_log_path(rec.log_path, node)
    try:
        st = transport.stat(path)
        if st is None and node == 0:  # vLLM's own launch: the head's process is the API server
            path = rec.log_path
            st = transport.stat(path)
        if st is None:
            if node is not None:
                raise UserError(f"{name} has no log for node {node} ({path}); nodes are "
                                "numbered 0.. in the job's node order, and one-node jobs "
                                "have none")
            raise UserError(f"log {path} does not exist (yet)")
        window = max(lines, 1) * 400
        start = max(0, st.size - window)
        data = transport.read_range(path, start, st.size - start)
        text = data.decode("utf-8", errors="replace")
        tail = text.splitlines()[-lines:] if lines > 0 else []
        for line in tail:
            click.echo(line)
        offset = st.size
        while follow:
            time.sleep(0.5)
            st = transport.stat(path)
            if st is None:
                continue
            if st.size < offset:  # truncated or rotated: start over
                offset = 0
            if st.size > offset:
                chunk = transport.read_range(path, offset, st.size - offset)
                offset += len(chunk)
                click.echo(chunk.decode("utf-8", errors="replace"), nl=False)
    except KeyboardInterrupt:
        pass
    finally:
        transport.close()
