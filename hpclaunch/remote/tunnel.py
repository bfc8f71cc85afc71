"""A local port forwarded to an endpoint's node through its login node (``ssh -L``).

With ``transport: openssh`` the master connection does it (:class:`ForwardedTunnel`,
``ssh -O forward -L``); with the built-in SSH, :class:`Tunnel` does it as follows.

From a laptop, the URL in the registry names a compute node that only the login
node can reach. :class:`Tunnel` listens on ``127.0.0.1:<local port>`` and relays
each accepted connection over its own ``direct-tcpip`` channel of the (pooled)
SSH connection to the login node, which connects to ``node:port``.

While a tunnel runs it keeps ``<state_dir>/tunnels/<name>.json`` = ``{pid,
local_port, url}`` so other hpclaunch calls on this machine can find it
(:func:`tunnel_url`); it removes the file when it stops. A file left by a process
that died without cleaning up (``kill -9``) is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpclaunch.config import state_dir
from hpclaunch.errors import UserError

if TYPE_CHECKING:
    from hpclaunch.remote.openssh import OpenSSHTarget
    from hpclaunch.remote.ssh import SSHTransport

BIND_HOST = "127.0.0.1"
ACCEPT_POLL_S = 0.5
CHANNEL_OPEN_TIMEOUT_S = 10.0


def tunnels_dir() -> Path:
    return state_dir() / "tunnels"


def state_file(name: str) -> Path:
    return tunnels_dir() / f"{name}.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def read_state(name: str) -> dict[str, Any] | None:
    """The running tunnel's ``{pid, local_port, url}``; None when there is none."""
    try:
        data = json.loads(state_file(name).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        pid = int(data.get("pid", 0))
    except (TypeError, ValueError):
        return None
    if pid <= 0 or not _pid_alive(pid) or not data.get("url"):
        return None
    return data


def tunnel_url(name: str) -> str | None:
    """Local base URL (with ``/v1``) of a running tunnel to ``name``, if any."""
    data = read_state(name)
    return str(data["url"]) if data else None


def _write_state(name: str, data: dict[str, Any]) -> None:
    directory = tunnels_dir()
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, state_file(name))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove_state(name: str) -> None:
    """Remove the state file only if it is still this process's."""
    path = state_file(name)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(data, dict) and data.get("pid") == os.getpid():
        with contextlib.suppress(OSError):
            path.unlink()


def _pump(sock: socket.socket, chan: Any, stop: threading.Event) -> None:
    """Copy bytes both ways until both sides have sent EOF (half-close is passed on)."""
    sock_open = chan_open = True
    try:
        while (sock_open or chan_open) and not stop.is_set():
            watch = [x for x, is_open in ((sock, sock_open), (chan, chan_open)) if is_open]
            ready, _, _ = select.select(watch, [], [], 1.0)
            if sock in ready:
                data = sock.recv(65536)
                if data:
                    chan.sendall(data)
                else:
                    sock_open = False
                    chan.shutdown_write()
            if chan in ready:
                data = chan.recv(65536)
                if data:
                    sock.sendall(data)
                else:
                    chan_open = False
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
    except (OSError, EOFError):
        pass
    finally:
        with contextlib.suppress(Exception):
            chan.close()
        with contextlib.suppress(OSError):
            sock.close()


