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
    )
    return hpc


def test_a_podman_job_serves_by_name_and_stop_leaves_no_container(podman_hpc: HPC) -> None:
    hpc = podman_hpc
    hpc("submit", "Qwen/Qwen3-0.6B", "--preset", "single-gpu", "--cluster", "pod",
        "--simulate", "--name", "boxed")
    rec = hpc.registry()["boxed"]
    name = f"hpcl-boxed-{rec['submission']}"
    try:
        assert "READY" in hpc("wait", "boxed", "--timeout", "90").stdout
        assert containers(name) == [name]
        # The server inside answers on the node's network, by the endpoint's name, with
        # the key it got through the environment (not the command line).
        endpoint = json.loads(job_file(rec, "endpoint.json").read_text())
        inspect = json.loads(podman("inspect", name).stdout)[0]
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
