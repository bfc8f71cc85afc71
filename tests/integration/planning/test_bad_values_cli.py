"""Every value a site or vLLM would refuse is refused before anything is queued, in one line
that names where it was written (file and field path, or the option) and what was expected.

Wrong types in files never end in "internal error". Each row was accepted, or crashed,
before clusters.yaml and presets had schemas (issue 12).
"""

from __future__ import annotations

import pytest

from tests.conftest import HPC, one_line_error

DRY = ("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--simulate", "--dry-run")


def write_clusters(hpc: HPC, text: str | bytes) -> str:
    hpc.config_dir.mkdir(parents=True, exist_ok=True)
    path = hpc.config_dir / "clusters.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def cluster(body: str, scheduler: str = "slurm") -> str:
    return f"default: mycluster\nclusters:\n  mycluster:\n    scheduler: {scheduler}\n    {body}\n"


@pytest.mark.parametrize(("body", "error"), [
    ("gpus-per-node: four", "clusters.mycluster.gpus-per-node: expected a positive integer, "
                            "got 'four'"),
    ("gpus-per-node: 2.5", "clusters.mycluster.gpus-per-node: expected a positive integer, "
                           "got 2.5"),
    ("gpus-per-node: true", "clusters.mycluster.gpus-per-node: expected a positive integer, "
                            "got True"),
    ("cpus-per-task: 0", "clusters.mycluster.cpus-per-task: expected a positive integer, got 0"),
    ("skip-directives: 5", "clusters.mycluster.skip-directives: expected a list of strings, "
                           "got 5"),
    ("env: [A, B]", "clusters.mycluster.env: expected a mapping"),
    ("env: {É: x}", "clusters.mycluster.env: expected a shell variable name"),
    ("setup: module load cuda", "clusters.mycluster.setup: expected a list of strings, got "
                                "'module load cuda'; write a list: [\"module load cuda\"]"),
    ("extra-directives: --constraint=a100", "clusters.mycluster.extra-directives: expected a "
                                            "list of strings, got '--constraint=a100'; write "
                                            "a list: [\"--constraint=a100\"]"),
    ("mem: lots", "clusters.mycluster.mem: expected a memory size such as 64G"),
    ("time-limit: '25:99'", "clusters.mycluster.time-limit: expected a Slurm time limit"),
    ("time-limit: abc", "clusters.mycluster.time-limit: expected a Slurm time limit"),
    ("time-limit: -1", "clusters.mycluster.time-limit: expected a Slurm time limit"),
    ("gpus-per-nod: 4", "clusters.mycluster.gpus-per-nod: unknown key (did you mean "
                        "'gpus-per-node'?)"),
    ("scheduler2: sge", "clusters.mycluster.scheduler2: unknown key"),
])
def test_bad_clusters_yaml_values_name_the_field(hpc: HPC, body: str, error: str) -> None:
    path = write_clusters(hpc, cluster(body))
    line = one_line_error(hpc(*DRY, ok=False))
    assert line.startswith(f"hpclaunch: {path}: {error}"), line


@pytest.mark.parametrize(("body", "error"), [
    ("time-limit: '25:99'", "clusters.mycluster.time-limit: expected a PBS walltime"),
    ("filesystems: home,walltime=999:00:00", "clusters.mycluster.filesystems: expected a PBS "
                                             "resource value without commas"),
])
def test_bad_pbs_values_in_clusters_yaml(hpc: HPC, body: str, error: str) -> None:
    path = write_clusters(hpc, cluster(body, scheduler="pbs"))
    assert one_line_error(hpc(*DRY, ok=False)).startswith(f"hpclaunch: {path}: {error}")


@pytest.mark.parametrize(("content", "error"), [
    ("clusters: [a, b]", "clusters: expected a mapping"),
    ("clusters:\n  a: 5\n", "clusters.a: expected a mapping"),
    ("- a\n- b\n", "expected a mapping"),
    ("clusters:\n  a: [\n", "not valid YAML"),
    (b"clusters:\n  a:\n    partition: \xff\xfe\n", "not UTF-8 text"),
])
def test_clusters_yaml_of_the_wrong_shape(hpc: HPC, content: str | bytes, error: str) -> None:
    path = write_clusters(hpc, content)
    line = one_line_error(hpc(*DRY, ok=False))
    assert line.startswith(f"hpclaunch: {path}") and error in line
    assert "internal error" not in line


def test_clusters_yaml_that_is_a_directory(hpc: HPC) -> None:
    (hpc.config_dir / "clusters.yaml").mkdir(parents=True)
    line = one_line_error(hpc(*DRY, ok=False))
    assert "clusters.yaml: is a directory" in line