class Tunnel:
    """Forwards ``127.0.0.1:local_port`` to ``remote_host:remote_port`` via a login node.

    Use :meth:`serve_forever` in the foreground (the CLI) or :meth:`start` for a
    background thread (a notebook); :meth:`close` stops it and removes its state file.
    """

    def __init__(self, transport: SSHTransport, remote_host: str, remote_port: int, *,
                 local_port: int = 0, name: str | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.transport = transport
        self.remote_host = remote_host
        self.remote_port = remote_port
        self.name = name
        self.on_error = on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind((BIND_HOST, local_port))
        except OSError as exc:
            self.listener.close()
            raise UserError(f"cannot listen on {BIND_HOST}:{local_port} ({exc.strerror}); "
                            "pick another --local-port or leave it out") from exc
        self.listener.listen(64)
        self.local_port: int = self.listener.getsockname()[1]
        self.url = f"http://{BIND_HOST}:{self.local_port}/v1"
        if name:
            _write_state(name, {"pid": os.getpid(), "local_port": self.local_port,
                                "url": self.url, "remote": f"{remote_host}:{remote_port}"})

    @property
    def via(self) -> str:
        return self.transport.target.label

    def __enter__(self) -> Tunnel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Tunnel:
        """Serve in a daemon thread and return at once."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True,
                                        name=f"hpclaunch-tunnel-{self.local_port}")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Accept until :meth:`close`; each connection gets a channel and a pump thread."""
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.listener], [], [], ACCEPT_POLL_S)
                if not ready:
                    continue
                conn, peer = self.listener.accept()
            except (OSError, ValueError):
                if self._stop.is_set():
                    return
                raise
            threading.Thread(target=self._handle, args=(conn, peer), daemon=True).start()

    def _handle(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        try:
            chan = self.transport.open_channel(self.remote_host, self.remote_port,
                                               origin=(peer[0], peer[1]),
                                               timeout=CHANNEL_OPEN_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - report, drop this connection, keep serving
            if self.on_error:
                self.on_error(f"cannot reach {self.remote_host}:{self.remote_port} from the "
                              f"login node ({exc})")
            with contextlib.suppress(OSError):
                conn.close()
            return
        _pump(conn, chan, self._stop)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * ACCEPT_POLL_S + 1)
        if self.name:
            _remove_state(self.name)


class ForwardedTunnel:
    """``ssh -O forward -L`` on an ``hpclaunch login`` master: the master process listens
    on ``127.0.0.1:local_port``; :meth:`close` cancels the forward.

    The same interface as :class:`Tunnel`. If this process is killed without
    :meth:`close`, the forward stays until ``hpclaunch logout``.
    """

    def __init__(self, target: OpenSSHTarget, remote_host: str, remote_port: int, *,
                 local_port: int = 0, name: str | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.target = target
        self.remote_host = remote_host
        self.remote_port = remote_port
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.local_port = local_port or _free_port()
        host = f"[{remote_host}]" if ":" in remote_host else remote_host
        self._spec = f"{BIND_HOST}:{self.local_port}:{host}:{remote_port}"
        self._control("forward")
        self.url = f"http://{BIND_HOST}:{self.local_port}/v1"
        if name:
            _write_state(name, {"pid": os.getpid(), "local_port": self.local_port,
                                "url": self.url, "remote": f"{remote_host}:{remote_port}"})

    @property
    def via(self) -> str:
        return self.target.label

    def _control(self, op: str) -> None:
        import subprocess

        argv = [*self.target.base_argv(), "-O", op, "-L", self._spec, "--",
                self.target.destination]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode == 0 or op == "cancel":
            return
        if not self.target.control_path.exists():
            raise UserError(f"no SSH connection to cluster {self.target.cluster} is open (or "
                            f"it expired); run hpclaunch login {self.target.cluster}")
        why = " ".join(proc.stderr.split()) or f"ssh exited {proc.returncode}"
        raise UserError(f"cannot forward {BIND_HOST}:{self.local_port} through the SSH master "
                        f"({why}); pick another --local-port or leave it out")

    def __enter__(self) -> ForwardedTunnel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> ForwardedTunnel:
        """The master already forwards; a thread only keeps the same interface."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Block until :meth:`close` (the master does the forwarding)."""
        while not self._stop.wait(ACCEPT_POLL_S):
            pass

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        with contextlib.suppress(Exception):
            self._control("cancel")
        if self.name:
            _remove_state(self.name)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((BIND_HOST, 0))
        return int(probe.getsockname()[1])
