"""Where a cluster profile's ``host`` really is: the user's ``~/.ssh/config`` decides.

Users name login nodes in ``~/.ssh/config`` (``Host polaris`` with ``HostName``,
``User``, ``Port``, ``IdentityFile``, ``ProxyJump``, ``UserKnownHostsFile``), and
``ssh polaris`` works for them; ``host: polaris`` in clusters.yaml must work the same
way. paramiko's :class:`~paramiko.config.SSHConfig` reads the file (``Host`` and
``Match`` blocks, first value wins, as in OpenSSH); this module turns its answer
into an :class:`~hpclaunch.remote.sshlogin.SSHTarget` with the jump hosts to pass
through, in order.

What clusters.yaml says wins over the ssh config, as options on ssh's command line
do. ``StrictHostKeyChecking no`` / ``accept-new`` in the config are ignored: hpclaunch
never trusts a host key it has not been given.
"""

from __future__ import annotations

import getpass
import logging
import os
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.remote.sshlogin import SSHTarget

log = logging.getLogger(__name__)

USER_CONFIG = "~/.ssh/config"
# OpenSSH allows a chain of jumps; a loop in the config must not recurse for ever.
MAX_JUMPS = 8


def load_config() -> Any | None:
    """The user's parsed ``~/.ssh/config`` (``$HOME`` based), or None without one."""
    path = os.path.expanduser(USER_CONFIG)
    if not os.path.isfile(path):
        return None
    import paramiko

    try:
        return paramiko.SSHConfig.from_path(path)
    except (paramiko.ssh_exception.ConfigParseError, OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read it ({exc}); fix that line (ssh -G HOST "
                        "shows what OpenSSH makes of it)") from exc


def target_for(profile: Any) -> SSHTarget:
    """The login node of a cluster profile, with its jump hosts, after ``~/.ssh/config``."""
    host = str(profile.host)
    user = getattr(profile, "user", None)
    if "@" in host:
        user_part, host = host.split("@", 1)
        user = user or user_part
    port = getattr(profile, "port", None)
    return resolve(load_config(), host, user=user, port=int(port) if port else None,
                   ssh_key=getattr(profile, "ssh_key", None),
                   known_hosts=getattr(profile, "known_hosts", None))


def resolve(config: Any | None, alias: str, *, user: str | None = None,
            port: int | None = None, ssh_key: str | None = None,
            known_hosts: str | None = None, depth: int = 0) -> SSHTarget:
    """``alias`` as ``ssh alias`` would reach it; explicit arguments beat the config."""
    if depth > MAX_JUMPS:
        raise UserError(f"~/.ssh/config: ProxyJump for {alias} goes through more than "
                        f"{MAX_JUMPS} jump hosts (a loop?); fix the ProxyJump lines")
    entry: dict[str, Any] = dict(config.lookup(alias)) if config is not None else {}
    if entry.get("proxycommand") and not entry.get("proxyjump"):
        raise UserError(f"~/.ssh/config gives {alias} a ProxyCommand, which hpclaunch's "
                        "built-in SSH does not run; use ProxyJump there, or set "
                        "transport: openssh for this cluster")
    strict = str(entry.get("stricthostkeychecking", "yes")).lower()
    if strict not in ("yes", "true"):
        log.info("ssh: ignoring StrictHostKeyChecking %s for %s: unknown host keys are "
                 "always refused", strict, alias)
    target = SSHTarget(
        host=str(entry.get("hostname") or alias),
        port=port or _int(entry.get("port"), alias, "Port") or 22,
        user=user or str(entry.get("user") or "") or getpass.getuser(),
        ssh_key=ssh_key,
        config_keys=tuple(os.path.expanduser(p) for p in entry.get("identityfile", [])),
        known_hosts=known_hosts,
        config_known_hosts=tuple(
            os.path.expanduser(p) for p in str(entry.get("userknownhostsfile", "")).split()),
        alias=alias,
    )
    jump_spec = str(entry.get("proxyjump") or "none")
    if jump_spec.lower() == "none":
        return target
    hops = [h.strip() for h in jump_spec.split(",") if h.strip()]
    # As OpenSSH does it: the first hop is reached the way the config says (its own
    # ProxyJump included); each later hop through the one before.
    first = _hop(config, hops[0], depth)
    chain = [*first.jumps, first.direct()]
    for spec in hops[1:]:
        chain.append(_hop(config, spec, depth, own_jumps=False))
    return target.through(tuple(chain))


def _hop(config: Any | None, spec: str, depth: int, own_jumps: bool = True) -> SSHTarget:
    """One ProxyJump entry, ``[user@]host[:port]`` or ``ssh://[user@]host[:port]``."""
    rest = spec.removeprefix("ssh://")
    user, _, rest = rest.rpartition("@")
    host, port = rest, None
    if rest.startswith("["):  # [v6addr]:port
        host, _, tail = rest[1:].partition("]")
        port = tail.removeprefix(":") or None
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    if not host:
        raise UserError(f"~/.ssh/config: ProxyJump entry {spec!r} names no host")
    hop = resolve(config, host, user=user or None, port=_int(port, spec, "ProxyJump port"),
                  depth=depth + 1)
    return hop if own_jumps else hop.direct()


def _int(value: Any, where: str, what: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if not 0 < number < 65536:
        raise UserError(f"~/.ssh/config: {what} {value!r} for {where} is not a port number")
    return number
