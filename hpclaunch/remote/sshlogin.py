"""Logging in to a login node: where, as whom, which host keys, and one connection each.

A login node behind jump hosts (``ProxyJump``) is reached as OpenSSH does it: log in
to the first hop, open a ``direct-tcpip`` channel from it to the next, and run the
next SSH session inside that channel. Every hop's host key is checked against
``known_hosts`` (the profile's, the ``UserKnownHostsFile`` of ``~/.ssh/config``, or
``~/.ssh/known_hosts`` and ``/etc/ssh/ssh_known_hosts``); an unknown key is refused,
never added, whatever ``StrictHostKeyChecking`` says.

One CLI call opens at most one connection (chain) per login node: connections are
pooled per ``(user, host, port, jumps)`` for the life of the process. :func:`close_all` (also run
at exit) really disconnects. paramiko is imported only when a connection is made,
so ``import hpclaunch.cli`` stays fast.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field, replace
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
    """Where and how to log in, and the jump hosts on the way (``ProxyJump``, in order).

    ``ssh_key`` and ``known_hosts`` come from clusters.yaml and must exist;
    ``config_keys`` and ``config_known_hosts`` come from ``~/.ssh/config``, where
    missing files are skipped as OpenSSH skips them.
    """

    host: str
    port: int = 22
    user: str = ""
    ssh_key: str | None = None
    known_hosts: str | None = None
    config_keys: tuple[str, ...] = ()
    config_known_hosts: tuple[str, ...] = ()
    alias: str = ""
    jumps: tuple[SSHTarget, ...] = ()

    @property
    def key(self) -> tuple[Any, ...]:
        """Pool key: the same login node through other jump hosts is another connection."""
        return (self.user, self.host, self.port, *(j.key for j in self.jumps))

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def route(self) -> str:
        """``user@host:port`` with the jump hosts, for messages and ``cluster show``."""
        via = "".join(f" via {j.user}@{j.label}" for j in reversed(self.jumps))
        return f"{self.user}@{self.label}{via}"

    @property
    def from_ssh_config(self) -> bool:
        return bool(self.jumps or self.config_keys or self.config_known_hosts or
                    (self.alias and self.alias != self.host))

    def through(self, jumps: tuple[SSHTarget, ...]) -> SSHTarget:
        return replace(self, jumps=jumps)

    def direct(self) -> SSHTarget:
        return replace(self, jumps=())


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
    # Clients of the jump hosts this one is tunnelled through, first hop first.
    via: list[paramiko.SSHClient] = field(default_factory=list)
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
        for client in [self.client, *reversed(self.via)]:
            with contextlib.suppress(Exception):
                client.close()


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
    """Log in to ``target`` through its jump hosts, each over a ``direct-tcpip`` channel
    of the one before; every hop's host key is checked the same way."""
    global _OPENED
    # paramiko logs refused channels (a /health probe of a port nobody listens on yet) at
    # ERROR; without a handler of its own, Python would print them on the user's stderr.
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    hops = [*target.jumps, target.direct()]
    clients: list[paramiko.SSHClient] = []
    started = time.monotonic()
    try:
        for n, hop in enumerate(hops):
            role = "login node" if n == len(hops) - 1 else "jump host"
            sock = _channel_to(clients[-1], hops[n - 1], hop) if clients else None
            clients.append(_login(hop, role, sock))
    except BaseException:
        for client in reversed(clients):
            with contextlib.suppress(Exception):
                client.close()
        raise
    _OPENED += 1
    log.info("ssh: connected to %s in %.2f s", target.route, time.monotonic() - started)
    return Connection(target, clients[-1], via=clients[:-1])


def _channel_to(client: paramiko.SSHClient, jump: SSHTarget, hop: SSHTarget) -> Any:
    import paramiko

    transport = client.get_transport()
    try:
        if transport is None:
            raise paramiko.SSHException("connection closed")
        return transport.open_channel("direct-tcpip", (hop.host, hop.port), ("127.0.0.1", 0),
                                      timeout=CONNECT_TIMEOUT)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        why = getattr(exc, "text", None) or str(exc) or type(exc).__name__
        raise UserError(f"jump host {jump.label} cannot connect to {hop.label} ({why}); check "
                        f"HostName/Port of {hop.alias or hop.host} and ProxyJump in "
                        "~/.ssh/config, and that the jump host may forward there") from exc


def _where(target: SSHTarget, role: str) -> str:
    """Which file to fix, for the end of a message."""
    if role == "jump host":
        return f"Host {target.alias or target.host} and ProxyJump in ~/.ssh/config"
    if target.from_ssh_config:
        return f"clusters.yaml and Host {target.alias} in ~/.ssh/config"
    return "clusters.yaml"


