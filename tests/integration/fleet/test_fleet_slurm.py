"""A fleet on the real single-node Slurm: a router CPU job and stand-in replica jobs.

Small on purpose (other agents share this Slurm): two 1-GPU replicas and a 1-CPU router
job, all cancelled at the end.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.conftest import HPC, PARTITION
from tests.integration.fleet.test_fleet_local import Load, fleet_row, post_chat, until

pytestmark = pytest.mark.slurm


def scontrol(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                         text=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def test_two_replicas_on_slurm_answer_by_one_name_and_count_gpu_hours(slurm_hpc: HPC):
    hpc = slurm_hpc
    with (hpc.config_dir / "clusters.yaml").open("a") as fh:
        fh.write(f"    router:\n      partition: {PARTITION}\n      time-limit: '00:10:00'\n"
                 "      health-check-interval: 1\n")
    hpc("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--name", "sf", "--replicas", "2")
    hpc("wait", "sf", "--timeout", "90")
    until(lambda: "READY 2/2" in fleet_row(hpc, "sf"), 60, "both replicas READY")
    reg = hpc.registry()
    fleet, r0, r1 = reg["sf"], reg["sf.r0"], reg["sf.r1"]
    router_job = scontrol(fleet["job_id"])
    assert router_job["JobName"] == "hpcl-sf-router"
    assert "gpu" not in router_job.get("TresPerNode", "")  # the router holds no GPU
    assert scontrol(r0["job_id"])["TresPerNode"] == "gres:gpu:1"
    url, key = f"http://{fleet['host']}:{fleet['port']}/v1", fleet["api_key"]
    assert "You said" in hpc("chat", "sf", "hello").stdout
    assert post_chat(url, "", "sf") == 401 and post_chat(url, "nope", "sf") == 401

    load = Load(url, key, "sf", count=30, rate=6)
    load.start()
    time.sleep(1.0)
    subprocess.run(["scancel", "--signal=KILL", "--full", r1["job_id"]], check=True)
    load.join(timeout=60)
    print(f"{len(load.codes)} requests through a replica killed -9, {load.failed} failed")
    assert len(load.codes) == 30 and load.failed == 0, load.codes
    until(lambda: "READY 1/2" in fleet_row(hpc, "sf"), 30, "the fleet to show 1 of 2")

    hpc("stop", "sf")

    def finished() -> dict | None:
        hpc("endpoints", "--usage")  # asks Slurm for the real end times of what stop cancelled
        rec = hpc.registry()["sf.r0"]
        return rec if rec["finished"] else None

    r0 = until(finished, 30, "Slurm's EndTime of the cancelled replica")
    job = scontrol(r0["job_id"])
    start = time.mktime(time.strptime(job["StartTime"], "%Y-%m-%dT%H:%M:%S"))
    end = time.mktime(time.strptime(job["EndTime"], "%Y-%m-%dT%H:%M:%S"))
    assert (r0["started"], r0["finished"]) == (start, end)
    reg = hpc.registry()
    expected = sum(reg[n]["gpus"] * ((reg[n]["finished"] or reg[n]["ended"]) - reg[n]["started"])
                   for n in ("sf.r0", "sf.r1")) / 3600
    usage = hpc("endpoints", "--usage").stdout
    row = next(line for line in usage.splitlines() if line.startswith("sf "))
    assert float(row.split()[-1]) == pytest.approx(expected, abs=1e-3) and expected > 0

def test_walltime_relay_hands_over_under_load_with_no_failed_request(slurm_hpc: HPC):
    """A 1-minute limit (Slurm's least): successors queued by dependency take over."""
    hpc = slurm_hpc
    with (hpc.config_dir / "clusters.yaml").open("a") as fh:
        fh.write(f"    router:\n      partition: {PARTITION}\n      time-limit: '00:05:00'\n"
                 "      health-check-interval: 1\n")
    hpc("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--name", "rf", "--relay",
        "--set", "time-limit=1")
    hpc("wait", "rf", "--timeout", "90")
    fleet = hpc.registry()["rf"]
    # At most 240 requests (60 s); it stops 5 s after the first handover has been seen.
    load = Load(f"http://{fleet['host']}:{fleet['port']}/v1", fleet["api_key"], "rf",
                count=240, rate=4)
    load.start()
    handed: list[str] = []
    seen_at = 0.0
    while load.is_alive():
        hpc("endpoints")  # a refresh queues the successor of each running replica
        handed = [n for n, r in hpc.registry().items()
                  if r["reason"].startswith("walltime relay")]
        if handed and not seen_at:
            seen_at = time.monotonic()
        if seen_at and time.monotonic() - seen_at > 5:
            load.halt.set()
        time.sleep(2)
    load.join()
    print(f"{len(load.codes)} requests, {load.failed} failed, across {len(handed)} "
          f"handover(s): {sorted(handed)}")
    assert handed, "no replica handed over"
    assert len(load.codes) >= 20 and load.failed == 0, load.codes
    hpc("stop", "rf")
