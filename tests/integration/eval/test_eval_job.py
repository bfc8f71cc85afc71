"""``hpclaunch eval NAME ENV --submit``: vf-eval as a batch job on the real Slurm.

The endpoint is a stand-in in an sbatch job; the eval is a second (CPU) sbatch job that
waits for it, runs the real vf-eval 0.3.1 and leaves its results in its own directory.
"""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from tests.conftest import HPC, PARTITION, START, require, slurm_up
from tests.integration.eval.test_eval import (  # noqa: F401 - vf is a fixture
    ENV_ID,
    PLAIN,
    assert_served_by,
    results,
    vf,
)

pytestmark = [pytest.mark.slurm, pytest.mark.vfeval]


def until_final(hpc: HPC, name: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    seen = set()
    while True:
        data = hpc("status", name, "--json", ok=None).json()
        assert isinstance(data, dict)
        seen.add(data["state"])
        if data["state"] in ("ENDED", "FAILED") or time.monotonic() > deadline:
            data["seen"] = seen
            return data
        time.sleep(2)


def test_eval_runs_as_a_slurm_job_against_an_endpoint_by_name(
        hpc: HPC, vf: Path, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    require(slurm_up(), "the real single-node Slurm", START)
    hpc.config_dir.mkdir(parents=True, exist_ok=True)
    (hpc.config_dir / "clusters.yaml").write_text(
        "default: testslurm\nclusters:\n  testslurm:\n    scheduler: slurm\n"
        f"    partition: {PARTITION}\n    time-limit: \"00:10:00\"\n    gpus-per-node: 4\n"
        "    gpu-directive: gres\n    simulate: true\n")
    record = tmp_path / "qs.requests.jsonl"
    hpc("submit", "Qwen3-VL-2B", "--preset", "single-gpu", "--name", "qs",
        "--env", f"HPCLAUNCH_STANDIN_RECORD={record}")
    # Submitted while the endpoint is still queued or starting: the job waits for READY.
    out = hpc("eval", "qs", ENV_ID, *PLAIN, "--submit")
    assert out.stdout.startswith("submitted qs-eval-1: job ")
    job = hpc.registry()["qs-eval-1"]
    assert job["kind"] == "eval" and job["scheduler"] == "slurm"
    job_dir = Path(job["results_dir"])
    key = hpc.registry()["qs"]["api_key"]
    spec = job_dir / "eval.spec.json"
    assert stat.S_IMODE(spec.stat().st_mode) == 0o600 and key in spec.read_text()
    script = Path(job["script_path"]).read_text()
    assert key not in script and "#SBATCH --gres" not in script  # a CPU job, key not in it
    listed = hpc("endpoints").stdout
    assert "qs-eval-1" in listed and f"vf-eval {ENV_ID} on qs" in listed

    final = until_final(hpc, "qs-eval-1")
    log = (job_dir / "eval.log").read_text()
    assert final["state"] == "ENDED", (final, log[-1500:])
    assert "RUNNING" in final["seen"] or "PENDING" in final["seen"]
    assert "results in" in final["reason"]
    assert_served_by(record, hpc, "qs")
    _, rollouts = results(job_dir / "results")
    assert [r["reward"] for r in rollouts] == [1.0, 1.0]
    assert "is READY at http://" in log and key not in log
    assert hpc("status", "qs-eval-1").returncode == 0  # vf-eval finished with 0
    assert "an eval job" in hpc("env", "qs-eval-1", ok=False).stderr
    assert "qs-eval-1" not in hpc("export", "--format", "json").stdout

    hpc("stop", "qs")
    dead = hpc("eval", "qs", ENV_ID, *PLAIN, "--submit", ok=False)
    assert dead.returncode == 6 and "no eval job was submitted" in dead.stderr
    assert "qs-eval-2" not in hpc.registry()


def test_eval_job_fails_with_the_cause_when_its_endpoint_is_stopped_mid_run(
        hpc: HPC, vf: Path, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    require(slurm_up(), "the real single-node Slurm", START)
    hpc.config_dir.mkdir(parents=True, exist_ok=True)
    (hpc.config_dir / "clusters.yaml").write_text(
        "default: testslurm\nclusters:\n  testslurm:\n    scheduler: slurm\n"
        f"    partition: {PARTITION}\n    time-limit: \"00:10:00\"\n    gpus-per-node: 4\n"
        "    gpu-directive: gres\n    simulate: true\n")
    record = tmp_path / "qd.requests.jsonl"
    hpc("submit", "Qwen3-VL-2B", "--preset", "single-gpu", "--name", "qd", "--wait",
        "--env", f"HPCLAUNCH_STANDIN_RECORD={record}",
        "--env", "HPCLAUNCH_STANDIN_TOKEN_DELAY=0.3")
    hpc("eval", "qd", ENV_ID, "-n", "4", "-r", "3", "-c", "1", "--disable-tui",
        "--disable-env-server", "-a", '{"use_think": false}', "--submit")
    deadline = time.monotonic() + 120
    while len(_chats(record)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(_chats(record)) >= 2, "the eval job never reached the endpoint"
    hpc("stop", "qd")
    stopped = time.monotonic()
    final = until_final(hpc, "qd-eval-1", timeout=90)
    assert final["state"] == "FAILED", final
    assert final["reason"].startswith("exited 6: ")  # 6: the endpoint ENDED under it
    assert "went ENDED during the eval (its job ended" in final["reason"]
    assert time.monotonic() - stopped < 60


def _chats(record: Path) -> list[str]:
    if not record.exists():
        return []
    return [line for line in record.read_text().splitlines() if "/v1/chat/completions" in line]
