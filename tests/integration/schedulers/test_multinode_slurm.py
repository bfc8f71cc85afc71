"""Multi-node serving on the real two-node Slurm (scripts/services.sh start twonode).

Two Slurm nodes, n1 (10.200.0.11) and n2 (10.200.0.12), each its own network namespace with
its own hostname and loopback, run beside the single-node Slurm under their own SLURM_CONF.
The cluster profile reaches them through ``scheduler-env``. Every job runs the stand-in once
per node: ranks meet over the bridge by node IP, and with the Ray backend a real Ray cluster
spans both nodes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import HPC, job_file, require

pytestmark = pytest.mark.slurm

CONF = os.environ.get("HPCLAUNCH_TEST_TWONODE_SLURM_CONF", "/etc/slurm-twonode/slurm.conf")
START = "bash scripts/services.sh start twonode"
HEAD_IP, WORKER_IP = "10.200.0.11", "10.200.0.12"


def slurm(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False,
                          env={**os.environ, "SLURM_CONF": CONF}).stdout


def twonode_up() -> bool:
    if not Path(CONF).exists():
        return False
    states = slurm("sinfo", "-h", "-N", "-o", "%N %T").split("\n")
    return sum(any(w in s for w in ("idle", "mixed", "alloc", "completing")) for s in states) == 2


@pytest.fixture
def twonode(hpc: HPC, tmp_path: Path) -> HPC:
    require(twonode_up(), "the real two-node Slurm", START)
    results = tmp_path / "results"  # one filesystem: both "nodes" see it
    hpc.config_dir.mkdir(parents=True, exist_ok=True)
    (hpc.config_dir / "clusters.yaml").write_text(
        "default: twonode\n"
        "clusters:\n"
        "  twonode:\n"
        "    scheduler: slurm\n"
        "    partition: debug\n"
        '    time-limit: "00:10:00"\n'
        "    gpus-per-node: 4\n"
        "    simulate: true\n"
        f"    results-dir: {results}\n"
        "    scheduler-env:\n"
        f"      SLURM_CONF: {CONF}\n"
    )
    hpc.scheduler_env = {"SLURM_CONF": CONF}
    return hpc


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def processes_of(name: str) -> list[str]:
    """Processes on either node serving endpoint ``name`` (the namespaces share one pid space)."""
    out = subprocess.run(["pgrep", "-af", f"served-model-name {name} "], capture_output=True,
                         text=True, check=False).stdout
    return [ln for ln in out.splitlines() if "pgrep" not in ln]


def stop_leaves_nothing(hpc: HPC, name: str) -> None:
    assert processes_of(name), "the test should see the servers before stopping them"
    assert "ENDED" in hpc("stop", name).stdout
    deadline = time.monotonic() + 20
    while processes_of(name):
        assert time.monotonic() < deadline, processes_of(name)
        time.sleep(0.3)


def status_until(hpc: HPC, name: str, states: set[str], timeout: float, reason: str = ""
                 ) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        data = hpc("status", name, "--json", ok=None).json()
        assert isinstance(data, dict)
        if data["state"] in states or (reason and reason in data["reason"]) \
                or time.monotonic() > deadline:
            return data
        time.sleep(0.5)


def test_tp4pp2_on_two_nodes_with_vllms_own_launch(twonode: HPC) -> None:
    hpc, name = twonode, unique("tp4pp2")
    hpc("submit", "Llama-3.1-70B-Instruct", "--preset", "tp4pp2-2nodes", "--name", name)
    rec = hpc.registry()[name]
    assert re.search(r"NumNodes=2\b", slurm("scontrol", "show", "job", rec["job_id"]))
    assert "READY" in hpc("wait", name, "--timeout", "60").stdout
    rec = hpc.registry()[name]
    assert rec["host"] == HEAD_IP  # the head's node IP, never 127.0.0.1
    head_log = Path(rec["log_path"]).read_text()
    assert f"rank 1 joined from {WORKER_IP} (2/2)" in head_log
    worker_log = hpc("logs", name, "--node", "1", "-n", "200").stdout
    assert f"headless multiproc executor, with head node address {HEAD_IP}" in worker_log
    assert hpc("chat", name, "hello across nodes").stdout.strip()
    stats = hpc("stats", name).stdout
    assert "READY" in stats and re.search(r"^000 ", stats, re.M)
    stop_leaves_nothing(hpc, name)


def test_dp4_across_two_nodes_reaches_the_head_by_ip_and_logs_every_engine(twonode: HPC
                                                                          ) -> None:
    hpc, name = twonode, unique("dp4")
    hpc("submit", "Qwen3-0.6B", "--preset", "dp4-2nodes", "--name", name)
    hpc("wait", name, "--timeout", "60")
    rec = hpc.registry()[name]
    for i in range(8):
        hpc("chat", name, f"request {i}")
    deadline = time.monotonic() + 15
    engines: set[str] = set()
    while len(engines) < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
        engines = set(re.findall(r"Engine (\d{3}): Avg prompt", Path(rec["log_path"]).read_text()))
    assert engines == {"000", "001", "002", "003"}
    log = Path(rec["log_path"]).read_text()
    assert f"[DP coordinator] rank 2 joined from {WORKER_IP}" in log
    worker = hpc("logs", name, "--node", "1", "-n", "400").stdout
    assert f"[DP coordinator] rank 2 connected to head {HEAD_IP}:" in worker
    assert "Launching 2 data parallel engine(s) in headless mode" in worker
    stats = hpc("stats", name).stdout
    assert all(re.search(rf"^{e} ", stats, re.M) for e in ("000", "001", "002", "003")), stats
    stop_leaves_nothing(hpc, name)


def test_worker_step_killed_fails_the_endpoint_naming_the_node(twonode: HPC) -> None:
    hpc, name = twonode, unique("kill")
    hpc("submit", "Qwen3-0.6B", "--preset", "tp4pp2-2nodes", "--set", "tp=2", "--name", name)
    hpc("wait", name, "--timeout", "60")
    job = hpc.registry()[name]["job_id"]
    steps = [ln.split() for ln in slurm("squeue", "-h", "-s", "-j", job, "-o", "%i %N").split("\n")
             if ln.strip()]
    worker_step = next(step for step, node in steps if node == "n2")
    slurm("scancel", worker_step)
    data = status_until(hpc, name, {"FAILED", "ENDED"}, 30)
    assert data["state"] == "FAILED", data
    assert "node 1 (n2) exited" in data["reason"], data
    deadline = time.monotonic() + 20
    while processes_of(name):
        assert time.monotonic() < deadline, processes_of(name)
        time.sleep(0.3)


def test_a_rank_that_never_joins_fails_the_endpoint_with_that_cause(twonode: HPC) -> None:
    hpc, name = twonode, unique("nojoin")
    # Node 1's process is frozen before it can connect: the head waits, then gives up.
    hpc("submit", "Qwen3-0.6B", "--preset", "tp4pp2-2nodes", "--set", "tp=2", "--name", name,
        "--env", "HPCLAUNCH_JOIN_TIMEOUT=6")
    frozen = freeze_worker(name, "--node-rank 1")
    try:
        data = status_until(hpc, name, {"FAILED", "READY", "ENDED"}, 40)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert data["state"] == "FAILED", data
    assert "only 1 of 2 nodes joined the head's torch.distributed store" in data["reason"], data


def freeze_worker(name: str, marker: str, timeout: float = 20) -> list[int]:
    """SIGSTOP the processes of ``name`` whose command line has ``marker`` (this test's own
    job), as soon as they appear."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-f", "--", marker], capture_output=True, text=True,
                             check=False).stdout.split()
        pids = [int(p) for p in out if name in Path(f"/proc/{p}/cmdline").read_bytes().decode(
            errors="replace") or _env_has(int(p), name)]
        if pids:
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            return pids
        time.sleep(0.05)
    raise AssertionError(f"no process with {marker!r} for {name} appeared")