def _login(target: SSHTarget, role: str, sock: Any) -> paramiko.SSHClient:
    """One SSH login; every failure is one line saying what to do."""
    import paramiko

    client = paramiko.SSHClient()
    hint_file = _load_known_hosts(client, target)
    policy = _Reject()
    client.set_missing_host_key_policy(policy)  # type: ignore[arg-type]  # duck-typed policy
    key_files: list[str] = []
    if target.ssh_key:
        key_files = [os.path.expanduser(target.ssh_key)]
        if not os.path.isfile(key_files[0]):
            raise UserError(f"ssh_key {key_files[0]} (from clusters.yaml) does not exist")
    else:
        key_files = [k for k in target.config_keys if os.path.isfile(k)]
    who = f"{target.user}@{target.label}"
    where = _where(target, role)
    try:
        client.connect(
            hostname=target.host, port=target.port, username=target.user, sock=sock,
            # paramiko takes a list of key files; its stubs say one string.
            key_filename=key_files or None,  # type: ignore[arg-type]
            look_for_keys=not key_files, allow_agent=True,
            timeout=CONNECT_TIMEOUT, banner_timeout=CONNECT_TIMEOUT,
            auth_timeout=CONNECT_TIMEOUT, passphrase=None,
            transport_factory=_no_prompt_transport(),  # type: ignore[arg-type]  # a Transport subclass
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise UserError(
            f"host key of {role} {target.label} does NOT match {hint_file} (the host was "
            "reinstalled, or someone is in the middle); ask your admins, then fix its line "
            f"in {hint_file}"
        ) from exc
    except paramiko.PasswordRequiredException as exc:
        client.close()
        key = key_files[0] if key_files else "your key"
        raise UserError(f"ssh key {key} is passphrase-protected; load it into the agent "
                        f"(ssh-add {key}) and retry, or use transport: openssh") from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        if NEEDS_CODE in str(exc):
            raise UserError(f"{role} {target.label} accepted the key for {target.user} but "
                            "asks for a password or one-time code too (MFA); set transport: "
                            "openssh for this cluster and run hpclaunch login CLUSTER") from exc
        how = f"key {', '.join(key_files)}" if key_files else "ssh-agent and ~/.ssh keys"
        why = str(exc).rstrip(".")
        raise UserError(f"login to {who} refused ({how}): {why}; check user and ssh_key "
                        f"in {where}") from exc
    except paramiko.SSHException as exc:
        client.close()
        if policy.refused is not None:
            key = policy.refused
            raise UserError(
                f"{role} {target.label} has an unknown host key ({key.get_name()} "
                f"{key.fingerprint}); verify that fingerprint with your admins, then add it: "
                f"ssh-keyscan -p {target.port} {target.host} >> {hint_file}"
            ) from exc
        raise UserError(f"cannot reach {role} {target.label} ({exc}); check host/port "
                        f"in {where}") from exc
    except (OSError, EOFError) as exc:
        client.close()
        why = "timed out" if isinstance(exc, socket.timeout) else (
            getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        raise UserError(f"cannot reach {role} {target.label} ({why}); check host/port "
                        f"in {where}") from exc
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(KEEPALIVE_S)
    return client


NEEDS_CODE = "asks for a password or code after the key"


@functools.cache
def _no_prompt_transport() -> type:
    """paramiko's Transport, minus its console prompt.

    After a key is accepted as the first of two factors, paramiko's SSHClient falls back
    to ``auth_interactive_dumb``, which prints the server's prompt on stdout and reads
    the answer from stdin with echo on: in a CLI that would swallow a command's stdin or
    hang. Here that step fails instead; MFA sites use ``transport: openssh``.
    """
    import paramiko

    class NoPromptTransport(paramiko.Transport):
        def auth_interactive_dumb(self, username: str, handler: Any = None,
                                  submethods: str = "") -> list[str]:
            raise paramiko.AuthenticationException(NEEDS_CODE)

    return NoPromptTransport


def _load_known_hosts(client: paramiko.SSHClient, target: SSHTarget) -> str:
    """Load the host keys ``target`` is checked against; the file a new key belongs in."""
    if target.known_hosts:
        path = os.path.expanduser(target.known_hosts)
        if not os.path.isfile(path):
            raise UserError(f"known_hosts file {path} (from clusters.yaml) does not exist; "
                            f"create it with: ssh-keyscan -p {target.port} {target.host} "
                            f">> {path} (after checking the fingerprint)")
        client.load_host_keys(path)
        return path
    candidates = target.config_known_hosts or DEFAULT_KNOWN_HOSTS
    for candidate in candidates:
        path = os.path.expanduser(candidate)
        if os.path.isfile(path):
            client.load_system_host_keys(path)
    return candidates[0]


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
