"""The container command around vLLM: one rendered form per runtime, every option checked.

Golden scripts freeze what a site receives (``--update-golden`` refreshes them); the
asserts below say why each option is there. The options are run for real by
tests/integration/containers (Podman itself, and PATH shims that parse the Apptainer and
Docker command lines strictly before starting the stand-in).
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from hpclaunch.config import ClusterProfile, Container
from hpclaunch.errors import UserError
from hpclaunch.planning.plan import Plan, build
from hpclaunch.planning.presets import load_preset
from hpclaunch.schedulers import scheduler_for
from hpclaunch.schedulers.container import container_name, launch
from tests.conftest import assert_golden

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "containers"
RESULTS = "/scratch/hpcl/results"
SIF = "/images/vllm-openai_v0.11.sif"
DOCKER_IMAGE = "docker.io/vllm/vllm-openai:latest"

GOLDEN_CASES: dict[str, tuple[str, ClusterProfile]] = {
    "apptainer-slurm-offline": ("single-gpu", ClusterProfile(
        name="hpc", scheduler="slurm", gpus_per_node=4, partition="gpu", results_dir=RESULTS,
        hf_home="/scratch/hf", offline=True, setup=["module load apptainer"],
        container={"runtime": "apptainer", "image": SIF, "binds": ("/models:/models:ro",),
                   "options": ("--cleanenv",)})),
    "singularity-pbs-rocm": ("tp2-balanced", ClusterProfile(
        name="hpc", scheduler="pbs", gpus_per_node=4, queue="gpu", results_dir=RESULTS,
        container={"runtime": "singularity", "image": "docker://rocm/vllm:latest",
                   "gpus": "rocm"})),
    "podman-local": ("single-gpu", ClusterProfile(
        name="ws", scheduler="local", gpus_per_node=1, results_dir=RESULTS,
        bind_host="127.0.0.1", url_host="127.0.0.1", hf_home="/data/hf",
        container={"runtime": "podman", "image": DOCKER_IMAGE})),
    "docker-local-004": ("mistral7b-awq-32k-docker", ClusterProfile(
        name="ws", scheduler="local", gpus_per_node=1, results_dir=RESULTS,
        bind_host="127.0.0.1", url_host="127.0.0.1",
        container={"runtime": "docker"})),
}


def plan_for(preset: str, cluster: ClusterProfile, model: str = "Qwen/Qwen3-0.6B",
             **overrides: object) -> Plan:
    return build(model=model, preset=load_preset(preset), cluster=cluster, name="boxed",
                 overrides=dict(overrides))


def render(case: str) -> str:
    preset, cluster = GOLDEN_CASES[case]
    model = "solidrust/Mistral-7B-Instruct-v0.3-AWQ" if "004" in case else "Qwen/Qwen3-0.6B"
    plan = plan_for(preset, cluster, model)
    return scheduler_for(cluster, None).render(plan, RESULTS,  # type: ignore[arg-type]
                                               submission="5eed5eed")


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_rendered_container_script_matches_golden(case: str, update_golden: bool) -> None:
    script = render(case)
    assert_golden(GOLDEN / f"{case}.sh", script, update_golden)


def argv_of(case: str, **changes: object) -> list[str]:
    preset, cluster = GOLDEN_CASES[case]
    model = "solidrust/Mistral-7B-Instruct-v0.3-AWQ" if "004" in case else "Qwen/Qwen3-0.6B"
    plan = plan_for(preset, cluster, model)
    if changes:
        plan = replace(plan, **changes)  # type: ignore[arg-type]
    found = launch(plan, RESULTS, "5eed5eed")
    assert found is not None
    return found.argv


def after(argv: list[str], flag: str) -> list[str]:
    """Every value given to ``flag``."""
    return [argv[i + 1] for i, item in enumerate(argv[:-1]) if item == flag]


def test_apptainer_execs_the_same_vllm_argv_with_gpus_binds_and_options() -> None:
    argv = argv_of("apptainer-slurm-offline")
    image = argv.index(SIF)
    assert argv[:3] == ["apptainer", "exec", "--nv"]
    # The results dir (log, endpoint file) and the HF cache keep their paths inside.
    assert after(argv, "--bind") == [f"{RESULTS}:{RESULTS}", "/scratch/hf:/scratch/hf",
                                     "/models:/models:ro"]
    assert "--cleanenv" in argv[:image]
    assert argv[image + 1:image + 4] == ["vllm", "serve", "Qwen/Qwen3-0.6B"]
    assert "--port" not in argv  # picked on the node


def test_singularity_on_amd_uses_rocm_and_its_own_variable_prefix() -> None:
    preset, cluster = GOLDEN_CASES["singularity-pbs-rocm"]
    found = launch(plan_for(preset, cluster), RESULTS, "")
    assert found is not None and found.argv[:3] == ["singularity", "exec", "--rocm"]
    assert found.env_prefix == "SINGULARITYENV_" and found.stop_argv == []


def test_podman_runs_with_cdi_gpus_host_network_ipc_and_variables_by_name() -> None:
    argv = argv_of("podman-local")
    image = argv.index(DOCKER_IMAGE)
    assert argv[:3] == ["podman", "run", "--rm"]
    assert after(argv, "--name") == ["hpcl-boxed-5eed5eed"]
    assert after(argv, "--network") == ["host"]  # the port picked on the node is the server's
    assert after(argv, "--ipc") == ["host"] and "--shm-size" not in argv
    assert after(argv, "--device") == ["nvidia.com/gpu=all"]
    assert after(argv, "--env") == ["HF_HOME", "PYTHONUNBUFFERED", "VLLM_API_KEY"]
    assert after(argv, "--volume") == [f"{RESULTS}:{RESULTS}", "/data/hf:/data/hf"]
    # The image's entrypoint (`vllm serve` in vllm/vllm-openai) is replaced by the plan's.
    assert after(argv, "--entrypoint") == ["vllm"]
    assert argv[image + 1:image + 3] == ["serve", "Qwen/Qwen3-0.6B"]


def test_docker_004_preset_gives_gpus_all_shm_and_the_guides_ulimits() -> None:
    argv = argv_of("docker-local-004")
    assert argv[:3] == ["docker", "run", "--rm"]
    assert after(argv, "--gpus") == ["all"] and "--device" not in argv
    assert after(argv, "--shm-size") == ["8G"] and "--ipc" not in argv
    assert "--ulimit=memlock=-1" in argv and "--ulimit=stack=67108864" in argv
    assert DOCKER_IMAGE.split("/", 1)[1] in " ".join(argv)


def test_no_variable_value_and_no_key_reaches_a_command_line() -> None:
    for case in GOLDEN_CASES:
        script = render(case)
        launched = next(line for line in script.splitlines() if "serve" in line
                        and "--port" in line)
        assert "=" not in " ".join(after(shlex.split(launched), "--env"))
        assert "VLLM_API_KEY=" not in launched


def test_stop_stops_podman_and_docker_containers_by_name() -> None:
    script = render("podman-local")
    assert "stop_container() { podman stop -t 5 hpcl-boxed-5eed5eed" in script
    assert "trap 'STOPPING=1; kill -TERM \"$VLLM_PID\" 2>/dev/null; stop_container'" in script
    assert "stop_container" not in render("apptainer-slurm-offline")


def test_apptainer_receives_variables_through_its_prefix_not_its_argv() -> None:
    script = render("apptainer-slurm-offline")
    assert "for VAR in HF_HOME HF_HUB_OFFLINE PYTHONUNBUFFERED TRANSFORMERS_OFFLINE " \
           "VLLM_API_KEY; do" in script
    assert 'export "APPTAINERENV_$VAR=${!VAR}"' in script


def test_simulated_jobs_ask_for_no_gpu_and_run_the_images_python() -> None:
    preset, cluster = GOLDEN_CASES["podman-local"]
    cluster = replace(cluster, container={**(cluster.container or {}),
                                          "python": "/usr/bin/python3.11"})
    plan = build(model="Qwen/Qwen3-0.6B", preset=load_preset(preset), cluster=cluster,
                 name="boxed", simulate=True)
    found = launch(plan, RESULTS, "")
    assert found is not None and "--device" not in found.argv
    assert after(found.argv, "--entrypoint") == ["/usr/bin/python3.11"]
    assert found.argv[found.argv.index(DOCKER_IMAGE) + 1:][:3] == ["-m", "hpclaunch.standin",
                                                                   "serve"]


def test_container_names_follow_the_endpoint_and_its_submission() -> None:
    assert container_name("boxed", "5eed5eed") == "hpcl-boxed-5eed5eed"
    assert container_name("boxed", "") == "hpcl-boxed"


# ------------------------------------------------------------------ where container: comes from

def test_profile_keys_win_over_the_presets_and_set_wins_over_both() -> None:
    cluster = ClusterProfile(name="ws", gpus_per_node=1, container={"runtime": "podman"})
    plan = plan_for("mistral7b-awq-32k-docker", cluster,
                    "solidrust/Mistral-7B-Instruct-v0.3-AWQ")
    assert plan.container == Container(
        runtime="podman", image=DOCKER_IMAGE, shm_size="8G",
        options=("--ulimit=memlock=-1", "--ulimit=stack=67108864"))
    changed = plan_for("mistral7b-awq-32k-docker", cluster,
                       "solidrust/Mistral-7B-Instruct-v0.3-AWQ",
                       container={"image": "localhost/mine", "shm-size": "16g"})
    assert changed.container is not None
    assert (changed.container.image, changed.container.shm_size) == ("localhost/mine", "16G")
    off = plan_for("single-gpu", cluster, container="none")
    assert off.container is None


@pytest.mark.parametrize(("value", "message"), [
    ({"runtime": "lxc", "image": "x"}, "--set container.runtime: expected one of apptainer"),
    ({"runtime": "podman", "image": "two words"}, "--set container.image: expected an image"),
    ({"runtime": "podman", "image": "x", "binds": ["models:/models"]},
     "--set container.binds: expected a bind SRC[:DST[:ro]]"),
    ({"runtime": "podman", "image": "x", "binds": ["/a,/b"]}, "expected a bind"),
    ({"runtime": "podman", "image": "x", "shm-size": "lots"}, "container.shm-size: expected a "
                                                              "memory size"),
    ({"runtime": "podman", "image": "x", "gpu": "nvidia"}, "unknown key (did you mean 'gpus'?)"),
    ({"runtime": "podman"}, "container: needs image"),
    ("podman", "--set container: expected a mapping"),
])
def test_bad_container_values_are_one_line_errors(value: object, message: str) -> None:
    cluster = ClusterProfile(name="ws", gpus_per_node=1)
    with pytest.raises(UserError) as err:
        plan_for("single-gpu", cluster, container=value)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("weird", ["/tmp/sp ace", "/tmp/a'; touch /tmp/pwned; '", "/tmp/$(id)"])
def test_hostile_bind_paths_and_options_reach_the_runtime_as_data(weird: str) -> None:
    preset, cluster = GOLDEN_CASES["podman-local"]
    cluster = replace(cluster, container={**(cluster.container or {}),
                                          "binds": (f"{weird}:/data:ro",),
                                          "options": (f"--label=x={weird}",)})
    script = scheduler_for(cluster, None).render(  # type: ignore[arg-type]
        plan_for(preset, cluster), RESULTS, submission="5eed5eed")
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    launched = next(line for line in script.splitlines() if "podman run --rm" in line)
    argv = shlex.split(launched)
    assert f"{weird}:/data:ro" in after(argv, "--volume")
    assert f"--label=x={weird}" in argv
