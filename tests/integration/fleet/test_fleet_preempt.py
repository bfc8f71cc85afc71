"""Preemption of a fleet replica: the whole job is told to go at once, vLLM included.

A scheduler that preempts (or cancels) a job signals every process of it, not only the
batch shell. A replica must still leave the router first and let in-flight requests
finish: its server runs in a session of its own, so only the job script's trap stops it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.conftest import HPC
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
