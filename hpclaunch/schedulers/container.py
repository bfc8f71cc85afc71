"""The command line that runs vLLM inside a container, for every scheduler's job script.

The job script stays on the node: it picks the port, writes the endpoint file and the
realtime log, and traps ``stop``. Only the server moves into the container, with the
same argv it would have on the node. Host paths are bound at the same path inside, so
the log, the results dir and the Hugging Face cache have one name everywhere.

Variables reach the container by name, never by value on a command line (the API key is
one of them): Podman and Docker copy ``--env NAME`` from the script's environment, and
Apptainer/Singularity copy ``APPTAINERENV_NAME``/``SINGULARITYENV_NAME``, which the script
exports (their ``--env`` takes ``NAME=VALUE``: the value would be on the command line).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpclaunch.config import Container
    from hpclaunch.planning.plan import Plan

# Variables the job script itself sets for the server, besides the plan's own.
JOB_VARIABLES = ("PYTHONUNBUFFERED", "VLLM_API_KEY")
# Seconds `podman stop`/`docker stop` gives the server before SIGKILL; below the local
# scheduler's 10 s grace and Slurm's default KillWait (30 s), so the trap finishes.
STOP_GRACE_S = 5
GPU_FLAGS = {
    "podman": {"nvidia": ["--device", "nvidia.com/gpu=all"], "rocm": ["--device", "/dev/kfd",
                                                                        "--device", "/dev/dri"]},
    "docker": {"nvidia": ["--gpus", "all"], "rocm": ["--device", "/dev/kfd",
                                                      "--device", "/dev/dri"]},
    "apptainer": {"nvidia": ["--nv"], "rocm": ["--rocm"]},
}


@dataclass(frozen=True)
class Launch:
    """What the job script needs to run one server in a container."""

    runtime: str
    name: str
    argv: list[str]           # the full command, without --port (picked on the node)
    stop_argv: list[str]      # empty when ending the runtime's own process is enough
    forwarded: list[str]      # variable names the container receives
    env_prefix: str           # APPTAINERENV_ / SINGULARITYENV_, or "" (runtime copies --env)


def container_name(endpoint: str, submission: str) -> str:
    """One name per submission, so `stop` finds exactly this job's container."""
    return f"hpcl-{endpoint}" + (f"-{submission}" if submission else "")


def launch(plan: Plan, results_dir: str, submission: str) -> Launch | None:
    """The container command for ``plan``, or None when vLLM runs on the node itself."""
    box = plan.container
    if box is None:
        return None
    name = container_name(plan.name, submission)
    variables = sorted({*plan.env, *JOB_VARIABLES})
    binds = [f"{results_dir}:{results_dir}"]
    if plan.cluster.hf_home and plan.cluster.hf_home != results_dir:
        binds.append(f"{plan.cluster.hf_home}:{plan.cluster.hf_home}")
    binds += [b for b in box.binds if b not in binds]
    # The stand-in (--simulate) needs no GPU, and CI machines have none to hand in.
    gpus = [] if plan.simulate or box.gpus == "none" else \
        GPU_FLAGS["apptainer" if box.runtime == "singularity" else box.runtime][box.gpus]
    if box.runtime in ("apptainer", "singularity"):
        argv = [box.runtime, "exec", *gpus]
        for bind in binds:
            argv += ["--bind", bind]
        argv += [*box.options, box.image, *plan.serve_argv]
        prefix = "APPTAINERENV_" if box.runtime == "apptainer" else "SINGULARITYENV_"
        return Launch(box.runtime, name, argv, [], variables, prefix)
    argv = [box.runtime, "run", "--rm", "--name", name, "--network", "host",
            *_shared_memory(box), *gpus]
    for variable in variables:
        argv += ["--env", variable]
    for bind in binds:
        argv += ["--volume", bind]
    command = plan.serve_argv
    # The image's entrypoint (vllm/vllm-openai's is `vllm serve`) is replaced by the
    # plan's own command, so the argv is the same with or without a container.
    argv += [*box.options, "--entrypoint", command[0], box.image, *command[1:]]
    stop = [box.runtime, "stop", "-t", str(STOP_GRACE_S), name]
    return Launch(box.runtime, name, argv, stop, variables, "")


def _shared_memory(box: Container) -> list[str]:
    """vLLM's worker processes talk through /dev/shm, which is 64 MB in a container by
    default: share the host's IPC namespace (guide 004), or size it with ``shm-size``."""
    return ["--shm-size", box.shm_size] if box.shm_size else ["--ipc", "host"]
