"""A login node reached over SSH, as a :class:`~hpclaunch.remote.transport.Transport`.

When a cluster profile names ``host``, every scheduler command, job-file read and
``/health`` probe goes through one SSH connection to that login node:

- commands run with ``exec_command(shlex.join(argv))``: the remote shell splits
  the string back into exactly ``argv``, so nothing reaches it unquoted;
- files are read and written over SFTP (seek + bounded reads for log tails, no
  ``cat`` of whole logs; new files get their mode in the OPEN request, before a
  byte is written, then are renamed into place);
- ``http_get`` opens a ``direct-tcpip`` channel from the login node, which can
  reach compute nodes that the laptop running hpclaunch cannot.

Host keys are checked against ``known_hosts`` (the profile's, or
``~/.ssh/known_hosts`` and ``/etc/ssh/ssh_known_hosts``); an unknown key is
refused, never added.

One CLI call opens at most one connection per login node: connections are pooled
per ``(user, host, port)`` for the life of the process. :meth:`SSHTransport.close`
only releases a handle (``wait`` asks for a transport on every poll);
:func:`close_all` (also run at exit) really disconnects. paramiko is imported only
when a connection is made, so ``import hpclaunch.cli`` stays fast.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import getpass
import http.client
import logging
import os
import posixpath
import secrets
import select
import shlex
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from hpclaunch.errors import UserError
from hpclaunch.remote.transport import FileStat, Result

if TYPE_CHECKING:
    import paramiko

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

CONNECT_TIMEOUT = 10.0
KEEPALIVE_S = 30
# SFTP reads larger than one request are pipelined (readv) instead of one round trip each.
SFTP_CHUNK = 32768
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
class _Connection:
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


_POOL: dict[tuple[str, str, int], _Connection] = {}
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


def _connect(target: SSHTarget) -> _Connection:
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
    return _Connection(target, client)


def _pooled(target: SSHTarget) -> _Connection:
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


def _not_found(exc: OSError) -> bool:
    return getattr(exc, "errno", None) == errno.ENOENT


def _connection_errors(method: F) -> F:
    """A connection that drops mid-call is one line, not an internal error; OSErrors
    (a missing file) stay what they are."""

    @functools.wraps(method)
    def wrapper(self: SSHTransport, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except UserError:
            raise
        except Exception as exc:
            import paramiko

            if not isinstance(exc, (paramiko.SSHException, EOFError)):
                raise
            why = str(exc) or type(exc).__name__
            raise UserError(f"lost the connection to login node {self.target.label} ({why}); "
                            "retry, and check the network if it keeps happening") from exc

    return wrapper  # type: ignore[return-value]


class SSHTransport:
    """Commands, files and HTTP probes on a login node; see the module docstring."""

    def __init__(self, target: SSHTarget) -> None:
        self.target = target
        self._conn: _Connection | None = None

    @classmethod
    def from_profile(cls, cluster: Any) -> SSHTransport:
        host = str(cluster.host)
        user = getattr(cluster, "user", None)
        if "@" in host:
            user_part, host = host.split("@", 1)
            user = user or user_part
        return cls(SSHTarget(
            host=host, port=int(getattr(cluster, "port", None) or 22),
            user=user or getpass.getuser(), ssh_key=getattr(cluster, "ssh_key", None),
            known_hosts=getattr(cluster, "known_hosts", None),
        ))

    # -- connection ----------------------------------------------------------------
    @property
    def conn(self) -> _Connection:
        """Connect on first use: ``submit --dry-run`` over SSH needs no network."""
        if self._conn is None or not self._conn.active:
            self._conn = _pooled(self.target)
        return self._conn

    def open_channel(self, host: str, port: int, origin: tuple[str, int] = ("127.0.0.1", 0),
                     timeout: float | None = None) -> Any:
        """A ``direct-tcpip`` channel from the login node to ``host:port``."""
        transport = self.conn.client.get_transport()
        if transport is None:
            raise UserError(f"the connection to login node {self.target.label} is closed")
        return transport.open_channel("direct-tcpip", (host, port), origin, timeout=timeout)

    def close(self) -> None:
        """Release this handle; the pooled connection stays for the rest of the call."""
        self._conn = None

    # -- commands ------------------------------------------------------------------
    @_connection_errors
    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 60) -> Result:
        """Run ``argv`` on the login node: the remote shell gets ``shlex.join(argv)``."""
        command = shlex.join(argv)
        transport = self.conn.client.get_transport()
        if transport is None:
            raise UserError(f"the connection to login node {self.target.label} is closed")
        chan = transport.open_session(timeout=timeout)
        try:
            chan.exec_command(command)
            if input is not None:
                chan.sendall(input.encode())
            chan.shutdown_write()
            out, err, code = _collect(chan, timeout)
        finally:
            chan.close()
        if code is None:
            raise UserError(f"{argv[0]} on login node {self.target.label} did not answer "
                            f"within {timeout:.0f} s")
        stdout = out.decode(errors="replace")
        stderr = err.decode(errors="replace")
        if code == 127 and "not found" in stderr:
            raise UserError(f"{argv[0]}: command not found on login node {self.target.host} "
                            "(is it on PATH for non-interactive ssh sessions?)")
        return Result(list(argv), code, stdout, stderr)

    # -- files ---------------------------------------------------------------------
    @_connection_errors
    def stat(self, path: str) -> FileStat | None:
        try:
            st = self.conn.sftp().stat(path)
        except OSError:
            return None
        return FileStat(int(st.st_size or 0), float(st.st_mtime or 0))

    @_connection_errors
    def read_range(self, path: str, offset: int, length: int) -> bytes:
        """At most ``length`` bytes from ``offset``; large ranges are pipelined."""
        if length <= 0:
            return b""
        try:
            with self.conn.sftp().open(path, "rb") as fh:
                if length <= SFTP_CHUNK:
                    fh.seek(offset)
                    return bytes(fh.read(length))
                size = int(fh.stat().st_size or 0)
                end = min(size, offset + length)
                if end <= offset:
                    return b""
                return b"".join(fh.readv([(offset, end - offset)]))
        except OSError:
            return b""

    @_connection_errors
    def read_text(self, path: str) -> str | None:
        try:
            with self.conn.sftp().open(path, "rb") as fh:
                return bytes(fh.read()).decode(errors="replace")
        except OSError:
            return None

    @_connection_errors
    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Create or replace ``path``: a new temp file created with ``mode`` (O_EXCL,
        mode in the OPEN request, then fchmod against the server's umask), written,
        then renamed over ``path`` so readers see the old file or the new one."""
        sftp = self.conn.sftp()
        tmp = f"{path}.tmp{secrets.token_hex(6)}"
        try:
            with _open_new(sftp, tmp, mode) as fh:
                fh.chmod(mode)
                fh.write(data)
            _rename_over(sftp, tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                sftp.remove(tmp)
            raise UserError(f"cannot write {path} on login node {self.target.host}: "
                            f"{exc.strerror or exc}") from exc

    @_connection_errors
    def remove(self, path: str) -> None:
        try:
            self.conn.sftp().remove(path)
        except OSError as exc:
            if not _not_found(exc):
                raise UserError(f"cannot remove {path} on login node {self.target.host}: "
                                f"{exc.strerror or exc}") from exc

    @_connection_errors
    def makedirs(self, path: str) -> None:
        """``mkdir -p``: create each missing parent; existing directories are fine."""
        sftp = self.conn.sftp()
        path = self.expanduser(path)
        missing: list[str] = []
        current = path
        while current not in ("", "/"):
            try:
                st = sftp.stat(current)
            except OSError:
                missing.append(current)
                current = posixpath.dirname(current)
                continue
            if not stat.S_ISDIR(st.st_mode or 0):
                raise UserError(f"{current} on login node {self.target.host} exists and is "
                                "not a directory")
            break
        for directory in reversed(missing):
            try:
                sftp.mkdir(directory)
            except OSError as exc:
                # Lost a race with another mkdir: fine if it is a directory now.
                try:
                    if stat.S_ISDIR(sftp.stat(directory).st_mode or 0):
                        continue
                except OSError:
                    pass
                raise UserError(f"cannot create {directory} on login node "
                                f"{self.target.host}: {exc.strerror or exc}") from exc

    @_connection_errors
    def expanduser(self, path: str) -> str:
        """``~`` and relative paths against the remote home (the SFTP start directory)."""
        if path.startswith("~") and not (path == "~" or path.startswith("~/")):
            raise UserError(f"{path}: only ~ (your own home) can be expanded on a login node; "
                            "write the absolute path")
        if path.startswith("/"):
            return posixpath.normpath(path)
        conn = self.conn
        if conn.home is None:
            conn.home = conn.sftp().normalize(".")
        rest = path[2:] if path.startswith("~/") else ("" if path == "~" else path)
        return posixpath.normpath(posixpath.join(conn.home, rest)) if rest else conn.home

    # -- HTTP through the login node -----------------------------------------------------
    def http_get(self, host: str, port: int, path: str, headers: dict[str, str] | None = None,
                 timeout: float = 2.0) -> tuple[int, bytes]:
        """GET ``http://host:port/path`` as the login node sees it; ``(0, b"")`` when
        nothing answers there."""
        try:
            chan = self.open_channel(host, port, timeout=timeout)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - paramiko: ChannelException, SSHException, EOF
            log.debug("direct-tcpip to %s:%s via %s failed: %r", host, port, self.target.label,
                      exc)
            return 0, b""
        chan.settimeout(timeout)
        conn = _ChannelHTTPConnection(chan, host, port, timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, EOFError, http.client.HTTPException) as exc:
            log.debug("GET %s from %s:%s via %s failed: %r", path, host, port,
                      self.target.label, exc)
            return 0, b""
        finally:
            conn.close()
            chan.close()


def _collect(chan: Any, timeout: float) -> tuple[bytes, bytes, int | None]:
    """Drain stdout and stderr together (either can fill the window) until EOF and the
    exit status; ``None`` as the status when ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    out: list[bytes] = []
    err: list[bytes] = []
    while True:
        if chan.recv_ready():
            out.append(chan.recv(65536))
            continue
        if chan.recv_stderr_ready():
            err.append(chan.recv_stderr(65536))
            continue
        if chan.eof_received or chan.closed:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"".join(out), b"".join(err), None
        select.select([chan], [], [], min(remaining, 1.0))
    # EOF may have arrived (after the last data) between the checks above and the one that
    # ended the loop: everything sent before EOF is buffered by now, so drain it.
    while chan.recv_ready():
        out.append(chan.recv(65536))
    while chan.recv_stderr_ready():
        err.append(chan.recv_stderr(65536))
    remaining = max(0.0, deadline - time.monotonic())
    if not chan.status_event.wait(remaining):
        return b"".join(out), b"".join(err), None
    return b"".join(out), b"".join(err), chan.recv_exit_status()


def _open_new(sftp: Any, path: str, mode: int) -> Any:
    """``open(path, O_CREAT|O_EXCL|O_WRONLY, mode)`` over SFTP.

    paramiko's ``SFTPClient.open`` sends empty attributes, so the server would create
    the file with its default 0666 & ~umask and a reader could open it before any
    chmod; here the mode travels in the OPEN request itself.
    """
    from paramiko.sftp import (
        CMD_HANDLE,
        CMD_OPEN,
        SFTP_FLAG_CREATE,
        SFTP_FLAG_EXCL,
        SFTP_FLAG_WRITE,
    )
    from paramiko.sftp_attr import SFTPAttributes
    from paramiko.sftp_file import SFTPFile

    attrs = SFTPAttributes()
    attrs.st_mode = mode
    kind, msg = sftp._request(CMD_OPEN, path, SFTP_FLAG_WRITE | SFTP_FLAG_CREATE |
                              SFTP_FLAG_EXCL, attrs)
    if kind != CMD_HANDLE:
        raise OSError(f"unexpected SFTP reply to OPEN {path}")
    return SFTPFile(sftp, msg.get_binary(), "wb", -1)


def _rename_over(sftp: Any, src: str, dst: str) -> None:
    """Atomic replace: OpenSSH's posix-rename; plain SFTP rename refuses existing targets."""
    try:
        sftp.posix_rename(src, dst)
        return
    except OSError as exc:
        # paramiko gives no errno for SSH_FX_OP_UNSUPPORTED (a server without the extension).
        if getattr(exc, "errno", None) is not None:
            raise
    with contextlib.suppress(OSError):
        sftp.remove(dst)
    sftp.rename(src, dst)


class _ChannelHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection whose socket is an SSH channel (http.client handles the rest)."""

    def __init__(self, chan: Any, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._chan = chan

    def connect(self) -> None:
        self.sock = self._chan

    def close(self) -> None:
        # http.client closes its socket as soon as it has the headers of a
        # "Connection: close" response, relying on makefile() to keep a real socket
        # open for the body; closing a channel ends it at once, and a body that arrives
        # in a later packet is lost. The channel is closed by http_get instead.
        self.sock = None
        super().close()
