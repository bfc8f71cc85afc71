"""A login node reached over SSH, as a :class:`~hpclaunch.remote.transport.Transport`.

When a cluster profile names ``host``, every scheduler command, job-file read and
``/health`` probe goes through one SSH connection to that login node
(:mod:`hpclaunch.remote.sshlogin` logs in and pools it):

- commands run with ``exec_command(shlex.join(argv))``: the remote shell splits
  the string back into exactly ``argv``, so nothing reaches it unquoted;
- files are read and written over SFTP (seek + bounded reads for log tails, no
  ``cat`` of whole logs; new files get their mode in the OPEN request, before a
  byte is written, then are renamed into place);
- ``http_get`` opens a ``direct-tcpip`` channel from the login node, which can
  reach compute nodes that the laptop running hpclaunch cannot.

:meth:`SSHTransport.close` only releases a handle (``wait`` asks for a transport on
every poll); :func:`close_all` (also run at exit) really disconnects.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import posixpath
import secrets
import select
import shlex
import stat
import time
from collections.abc import Callable
from typing import Any, TypeVar

from hpclaunch.errors import UserError
from hpclaunch.remote.httpstream import get_over
from hpclaunch.remote.sshlogin import (
    Connection,
    SSHTarget,
    close_all,
    connections_opened,
    pooled,
)
from hpclaunch.remote.transport import FileStat, Result

__all__ = ["SSHTarget", "SSHTransport", "close_all", "connections_opened"]

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

# SFTP reads larger than one request are pipelined (readv) instead of one round trip each.
SFTP_CHUNK = 32768


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
        self._conn: Connection | None = None

    @classmethod
    def from_profile(cls, cluster: Any) -> SSHTransport:
        """The profile's ``host`` as ``~/.ssh/config`` resolves it (aliases, jump hosts)."""
        from hpclaunch.remote.sshconfig import target_for

        return cls(target_for(cluster))

    # -- connection ----------------------------------------------------------------
    @property
    def conn(self) -> Connection:
        """Connect on first use: ``submit --dry-run`` over SSH needs no network."""
        if self._conn is None or not self._conn.active:
            self._conn = pooled(self.target)
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
        try:
            return get_over(chan, host, port, path, headers, timeout, self.target.label)
        finally:
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
