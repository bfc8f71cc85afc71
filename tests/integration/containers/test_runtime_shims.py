"""Apptainer and Docker command lines, run: PATH shims parse them strictly, record them,
and start the stand-in with the environment the container would get.

Neither runtime can be installed on these machines; the shims (runtime_shim.py) refuse any
option they do not know, a bind whose source is missing and a variable value on the
command line, so a rendered option that a real runtime would reject fails here too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import HPC
from tests.integration.endpoints.test_spine import chat

REPO = Path(__file__).resolve().parents[3]
SHIM = Path(__file__).with_name("runtime_shim.py")


def shim_hpc(hpc: HPC, tmp_path: Path, runtime: str, extra: str) -> Path:
    """A profile running the stand-in as if it were vLLM, in ``runtime``."""
    bin_dir, state, models = tmp_path / "bin", tmp_path / "state", tmp_path / "models"
    for folder in (bin_dir, state, models):
        folder.mkdir()
    exe = bin_dir / runtime
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {SHIM} {runtime} \"$@\"\n")
    exe.chmod(0o755)
    hpc.env["PATH"] = f"{bin_dir}:{hpc.env['PATH']}"
    hpc.env["SHIM_STATE"] = str(state)
    hpc.config_dir.mkdir(parents=True, exist_ok=True)
    (hpc.config_dir / "clusters.yaml").write_text(
        "clusters:\n"
        "  box:\n"
        "    scheduler: local\n"
        "    gpus-per-node: 1\n"
        "    bind-host: 127.0.0.1\n"
        "    url-host: 127.0.0.1\n"
        f"    hf-home: {tmp_path / 'hf'}\n"
        f"    vllm-command: [{sys.executable}, -m, hpclaunch.standin]\n"
        f"    env: {{PYTHONPATH: '{REPO}', VLLM_LOG_STATS_INTERVAL: '0.5'}}\n"
        "    container:\n"
        f"      runtime: {runtime}\n"
        f"      binds: ['{models}:/models:ro']\n"
        f"{extra}"
    )
    (tmp_path / "hf").mkdir()
    return state


def calls(state: Path) -> list[dict]:
    return [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]


def serve_and_stop(hpc: HPC, name: str) -> dict:
    hpc("submit", "Qwen/Qwen3-0.6B", "--preset", "single-gpu", "--cluster", "box",
        "--name", name)
    assert "READY" in hpc("wait", name, "--timeout", "60").stdout
    entry = hpc("endpoints", "--json").json()[0]
    rec = hpc.registry()[name]
    assert chat(entry["url"], rec["api_key"], name, "hi")["choices"]
    hpc("stop", name)
    return rec


@pytest.mark.parametrize("runtime", ["apptainer", "singularity"])
def test_apptainer_command_line_parses_and_serves(hpc: HPC, tmp_path: Path,
                                                  runtime: str) -> None:
    state = shim_hpc(hpc, tmp_path, runtime,
                     "      image: /images/vllm.sif\n      options: [--cleanenv]\n")
    serve_and_stop(hpc, "app")
    (run,) = calls(state)
    assert "error" not in run
    argv = run["argv"]
    assert argv[:2] == ["exec", "--nv"]
    assert argv[argv.index("/images/vllm.sif") + 1:][:4] == [sys.executable, "-m",
                                                             "hpclaunch.standin", "serve"]
    # Under --cleanenv only the forwarded variables exist inside: the job's own, the key.
    assert {"HF_HOME", "PYTHONPATH", "VLLM_API_KEY", "PYTHONUNBUFFERED"} <= set(run["env_names"])


def test_docker_command_line_parses_serves_and_stop_stops_the_container(
        hpc: HPC, tmp_path: Path) -> None:
    state = shim_hpc(hpc, tmp_path, "docker",
                     "      image: docker.io/vllm/vllm-openai:latest\n      shm-size: 8g\n"
                     "      options: [--ulimit=memlock=-1]\n")
    rec = serve_and_stop(hpc, "dock")
    run, stop = calls(state)
    assert "error" not in run and "error" not in stop
    name = f"hpcl-dock-{rec['submission']}"
    assert run["argv"][:5] == ["run", "--rm", "--name", name, "--network"]
    assert "--gpus" in run["argv"] and "--shm-size" in run["argv"]
    assert {"HF_HOME", "PYTHONPATH", "VLLM_API_KEY"} <= set(run["env_names"])
    # `stop` reached the container by its name, not only the `docker run` client.
    assert stop["argv"] == ["stop", "-t", "5", name]
    assert hpc.registry()["dock"]["state"] == "ENDED"
