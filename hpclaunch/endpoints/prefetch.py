"""Weights for compute nodes without internet: fetch them on the login node into the
cluster's shared Hugging Face cache, and check they are there before a job queues.

``hpclaunch prefetch MODEL`` runs huggingface_hub's ``snapshot_download`` where the cache
is: in a child Python on this machine for a local cluster (its progress bar on the
terminal), or with the profile's ``python`` on the login node over SSH. The same small
script runs in both places, so a gated model or a missing package reads the same. The
token travels on stdin, never on a command line.

Before an ``offline: true`` job is queued, the model must be in ``<hf-home>/hub``:
huggingface_hub's own cache scan here, a directory listing over SSH there; a job that
would fail after its queue wait with vLLM's "We couldn't connect to the Hub" is refused
with the command that fixes it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from typing import TYPE_CHECKING

from hpclaunch.errors import UserError

if TYPE_CHECKING:
    from hpclaunch.config import ClusterProfile
    from hpclaunch.remote.transport import Transport

DEFAULT_CACHE = "~/.cache/huggingface/hub"
# Hours a download may take over SSH before hpclaunch stops waiting for it.
REMOTE_TIMEOUT_S = 6 * 3600.0
GATED, NOT_FOUND, NO_PACKAGE = 4, 5, 3

# Runs on whichever machine holds the cache: argv MODEL CACHE_DIR, the token on stdin.
FETCH_SCRIPT = r"""
import sys
try:
    from huggingface_hub import snapshot_download
except ImportError:
    sys.exit(3)
try:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
except ImportError:
    from huggingface_hub.utils import GatedRepoError, RepositoryNotFoundError
token = sys.stdin.read().strip() or None
try:
    path = snapshot_download(sys.argv[1], cache_dir=sys.argv[2] or None, token=token)
except GatedRepoError:
    sys.exit(4)
except RepositoryNotFoundError:
    sys.exit(5)
except Exception as exc:
    print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    sys.exit(1)
print(path)
"""


def cache_dir(cluster: ClusterProfile) -> str:
    """Where the cluster's jobs look for weights (huggingface_hub's ``$HF_HOME/hub``)."""
    return f"{cluster.hf_home.rstrip('/')}/hub" if cluster.hf_home else DEFAULT_CACHE


def is_hub_id(model_id: str) -> bool:
    """``org/name`` on the Hub, not a local path (which no cache holds)."""
    return model_id.count("/") == 1 and not model_id.startswith((".", "/", "~")) \
        and not os.path.exists(model_id)


def fetch_command(model_id: str, cluster: ClusterProfile) -> str:
    where = f" --cluster {shlex.quote(cluster.name)}" if cluster.name != "local" else ""
    return f"hpclaunch prefetch {shlex.quote(model_id)}{where}"


def prefetch(model_id: str, cluster: ClusterProfile, transport: Transport) -> str:
    """Download ``model_id`` into the cluster's cache; returns the snapshot's path."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or ""
    cache = cache_dir(cluster)
    if cluster.host is None:
        cache = os.path.expanduser(cache)
        proc = subprocess.run([sys.executable, "-c", FETCH_SCRIPT, model_id, cache],
                              input=token, stdout=subprocess.PIPE, stderr=None, text=True,
                              check=False)
        code, out = proc.returncode, proc.stdout
    else:
        # The Hub this machine uses is the one the login node should use (a mirror).
        env = [f"{k}={os.environ[k]}" for k in ("HF_ENDPOINT",) if os.environ.get(k)]
        argv = ["env", *env, cluster.python, "-c", FETCH_SCRIPT, model_id,
                transport.expanduser(cache)]
        code, out = _run_showing_progress(transport, argv, token)
    where = "this machine" if cluster.host is None else f"login node {cluster.host}"
    if code == GATED:
        raise UserError(f"{model_id} is gated on the Hugging Face Hub: accept its terms on "
                        f"its model page, then set HF_TOKEN to a token of that account and "
                        f"run {fetch_command(model_id, cluster)} again")
    if code == NOT_FOUND:
        raise UserError(f"{model_id}: no such model on the Hub (or it is private: set "
                        "HF_TOKEN); check the id")
    if code == NO_PACKAGE:
        raise UserError(f"huggingface_hub is not installed for {cluster.python} on {where}: "
                        f"pip install huggingface_hub there, or set python: in the profile")
    if code != 0:
        reason = (out.strip().splitlines() or ["no output"])[-1]
        reason = reason.removeprefix("error: ")
        raise UserError(f"downloading {model_id} on {where} failed ({reason})")
    return out.strip().splitlines()[-1] if out.strip() else cache


def _run_showing_progress(transport: Transport, argv: list[str], stdin: str) -> tuple[int, str]:
    """Run ``argv`` on the login node with its stderr (huggingface_hub's progress bar) shown
    here as it arrives; returns the exit status and stdout. A transport without a live SSH
    session runs it to the end and shows stderr then."""
    import select
    import time

    conn = getattr(transport, "conn", None)
    session = conn.client.get_transport() if conn is not None else None
    if session is None:
        result = transport.run(argv, input=stdin, timeout=REMOTE_TIMEOUT_S)
        sys.stderr.write(result.stderr)
        return result.returncode, result.stdout
    chan = session.open_session(timeout=30)
    try:
        chan.exec_command(shlex.join(argv))
        chan.sendall(stdin.encode())
        chan.shutdown_write()
        out: list[bytes] = []
        deadline = time.monotonic() + REMOTE_TIMEOUT_S
        while time.monotonic() < deadline:
            if chan.recv_stderr_ready():
                sys.stderr.write(chan.recv_stderr(65536).decode(errors="replace"))
                sys.stderr.flush()
            elif chan.recv_ready():
                out.append(chan.recv(65536))
            elif chan.exit_status_ready():
                return chan.recv_exit_status(), b"".join(out).decode(errors="replace")
            else:
                select.select([chan], [], [], 1.0)
        raise UserError(f"the download on the login node did not finish within "
                        f"{REMOTE_TIMEOUT_S / 3600:.0f} h")
    finally:
        chan.close()


def in_cache(model_id: str, cluster: ClusterProfile, transport: Transport) -> bool:
    """True when the cache holds at least one snapshot of ``model_id``."""
    cache = cache_dir(cluster)
    if cluster.host is None:
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound

        try:
            info = scan_cache_dir(os.path.expanduser(cache))
        except CacheNotFound:
            return False
        return any(repo.repo_id == model_id and repo.repo_type == "model" and repo.revisions
                   for repo in info.repos)
    folder = f"{transport.expanduser(cache)}/models--{model_id.replace('/', '--')}/snapshots"
    result = transport.run(["ls", "-1", folder], timeout=30)
    return result.returncode == 0 and bool(result.stdout.split())


def offline_cache_problem(model_id: str, cluster: ClusterProfile,
                          transport: Transport) -> str | None:
    """The preflight line for a model an offline cluster's jobs could not load, or None."""
    if not cluster.offline or not is_hub_id(model_id) or in_cache(model_id, cluster, transport):
        return None
    return (f"{model_id} is not in {cache_dir(cluster)} and cluster {cluster.name}'s nodes are "
            f"offline: run {fetch_command(model_id, cluster)}")
