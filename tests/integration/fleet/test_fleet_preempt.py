"""Preemption of a fleet replica: the whole job is told to go at once, vLLM included.

A scheduler that preempts (or cancels) a job signals every process of it, not only the
batch shell. A replica must still leave the router first and let in-flight requests
finish: its server runs in a session of its own, so only the job script's trap stops it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import HPC, PARTITION, require
from tests.integration.fleet.test_fleet_local import (
    Load,
    fleet_row,
    post_chat,
    until,
    workers,
)

MODEL = "Qwen3-0.6B"
# Not test_fleet_local's router port: a router stopped there may still hold it.
ROUTER_PORT = 31900 + os.getpid() % 300


def profile(hpc: HPC) -> None:
    hpc.config_dir.mkdir(parents=True, exist_ok=True)
    (hpc.config_dir / "clusters.yaml").write_text(
        "clusters:\n  local:\n    scheduler: local\n    bind-host: 127.0.0.1\n"
        "    url-host: 127.0.0.1\n    time-limit: ''\n"
        f"    router:\n      port: {ROUTER_PORT}\n      health-check-interval: 1\n")


def test_sigterm_to_the_whole_job_leaves_the_router_and_drains_before_the_server_stops(
        hpc: HPC):
    """What Slurm's preemption and the local scheduler's stop do: SIGTERM to the job's
    process group. 0 failed requests under load; the agent logs its leave first."""
    profile(hpc)
    hpc("submit", MODEL, "--preset", "single-gpu", "--simulate", "--name", "fp",
        "--replicas", "2", "--env", "HPCLAUNCH_STANDIN_TOKEN_DELAY=0.3")
    hpc("wait", "fp", "--timeout", "60")
    port = hpc.registry()["fp"]["port"]
    until(lambda: len(workers(port)) == 2, 30, "both replicas in the router")
    reg = hpc.registry()
    fleet, r1 = reg["fp"], reg["fp.r1"]
    url = f"http://127.0.0.1:{port}/v1"
    load = Load(url, fleet["api_key"], "fp", count=30, rate=8)
    load.start()
    time.sleep(1.0)
    os.killpg(int(r1["job_id"]), signal.SIGTERM)  # every process of the job, vLLM's too
    gone = f"http://127.0.0.1:{r1['port']}"
    until(lambda: gone not in {w["url"] for w in workers(port)}, 10, "r1 to leave")
    load.join(timeout=60)
    print(f"{len(load.codes)} requests across a job-wide SIGTERM, {load.failed} failed")
    assert len(load.codes) == 30 and load.failed == 0, load.codes
    until(lambda: hpc("status", "fp.r1", "--json", ok=None).json()["state"] == "ENDED", 30,
          "r1 ENDED")
    agent_log = next(Path(r1["results_dir"]).glob(f"fp.r1.{r1['submission']}.agent.log"))
    lines = agent_log.read_text().splitlines()
    # Left the router first, then drained while the server still served.
    left = next(i for i, line in enumerate(lines) if "left http://127.0.0.1" in line)
    assert "drained in" in lines[left + 1], lines
    assert "READY 1/2" in fleet_row(hpc, "fp")
    assert post_chat(url, fleet["api_key"], "fp") == 200
    hpc("stop", "fp")


# -- the real single-node Slurm with its preemptible partition ------------------------------

SCAVENGER = os.environ.get("HPCLAUNCH_TEST_SLURM_SCAVENGER_PARTITION", "")
URGENT = os.environ.get("HPCLAUNCH_TEST_SLURM_URGENT_PARTITION", "")


def free_gpus() -> int:
    """GPUs of the node no job holds now (other tests share this Slurm)."""
    out = subprocess.run(["scontrol", "show", "node", "-d", "-o"], capture_output=True,
                         text=True, check=True).stdout
    total = sum(int(n) for n in re.findall(r"\bGres=gpu:(?:[^:\s]+:)?(\d+)", out))
    used = sum(int(n) for n in re.findall(r"\bGresUsed=gpu:(?:[^:(\s]+:)?(\d+)", out))
    return total - used


@pytest.mark.slurm
def test_a_replica_preempted_on_slurm_leaves_the_router_first_and_is_replaced(
        slurm_hpc: HPC):
    """A higher-priority job takes one replica's GPU: during the grace time the replica's
    agent sees PreemptTime, leaves the router, drains and stops; nothing fails."""
    partitions = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True,
                                check=False).stdout.split()
    require(bool(SCAVENGER and URGENT and SCAVENGER in partitions),
            "the preemptible Slurm partitions (scavenger/urgent)",
            "a fresh `bash scripts/services.sh start slurm` with the current slurm.conf.in")
    hpc = slurm_hpc
    with (hpc.config_dir / "clusters.yaml").open("a") as fh:
        fh.write(f"    router:\n      partition: {PARTITION}\n      time-limit: '00:10:00'\n"
                 "      health-check-interval: 1\n")
    hpc("submit", MODEL, "--preset", "single-gpu", "--name", "pf", "--replicas", "2",
        "--replicas-restart", "--set", f"partition={SCAVENGER}",
        "--env", "HPCLAUNCH_STANDIN_TOKEN_DELAY=0.3")
    hpc("wait", "pf", "--timeout", "90")
    until(lambda: "READY 2/2" in fleet_row(hpc, "pf"), 60, "both replicas READY")
    reg = hpc.registry()
    fleet = reg["pf"]
    load = Load(f"http://{fleet['host']}:{fleet['port']}/v1", fleet["api_key"], "pf",
                count=30, rate=4)
    load.start()
    time.sleep(1.0)
    # One GPU more than is free: Slurm preempts exactly one scavenger replica.
    urgent = subprocess.run(
        ["sbatch", "--parsable", "-p", URGENT, f"--gres=gpu:{free_gpus() + 1}", "-t", "2",
         "-o", "/dev/null", "--wrap", "sleep 30"],
        capture_output=True, text=True, check=True).stdout.strip()
    try:
        def preempted() -> str:
            for name in ("pf.r0", "pf.r1"):
                rec = reg[name]
                log = Path(rec["results_dir"]) / f"{name}.{rec['submission']}.agent.log"
                if log.exists() and "preempted by Slurm" in log.read_text():
                    return name
            return ""

        victim = until(preempted, 40, "a replica to see its preemption")
        load.join(timeout=90)
        print(f"{len(load.codes)} requests across a preemption of {victim}, "
              f"{load.failed} failed")
        assert len(load.codes) == 30 and load.failed == 0, load.codes
        rec = reg[victim]
        lines = (Path(rec["results_dir"]) / f"{victim}.{rec['submission']}.agent.log"
                 ).read_text().splitlines()
        told = next(i for i, line in enumerate(lines) if "leaving within the grace" in line)
        assert "left http://" in lines[told + 1] and "drained in" in lines[told + 2], lines
        until(lambda: "READY 1/2" in fleet_row(hpc, "pf"), 30, "the fleet to show 1 of 2")
        # The refresh queued a replacement (it waits for the urgent job's GPUs).
        until(lambda: "pf.r2" in hpc.registry(), 30, "a replacement replica")
        assert hpc.registry()["pf.r2"]["fleet"] == "pf"
        assert hpc.registry()[victim]["reason"].startswith("preempted by Slurm")
    finally:
        subprocess.run(["scancel", urgent], check=False)
        hpc("stop", "pf", ok=None)
