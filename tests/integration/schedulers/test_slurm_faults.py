"""Faults between two steps, on the real Slurm: no job is ever left running untracked.

A PATH shim in front of the real ``sbatch`` opens the window between "Slurm has the
job" and "the registry knows it" on purpose: it queues the job for real, then changes
the world (makes the registry unwritable) or lingers so that a signal arrives there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import HPC, hpclaunch_argv, one_line_error, require, slurm_up

MODEL = "Qwen3-VL-2B"

pytestmark = pytest.mark.slurm


def shim_sbatch(hpc: HPC, tmp_path: Path, after: str) -> Path:
    """An ``sbatch`` that runs the real one, prints its output, then runs ``after``."""
    bindir = tmp_path / "shim"
    bindir.mkdir()
    marker = tmp_path / "queued"
    (bindir / "sbatch").write_text(
        "#!/bin/bash\n"
        'out="$(/usr/bin/sbatch "$@")" || exit $?\n'
        'echo "$out"\n'
        f'echo "$out" > {marker}.tmp && mv {marker}.tmp {marker}\n'
        f"{after}\n")
    (bindir / "sbatch").chmod(0o755)
    hpc.env["PATH"] = f"{bindir}:{hpc.env['PATH']}"
    return marker


def job_state(job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True,
                         check=False).stdout
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    return fields.get("JobState", "")


def test_a_job_the_registry_cannot_record_is_cancelled(slurm_hpc: HPC, tmp_path: Path) -> None:
    lock = slurm_hpc.home / "registry.json.lock"
    marker = shim_sbatch(slurm_hpc, tmp_path, f"rm -f {lock} && mkdir {lock}")
    out = slurm_hpc("submit", MODEL, "--preset", "single-gpu", "--name", "unrecorded",
                    ok=False)
    line = one_line_error(out)
    job_id = marker.read_text().strip()
    assert f"job {job_id} was queued but could not be recorded" in line, line
    assert "cannot write the registry" in line and "it was cancelled" in line
    deadline = time.monotonic() + 20
    while job_state(job_id) not in ("CANCELLED", "") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job_state(job_id) in ("CANCELLED", "")  # cancelled (or already purged)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_between_queueing_and_recording_waits_for_the_record(
        slurm_hpc: HPC, tmp_path: Path, sig: signal.Signals) -> None:
    marker = shim_sbatch(slurm_hpc, tmp_path, "sleep 2")
    proc = subprocess.Popen([*hpclaunch_argv(), "submit", MODEL, "--preset", "single-gpu",
                             "--name", "signalled"], env=slurm_hpc.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate(timeout=30)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err, err
    job_id = marker.read_text().strip()
    rec = slurm_hpc.registry()["signalled"]
    assert rec["job_id"] == job_id  # the job is tracked: stop reaches it
    assert "ENDED" in slurm_hpc("stop", "signalled").stdout
    deadline = time.monotonic() + 20
    while job_state(job_id) not in ("CANCELLED", "") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job_state(job_id) in ("CANCELLED", "")


def test_slurmctld_down_keeps_last_states_and_recovers(slurm_hpc: HPC) -> None:
    slurm_hpc("submit", MODEL, "--preset", "single-gpu", "--name", "outage")
    slurm_hpc("wait", "outage", "--timeout", "90")
    pid = int(Path("/run/slurmctld.pid").read_text().split()[0])
    os.kill(pid, signal.SIGTERM)
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        out = slurm_hpc("endpoints", timeout=180)
        warnings = out.stderr.strip().splitlines()
        assert len(warnings) == 1 and "last known" in warnings[0], out.stderr
        row = next(line for line in out.stdout.splitlines() if line.startswith("outage "))
        assert "READY" in row and "(last known)" in row
        listed = slurm_hpc("endpoints", "--json", timeout=180).json()
        assert isinstance(listed, list)
        assert [(e["name"], e["state"], e["stale"]) for e in listed] == \
            [("outage", "READY", True)]
    finally:
        subprocess.run(["bash", "scripts/services.sh", "start", "slurm"], check=True,
                       capture_output=True, timeout=180)
    require(slurm_up(), "the real single-node Slurm after a restart", "services.sh start slurm")
    out = slurm_hpc("endpoints")
    assert out.stderr.strip() == "" and "READY" in out.stdout and "last known" not in out.stdout
    slurm_hpc("stop", "outage")
