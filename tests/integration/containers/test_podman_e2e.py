"""Podman for real: a job whose server runs in a container, from submit to stop.

The image is the small one ``scripts/services.sh start podman`` builds (Python and the
stand-in, no registry). The checkout's package is bound over the image's copy, so the
code under test is what runs in the container; the bind is a user bind, which the
rendered command must carry like the results dir.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import HPC, job_file, require
from tests.integration.endpoints.test_spine import chat

REPO = Path(__file__).resolve().parents[3]
IMAGE = os.environ.get("HPCLAUNCH_TEST_PODMAN_IMAGE", "localhost/hpclaunch-standin:latest")
START = "bash scripts/services.sh start podman"


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def containers(prefix: str) -> list[str]:
    """Names of all containers (running or not) whose name starts with ``prefix``."""
    out = podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    return [name for name in out if name.startswith(prefix)]


@pytest.fixture
def podman_hpc(hpc: HPC) -> HPC:
    require(shutil.which("podman") is not None and podman("image", "exists", IMAGE)
            .returncode == 0, f"podman with the image {IMAGE}", START)
    hpc.config_dir.mkdir(parents=True, exist_ok=True)
    (hpc.config_dir / "clusters.yaml").write_text(
        "clusters:\n"
        "  pod:\n"
        "    scheduler: local\n"
        "    bind-host: 127.0.0.1\n"
        "    url-host: 127.0.0.1\n"
        "    env: {VLLM_LOG_STATS_INTERVAL: '0.5'}\n"
        "    container:\n"
        "      runtime: podman\n"
        f"      image: {IMAGE}\n"
        f"      binds: ['{REPO}/hpclaunch:/opt/hpclaunch/hpclaunch:ro']\n"
        # The 004 guide's memlock/stack ulimits are not permitted on these machines.
        "      options: []\n"
    )
    return hpc


def test_a_podman_job_serves_by_name_and_stop_leaves_no_container(podman_hpc: HPC) -> None:
    """Guide 004's Docker setup (its preset: image, 8 GB shm) on the local scheduler."""
    hpc = podman_hpc
    hpc("submit", "solidrust/Mistral-7B-Instruct-v0.3-AWQ", "--preset",
        "mistral7b-awq-32k-docker", "--cluster", "pod", "--simulate", "--name", "boxed")
    rec = hpc.registry()["boxed"]
    name = f"hpcl-boxed-{rec['submission']}"
    try:
        assert "READY" in hpc("wait", "boxed", "--timeout", "90").stdout
        assert containers(name) == [name]
        # The server inside answers on the node's network, by the endpoint's name, with
        # the key it got through the environment (not the command line).
        endpoint = json.loads(job_file(rec, "endpoint.json").read_text())
        inspect = json.loads(podman("inspect", name).stdout)[0]
        assert inspect["HostConfig"]["ShmSize"] == 8 * 1024**3
        assert rec["api_key"] not in " ".join(inspect["Config"]["Cmd"] or [])
        assert f"VLLM_API_KEY={rec['api_key']}" in inspect["Config"]["Env"]
        url = f"http://127.0.0.1:{endpoint['port']}/v1"
        reply = chat(url, rec["api_key"], "boxed", "hello from the host")
        assert reply["choices"][0]["message"]["content"]
        # The realtime log is written outside the container, where `logs` reads it.
        assert "SIMULATED vLLM stand-in" in hpc("logs", "boxed").stdout

        hpc("stop", "boxed")
        assert containers(name) == []
        assert hpc.registry()["boxed"]["state"] == "ENDED"
    finally:
        podman("rm", "-f", name)


def test_guide_001_preset_runs_in_podman_on_the_local_scheduler(podman_hpc: HPC) -> None:
    hpc = podman_hpc
    hpc("submit", "Qwen/Qwen3-8B", "--preset", "rtx5090-fp8-throughput-docker", "--cluster",
        "pod", "--simulate", "--name", "g001", "--gpus-per-node", "1")
    name = f"hpcl-g001-{hpc.registry()['g001']['submission']}"
    try:
        assert "READY" in hpc("wait", "g001", "--timeout", "90").stdout
        # --ipc host: vLLM's workers share the host's /dev/shm (podman 4.3's inspect says
        # "shareable" either way, so ask the namespace itself).
        inside = podman("exec", name, "/usr/bin/python3.11", "-c",
                        "import os; print(os.readlink('/proc/self/ns/ipc'))").stdout.strip()
        assert inside == os.readlink("/proc/self/ns/ipc")
        hpc("stop", "g001")
        assert containers(name) == []
    finally:
        podman("rm", "-f", name)


def test_a_podman_job_under_slurm_is_stopped_by_scancel(slurm_hpc: HPC) -> None:
    """scancel signals the batch script: its trap stops the container by name."""
    import time

    hpc = slurm_hpc
    require(shutil.which("podman") is not None and podman("image", "exists", IMAGE)
            .returncode == 0, f"podman with the image {IMAGE}", START)
    with (hpc.config_dir / "clusters.yaml").open("a") as profile:
        profile.write("    container:\n      runtime: podman\n"
                      f"      image: {IMAGE}\n"
                      f"      binds: ['{REPO}/hpclaunch:/opt/hpclaunch/hpclaunch:ro']\n")
    hpc("submit", "Qwen/Qwen3-0.6B", "--preset", "single-gpu", "--name", "sboxed")
    name = f"hpcl-sboxed-{hpc.registry()['sboxed']['submission']}"
    try:
        assert "READY" in hpc("wait", "sboxed", "--timeout", "90").stdout
        assert containers(name) == [name]
        hpc("stop", "sboxed")
        deadline = time.monotonic() + 20
        while containers(name) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert containers(name) == []
    finally:
        podman("rm", "-f", name)
