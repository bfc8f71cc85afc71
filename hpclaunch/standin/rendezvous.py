"""The stand-in's distributed roles, played for real over TCP between nodes.

vLLM's own multi-node launch: ranks above 0 connect to ``--master-addr:--master-port`` (the
torch.distributed store), and the head goes on only when every rank has joined. Native DP:
headless engines connect to the head's ``--data-parallel-address:--data-parallel-rpc-port``.
The head keeps each connection open while it serves: a rank whose connection drops is a dead
worker, and the head fails as vLLM does (the engine dies). With the Ray backend the head asks
the real ``ray`` whether the cluster holds every GPU the layout needs, as vLLM's placement
group does. Wording of the failure lines follows torch/vLLM so hpclaunch's log rules match
what a real cluster prints; the join notices vLLM does not print are the stand-in's own and
say so (``[hpclaunch_standin]``, like its SIMULATED warning).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hpclaunch.standin.logwriter import Log


def join_timeout() -> float:
    """Seconds to wait for ranks (HPCLAUNCH_JOIN_TIMEOUT, the job script uses it too)."""
    try:
        return max(1.0, float(os.environ.get("HPCLAUNCH_JOIN_TIMEOUT", "") or 300))
    except ValueError:
        return 300.0


@dataclass
class Role:
    """Where this process sits: the head waits for ``expected`` peers; a worker connects."""

    kind: str  # "head", "worker" or "" (single node)
    address: str
    port: int
    rank: int
    expected: int  # peer connections the head waits for
    what: str  # "torch.distributed store" or "DP coordinator"


def role_of(args: dict[str, object]) -> Role:
    """The role from parsed ``vllm serve`` arguments (dest names)."""
    def num(dest: str, default: int) -> int:
        value = args.get(dest)
        return default if value in (None, "", "None") else int(str(value))

    nnodes, rank = num("nnodes", 1), num("node_rank", 0)
    if nnodes > 1:
        addr = str(args.get("master_addr") or "127.0.0.1")
        port = num("master_port", 29501)
        if rank > 0:
            return Role("worker", addr, port, rank, 0, "torch.distributed store")
        return Role("head", addr, port, 0, nnodes - 1, "torch.distributed store")
    dp, local = num("data_parallel_size", 1), num("data_parallel_size_local", 0)
    if dp > 1 and 0 < local < dp:
        addr = str(args.get("data_parallel_address") or "127.0.0.1")
        port = num("data_parallel_rpc_port", 29550)
        start = num("data_parallel_start_rank", 0)
        if args.get("headless"):
            return Role("worker", addr, port, start, 0, "DP coordinator")
        return Role("head", addr, port, 0, dp // local - 1, "DP coordinator")
    return Role("", "", 0, 0, 0, "")


class Rendezvous:
    """The head's listener (or a worker's connection) for one stand-in process."""

    def __init__(self, role: Role, log: Log, stopped: Callable[[], bool]) -> None:
        self.role = role
        self.log = log
        self.stopped = stopped
        self.peers: list[tuple[int, socket.socket]] = []
        self.lost = threading.Event()
        self.lost_rank: int | None = None
        self._listener: socket.socket | None = None

    def start(self) -> str | None:
        """Join the group; returns a failure line (already logged) or None."""
        r = self.role
        if r.kind == "head":
            return self._head()
        if r.kind == "worker":
            return self._worker()
        return None

    def _head(self) -> str | None:
        r, log = self.role, self.log
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((r.address, r.port))
        except OSError as exc:
            return self._fail(f"RuntimeError: The server socket has failed to listen on "
                              f"{r.address}:{r.port} ({exc})")
        sock.listen(64)
        sock.settimeout(0.2)
        self._listener = sock
        log.info("APIServer", "standin.py:4",
                 f"[hpclaunch_standin] [{r.what}] head listening on {r.address}:{r.port}, "
                 f"waiting for {r.expected} more rank(s)")
        deadline = time.monotonic() + join_timeout()
        while len(self.peers) < r.expected:
            if self.stopped():
                return "stopped"
            if time.monotonic() > deadline:
                joined = len(self.peers) + 1
                return self._fail(
                    f"torch.distributed.DistStoreError: Timed out after {join_timeout():.0f} "
                    f"seconds waiting for clients. {joined}/{r.expected + 1} clients joined. "
                    f"({r.what} on {r.address}:{r.port})")
            try:
                conn, peer = sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                line = conn.recv(64).decode(errors="replace").split()
                rank = int(line[1]) if len(line) == 2 and line[0] == "rank" else -1
            except (OSError, ValueError):
                rank = -1
            if rank < 0:
                conn.close()
                continue
            self.peers.append((rank, conn))
            log.info("APIServer", "standin.py:4",
                     f"[hpclaunch_standin] [{r.what}] rank {rank} joined from {peer[0]} "
                     f"({len(self.peers) + 1}/{r.expected + 1})")
        threading.Thread(target=self._watch, name="rendezvous", daemon=True).start()
        return None

    def _watch(self) -> None:
        """A peer whose connection ends (EOF or reset) is a worker that died."""
        while not self.stopped():
            for rank, conn in self.peers:
                conn.settimeout(0.2)
                try:
                    if conn.recv(1) == b"":
                        raise ConnectionResetError
                except TimeoutError:
                    continue
                except OSError:
                    self.lost_rank = rank
                    self.lost.set()
                    return

    def _worker(self) -> str | None:
        r, log = self.role, self.log
        deadline = time.monotonic() + join_timeout()
        last = ""
        while not self.stopped():
            try:
                conn = socket.create_connection((r.address, r.port), timeout=2)
            except OSError as exc:
                last = str(exc)
                if time.monotonic() > deadline:
                    return self._fail(
                        f"torch.distributed.DistNetworkError: The client socket has timed out "
                        f"after {join_timeout():.0f}s while trying to connect to "
                        f"({r.address}, {r.port}) [{r.what}]: {last}")
                time.sleep(0.5)
                continue
            conn.sendall(f"rank {r.rank}\n".encode())
            self.peers.append((0, conn))
            log.info("APIServer", "standin.py:4",
                     f"[hpclaunch_standin] [{r.what}] rank {r.rank} connected to head "
                     f"{r.address}:{r.port}")
            threading.Thread(target=self._watch, name="rendezvous", daemon=True).start()
            return None
        return "stopped"

    def _fail(self, line: str) -> str:
        self.log.error("APIServer", "parallel_state.py:1040", line)
        return line

    def close(self) -> None:
        for _, conn in self.peers:
            conn.close()
        if self._listener is not None:
            self._listener.close()


def ray_holds(gpus: int, log: Log, stopped: Callable[[], bool]) -> str | None:
    """Ask the real Ray (RAY_ADDRESS) for ``gpus`` GPUs before going on, as vLLM's placement
    group does; a failure line (logged) when it never has them within the join timeout."""
    try:
        import ray
    except ImportError:
        line = ("ModuleNotFoundError: No module named 'ray' (--distributed-executor-backend "
                "ray needs it: pip install 'hpclaunch[ray]')")
        log.error("APIServer", "standin.py:5", f"[hpclaunch_standin] {line}")
        return line
    address = os.environ.get("RAY_ADDRESS") or "auto"
    import logging

    ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    deadline = time.monotonic() + join_timeout()
    nodes, have = 0, 0.0
    try:
        while not stopped():
            nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
            have = float(ray.cluster_resources().get("GPU", 0))
            if have >= gpus:
                log.info("APIServer", "standin.py:5",
                         f"[hpclaunch_standin] Ray cluster at {address}: {nodes} nodes, "
                         f"{have:g} GPUs; placement group of {gpus} GPU bundles created")
                return None
            if time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        ray.shutdown()
    if stopped():
        return "stopped"
    line = (f"ValueError: The number of required GPUs exceeds the total number of available "
            f"GPUs in the placement group: {gpus} needed, Ray at {address} has {have:g} on "
            f"{nodes} node(s)")
    log.error("APIServer", "ray_utils.py:328", line)
    return line
