"""Every kind of bad input ends in one line on stderr, a non-zero exit, no traceback,
and nothing already recorded is lost."""

from __future__ import annotations

import pytest

from tests.conftest import HPC, one_line_error


def test_unknown_preset_lists_near_names(hpc: HPC) -> None:
    line = one_line_error(hpc("submit", "Qwen3-0.6B", "--preset", "dp4-througput",
                              "--simulate", ok=False))
    assert "unknown preset 'dp4-througput'" in line and "dp4-throughput" in line


def test_unknown_model_alias(hpc: HPC) -> None:
    line = one_line_error(hpc("submit", "Qwen9-XL", "--preset", "single-gpu", "--simulate",
                              ok=False))
    assert "Qwen9-XL" in line


def test_malformed_preset_yaml_names_file_and_line(hpc: HPC) -> None:
    presets = hpc.config_dir / "presets"
    presets.mkdir(parents=True)
    (presets / "broken.yaml").write_text("description: x\nvllm:\n  max-num-seqs: [1, 2\n")
    line = one_line_error(hpc("submit", "Qwen3-0.6B", "--preset", "broken", "--simulate",
                              ok=False))
    assert "broken.yaml:" in line and "YAML" in line


def test_user_preset_overrides_builtin(hpc: HPC) -> None:
    presets = hpc.config_dir / "presets"
    presets.mkdir(parents=True)
    (presets / "single-gpu.yaml").write_text("description: mine\nvllm:\n  max-num-seqs: 7\n")
    script = hpc("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--simulate",
                 "--dry-run").stdout
    assert "--max-num-seqs 7" in script


def test_set_with_unknown_key_suggests(hpc: HPC) -> None:
    line = one_line_error(hpc("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--simulate",
                              "--set", "max-num-seq=4", "--dry-run", ok=False))
    assert "max-num-seq" in line and "max-num-seqs" in line


@pytest.mark.parametrize("name", ["has space", "semi;colon", "$(reboot)", "-dash", ""])
def test_bad_endpoint_names_are_refused(hpc: HPC, name: str) -> None:
    line = one_line_error(hpc("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--simulate",
                              "--name", name, "--dry-run", ok=False))
    assert "invalid endpoint name" in line


@pytest.mark.parametrize("command", ["stop", "status", "wait", "logs", "rm"])
def test_unknown_endpoint_name(hpc: HPC, command: str) -> None:
    line = one_line_error(hpc(command, "nosuch", ok=False))
    assert "nosuch" in line


def test_corrupt_registry_is_reported_and_kept(hpc: HPC) -> None:
    hpc.registry_path.write_text('{"schema": 1, "endpoints": {"a": ')
    before = hpc.registry_path.read_bytes()
    line = one_line_error(hpc("endpoints", ok=False))
    assert "corrupt" in line and str(hpc.registry_path) in line
    one_line_error(hpc("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--simulate",
                       "--name", "x", ok=False))
    assert hpc.registry_path.read_bytes() == before


def test_missing_gpu_count_without_simulation(hpc: HPC) -> None:
    line = one_line_error(hpc("submit", "Qwen3-0.6B", "--preset", "single-gpu",
                              "--no-simulate", "--dry-run", ok=False))
    assert "GPUs" in line and "gpus_per_node" in line


def test_layout_larger_than_the_node(hpc: HPC) -> None:
    line = one_line_error(hpc("submit", "Qwen3-0.6B", "--preset", "dp4-throughput",
                              "--no-simulate", "--gpus-per-node", "2", "--dry-run", ok=False))
    assert "4 GPUs per node" in line and "has 2" in line


def test_api_key_flag_is_refused(hpc: HPC) -> None:
    line = one_line_error(hpc("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--simulate",
                              "--vllm-args", "--api-key sk-123", "--dry-run", ok=False))
    assert "VLLM_API_KEY" in line


def test_unreachable_cluster_does_not_hide_the_others(hpc: HPC) -> None:
    """A login node that is down yields a warning; other endpoints still list, exit 0."""
    import json

    hpc.config_dir.mkdir(parents=True, exist_ok=True)
    (hpc.config_dir / "clusters.yaml").write_text(
        "clusters:\n  faraway:\n    scheduler: slurm\n    host: 127.0.0.1\n    port: 1\n"
        "    user: nobody\n")
    hpc("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--simulate", "--name", "here")
    data = json.loads(hpc.registry_path.read_text())
    far = dict(data["endpoints"]["here"], name="far", cluster="faraway", scheduler="slurm",
               job_id="12345", state="PENDING")
    data["endpoints"]["far"] = far
    hpc.registry_path.write_text(json.dumps(data))
    out = hpc("endpoints", "--json")
    names = {e["name"]: e["state"] for e in out.json()}
    assert names["far"] == "PENDING" and "here" in names
    assert "faraway" in out.stderr and "Traceback" not in out.stderr
    # Asking for the unreachable endpoint alone is an error, in one line.
    line = one_line_error(hpc("status", "far", ok=False))
    assert "127.0.0.1" in line


def test_submit_checks_memory_on_the_named_gpu(hpc: HPC) -> None:
    """A context that cannot fit is refused before queueing, with the length that fits."""
    line = one_line_error(hpc("submit", "meta-llama/Llama-3.1-70B-Instruct", "--preset",
                              "tp4-throughput", "--no-simulate", "--gpus-per-node", "4",
                              "--gpu", "A100-40GB", "--dry-run", ok=False))
    assert "A100-40GB" in line and "--set max-model-len=" in line
    ok = hpc("submit", "meta-llama/Llama-3.1-70B-Instruct", "--preset", "tp4-throughput",
             "--no-simulate", "--gpus-per-node", "4", "--gpu", "H100-80GB", "--dry-run")
    assert "--tensor-parallel-size 4" in ok.stdout
