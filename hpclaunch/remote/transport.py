"""Run commands and touch files where the scheduler lives.

Scheduler and status code never call ``subprocess`` or ``open`` on job files
directly: they go through a :class:`Transport`, so the same code drives this
machine (:class:`LocalTransport`) or a login node over SSH (``hpclaunch.remote.ssh``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hpclaunch.errors import UserError


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class FileStat:
    size: int
    mtime: float


class Transport(Protocol):
    """What schedulers, the registry sync and log reading need from a machine."""

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 60) -> Result:
        """Run ``argv`` (never through a shell string) and capture its output."""
        ...

    def stat(self, path: str) -> FileStat | None: ...

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        """At most ``length`` bytes from ``offset``: how logs are tail-read."""
        ...

    def read_text(self, path: str) -> str | None: ...

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Create or replace ``path`` with ``mode`` set before any byte is written."""
        ...

    def remove(self, path: str) -> None: ...

    def makedirs(self, path: str) -> None: ...

    def expanduser(self, path: str) -> str: ...

    def http_get(self, host: str, port: int, path: str, headers: dict[str, str] | None = None,
                 timeout: float = 2.0) -> tuple[int, bytes]:
        """GET from a node's port as seen from where the transport runs.

        Returns ``(0, b"")`` when nothing answers; a login node can reach compute
        nodes that the laptop running hpclaunch cannot.
        """
        ...

    def close(self) -> None: ...


def _clear_signal_mask() -> None:
    """Children start with no signal blocked: a submit holds SIGTERM/SIGINT while it
    queues a job (launch.signals_deferred), and a local job started then would inherit
    that mask and never see the SIGTERM that ``stop`` (or a fleet's leave) sends."""
    import signal

    signal.pthread_sigmask(signal.SIG_SETMASK, [])


class LocalTransport:
    """This machine."""

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 60) -> Result:
        try:
            proc = subprocess.run(argv, input=input, capture_output=True, text=True,
                                  timeout=timeout, check=False, preexec_fn=_clear_signal_mask)
        except FileNotFoundError as exc:
            raise UserError(f"{argv[0]}: command not found on this machine") from exc
        except subprocess.TimeoutExpired as exc:
            raise UserError(f"{argv[0]} did not answer within {timeout:.0f} s") from exc
        return Result(argv, proc.returncode, proc.stdout, proc.stderr)

    def stat(self, path: str) -> FileStat | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return FileStat(st.st_size, st.st_mtime)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                return fh.read(length)
        except OSError:
            return b""

    def read_text(self, path: str) -> str | None:
        try:
            return Path(path).read_text(errors="replace")
        except OSError:
            return None

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        tmp = f"{path}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def expanduser(self, path: str) -> str:
        return os.path.abspath(os.path.expanduser(path))

    def http_get(self, host: str, port: int, path: str, headers: dict[str, str] | None = None,
                 timeout: float = 2.0) -> tuple[int, bytes]:
        import http.client

        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            return 0, b""
        finally:
            conn.close()

    def close(self) -> None:
        pass