def _env_has(pid: int, text: str) -> bool:
    try:
        return text.encode() in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def test_ray_backend_holds_both_nodes_before_ready(twonode: HPC) -> None:
    hpc, name = twonode, unique("ray")
    hpc("submit", "Llama-3.1-70B-Instruct", "--preset", "tp4pp2-2nodes",
        "--set", "distributed-executor-backend=ray", "--name", name)
    assert "READY" in hpc("wait", name, "--timeout", "150").stdout
    rec = hpc.registry()[name]
    log = Path(rec["log_path"]).read_text()
    assert re.search(r"Ray cluster at 10\.200\.0\.11:\d+: 2 nodes, 8 GPUs", log), log[-2000:]
    err = next(Path(rec["results_dir"]).glob(f"hpclaunch_{name}.*.err")).read_text()
    assert "Ray holds 2 nodes and 8 GPUs" in err
    assert "ray start --head" not in hpc("logs", name, "--node", "1").stdout
    assert "Ray runtime started" in hpc("logs", name, "--node", "1", "-n", "200").stdout
    assert hpc("chat", name, "hi ray").stdout.strip()
    stop_leaves_nothing(hpc, name)


def test_ray_that_never_sees_node_two_fails_after_the_timeout_with_the_reason(twonode: HPC
                                                                              ) -> None:
    hpc, name = twonode, unique("raymiss")
    hpc("submit", "Qwen3-0.6B", "--preset", "tp4pp2-2nodes", "--set", "tp=2",
        "--set", "distributed-executor-backend=ray", "--name", name,
        "--env", "HPCLAUNCH_JOIN_TIMEOUT=25")
    # Node 2's `ray start` is frozen before it registers: the head never sees it.
    frozen = freeze_worker(name, "ray start --address=")
    try:
        waiting = status_until(hpc, name, {"FAILED", "READY", "ENDED"}, 60,
                               reason="it sees 1 nodes and 2 GPUs")
        assert "multi-node: waiting for Ray to hold 2 nodes and 4 GPUs" in waiting["reason"]
        data = status_until(hpc, name, {"FAILED", "READY", "ENDED"}, 120)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert data["state"] == "FAILED", data
    assert re.search(r"Ray sees 1 of 2 nodes and 2 of 4 GPUs after 25 s", data["reason"]), data
    assert not job_file(hpc.registry()[name], "endpoint.json").exists()


def test_the_two_node_slurm_runs_beside_the_single_node_one(twonode: HPC) -> None:
    nodes = slurm("sinfo", "-h", "-N", "-o", "%N").split()
    assert sorted(set(nodes)) == ["n1", "n2"]
    single = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True,
                            check=False, timeout=30, env={k: v for k, v in os.environ.items()
                                                          if k != "SLURM_CONF"}).stdout.split()
    assert single and not set(single) & {"n1", "n2"}
    # One task per node, each with its own hostname and address; the head's loopback is its own.
    out = slurm("srun", "-N2", "-n2", "--overlap", "-t", "1", "bash", "-c",
                'echo "$(hostname) $(hostname -I)"')
    assert sorted(out.split()) == sorted(["n1", "10.200.0.11", "n2", "10.200.0.12"]), out
