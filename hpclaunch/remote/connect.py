"""Pick the transport for a cluster profile: local, or SSH to its login node.

Kept apart from :mod:`hpclaunch.remote.transport` so that the SSH transport can build on
the base classes without the two modules importing each other.
"""

from __future__ import annotations

from hpclaunch.remote.transport import LocalTransport, Transport


def transport_for(cluster: object) -> Transport:
    """Local unless the profile names an SSH host; then paramiko, or the system ssh
    through an ``hpclaunch login`` master with ``transport: openssh``."""
    host = getattr(cluster, "host", None)
    if not host:
        return LocalTransport()
    if getattr(cluster, "transport", None) == "openssh":
        from hpclaunch.remote.openssh_transport import OpenSSHTransport

        return OpenSSHTransport.from_profile(cluster)
    from hpclaunch.remote.ssh import SSHTransport

    return SSHTransport.from_profile(cluster)
