"""The PBS backend through real ``qsub``/``qstat``/``qdel``.

These are Debian's slurm-wlm-torque wrappers over the real single-node Slurm that
``scripts/services.sh`` starts (4 fake GPUs; a TaskProlog sets the PBS_* variables).
Like a real Torque they show ``C`` for every finished job, so ENDED and FAILED
must come from the job's own exit file and log. The wrappers ignore ``#PBS -o/-j``
and ``ngpus`` in ``select``, and have no ``-F json``: what PBS Pro and Torque sites
need is checked by the golden files in ``tests/unit/schedulers/test_pbs.py``; here the PBS Pro
dialect proves that the JSON probe falls back to text on a qstat without it.
Counting qstat calls uses a PATH shim that logs, then runs the real qstat.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from hpclaunch.config import ClusterProfile
from hpclaunch.errors import UserError
from hpclaunch.remote.transport import LocalTransport
from hpclaunch.schedulers.pbs import PBSScheduler
from tests.conftest import HPC, job_file, require

pytestmark = pytest.mark.pbs

MODEL = "Qwen3-0.6B"
START = "bash scripts/services.sh start slurm"


def pbs_up() -> bool:
    if not all(shutil.which(c) for c in ("qsub", "qstat", "qdel", "sinfo")):
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                          timeout=30, check=False)
    return proc.returncode == 0 and any(
        s.rstrip("*~#") in ("idle", "mixed", "allocated", "completing")
        for s in proc.stdout.split())


@pytest.fixture
def pbs_hpc(hpc: HPC, tmp_path: Path) -> HPC:
    """The CLI with qstat behind a logging shim (``hpc.qstat_log`` lists each real call)."""
    require(pbs_up(), "qsub/qstat/qdel (slurm-wlm-torque over the local Slurm)", START)
    shim = tmp_path / "shim"
    shim.mkdir()
    log = tmp_path / "qstat.calls"
    log.write_text("")
    (shim / "qstat").write_text(
        f'#!/bin/sh\necho "$*" >>{log}\nexec {shutil.which("qstat")} "$@"\n')
    (shim / "qstat").chmod(0o755)
    hpc.env["PATH"] = f"{shim}:{hpc.env['PATH']}"
    hpc.qstat_log = log  # type: ignore[attr-defined]
    return hpc


def qstat_calls(hpc: HPC) -> list[str]:
    return hpc.qstat_log.read_text().splitlines()  # type: ignore[attr-defined]


def submit(hpc: HPC, name: str, *extra: str, dialect: str = "torque", ok: bool | None = True):
    return hpc("submit", MODEL, "--preset", "single-gpu", "--simulate", "--scheduler", "pbs",
               "--pbs-dialect", dialect, "--name", name, *extra, ok=ok)


def job_state_letter(job_id: str) -> str:
    out = subprocess.run(["qstat", "-f", job_id], capture_output=True, text=True,
                         check=False).stdout
    return next((ln.split("=", 1)[1].strip() for ln in out.splitlines()
                 if ln.strip().startswith("job_state")), "")


def until_letter(job_id: str, letter: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    seen = job_state_letter(job_id)
    while seen != letter and time.monotonic() < deadline:
        time.sleep(0.5)
        seen = job_state_letter(job_id)
    return seen


def test_torque_submit_ready_chat_stop(pbs_hpc: HPC) -> None:
    hpc = pbs_hpc
    out = submit(hpc, "pbs-x")
    rec = hpc.registry()["pbs-x"]
    assert f"submitted pbs-x: job {rec['job_id']}" in out.stdout and "(pbs)" in out.stdout
    assert rec["scheduler"] == "pbs" and rec["pbs_dialect"] == "torque"
    assert rec["job_id"].isdigit()  # the wrapper prints a bare number
    script = Path(rec["script_path"]).read_text()
    # No cpus-per-task in the profile: no ppn is invented, the queue's default applies.
    assert "#PBS -l nodes=1:gpus=1" in script and "# Note: ppn is left to the queue" in script

    assert "READY" in hpc("wait", "pbs-x", "--timeout", "60").stdout
    assert until_letter(rec["job_id"], "R") == "R"
    reply = hpc("chat", "pbs-x", "What is 2+2?").stdout
    assert reply.strip()
    status = hpc("status", "pbs-x", "--json", ok=None).json()
    assert isinstance(status, dict) and status["state"] == "READY"
    url = status["url"]

    assert "ENDED" in hpc("stop", "pbs-x").stdout
    assert until_letter(rec["job_id"], "C") == "C"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/models", timeout=2)
    # The job's output went to the results dir (qsub -o), not to where qsub ran.
    out_file = Path(rec["script_path"].removesuffix(".sh") + ".pbs.out")
    assert out_file.name == f"hpclaunch_pbs-x.{rec['submission']}.pbs.out"
    assert out_file.exists()
    everything = hpc("endpoints", "--all", "--json").json()
    assert [(e["name"], e["state"]) for e in everything] == [("pbs-x", "ENDED")]
    # qdel of a job that has already finished (rc 1, silent, in this wrapper) is no error.
    PBSScheduler(ClusterProfile(scheduler="pbs", pbs_dialect="torque"),
                 LocalTransport()).cancel(rec["job_id"])
    with pytest.raises(UserError, match="qdel exited"):
        PBSScheduler(ClusterProfile(scheduler="pbs", pbs_dialect="torque"),
                     LocalTransport()).cancel("not-a-job")


def test_failing_server_is_failed_with_the_logs_reason_though_qstat_shows_c(
        pbs_hpc: HPC) -> None:
    hpc = pbs_hpc
    submit(hpc, "pbs-oom", "--env", "HPCLAUNCH_STANDIN_FAIL=oom")
    job_id = hpc.registry()["pbs-oom"]["job_id"]
    out = hpc("wait", "pbs-oom", "--timeout", "60", ok=False)
    assert "FAILED" in out.stderr and "out of memory" in out.stderr.lower()
    assert until_letter(job_id, "C") == "C"
    # Once qstat says only "C", the refreshed state stays FAILED with its reason.
    status = hpc("status", "pbs-oom", "--json", ok=None).json()
    assert isinstance(status, dict)
    assert status["state"] == "FAILED" and "gpu-memory-utilization" in status["reason"]


def test_server_that_exits_is_failed_from_its_exit_file(pbs_hpc: HPC) -> None:
    hpc = pbs_hpc
    submit(hpc, "pbs-exit", "--env", "HPCLAUNCH_STANDIN_FAIL=exit")
    rec = hpc.registry()["pbs-exit"]
    assert until_letter(rec["job_id"], "C") == "C"
    exit_code = job_file(rec, "exit").read_text().strip()
    assert exit_code not in ("", "0")
    status = hpc("status", "pbs-exit", "--json", ok=None).json()
    assert isinstance(status, dict) and status["state"] == "FAILED", status


def test_status_of_several_endpoints_is_one_qstat_call(pbs_hpc: HPC) -> None:
    hpc = pbs_hpc
    names = ["pbs-a", "pbs-b", "pbs-c"]
    for name in names:
        submit(hpc, name, "--set", "cpus-per-task=1")
    ids = [hpc.registry()[n]["job_id"] for n in names]
    assert qstat_calls(hpc) == []  # submitting asks qstat nothing
    listing = hpc("endpoints", "--json").json()
    assert isinstance(listing, list) and sorted(e["name"] for e in listing) == names
    assert qstat_calls(hpc) == [f"-f {' '.join(ids)}"]
    for name in names:
        hpc("stop", name)
    assert qstat_calls(hpc) == [f"-f {' '.join(ids)}"]  # qdel needs no qstat either


def test_pbspro_dialect_probes_json_once_then_reads_text(pbs_hpc: HPC) -> None:
    hpc = pbs_hpc
    submit(hpc, "pbs-pro", "--set", "cpus-per-task=1", dialect="pbspro")
    rec = hpc.registry()["pbs-pro"]
    script = Path(rec["script_path"]).read_text()
    for line in ("#PBS -l select=1:ncpus=1:ngpus=1", "#PBS -l place=scatter", "#PBS -k doe"):
        assert line in script
    assert "READY" in hpc("wait", "pbs-pro", "--timeout", "60").stdout
    calls = qstat_calls(hpc)
    job = rec["job_id"]
    # One process, one probe: qstat refused -F json once, every later call was text.
    assert calls[0] == f"-f -x -F json {job}"
    assert calls[1:] and set(calls[1:]) == {f"-f {job}"}
    hpc("stop", "pbs-pro")


def test_qsub_rejection_shows_the_wrappers_words(pbs_hpc: HPC) -> None:
    out = submit(pbs_hpc, "pbs-badq", "--set", "queue=nosuchq", ok=False)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpclaunch: qsub exited 1:")
    assert "invalid partition specified: nosuchq" in lines[0]
    assert "pbs-badq" not in (pbs_hpc.registry() if pbs_hpc.registry_path.exists() else {})


def test_job_records_its_pbs_job_id(pbs_hpc: HPC) -> None:
    hpc = pbs_hpc
    submit(hpc, "pbs-env", "--set", "cpus-per-task=1")
    hpc("wait", "pbs-env", "--timeout", "60")
    rec = hpc.registry()["pbs-env"]
    endpoint = job_file(rec, "endpoint.json").read_text()
    # $PBS_JOBID, not the shell's pid: the qsub id is what the registry holds.
    assert json.loads(endpoint)["job_id"] == rec["job_id"]
    hpc("stop", "pbs-env")
