"""Logging in to a login node: where, as whom, which host keys, and one connection each.

Host keys are checked against ``known_hosts`` (the profile's, or
``~/.ssh/known_hosts`` and ``/etc/ssh/ssh_known_hosts``); an unknown key is
refused, never added.

One CLI call opens at most one connection per login node: connections are pooled
per ``(user, host, port)`` for the life of the process. :func:`close_all` (also run
at exit) really disconnects. paramiko is imported only when a connection is made,
so ``import hpclaunch.cli`` stays fast.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpclaunch.errors import UserError

if TYPE_CHECKING:
    import paramiko

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
KEEPALIVE_S = 30
DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts")


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to log in; the pool key is ``(user, host, port)``."""

    host: str
    port: int = 22
    user: str = ""
    ssh_key: str | None = None
    known_hosts: str | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.user, self.host, self.port)

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


class _Reject:
    """paramiko's RejectPolicy, but it remembers the key it refused for the message."""

    def __init__(self) -> None:
        self.refused: Any = None

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        import paramiko

        self.refused = key
        raise paramiko.SSHException(f"Server {hostname!r} not found in known_hosts")


@dataclass
class Connection:
    """One logged-in SSH client, shared by every transport to the same login node."""

    target: SSHTarget
    client: paramiko.SSHClient
    sftp_client: paramiko.SFTPClient | None = None
    home: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def active(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def sftp(self) -> paramiko.SFTPClient:
        with self.lock:
            if self.sftp_client is None:
                self.sftp_client = self.client.open_sftp()
            return self.sftp_client

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.sftp_client is not None:
                self.sftp_client.close()
        with contextlib.suppress(Exception):
            self.client.close()


_POOL: dict[tuple[str, str, int], Connection] = {}
_POOL_LOCK = threading.Lock()
_OPENED = 0


def connections_opened() -> int:
    """SSH connections this process has opened so far (what "one per CLI call" counts)."""
    return _OPENED


def close_all() -> None:
    """Disconnect every pooled connection (run at interpreter exit)."""
    with _POOL_LOCK:
        conns = list(_POOL.values())
        _POOL.clear()
    for conn in conns:
        conn.close()


atexit.register(close_all)


def _connect(target: SSHTarget) -> Connection:
    """Log in, checking the host key; every failure is one line saying what to do."""
    global _OPENED
    import paramiko

    # paramiko logs refused channels (a /health probe of a port nobody listens on yet) at
    # ERROR; without a handler of its own, Python would print them on the user's stderr.
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    client = paramiko.SSHClient()
    if target.known_hosts:
        path = os.path.expanduser(target.known_hosts)
        if not os.path.isfile(path):
            raise UserError(f"known_hosts file {path} (from clusters.yaml) does not exist; "
                            f"create it with: ssh-keyscan -p {target.port} {target.host} "
                            f">> {path} (after checking the fingerprint)")
        client.load_host_keys(path)
        hint_file = path
    else:
        for candidate in DEFAULT_KNOWN_HOSTS:
            path = os.path.expanduser(candidate)
            if os.path.isfile(path):
                client.load_system_host_keys(path)
        hint_file = DEFAULT_KNOWN_HOSTS[0]
    policy = _Reject()
    client.set_missing_host_key_policy(policy)  # type: ignore[arg-type]  # duck-typed policy
    key_file = None
    if target.ssh_key:
        key_file = os.path.expanduser(target.ssh_key)
        if not os.path.isfile(key_file):
            raise UserError(f"ssh_key {key_file} (from clusters.yaml) does not exist")
    who = f"{target.user}@{target.label}"
    started = time.monotonic()
    try:
        client.connect(
            hostname=target.host, port=target.port, username=target.user,
            key_filename=key_file, look_for_keys=key_file is None, allow_agent=True,
            timeout=CONNECT_TIMEOUT, banner_timeout=CONNECT_TIMEOUT,
            auth_timeout=CONNECT_TIMEOUT, passphrase=None,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise UserError(
            f"host key of login node {target.label} does NOT match {hint_file} (the host was "
            "reinstalled, or someone is in the middle); ask your admins, then fix its line "
            f"in {hint_file}"
        ) from exc
    except paramiko.PasswordRequiredException as exc:
        client.close()
        raise UserError(f"ssh_key {key_file} is passphrase-protected; load it into the agent "
                        f"(ssh-add {key_file}) and retry") from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        how = f"key {key_file}" if key_file else "ssh-agent and ~/.ssh keys"
        why = str(exc).rstrip(".")
        raise UserError(f"login to {who} refused ({how}): {why}; check user and ssh_key "
                        "in clusters.yaml") from exc
    except paramiko.SSHException as exc:
        client.close()
        if policy.refused is not None:
            key = policy.refused
            raise UserError(
                f"login node {target.label} has an unknown host key ({key.get_name()} "
                f"{key.fingerprint}); verify that fingerprint with your admins, then add it: "
                f"ssh-keyscan -p {target.port} {target.host} >> {hint_file}"
            ) from exc
        raise UserError(f"cannot reach login node {target.label} ({exc}); check host/port "
                        "in clusters.yaml") from exc
    except (OSError, EOFError) as exc:
        client.close()
        why = "timed out" if isinstance(exc, socket.timeout) else (
            getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        raise UserError(f"cannot reach login node {target.label} ({why}); check host/port "
                        "in clusters.yaml") from exc
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(KEEPALIVE_S)
    _OPENED += 1
    log.info("ssh: connected to %s in %.2f s", who, time.monotonic() - started)
    return Connection(target, client)


def pooled(target: SSHTarget) -> Connection:
    """The process's connection to ``target``, (re)connecting when needed."""
    with _POOL_LOCK:
        conn = _POOL.get(target.key)
        if conn is not None and conn.active:
            return conn
        if conn is not None:
            conn.close()
        conn = _connect(target)
        _POOL[target.key] = conn
        return conn
