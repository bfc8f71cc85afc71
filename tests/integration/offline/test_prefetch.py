"""Offline compute nodes, with the real huggingface_hub against a Hub on 127.0.0.1.

prefetch fills the cluster's hf-home; preflight refuses an offline job whose model is not
there, naming the command that fixes it; the job then loads the weights from the cache
with HF_HUB_OFFLINE=1 (offline_vllm.py resolves them as vLLM does, then runs the
stand-in). Nothing of huggingface_hub is mocked: it talks HTTP to tests/.../hub.py.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import HPC, one_line_error
from tests.integration.offline.hub import LocalHub, Repo, tiny_model

REPO = Path(__file__).resolve().parents[3]
FAKE_VLLM = Path(__file__).with_name("offline_vllm.py")


@pytest.fixture
def hub() -> Iterator[LocalHub]:
    local = LocalHub({"acme/tiny": Repo(tiny_model()),
                      "acme/gated": Repo(tiny_model("gated"), gated=True)}).start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def offline_hpc(hpc: HPC, hub: LocalHub, tmp_path: Path) -> HPC:
    hf_home = tmp_path / "shared-hf"
    hpc.env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1")
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HOME", "HF_HUB_OFFLINE"):
        hpc.env.pop(key, None)
    hpc.config_dir.mkdir(parents=True, exist_ok=True)
    (hpc.config_dir / "clusters.yaml").write_text(
        "clusters:\n"
        "  air:\n"
        "    scheduler: local\n"
        "    gpus-per-node: 1\n"
        "    bind-host: 127.0.0.1\n"
        "    url-host: 127.0.0.1\n"
        f"    hf-home: {hf_home}\n"
        "    offline: true\n"
        f"    vllm-command: [{sys.executable}, {FAKE_VLLM}]\n"
        f"    env: {{PYTHONPATH: '{REPO}', VLLM_LOG_STATS_INTERVAL: '0.5'}}\n"
    )
    return hpc


def submit(hpc: HPC, model: str, ok: bool = True):
    return hpc("submit", model, "--preset", "single-gpu", "--cluster", "air", "--name", "air",
               ok=ok)


def test_prefetch_fills_the_cache_an_offline_job_then_loads_from(offline_hpc: HPC,
                                                                 tmp_path: Path) -> None:
    hpc = offline_hpc
    refused = one_line_error(submit(hpc, "acme/tiny", ok=False))
    assert "acme/tiny is not in" in refused and "offline" in refused
    assert "run hpclaunch prefetch acme/tiny --cluster air" in refused
    assert "air" not in hpc.registry() if hpc.registry_path.exists() else True

    fetched = hpc("prefetch", "acme/tiny", "--cluster", "air")
    assert "acme/tiny is in" in fetched.stdout
    snapshots = tmp_path / "shared-hf" / "hub" / "models--acme--tiny" / "snapshots"
    assert [p.name for p in (next(snapshots.iterdir())).iterdir()] != []

    submit(hpc, "acme/tiny")
    assert "READY" in hpc("wait", "air", "--timeout", "60").stdout
    log = hpc("logs", "air").stdout
    assert f"offline weights from {snapshots}" in log and "Qwen3ForCausalLM" in log
    hpc("stop", "air")


def test_an_offline_job_whose_weights_vanished_is_told_to_prefetch(offline_hpc: HPC,
                                                                   tmp_path: Path) -> None:
    hpc = offline_hpc
    hpc("prefetch", "acme/tiny", "--cluster", "air")
    submit(hpc, "acme/tiny")
    # Removed after preflight (another user cleaned the shared cache): the job itself fails.
    shutil.rmtree(tmp_path / "shared-hf" / "hub" / "models--acme--tiny")
    waited = hpc("wait", "air", "--timeout", "60", ok=False)
    assert "not in the offline Hugging Face cache" in waited.stderr
    assert "run hpclaunch prefetch acme/tiny --cluster air" in waited.stderr


def test_a_gated_model_needs_a_token(offline_hpc: HPC, hub: LocalHub) -> None:
    hpc = offline_hpc
    error = one_line_error(hpc("prefetch", "acme/gated", "--cluster", "air", ok=False))
    assert "acme/gated is gated" in error and "HF_TOKEN" in error
    hpc.env["HF_TOKEN"] = hub.token
    assert "acme/gated is in" in hpc("prefetch", "acme/gated", "--cluster", "air").stdout
    assert not any(hub.token in request for request in hub.requests)  # a header, not a URL


def test_an_unknown_model_is_one_line(offline_hpc: HPC) -> None:
    error = one_line_error(offline_hpc("prefetch", "acme/nope", "--cluster", "air", ok=False))
    assert "acme/nope: no such model on the Hub" in error


def test_prefetch_and_the_cache_check_run_on_the_login_node_over_ssh(
        hpc: HPC, hub: LocalHub, tmp_path: Path) -> None:
    """The loopback sshd stands for a login node: the download and the listing go over SSH
    (the token on stdin, the Hub address as this machine uses it)."""
    from tests.conftest import require
    from tests.integration.remote.test_ssh import START, profile, sshd_up, write_clusters

    require(sshd_up(), "the loopback sshd", START)
    hf_home = tmp_path / "login-hf"
    hpc.env.update(HF_ENDPOINT=hub.url, HF_TOKEN=hub.token)
    write_clusters(hpc, login=profile(
        tmp_path, simulate=False, hf_home=str(hf_home), offline=True, gpus_per_node=1,
        bind_host="127.0.0.1", url_host="127.0.0.1",
        vllm_command=[sys.executable, str(FAKE_VLLM)],
        env={"PYTHONPATH": str(REPO), "VLLM_LOG_STATS_INTERVAL": "0.5"}))
    argv = ["submit", "acme/gated", "--preset", "single-gpu", "--name", "far"]
    assert "run hpclaunch prefetch acme/gated --cluster login" in one_line_error(
        hpc(*argv, ok=False))
    fetched = hpc("prefetch", "acme/gated")
    assert "acme/gated is in" in fetched.stdout
    assert "Fetching 3 files" in fetched.stderr  # huggingface_hub's progress, as it ran there
    assert (hf_home / "hub" / "models--acme--gated" / "snapshots").is_dir()
    hpc(*argv)
    try:
        assert "READY" in hpc("wait", "far", "--timeout", "60").stdout
    finally:
        hpc("stop", "far", ok=None)