@pytest.mark.parametrize(("content", "error"), [
    ("vllm: [a, b]\n", "vllm: expected a mapping"),
    ("tags: 5\n", "tags: expected a list of strings, got 5"),
    ("vllm:\n  gpu-memory-utilization: 1.5\n", "vllm.gpu-memory-utilization: expected a "
                                               "fraction in (0, 1]"),
    ("vllm:\n  max-num-seqs: 0\n", "vllm.max-num-seqs: expected a positive integer, got 0"),
    ("layout: {dp: 0}\n", "layout.dp: expected a positive integer, got 0"),
    ("resources: {cpus-per-task: -3}\n", "resources.cpus-per-task: expected a positive "
                                         "integer, got -3"),
    ("descripton: typo\n", "descripton: unknown key (did you mean 'description'?)"),
])
def test_bad_preset_values_name_the_field(hpc: HPC, content: str, error: str) -> None:
    presets = hpc.config_dir / "presets"
    presets.mkdir(parents=True)
    (presets / "mine.yaml").write_text(content)
    line = one_line_error(hpc("submit", "Qwen3-0.6B", "--preset", "mine", "--simulate",
                              "--dry-run", ok=False))
    assert line.startswith(f"hpclaunch: {presets / 'mine.yaml'}: {error}"), line


@pytest.mark.parametrize(("option", "error"), [
    ("gpu-memory-utilization=1.5", "expected a fraction in (0, 1] such as 0.9, got 1.5"),
    ("gpu-memory-utilization=0", "expected a fraction in (0, 1] such as 0.9, got 0"),
    ("gpu-memory-utilization=-1", "expected a fraction in (0, 1] such as 0.9, got -1"),
    ("max-num-seqs=0", "expected a positive integer, got 0"),
    ("max-num-seqs=-1", "expected a positive integer, got -1"),
    ("cpus-per-task=abc", "expected a positive integer, got 'abc'"),
    ("cpus-per-task=0", "expected a positive integer, got 0"),
    ("cpus-per-task=-3", "expected a positive integer, got -3"),
    ("time-limit=25:99", "expected a Slurm time limit"),
    ("time-limit=abc", "expected a Slurm time limit"),
    ("time-limit=-1", "expected a Slurm time limit"),
    ("mem=lots", "expected a memory size such as 64G"),
    ("gpus-per-node=2.5", "expected a positive integer or TYPE:COUNT"),
    ("gpus-per-node=true", "expected a positive integer or TYPE:COUNT"),
    ("filesystems=home,walltime=999:00:00", "expected a PBS resource value without commas"),
    ("dp=0", "expected a positive integer, got 0"),
])
def test_bad_set_values_name_the_option(hpc: HPC, option: str, error: str) -> None:
    """The local scheduler (this profile) takes Slurm's time formats."""
    line = one_line_error(hpc(*DRY, "--set", option, ok=False))
    assert line.startswith(f"hpclaunch: --set {option.split('=')[0]}: {error}"), line


@pytest.mark.parametrize("args", ["--gpu-memory-utilization 1.5", "--gpu-memory-utilization=0",
                                  "--max-num-seqs -1"])
def test_bad_vllm_args_values_meet_the_same_rules(hpc: HPC, args: str) -> None:
    line = one_line_error(hpc(*DRY, "--vllm-args", args, ok=False))
    flag = args.split()[0].split("=")[0]
    assert line.startswith(f"hpclaunch: --vllm-args {flag}: expected a"), line


def test_pbs_walltime_rules_apply_to_set(hpc: HPC) -> None:
    line = one_line_error(hpc(*DRY, "--scheduler", "pbs", "--set", "time-limit=25:99", ok=False))
    assert line.startswith("hpclaunch: --set time-limit: expected a PBS walltime")
    ok = hpc(*DRY, "--scheduler", "pbs", "--set", "time-limit=90:00")
    assert "#PBS -l walltime=01:30:00" in ok.stdout


def test_zero_gpus_per_node_is_refused_not_replaced(hpc: HPC) -> None:
    line = one_line_error(hpc("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--no-simulate",
                              "--gpus-per-node", "0", "--dry-run", ok=False))
    assert line == "hpclaunch: --gpus-per-node: expected a positive integer, got 0"


def test_env_name_must_be_a_shell_identifier(hpc: HPC) -> None:
    line = one_line_error(hpc(*DRY, "--env", "É=x", ok=False))
    assert line.startswith("hpclaunch: --env: expected a shell variable name")
    assert "got 'É'" in line


def test_a_100_kb_model_path_is_one_short_line(hpc: HPC) -> None:
    line = one_line_error(hpc("submit", "org/" + "a" * 100_000, "--preset", "single-gpu",
                              "--simulate", "--dry-run", ok=False))
    assert line.startswith("hpclaunch: model: expected a model id")
    assert "(100,004 characters)" in line and len(line) < 300
