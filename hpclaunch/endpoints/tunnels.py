"""Open a tunnel to an endpoint by name (its node and port come from a refresh)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from hpclaunch.endpoints.lifecycle import refresh
from hpclaunch.errors import UserError
from hpclaunch.remote.tunnel import ForwardedTunnel, Tunnel, read_state


def open_tunnel(name: str, *, local_port: int | None = None,
                on_error: Callable[[str], None] | None = None) -> Tunnel | ForwardedTunnel:
    """A tunnel to endpoint ``name`` (not yet serving: call ``serve_forever`` or ``start``).

    Without ``local_port`` the endpoint's own port number is tried first, then any
    free one.
    """
    from hpclaunch.config import get_cluster
    from hpclaunch.registry import check_name
    from hpclaunch.remote.openssh import OpenSSHTarget
    from hpclaunch.remote.ssh import SSHTransport

    check_name(name)
    running = read_state(name)
    if running:
        raise UserError(f"a tunnel to {name} is already running at {running['url']} "
                        f"(pid {running['pid']}); stop it first or use that URL")
    rec = refresh([name], probe=False)[0]
    if rec.final:
        raise UserError(f"{name} is {rec.state} ({rec.reason}); nothing to tunnel to")
    if not rec.host or not rec.port:
        raise UserError(f"{name} has no node and port yet ({rec.state}: {rec.reason}); "
                        f"hpclaunch wait {name} first")
    profile = get_cluster(rec.cluster)
    if not profile.host:
        raise UserError(f"{name} runs on cluster {rec.cluster!r}, which hpclaunch reaches "
                        f"without SSH: use its URL directly ({rec.url})")
    make: Callable[..., Tunnel | ForwardedTunnel]
    if profile.transport == "openssh":
        make = functools.partial(ForwardedTunnel, OpenSSHTarget.from_profile(profile))
    else:
        make = functools.partial(Tunnel, SSHTransport.from_profile(profile))
    if local_port is not None:
        return make(rec.host, rec.port, local_port=local_port, name=name, on_error=on_error)
    try:
        return make(rec.host, rec.port, local_port=rec.port, name=name, on_error=on_error)
    except UserError as exc:
        if "no SSH connection" in str(exc):
            raise
        return make(rec.host, rec.port, local_port=0, name=name, on_error=on_error)
