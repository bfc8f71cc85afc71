"""Commands, files and HTTP probes over an ``hpclaunch login`` master (``transport: openssh``).

Without SFTP, files are handled by small POSIX commands, each an argv joined with
:func:`shlex.join` so the remote shell splits it back unchanged:

- reads are bounded: ``tail -c +N | head -c L`` for log tails, never a whole log;
- writes go to a new temp file created under ``umask 077`` with ``set -C`` (O_EXCL),
  are chmod-ed to their mode, then renamed over the target, so a reader sees the old
  file or the new one and an API key is never readable by others;
- ``http_get`` runs ``ssh -W node:port`` through the master, with one end of a
  socket pair as its stdin/stdout; :mod:`http.client` speaks HTTP on the other end.

See :mod:`hpclaunch.remote.openssh` for the master itself.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import secrets
import shlex
import socket
import subprocess
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.remote.httpstream import get_over
from hpclaunch.remote.openssh import OpenSSHTarget
from hpclaunch.remote.transport import FileStat, Result

log = logging.getLogger(__name__)

_WRITE = ('umask 077; set -C; cat > "$1" && chmod "$3" "$1" && mv -f "$1" "$2" '
          '|| { rm -f "$1"; exit 1; }')
_READ_RANGE = 'tail -c +"$1" -- "$3" 2>/dev/null | head -c "$2"'


class OpenSSHTransport:
    """A login node reached through the cluster's master connection."""

    def __init__(self, target: OpenSSHTarget) -> None:
        self.target = target
        self._home: str | None = None

    @classmethod
    def from_profile(cls, cluster: Any) -> OpenSSHTransport:
        return cls(OpenSSHTarget.from_profile(cluster))

    # -- commands ------------------------------------------------------------------
    def _ssh(self, command: list[str], stdin: bytes | None, timeout: float) -> tuple[
            int, bytes, bytes]:
        missing = self.target.no_master()
        if missing is not None:
            raise missing
        argv = [*self.target.client_argv(), shlex.join(command)]
        try:
            proc = subprocess.run(argv, input=stdin if stdin is not None else b"",
                                  capture_output=True, timeout=timeout, check=False)
        except FileNotFoundError as exc:
            raise UserError("ssh: command not found on this machine (transport: openssh "
                            "needs the OpenSSH client)") from exc
        except subprocess.TimeoutExpired as exc:
            raise UserError(f"{command[0]} on cluster {self.target.cluster} did not answer "
                            f"within {timeout:.0f} s") from exc
        if proc.returncode == 255:
            stderr = proc.stderr.decode(errors="replace")
            missing = self.target.no_master(stderr)
            if missing is not None:
                raise missing
            if "mux_client" in stderr or "Control socket" in stderr:
                raise UserError(f"the SSH connection to cluster {self.target.cluster} broke "
                                f"({' '.join(stderr.split())}); run hpclaunch login "
                                f"{self.target.cluster} again")
        return proc.returncode, proc.stdout, proc.stderr

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 60) -> Result:
        """Run ``argv`` on the login node: the remote shell gets ``shlex.join(argv)``."""
        code, out, err = self._ssh(list(argv), input.encode() if input is not None else None,
                                   timeout)
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        if code == 127 and "not found" in stderr:
            raise UserError(f"{argv[0]}: command not found on cluster {self.target.cluster} "
                            "(is it on PATH for non-interactive ssh sessions?)")
        return Result(list(argv), code, stdout, stderr)

    # -- files ---------------------------------------------------------------------
    def stat(self, path: str) -> FileStat | None:
        code, out, _ = self._ssh(["stat", "-L", "-c", "%s %Y", "--", path], None, 60)
        try:
            size, mtime = out.split()
            return FileStat(int(size), float(mtime)) if code == 0 else None
        except ValueError:
            return None

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        _, out, _ = self._ssh(["sh", "-c", _READ_RANGE, "sh", str(offset + 1), str(length),
                               path], None, 120)
        return out

    def read_text(self, path: str) -> str | None:
        code, out, _ = self._ssh(["cat", "--", path], None, 120)
        return out.decode(errors="replace") if code == 0 else None

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Create or replace ``path`` (see the module docstring)."""
        tmp = f"{path}.tmp{secrets.token_hex(6)}"
        code, _, err = self._ssh(["sh", "-c", _WRITE, "sh", tmp, path, f"{mode:o}"], data, 120)
        if code != 0:
            why = " ".join(err.decode(errors="replace").split()) or f"exit {code}"
            raise UserError(f"cannot write {path} on cluster {self.target.cluster}: {why}")

    def remove(self, path: str) -> None:
        code, _, err = self._ssh(["rm", "-f", "--", path], None, 60)
        if code != 0:
            why = " ".join(err.decode(errors="replace").split())
            raise UserError(f"cannot remove {path} on cluster {self.target.cluster}: {why}")

    def makedirs(self, path: str) -> None:
        path = self.expanduser(path)
        code, _, err = self._ssh(["mkdir", "-p", "--", path], None, 60)
        if code != 0:
            why = " ".join(err.decode(errors="replace").split())
            raise UserError(f"cannot create {path} on cluster {self.target.cluster}: {why}")

    def expanduser(self, path: str) -> str:
        """``~`` and relative paths against the remote ``$HOME``."""
        if path.startswith("~") and not (path == "~" or path.startswith("~/")):
            raise UserError(f"{path}: only ~ (your own home) can be expanded on a login node; "
                            "write the absolute path")
        if path.startswith("/"):
            return posixpath.normpath(path)
        if self._home is None:
            result = self.run(["sh", "-c", 'printf %s "$HOME"'])
            if result.returncode != 0 or not result.stdout.startswith("/"):
                raise UserError(f"cannot find your home directory on cluster "
                                f"{self.target.cluster}; write absolute paths")
            self._home = result.stdout
        rest = path[2:] if path.startswith("~/") else ("" if path == "~" else path)
        return posixpath.normpath(posixpath.join(self._home, rest)) if rest else self._home

    # -- HTTP through the login node -----------------------------------------------------
    def http_get(self, host: str, port: int, path: str, headers: dict[str, str] | None = None,
                 timeout: float = 2.0) -> tuple[int, bytes]:
        """GET ``http://host:port/path`` as the login node sees it (``ssh -W``)."""
        missing = self.target.no_master()
        if missing is not None:
            raise missing
        ours, theirs = socket.socketpair()
        argv = self.target.client_argv("-W", f"[{host}]:{port}" if ":" in host
                                       else f"{host}:{port}")
        try:
            proc = subprocess.Popen(argv, stdin=theirs.fileno(), stdout=theirs.fileno(),
                                    stderr=subprocess.PIPE)
        except OSError as exc:
            ours.close()
            theirs.close()
            log.debug("ssh -W %s:%s failed to start: %r", host, port, exc)
            return 0, b""
        theirs.close()
        try:
            result = get_over(ours, host, port, path, headers, timeout, self.target.label)
        finally:
            ours.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if result == (0, b"") and proc.stderr is not None:
            missing = self.target.no_master(proc.stderr.read().decode(errors="replace"))
            if missing is not None:
                raise missing
        if proc.stderr is not None:
            proc.stderr.close()
        return result

    def close(self) -> None:
        """Nothing to release: the master outlives the call (``hpclaunch logout`` ends it)."""
