"""The Slurm backend against the real single-node Slurm that scripts/services.sh starts.

Every job here is a real sbatch job on a node with four GPUs backed by empty device
files, running hpclaunch's vLLM stand-in (``--simulate``). The GPU directives the presets
render are scheduled for real. Counting squeue calls uses a PATH shim that logs and then
runs the real /usr/bin/squeue. The ``hpc`` fixture scancels whatever a test leaves live.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import HPC, PARTITION, job_file

pytestmark = pytest.mark.slurm

MODEL = "Qwen3-VL-2B"
def submit(hpc: HPC, name: str, *extra: str, preset: str = "single-gpu", ok: bool | None = True):
    return hpc("submit", MODEL, "--preset", preset, "--name", name, *extra, ok=ok)


def scontrol(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                         text=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def status_until(hpc: HPC, name: str, states: set[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        data = hpc("status", name, "--json", ok=None).json()
        assert isinstance(data, dict)
        if data["state"] in states or time.monotonic() > deadline:
            return data
        time.sleep(0.5)


def test_standin_in_an_sbatch_job_gets_ready_and_answers_by_name(slurm_hpc: HPC) -> None:
    hpc = slurm_hpc
    out = submit(hpc, "qv", preset="dp4-throughput")
    assert "(slurm)" in out.stdout
    rec = hpc.registry()["qv"]
    job_id = rec["job_id"]
    assert job_id.isdigit() and rec["scheduler"] == "slurm"
    job = scontrol(job_id)
    assert job["JobName"] == "hpcl-qv" and job["Partition"] == PARTITION
    assert job["TresPerNode"] == "gres:gpu:4"  # the preset's GPUs, really scheduled
    assert job["TimeLimit"] == "00:10:00"

    waited = hpc("wait", "qv", "--timeout", "60")
    assert "READY" in waited.stdout
    reply = hpc("chat", "qv", "hello from slurm").stdout
    assert reply.strip()

    status = hpc("status", "qv").stdout
    assert "READY (simulated)" in status and job_id in status
    assert scontrol(job_id)["JobState"] == "RUNNING"
    # The job's own record of where it runs: the Slurm job id and the node.
    endpoint = json.loads(job_file(rec, "endpoint.json").read_text())
    assert endpoint["job_id"] == job_id and endpoint["node"] == scontrol(job_id)["NodeList"]

    assert "ENDED" in hpc("stop", "qv").stdout
    deadline = time.monotonic() + 30
    while scontrol(job_id)["JobState"] not in ("CANCELLED", "COMPLETED"):
        assert time.monotonic() < deadline, scontrol(job_id)
        time.sleep(0.2)
    assert scontrol(job_id)["JobState"] == "CANCELLED"  # stop used scancel


def test_scancel_from_outside_is_reported_ended_with_slurms_reason(slurm_hpc: HPC) -> None:
    hpc = slurm_hpc
    submit(hpc, "outside")
    hpc("wait", "outside", "--timeout", "60")
    job_id = hpc.registry()["outside"]["job_id"]
    subprocess.run(["scancel", job_id], check=True)
    data = status_until(hpc, "outside", {"ENDED", "FAILED"})
    assert data["state"] == "ENDED", data
    assert "CANCELLED" in data["reason"], data
    assert hpc("endpoints", "--json").json() == []


def test_server_that_dies_is_failed_with_the_reason_from_its_log(slurm_hpc: HPC) -> None:
    hpc = slurm_hpc
    submit(hpc, "oom", "--env", "HPCLAUNCH_STANDIN_FAIL=oom")
    out = hpc("wait", "oom", "--timeout", "60", ok=False)
    assert "oom is FAILED" in out.stderr
    assert "out of memory" in out.stderr.lower() and "gpu-memory-utilization" in out.stderr
    rec = hpc.registry()["oom"]
    assert rec["state"] == "FAILED"
    deadline = time.monotonic() + 30  # the job itself ends: vLLM's exit status is the job's
    while scontrol(rec["job_id"])["JobState"] in ("RUNNING", "COMPLETING"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert scontrol(rec["job_id"])["JobState"] == "FAILED"


def test_job_that_can_never_start_stays_pending_with_its_reason(slurm_hpc: HPC) -> None:
    hpc = slurm_hpc
    submit(hpc, "toobig", "--set", "cpus-per-task=999")
    job_id = hpc.registry()["toobig"]["job_id"]
    deadline = time.monotonic() + 15
    while scontrol(job_id).get("Reason") in (None, "None"):  # the scheduler's first pass
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(2.5)  # more passes: it still cannot start
    status = hpc("status", "toobig", ok=None).stdout
    assert "PENDING" in status
    assert "queued (PartitionConfig)" in status
    listing = hpc("endpoints", "--json").json()
    assert [(e["name"], e["state"]) for e in listing] == [("toobig", "PENDING")]
    assert scontrol(job_id)["JobState"] == "PENDING"


@pytest.mark.parametrize(("setting", "slurm_words"), [
    ("partition=nosuchq", "invalid partition specified: nosuchq"),
    ("dp=8", "Requested node configuration is not available"),  # 8 GPUs on a 4-GPU node
])
def test_sbatch_errors_are_one_line_in_slurms_words_and_nothing_is_recorded(
        slurm_hpc: HPC, setting: str, slurm_words: str) -> None:
    hpc = slurm_hpc
    out = submit(hpc, "rejected", "--set", setting, ok=False)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpclaunch: sbatch exited 1: "), out.stderr
    assert slurm_words in lines[0] and "Traceback" not in out.stderr
    registry = hpc.registry() if hpc.registry_path.exists() else {}
    assert "rejected" not in registry


def shim_dir(tmp_path: Path) -> tuple[Path, Path]:
    """squeue and sacct that log each call to a file and then run the real command."""
    shims, calls = tmp_path / "shims", tmp_path / "calls.log"
    shims.mkdir()
    for tool in ("squeue", "sacct"):
        real = shutil.which(tool)
        assert real, f"{tool} not on PATH"
        shim = shims / tool
        shim.write_text(f'#!/bin/sh\necho "{tool} $*" >>"{calls}"\nexec "{real}" "$@"\n')
        shim.chmod(0o755)
    return shims, calls


def test_ten_endpoints_report_status_through_one_squeue_call(slurm_hpc: HPC,
                                                             tmp_path: Path) -> None:
    hpc = slurm_hpc
    shims, calls = shim_dir(tmp_path)
    hpc.env["PATH"] = f"{shims}{os.pathsep}{hpc.env['PATH']}"
    names = [f"ep{i}" for i in range(10)]
    for name in names:
        submit(hpc, name)
    job_ids = {n: r["job_id"] for n, r in hpc.registry().items()}
    assert sorted(job_ids) == names
    time.sleep(2.5)  # a scheduling pass or two: 4 GPUs, so some run and some wait

    calls.write_text("")
    listing = hpc("endpoints", "--json").json()
    logged = calls.read_text().splitlines()
    squeues = [line for line in logged if line.startswith("squeue")]
    assert len(squeues) == 1, logged
    assert sorted(squeues[0].split("--jobs=")[1].split()[0].split(",")) == \
        sorted(job_ids.values())
    assert sum(line.startswith("sacct") for line in logged) <= 1, logged
    assert sorted(e["name"] for e in listing) == names
    states = {e["name"]: e["state"] for e in listing}
    assert set(states.values()) <= {"PENDING", "STARTING", "READY"}, states
    # Four GPUs: at most four run; the others wait for them, and say why.
    assert sum(s != "PENDING" for s in states.values()) <= 4
    waiting = [n for n, s in states.items() if s == "PENDING"]
    assert len(waiting) >= 6
    for name in waiting:
        reason = hpc.registry()[name]["reason"]
        assert reason in ("queued (Resources)", "queued (Priority)"), (name, reason)


def test_finished_and_unknown_jobs_without_accounting(slurm_hpc: HPC, tmp_path: Path) -> None:
    """squeue --states=all, then sacct (disabled here), then the jobcomp file: all real."""
    from hpclaunch.config import ClusterProfile
    from hpclaunch.remote.transport import LocalTransport
    from hpclaunch.schedulers.slurm import SlurmScheduler

    proc = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", f"--chdir={tmp_path}",
                           "--wrap", "exit 3"], capture_output=True, text=True, check=True)
    job_id = proc.stdout.strip()
    scheduler = SlurmScheduler(ClusterProfile(name="t", scheduler="slurm"), LocalTransport())
    deadline = time.monotonic() + 30
    while scheduler.states([job_id])[job_id].state != "done":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    in_queue = scheduler.states([job_id])[job_id]
    assert (in_queue.reason, in_queue.exit_code) == ("FAILED (NonZeroExitCode, exit code 3)", 3)
    # What a job older than MinJobAge looks like: only the jobcomp file remembers it.
    deadline = time.monotonic() + 10
    while not (remembered := scheduler.finished_states([job_id])):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert remembered[job_id].reason == "FAILED (exit code 3)"
    assert scheduler.states(["987654321"])["987654321"].state == "missing"
